"""Deliveries get the resident's name, contact and language and the town's case number.

Revision ID: 0002_delivery_details
Revises: 0001_baseline
"""

from __future__ import annotations

from alembic import op

revision = "0002_delivery_details"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from lockertools.service import schema

    # checkfirst: the baseline's upgrade creates schema.py's tables as they are now, this one included.
    schema.delivery_details.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    raise NotImplementedError("the fleet database is not downgraded: restore a backup")
