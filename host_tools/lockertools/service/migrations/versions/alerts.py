"""Staff alerts of incidents: the contacts per locker, the alert sender's cursor, its messages.

Revision ID: 0007_alerts
Revises: 0006_notify
"""

from __future__ import annotations

from alembic import op

revision = "0007_alerts"
down_revision = "0006_notify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from lockertools.service import schema

    bind = op.get_bind()  # checkfirst: a database made at a later head has them
    for table in (schema.alert_contacts, schema.alert_seen, schema.staff_alerts, schema.alert_items):
        table.create(bind, checkfirst=True)


def downgrade() -> None:
    raise NotImplementedError("the fleet database is not downgraded: restore a backup")
