"""pytest fixtures for tests against a real mosquitto (loaded by tests/conftest.py).

- `broker`: a fresh broker on a free loopback port (plain MQTT), set up by `lockertools.broker` with
  one host user; `broker.add_locker(lid)` adds a locker while it runs, `broker.client(user)`,
  `broker.host_client()` and `broker.locker_client(lid)` make connected-on-demand clients that are
  closed at teardown.
- `tls_broker`: the same with a TLS listener only (clients trust the set-up's CA).
- `fault_proxy_factory`: `fault_proxy_factory(port)` puts a `FaultProxy` in front of a port.
- `postgres_server`: a throwaway PostgreSQL cluster per test process (tests/support/postgres.py);
  `postgres_url`: a fresh empty database on it for one test, as a SQLAlchemy URL.
- `database`: runs a test on SQLite and on PostgreSQL (tests/service and tests/e2e use it for every
  test). On "postgresql", every plain path a test gives the host's database layer (db.connect, the
  CLI's --db, the service's db_path) stands for a database of its own on the test server, made
  empty the first time that path is named: the tests keep naming their databases by path, and each
  path is one PostgreSQL database. A test marked `sqlite_only` checks what only a SQLite file has
  (pragmas, file mode, a file written before SQLAlchemy) and runs on SQLite alone. A process the
  test starts gets the URL (`db.database_url(path)`).

The broker's log is attached to the report of a failing test. Every broker, proxy and client
started here is stopped at teardown, whatever happened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lockertools.broker import BrokerSetup
from lockertools.service import db
from tests.support.faultproxy import FaultProxy
from tests.support.mosquitto import Mosquitto, MqttClient, wait_until
from tests.support.postgres import PostgresServer

_SERVERS = pytest.StashKey[list[Mosquitto]]()


class Broker:
    """A running broker with its users' passwords (kept in memory only, for the test's clients)."""

    def __init__(self, setup: BrokerSetup, server: Mosquitto, host_user: str, host_password: str) -> None:
        self.setup = setup
        self.server = server
        self.host_user = host_user
        self.passwords: dict[str, str] = {host_user: host_password}
        self._clients: list[MqttClient] = []

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        """The port clients use: the TLS one on a TLS-only broker."""
        return self.server.tls_port if self.setup.port is None else self.server.port

    @property
    def ca(self) -> Path | None:
        return self.setup.ca_path if self.setup.port is None else None

    def add_locker(self, lid: str) -> str:
        """Adds locker `lid`; once this returns, the running broker accepts its password."""
        password = self.setup.add_locker(lid)
        self.passwords[lid] = password
        if self.server.running:
            self.server.reload()

            def accepted() -> bool:
                with self.client(lid, track=False) as probe:
                    return probe.connect() == 0

            wait_until(accepted, 5.0, f"the broker to accept locker {lid}", poll=0.02)
        return password

    def client(self, user: str | None, password: str | None = None, *, track: bool = True, **kw: Any) -> MqttClient:
        """A client for `user` (its known password unless one is given); not connected yet."""
        if password is None and user is not None:
            password = self.passwords[user]
        kw.setdefault("ca", self.ca)
        c = MqttClient(self.host, kw.pop("port", self.port), user, password, **kw)
        if track:
            self._clients.append(c)
        return c

    def host_client(self, **kw: Any) -> MqttClient:
        """The host service's client: persistent session (clean session off) unless told otherwise."""
        kw.setdefault("clean_session", False)
        kw.setdefault("client_id", self.host_user)
        return self.client(self.host_user, **kw)

    def locker_client(self, lid: str, **kw: Any) -> MqttClient:
        kw.setdefault("client_id", lid)
        return self.client(lid, **kw)

    def connected(self, c: MqttClient) -> MqttClient:
        rc = c.connect()
        assert rc == 0, f"connection refused (CONNACK {rc})\n{self.server.log(this_run=True)}"
        return c

    def close_clients(self) -> None:
        for c in self._clients:
            c.close()
        self._clients.clear()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed:
        for server in item.stash.get(_SERVERS, []):
            report.sections.append((f"mosquitto log ({server.log_path})", server.log() or "(empty)"))
    return report


def _run_broker(request: pytest.FixtureRequest, setup: BrokerSetup) -> Iterator[Broker]:
    host_password = setup.add_host("host")
    server = Mosquitto(setup)
    request.node.stash.setdefault(_SERVERS, []).append(server)
    broker = Broker(setup, server, "host", host_password)
    try:
        server.start()
        yield broker
    finally:
        try:
            broker.close_clients()
        finally:
            server.stop()


@pytest.fixture
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """A running mosquitto (plain MQTT on a free loopback port) with the fleet's ACL and one host user."""
    yield from _run_broker(request, BrokerSetup(tmp_path / "broker", host="127.0.0.1", port=0, tls_port=None))


@pytest.fixture
def tls_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """As `broker`, with a TLS listener only; the certificate names 127.0.0.1 and `localhost`."""
    setup = BrokerSetup(tmp_path / "broker", host="127.0.0.1", port=None, tls_port=0, names=["localhost"])
    yield from _run_broker(request, setup)


@pytest.fixture
def fault_proxy_factory() -> Iterator[Callable[[int], FaultProxy]]:
    """`fault_proxy_factory(port, host="127.0.0.1")`: a started FaultProxy to that port, closed at teardown."""
    proxies: list[FaultProxy] = []

    def make(port: int, host: str = "127.0.0.1") -> FaultProxy:
        proxy = FaultProxy(host, port).start()
        proxies.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in proxies:
            proxy.close()


# --- PostgreSQL ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster per test process (loopback only), stopped at the end."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's server, named after the test; its SQLAlchemy URL."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    return postgres_server.create_database(name)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: checks what only a SQLite file has; not run on PostgreSQL")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The database kind this run of the test uses: "sqlite", or "postgresql" (see below)."""
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
