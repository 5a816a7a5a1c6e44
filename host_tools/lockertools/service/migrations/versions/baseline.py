"""The baseline: the fleet's schema as the service had it before Alembic (SQLite `PRAGMA user_version`
4, migrations/legacy.py), which schema.py defines for both databases.

A fresh database gets schema.py's tables and the newest revision at once (db.migrate); a SQLite
database from before Alembic is brought to legacy step 4 and stamped with this revision. So this
revision's upgrade runs only on an empty database given to Alembic directly.

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    from lockertools.service import schema

    schema.metadata.create_all(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("the fleet database is not downgraded: restore a backup")
