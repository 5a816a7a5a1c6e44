"""Every API test runs on both databases: SQLite and PostgreSQL (the `database` fixture,
tests/support/fixtures.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _on_both_databases(database: str) -> str:
    return database
