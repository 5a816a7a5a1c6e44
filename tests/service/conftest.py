"""Every service test runs on both databases: SQLite (a file) and PostgreSQL (a real server the tests
start on loopback, tests/support/postgres.py).

The `database` fixture is autouse and parametrized. On "postgresql", every plain path a test gives
the database layer (db.connect, the CLI's --db, the service's db_path) stands for a database of its
own on the test server, made empty the first time that path is named: the tests keep naming their
databases by path, and each path is one PostgreSQL database. A test marked `sqlite_only` checks
something only a SQLite file has (its pragmas, its file mode, a database written by the program
before SQLAlchemy) and runs on SQLite alone. Processes a test starts get the URL (`Rig.db_url`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from lockertools.service import db
from tests.support.postgres import PostgresServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: checks what only a SQLite file has; not run on PostgreSQL")


@pytest.fixture(params=["sqlite", "postgresql"], autouse=True)
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The database kind this run of the test uses."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    if request.node.get_closest_marker("sqlite_only"):
        pytest.skip("a SQLite file's property")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    urls: dict[str, sa.URL] = {}
    plain = db.database_url

    def on_postgres(target: str | Path) -> sa.URL:
        text = str(target)
        if "://" in text:
            return plain(text)
        key = str(Path(text).resolve())
        if key not in urls:
            digest = hashlib.sha1(key.encode()).hexdigest()[:10]
            urls[key] = db.database_url(server.create_database(f"p_{len(urls)}_{digest}"))
        return urls[key]

    monkeypatch.setattr(db, "database_url", on_postgres)
    yield "postgresql"
    # Connections a test left to the garbage collector would pile up on the server: end them, and
    # drop the test's databases (disk).
    for url in urls.values():
        name = url.database
        server.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
