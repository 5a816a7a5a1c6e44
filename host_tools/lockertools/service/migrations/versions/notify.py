"""Residents' messages: the outbox, one row per message per channel.

Revision ID: 0006_notify
Revises: 0004_desk_accounts
"""

from __future__ import annotations

from alembic import op

revision = "0006_notify"
down_revision = "0004_desk_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from lockertools.service import schema

    schema.resident_messages.create(op.get_bind(), checkfirst=True)  # additive: a database made at a later head has it


def downgrade() -> None:
    raise NotImplementedError("the fleet database is not downgraded: restore a backup")
