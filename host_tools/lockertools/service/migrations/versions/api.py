"""The HTTP API's tokens and idempotency keys, door sizes, webhooks and their outbox.

Revision ID: 0005_api
Revises: 0003_incidents
"""

from __future__ import annotations

from alembic import op

revision = "0005_api"
down_revision = "0003_incidents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from lockertools.service import schema

    bind = op.get_bind()
    # checkfirst: a database stamped at an older revision by a test or a re-chained merge may hold them
    for table in (
        schema.api_tokens,
        schema.api_idempotency,
        schema.door_sizes,
        schema.webhooks,
        schema.webhook_events,
        schema.webhook_deliveries,
    ):
        table.create(bind, checkfirst=True)


def downgrade() -> None:
    raise NotImplementedError("the fleet database is not downgraded: restore a backup")
