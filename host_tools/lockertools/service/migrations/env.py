"""Alembic's environment for the fleet database: db.migrate runs it on its own connection."""

from __future__ import annotations

from alembic import context

from lockertools.service import schema

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the fleet's migrations through lockertools.service.db.migrate (lockerctl does)")
context.configure(
    connection=connection,
    target_metadata=schema.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite changes a table by rebuilding it
)
with context.begin_transaction():
    context.run_migrations()
