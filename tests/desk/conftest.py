"""Fixtures of the staff desk's tests: every test runs on SQLite and on PostgreSQL.

- `desk_db`: a fresh, migrated fleet database (a path; on PostgreSQL a database of its own) with
  one account per role (`desk1`, `manager1`, `admin1`; passwords: desk_support.PASSWORDS).
- `desk_server`: the desk served on it (desk_support.DeskServer: `clock`, `url`, `connect()`).
- `desk_client(role)`: a client logged in with that role's account (a new one each call);
  `desk_client(None)`: one with no session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from desk_support import PASSWORDS, DeskClient, DeskServer

from lockertools.desk import auth
from lockertools.service import db


@pytest.fixture(autouse=True)
def _on_both_databases(database: str) -> str:
    return database


@pytest.fixture
def desk_db(tmp_path: Path) -> str:
    target = str(tmp_path / "fleet.db")
    conn = db.connect(target, create=True)
    try:
        for role, password in PASSWORDS.items():
            auth.add_account(conn, f"{role}1", role, password, time.time())
    finally:
        conn.close()
    return target


@pytest.fixture
def desk_server(desk_db: str) -> Iterator[DeskServer]:
    server = DeskServer(desk_db).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def desk_client(desk_server: DeskServer) -> Callable[[str | None], DeskClient]:
    def make(role: str | None) -> DeskClient:
        client = DeskClient(desk_server)
        if role is not None:
            reply = client.login(f"{role}1", PASSWORDS[role])
            assert reply.status == 303, reply.text
        return client

    return make
