"""The test PostgreSQL server itself: loopback only, a fresh database per test, and nothing left running."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.postgres import PostgresError, PostgresServer


def test_a_throwaway_cluster_listens_on_loopback_only_and_stops(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path / "pg")
    with server:
        assert server.psql("SHOW listen_addresses").strip() == "127.0.0.1"
        url = server.create_database("t_one")
        assert url.endswith(f"@127.0.0.1:{server.port}/t_one")
        server.psql("CREATE TABLE x (n integer); INSERT INTO x VALUES (7)", "t_one")
        # create_database gives an empty database, even where one of that name had tables
        server.create_database("t_one")
        with pytest.raises(PostgresError, match="does not exist"):
            server.psql("SELECT n FROM x", "t_one")
        with pytest.raises(PostgresError, match="letters, digits"):
            server.create_database("x; DROP DATABASE postgres")
        pid = server.proc.pid if server.proc else 0
    assert not server.running and not Path(f"/proc/{pid}").exists()


def test_the_session_server_gives_each_test_its_own_database(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    name = postgres_url.rsplit("/", 1)[1]
    assert name.startswith("t_test_the_session_server")
    assert postgres_server.psql("SELECT current_database()", name).strip() == name
