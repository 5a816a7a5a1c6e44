"""The staff desk's tables: accounts, sessions, failed logins, the append-only audit trail, and the
doors' sizes (schema.py, "the staff desk").

Revision ID: 0004_desk_accounts
Revises: 0005_api
"""

from __future__ import annotations

from alembic import op

revision = "0004_desk_accounts"
down_revision = "0005_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from lockertools.service import schema

    bind = op.get_bind()
    # create_all with these tables only: the audit trail's after_create guards come with it.
    tables = [schema.desk_accounts, schema.desk_sessions, schema.desk_login_failures, schema.desk_audit]
    tables.append(schema.door_sizes)
    schema.metadata.create_all(bind, tables=tables)


def downgrade() -> None:
    raise NotImplementedError("the fleet database is not downgraded: restore a backup")
