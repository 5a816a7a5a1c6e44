"""Incidents: what needs a person (service/incidents.py), and the log of their state changes.

Revision ID: 0003_incidents
Revises: 0002_delivery_details
"""

from __future__ import annotations

from alembic import op

revision = "0003_incidents"
down_revision = "0002_delivery_details"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from lockertools.service import schema

    # checkfirst: the baseline's upgrade creates schema.py's tables as they are now, these included.
    bind = op.get_bind()
    schema.incidents.create(bind, checkfirst=True)
    schema.incident_log.create(bind, checkfirst=True)


def downgrade() -> None:
    raise NotImplementedError("the fleet database is not downgraded: restore a backup")
