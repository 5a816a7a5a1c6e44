"""A small TCP proxy that injects network faults between a client and a server (Toxiproxy-like).

    with FaultProxy("127.0.0.1", broker.port) as proxy:   # listens on 127.0.0.1:proxy.port
        client connects to proxy.port ...
        proxy.cut()        # resets every connection; new ones are reset at once, until heal()
        proxy.heal()
        proxy.stall()      # stops forwarding (nothing is closed; TCP back-pressure builds up)
        proxy.stall(False)
        proxy.drop_after(100)  # each connection carries 100 more bytes (both directions), then is reset

One thread runs a `select` loop over every socket; the control calls are run by that thread and
return once they took effect, so a test can rely on them at once. `stats()` counts connections and
bytes; `wait_for(pred)` waits on them. Listens on loopback only.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType

CHUNK = 65536


@dataclass(frozen=True)
class Stats:
    accepted: int = 0  # connections accepted and forwarded
    refused: int = 0  # connections reset at once (cut, or the upstream refused)
    active: int = 0
    resets: int = 0  # forwarded connections the proxy reset (cut, drop_after)
    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client


def _reset(sock: socket.socket) -> None:
    """Closes with an RST (SO_LINGER 0), as a broken network or a killed peer would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Conn:
    def __init__(self, client: socket.socket, upstream: socket.socket, budget: int | None) -> None:
        self.client, self.upstream = client, upstream
        self.up = bytearray()  # read from the client, not yet sent upstream
        self.down = bytearray()
        self.client_eof = self.upstream_eof = False
        self.budget = budget


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, listen_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server((listen_host, 0))
        self._listener.setblocking(False)
        self.host = listen_host
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._conns: list[_Conn] = []
        self._cut = False
        self._stalled = False
        self._budget: int | None = None
        self._stats = Stats()
        self._cond = threading.Condition()
        self._calls: list[tuple[Callable[[], None], threading.Event]] = []
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=f"faultproxy:{self.port}", daemon=True)

    # -- control (any thread)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._shutdown)
            self._thread.join(5)
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()

    def cut(self) -> None:
        """Resets every connection and resets new ones on accept, until `heal()`."""

        def do() -> None:
            self._cut = True
            for conn in list(self._conns):
                self._drop(conn, reset=True)

        self._call(do)

    def heal(self) -> None:
        """Ends `cut()` and `stall()`: new connections are forwarded again."""

        def do() -> None:
            self._cut = False
            self._stalled = False

        self._call(do)

    def stall(self, on: bool = True) -> None:
        """Stops (or resumes) forwarding in both directions; connections stay open."""

        def do() -> None:
            self._stalled = on

        self._call(do)

    def drop_after(self, n_bytes: int | None) -> None:
        """Lets `n_bytes` more bytes through each connection, current and new (both directions
        together), and resets it when more would pass (those are not forwarded). None: no limit."""

        def do() -> None:
            self._budget = n_bytes
            for conn in self._conns:
                conn.budget = n_bytes

        self._call(do)

    def stats(self) -> Stats:
        with self._cond:
            return self._stats

    def wait_for(self, pred: Callable[[Stats], bool], timeout: float = 5.0, what: str = "proxy stats") -> Stats:
        with self._cond:
            if not self._cond.wait_for(lambda: pred(self._stats), timeout):
                raise AssertionError(f"timed out after {timeout} s waiting for {what}: {self._stats}")
            return self._stats

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _call(self, fn: Callable[[], None]) -> None:
        done = threading.Event()
        with self._cond:
            self._calls.append((fn, done))
        self._wake_w.send(b"x")
        if not done.wait(5):
            raise RuntimeError("fault proxy thread not answering")

    # -- the loop (its own thread)

    def _count(self, **delta: int) -> None:
        with self._cond:
            self._stats = replace(self._stats, **{k: getattr(self._stats, k) + v for k, v in delta.items()})
            self._cond.notify_all()

    def _shutdown(self) -> None:
        self._closing = True
        for conn in list(self._conns):
            self._drop(conn, reset=True, count=False)

    def _drop(self, conn: _Conn, *, reset: bool, count: bool = True) -> None:
        if conn not in self._conns:
            return
        self._conns.remove(conn)
        for s in (conn.client, conn.upstream):
            if reset:
                _reset(s)
            else:
                s.close()
        self._count(active=-1, resets=1 if reset and count else 0)

    def _loop(self) -> None:
        while not self._closing:
            rlist: list[socket.socket] = [self._wake_r, self._listener]
            wlist: list[socket.socket] = []
            for c in self._conns:
                if not self._stalled:
                    if not c.up and not c.client_eof:
                        rlist.append(c.client)
                    if not c.down and not c.upstream_eof:
                        rlist.append(c.upstream)
                    if c.up:
                        wlist.append(c.upstream)
                    if c.down:
                        wlist.append(c.client)
            readable, writable, _ = select.select(rlist, wlist, [])
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
                with self._cond:
                    calls, self._calls = self._calls, []
                for fn, done in calls:
                    fn()
                    done.set()
                continue  # the calls may have closed sockets in these lists
            if self._listener in readable:
                self._accept()
            for c in list(self._conns):
                if c in self._conns:
                    self._pump(c, readable, writable)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._cut:
            _reset(client)
            self._count(refused=1)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            _reset(client)
            self._count(refused=1)
            return
        for s in (client, upstream):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conns.append(_Conn(client, upstream, self._budget))
        self._count(accepted=1, active=1)

    def _pump(self, c: _Conn, readable: list[socket.socket], writable: list[socket.socket]) -> None:
        for src, buf, eof_attr in ((c.client, c.up, "client_eof"), (c.upstream, c.down, "upstream_eof")):
            if src not in readable:
                continue
            try:
                data = src.recv(CHUNK)
            except (ConnectionError, OSError):
                self._drop(c, reset=True, count=False)
                return
            if not data:
                setattr(c, eof_attr, True)
                continue
            over = c.budget is not None and len(data) > c.budget
            if c.budget is not None:
                data = data[: c.budget]
                c.budget -= len(data)
            buf += data
            self._count(**{"bytes_up" if src is c.client else "bytes_down": len(data)})
            if over:
                self._flush(c)
                self._drop(c, reset=True)
                return
        for dst, buf in ((c.upstream, c.up), (c.client, c.down)):
            if dst in writable and buf:
                try:
                    sent = dst.send(buf)
                except BlockingIOError:
                    continue
                except (ConnectionError, OSError):
                    self._drop(c, reset=True, count=False)
                    return
                del buf[:sent]
        if (c.client_eof and not c.up) or (c.upstream_eof and not c.down):
            # One side closed and what it sent is delivered: close the other side too (MQTT never half-closes).
            self._flush(c)
            self._drop(c, reset=False)

    @staticmethod
    def _flush(c: _Conn) -> None:
        """Best effort: hands pending bytes to the kernel before the connection goes."""
        deadline = time.monotonic() + 1.0
        for dst, buf in ((c.upstream, c.up), (c.client, c.down)):
            while buf and time.monotonic() < deadline:
                try:
                    del buf[: dst.send(buf)]
                except BlockingIOError:
                    select.select([], [dst], [], 0.05)
                except OSError:
                    break
