"""tests/support/faultproxy.py: forwarding, cut/heal, stall, drop_after, and a real MQTT client
through it."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.support.faultproxy import FaultProxy
from tests.support.fixtures import Broker
from tests.support.mosquitto import wait_until


class EchoServer:
    """Loopback TCP server echoing every byte back; counts what it received."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                with self.lock:
                    self.received += len(data)
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


def recv_exactly(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def nothing_to_read(sock: socket.socket, within: float = 0.3) -> bool:
    """A bounded wait for absence: True if no byte (nor EOF) arrives within `within` seconds."""
    readable, _, _ = select.select([sock], [], [], within)
    return not readable


def is_reset(sock: socket.socket) -> bool:
    """True once the connection is reset or closed by the peer (waits up to 5 s for it)."""
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_forwards_both_ways_and_counts(echo: EchoServer, fault_proxy_factory: Callable[[int], FaultProxy]) -> None:
    proxy = fault_proxy_factory(echo.port)
    with socket.create_connection((proxy.host, proxy.port)) as c:
        payload = bytes(range(256)) * 1000
        c.sendall(payload)
        assert recv_exactly(c, len(payload)) == payload
    stats = proxy.wait_for(lambda s: s.active == 0, what="the connection to go")
    assert (stats.accepted, stats.bytes_up, stats.bytes_down, stats.resets) == (1, len(payload), len(payload), 0)


def test_cut_resets_connections_and_refuses_until_heal(
    echo: EchoServer, fault_proxy_factory: Callable[[int], FaultProxy]
) -> None:
    proxy = fault_proxy_factory(echo.port)
    with socket.create_connection((proxy.host, proxy.port)) as c:
        c.sendall(b"ping")
        assert recv_exactly(c, 4) == b"ping"
        proxy.cut()
        assert is_reset(c)
    assert proxy.stats().resets == 1 and proxy.stats().active == 0
    with socket.create_connection((proxy.host, proxy.port)) as refused:
        assert is_reset(refused)
    proxy.wait_for(lambda s: s.refused == 1, what="the refused connection")
    proxy.heal()
    with socket.create_connection((proxy.host, proxy.port)) as c2:
        c2.sendall(b"again")
        assert recv_exactly(c2, 5) == b"again"
    assert proxy.stats().accepted == 2


def test_stall_holds_data_without_closing(echo: EchoServer, fault_proxy_factory: Callable[[int], FaultProxy]) -> None:
    proxy = fault_proxy_factory(echo.port)
    with socket.create_connection((proxy.host, proxy.port)) as c:
        c.sendall(b"one")
        assert recv_exactly(c, 3) == b"one"
        proxy.stall()
        c.sendall(b"two")
        assert nothing_to_read(c)  # bounded wait; the control is below: the same bytes arrive after
        assert proxy.stats().bytes_up == 3 and echo.received == 3
        proxy.stall(False)
        assert recv_exactly(c, 3) == b"two"
    assert proxy.stats().resets == 0


def test_drop_after_resets_after_n_bytes(echo: EchoServer, fault_proxy_factory: Callable[[int], FaultProxy]) -> None:
    proxy = fault_proxy_factory(echo.port)
    proxy.drop_after(10)  # both directions together: 5 up + 5 echoed down
    with socket.create_connection((proxy.host, proxy.port)) as c:
        c.sendall(b"abcde")
        assert recv_exactly(c, 5) == b"abcde"
        assert proxy.stats().active == 1  # exactly 10 bytes passed: still open
        c.sendall(b"fghij")  # one byte more than the budget: reset, nothing of it forwarded
        assert is_reset(c)
    stats = proxy.wait_for(lambda s: s.active == 0)
    assert stats.resets == 1 and stats.bytes_up + stats.bytes_down == 10
    wait_until(lambda: echo.received == 5, 5, "the server to have exactly the 5 bytes within budget")
    proxy.drop_after(None)
    with socket.create_connection((proxy.host, proxy.port)) as c:
        c.sendall(b"x" * 100)
        assert recv_exactly(c, 100) == b"x" * 100


def test_upstream_down_resets_the_client(fault_proxy_factory: Callable[[int], FaultProxy]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        dead_port = s.getsockname()[1]  # closed below: nothing listens there
    proxy = fault_proxy_factory(dead_port)
    with socket.create_connection((proxy.host, proxy.port)) as c:
        assert is_reset(c)
    assert proxy.wait_for(lambda s: s.refused == 1).accepted == 0


def test_mqtt_client_reconnects_through_cut_and_heal(
    broker: Broker, fault_proxy_factory: Callable[[int], FaultProxy]
) -> None:
    broker.add_locker("A")
    proxy = fault_proxy_factory(broker.port)
    host = broker.connected(broker.host_client())
    host.subscribe("lockers/+/events")
    a = broker.connected(broker.locker_client("A", port=proxy.port, reconnect=True))
    a.publish("lockers/A/events", b"before")
    host.wait_message("lockers/A/events", b"before")
    proxy.cut()
    a.wait(lambda: a.disconnects == 1, "the client to see the cut")
    proxy.wait_for(lambda s: s.refused >= 1, what="a reconnect attempt while cut")
    assert not a.connected
    proxy.heal()
    a.wait(lambda: a.connected, "the client to reconnect", timeout=10)
    a.publish("lockers/A/events", b"after")
    host.wait_message("lockers/A/events", b"after")
