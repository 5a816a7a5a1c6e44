"""Helpers for the host-service tests: a fleet database, and a rig running the service and simulated
lockers in one background asyncio loop against the `broker` fixture (tests/support/fixtures.py)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import strategies as st

from lockertools.fleet import SimLocker
from lockertools.service import db, fleet_db
from lockertools.service.runner import Service, ServiceConfig
from tests.support.fixtures import Broker
from tests.support.mosquitto import wait_until

LABELS = ["A1", "A2", "A3"]
T = TypeVar("T")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rig:
    """A fleet database, the service and SimLockers, all in a background event loop.

    Tests stay synchronous: they call into the loop with `call()` and poll conditions with `wait()`.
    close() cancels every task it started and stops the loop."""

    def __init__(
        self,
        broker: Broker,
        tmp_path: Path,
        lockers: tuple[str, ...] = ("hall-1",),
        sim_class: type[SimLocker] | None = None,
        **config: Any,
    ) -> None:
        self.broker = broker
        self.db_path = tmp_path / "fleet.db"
        self.config = config
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rig-loop", daemon=True)
        self._thread.start()
        self.keys = {lid: secrets.token_bytes(32) for lid in lockers}
        conn = db.connect(self.db_path, create=True)
        for lid, key in self.keys.items():
            fleet_db.add_locker(conn, lid, key, LABELS)
        conn.close()
        self.conn = db.connect(self.db_path)  # the test's own connection, like the CLI's
        # One broker reload for the whole fleet: add_locker() on the last one reloads and waits.
        *first, last = self.keys
        passwords = {lid: broker.setup.add_locker(lid) for lid in first}
        broker.passwords.update(passwords)
        passwords[last] = broker.add_locker(last)
        make = sim_class or SimLocker
        self.sims = {
            lid: make(lid, key, LABELS, broker.host, broker.port, password=passwords[lid], resend_s=60)
            for lid, key in self.keys.items()
        }
        self.service: Service | None = None
        self._service_task: asyncio.Task[None] | None = None
        self._locker_tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def db_url(self) -> str:
        """The database as another process names it (a URL: SQLite's file, or the test's PostgreSQL database)."""
        return db.database_url(self.db_path).render_as_string(hide_password=False)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def wait(self, condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
        wait_until(lambda: bool(condition()), timeout, what, poll=0.01)

    async def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return asyncio.create_task(coro)

    async def _cancel(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def start_service(self) -> Service:
        settings: dict[str, Any] = {
            "host": self.broker.host,
            "port": self.broker.port,
            "username": self.broker.host_user,
            "password": self.broker.passwords[self.broker.host_user],
            "client_id": self.broker.host_user,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
        }
        config = ServiceConfig(db_path=self.db_path, **(settings | self.config))  # the test's settings win
        self.service = Service(config)
        self._service_task = self.call(self._spawn(self.service.run()))
        self.wait(lambda: self.service is not None and self.service.connected.is_set(), "the service to connect")
        return self.service

    def stop_service(self) -> None:
        if self._service_task is not None:
            self.call(self._cancel(self._service_task))
            self._service_task = None

    def service_alive(self) -> bool:
        return self._service_task is not None and not self._service_task.done()

    def start_lockers(self) -> None:
        for lid, sim in self.sims.items():
            self._locker_tasks[lid] = self.call(self._spawn(sim.run()))
        self.wait(lambda: all(s.connected.is_set() for s in self.sims.values()), "every locker to connect", 30)

    def start_locker(self, lid: str = "hall-1") -> SimLocker:
        sim = self.sims[lid]
        self._locker_tasks[lid] = self.call(self._spawn(sim.run()))
        self.wait(sim.connected.is_set, f"{lid} to connect")
        return sim

    def stop_locker(self, lid: str = "hall-1", crash: bool = False) -> None:
        """Stop a locker: cleanly (DISCONNECT), or crash=True as a power cut (the broker sends its will)."""
        task = self._locker_tasks.pop(lid, None)
        if task is not None:
            if crash:
                self.loop.call_soon_threadsafe(self.sims[lid].crash)
            self.call(self._cancel(task))

    def query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        try:
            for lid in list(self._locker_tasks):
                self.stop_locker(lid)
            self.stop_service()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
            self.conn.close()


class DeliverySim(SimLocker):
    """A SimLocker that also holds door-free rows (door "*", any kind byte) and answers `door.open`
    and `door.service` as docs/protocol.md says: what the host sees of the firmware's staff flows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.door_ops: list[tuple[str, dict[str, Any]]] = []
        self.in_service = dict.fromkeys(self.labels, True)
        self.journal: dict[int, str] = {}  # delivery number -> the door it was loaded into

    def _rows(self, rows: list[Any]) -> list[list[Any]]:
        if len(rows) > 64:
            raise ValueError("too many rows")
        out = []
        for tag_hex, door, kind, exp, code_id in rows:
            if len(bytes.fromhex(tag_hex)) != 16 or (door not in self.labels and door != "*"):
                raise ValueError("bad row")
            if not 0 <= int(kind) <= 127:
                raise ValueError("bad kind")
            out.append([tag_hex, door, int(kind), int(exp), int(code_id)])
            self.received_ids.add(int(code_id))
        return out

    def lookup_any(self, code: str) -> tuple[int, str] | None:
        """(code id, door) of the door-free row a typed code matches."""
        tag = self._codes_mod.tag(self._hkey, "*", code.encode()).hex()
        for row in self.store.values():
            if row[0] == tag:
                return int(row[4]), self.journal.get(int(row[4]), str(row[1]))
        return None

    def load(self, number: int, door: str) -> None:
        """A delivery loaded at `door`: the door is kept beside the row, as the firmware's journal
        keeps it (a re-sent row, door "*", does not unbind it)."""
        self.journal[number] = door

    def _dispatch(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op in ("door.open", "door.service"):
            door = args["door"]
            if door not in self.labels or not isinstance(args.get("by"), str):
                return {"ok": False, "error": "bad_args"}
            self.door_ops.append((op, args))
            if op == "door.open":
                return {"ok": True, "d": door}
            self.in_service[door] = bool(args["on"])
            return {"ok": True, "d": door, "on": bool(args["on"])}
        return super()._dispatch(op, args)


def delivery_batches(draw: Any, n_events: int, max_again: int) -> list[list[int]]:
    """For a hypothesis composite: deliveries of events 0..n_events-1, each at least once and up to
    `max_again` of them again, in any order, cut into transactions at random places."""
    extra = draw(st.lists(st.integers(0, n_events - 1), max_size=max_again))
    order = draw(st.permutations(list(range(n_events)) + extra))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=4)))
    batches, start = [], 0
    for cut in [*cuts, len(order)]:
        if cut > start:
            batches.append(order[start:cut])
            start = cut
    return batches
