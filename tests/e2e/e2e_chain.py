"""The whole chain, real pieces only: a real mosquitto (the `broker` fixture: users, ACL), the host
service (`lockertools.service.runner.Service`, in-process in a background asyncio loop, with its own
SQLite database), and the REAL firmware on a VirtualBoard (sim.NET_HEAP) connected to the broker
through a FaultProxy. A `Tap` (a second host user of the broker) records every message on lockers/#
so each one can be checked against the contract (signature with the locker key, schema).

The locker's key: generated here, written to the flash by `flash.prepare(key=...)` (locker.key) and
registered in the host's database by `fleet_db.add_locker` — the same 32 bytes on both ends.

Every wait is a condition wait with a deadline; `Chain.close()` stops every piece it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from lockertools import flash
from lockertools.contract import check_wire
from lockertools.service import db, fleet_db
from lockertools.service.runner import Service, ServiceConfig
from lockertools.sim import NET_HEAP, TLS_HEAP, VirtualBoard
from tests.support.faultproxy import FaultProxy
from tests.support.fixtures import Broker
from tests.support.mosquitto import MqttClient, wait_until
from tests.support.settings import FAST_TIMINGS

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "boards" / "esp32-4door.json"
APP = ROOT / "firmware" / "locker" / "app.py"
LID = "hall-1"
LABELS = ["1", "2", "3", "4"]
WRONG = "11112222"  # never issued: fleet_db draws 8 random digits (1 in 10^8 it collides)
FAST = {
    **FAST_TIMINGS,
    "throttle_free": 10,  # a few wrong codes between pickups never throttle the keypad
}
# After a fault the locker reconnects with its own backoff (1, 2, 4, 8 s ... with jitter).
CONVERGE_S = 40.0

# Events the firmware records for its audit log only (app.py: `to_host=False`): (kind, a field that
# must match, or None). test_e2e_chain.py checks this list against app.py.
NOT_FOR_HOST = [("unlock_retry", None), ("denied", ("r", "throttled"))]


def for_host(ev: dict[str, Any]) -> bool:
    for kind, field in NOT_FOR_HOST:
        if ev.get("k") == kind and (field is None or ev.get(field[0]) == field[1]):
            return False
    return True


def ev_key(ev: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (ev.get("k"), ev.get("d"), ev.get("id"))


class Tap(MqttClient):
    """Records every message on lockers/#; subscribes again on every (re)connect (a broker killed
    before it saved the session forgets the subscription)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.hooks: list[Callable[[str, bytes], None]] = []

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe("lockers/#", 1)
        super()._on_connect(client, userdata, flags, rc, props)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        super()._on_message(client, userdata, msg)
        for hook in list(self.hooks):
            hook(msg.topic, bytes(msg.payload))


class ServiceThread:
    """The host service in a background asyncio loop (as tests/service's Rig runs it)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="e2e-service", daemon=True)
        self._thread.start()
        self.service: Service | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Service:
        self.service = Service(self.config)

        async def spawn() -> asyncio.Task[None]:
            assert self.service is not None
            return asyncio.create_task(self.service.run())

        self._task = asyncio.run_coroutine_threadsafe(spawn(), self.loop).result(10)
        wait_until(lambda: self.service is not None and self.service.connected.is_set(), 10, "the service to connect")
        return self.service

    def connects(self) -> int:
        """Connections made (each counted once its subscriptions are granted)."""
        return self.service.counters.connects if self.service is not None else 0

    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def close(self) -> None:
        try:
            if self._task is not None:
                task, self._task = self._task, None

                async def cancel() -> None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

                asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


class Chain:
    """Broker, host service + database, FaultProxy, the firmware on a VirtualBoard, and the Tap."""

    def __init__(
        self,
        broker: Broker,
        tmp_path: Path,
        *,
        resend_s: float = 3.0,
        config: dict[str, Any] | None = None,
        keepalive: int = 10,
        service_proxy: bool = False,
    ) -> None:
        self.broker = broker
        self.tmp_path = tmp_path
        self.key = secrets.token_bytes(32)
        self.injected: set[bytes] = set()  # messages the test itself put on the wire (forged ones)
        self.issued: dict[int, fleet_db.IssuedCode] = {}
        self._closers: list[Callable[[], None]] = []
        try:
            # The host's side: a database with this locker and its key.
            self.db_path = tmp_path / "fleet.db"
            conn = db.connect(self.db_path, create=True)
            fleet_db.add_locker(conn, LID, self.key, LABELS)
            self.conn = conn
            self._closers.append(conn.close)
            # The broker: the locker's user, and a second host user for the Tap (a client of the
            # service's own user would take the service's session over: the client id is the user).
            password = broker.setup.add_locker(LID)
            broker.passwords[LID] = password
            broker.passwords["tap"] = broker.setup.add_host("tap")
            broker.setup.write()
            broker.server.reload()

            def accepted() -> bool:
                with broker.client(LID, track=False) as a, broker.client("tap", track=False) as b:
                    return a.connect() == 0 and b.connect() == 0

            wait_until(accepted, 10, "the broker to accept the new users", poll=0.05)
            # A TLS-only broker (the tls_broker fixture) has a CA: then every link in the chain is TLS.
            tls = broker.ca is not None
            self.tap = Tap(
                broker.host, broker.port, "tap", broker.passwords["tap"], client_id="tap", reconnect=True, ca=broker.ca
            )
            self._closers.append(self.tap.close)
            assert self.tap.connect() == 0
            self.tap.wait(lambda: self.tap.connected, "the tap to connect")
            # The network between the locker and the broker.
            self.proxy = FaultProxy("127.0.0.1", broker.port).start()
            self._closers.append(self.proxy.close)
            # The locker's flash: the same key, the proxy as its broker; no codes yet (revision 0).
            net = {
                "broker": {
                    "host": "127.0.0.1",
                    "port": self.proxy.port,
                    "tls": tls,
                    "user": LID,
                    "password": password,
                    **({"ca_file": str(broker.ca), "server_hostname": "127.0.0.1"} if tls else {}),
                },
                "keepalive": keepalive,
            }
            self.flash_dir = tmp_path / "flash"
            secrets_ = flash.prepare(
                self.flash_dir,
                BOARD,
                codes=[],
                config_overrides={**FAST, **(config or {})},
                locker_id=LID,
                key=self.key,
                revision=0,
                net=net,
            )
            assert secrets_.key == self.key
            assert (self.flash_dir / "locker.key").read_text().strip() == self.key.hex()
            self.board = VirtualBoard(self.flash_dir, heap=TLS_HEAP if tls else NET_HEAP)
            self._closers.append(self.board.close)
            # The host service (through a FaultProxy of its own when asked).
            self.service_proxy: FaultProxy | None = None
            if service_proxy:
                self.service_proxy = FaultProxy("127.0.0.1", broker.port).start()
                self._closers.append(self.service_proxy.close)
            self.service = ServiceThread(
                ServiceConfig(
                    db_path=self.db_path,
                    host=broker.host,
                    port=self.service_proxy.port if self.service_proxy else broker.port,
                    username=broker.host_user,
                    password=broker.passwords[broker.host_user],
                    client_id=broker.host_user,
                    reconnect_min_s=0.05,
                    reconnect_max_s=0.5,
                    resend_s=resend_s,
                    tls_ca=broker.ca,
                    metrics_port=0,  # health and metrics on a free loopback port (ServiceThread.service.metrics_port)
                )
            )
            self._closers.append(self.service.close)
            self.service.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        errors = []
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:  # noqa: BLE001 - stop everything, then report
                errors.append(exc)
        self._closers.clear()
        if errors:
            raise errors[0]

    def restart_service(self) -> None:
        """Stop the host service and start a new one on the same database (its memory is gone)."""
        old = self.service
        self._closers.remove(old.close)
        old.close()
        self.service = ServiceThread(old.config)
        self._closers.append(self.service.close)
        self.service.start()

    # --- the locker ---------------------------------------------------------------------------

    def boot(self) -> None:
        self.board.boot(keep_rtc=int(time.time()))

    def explain(self) -> str:
        return self.board.explain(events=10, lines=40)

    def fw_events(self) -> list[dict[str, Any]]:
        """Every event the firmware recorded (it prints each once it is in the outbox), across boots."""
        out = []
        for line in self.board.log_lines():
            if line.startswith("event "):
                out.append(json.loads(line[len("event ") :]))
        return out

    def fw_count(self, kind: str, **match: Any) -> int:
        return sum(1 for e in self.fw_events() if e["k"] == kind and all(e.get(k) == v for k, v in match.items()))

    def wait_fw(self, kind: str, n: int, timeout: float = 10.0, **match: Any) -> None:
        self.board.wait_for(lambda: self.fw_count(kind, **match) >= n, timeout, f"{n} x event {kind} {match}")

    def outbox_files(self) -> list[str]:
        return sorted(p.name for p in (self.flash_dir / "outbox").glob("*.ev"))

    def put_parcel(self, label: str) -> None:
        self.board.set_parcel(self.board.door_index(label), True)

    def pickup(self, code: str, label: str) -> None:
        """The resident types the code, the door springs open, the parcel is taken, the door shut;
        returns once the firmware recorded the pickup."""
        b = self.board
        i = b.door_index(label)
        before = self.fw_count("pickup", d=label)
        mark = b.mark()
        b.type_code(code)
        b.wait_event("solenoid", 5, since=mark, door=i, on=1)
        b.wait_event("door", 5, since=mark, door=i, open=1)
        b.set_parcel(i, False)
        b.wait_event("solenoid", 5, since=mark, door=i, on=0)
        b.close_door(i)
        self.wait_fw("pickup", before + 1, 10, d=label)

    def wrong_code(self) -> None:
        before = self.fw_count("denied", r="wrong")
        self.board.type_code(WRONG)
        self.wait_fw("denied", before + 1, 5, r="wrong")

    # --- the host -----------------------------------------------------------------------------

    def issue(self, door: str) -> fleet_db.IssuedCode:
        code = fleet_db.issue_code(self.conn, LID, door)
        self.issued[code.code_id] = code
        return code

    def revoke(self, code_id: int) -> None:
        fleet_db.revoke_code(self.conn, code_id)

    def query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def host_rev(self) -> int:
        return int(self.query("SELECT host_rev FROM lockers WHERE id = ?", LID)[0][0])

    def db_events(self) -> list[dict[str, Any]]:
        rows = self.query("SELECT seq, json FROM events WHERE locker_id = ? ORDER BY seq", LID)
        return [{"seq": int(r[0]), **json.loads(r[1])} for r in rows]

    # --- the wire -----------------------------------------------------------------------------

    def topic(self, leaf: str) -> str:
        return f"lockers/{LID}/{leaf}"

    def messages(self, leaf: str) -> list[dict[str, Any]]:
        topic = self.topic(leaf)
        return [
            check_wire(topic, m.payload, self.key)
            for m in self.tap.received(topic)
            if m.payload and m.payload not in self.injected
        ]

    def last_status(self) -> dict[str, Any] | None:
        st = self.messages("status")
        return st[-1] if st else None

    def check_every_message(self) -> int:
        """Every message seen on lockers/# (but the test's own forgeries and empty retained clears):
        signed with the locker's key, of its topic's schema, lid matching. Returns how many."""
        n = 0
        with self.tap._cond:
            seen = list(self.tap.messages)
        for m in seen:
            if not m.payload or m.payload in self.injected:
                continue
            check_wire(m.topic, m.payload, self.key)
            n += 1
        return n

    def publish_raw(self, leaf: str, wire: bytes, retain: bool = False, injected: bool = True) -> None:
        if injected:
            self.injected.add(wire)
        self.tap.publish(self.topic(leaf), wire, 1, retain)

    # --- convergence --------------------------------------------------------------------------

    def wait(self, cond: Callable[[], object], what: str, timeout: float = CONVERGE_S) -> None:
        try:
            wait_until(lambda: bool(cond()), timeout, what, poll=0.02)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.state()}\n{self.explain()}") from None

    def state(self) -> str:
        row = self.query("SELECT host_rev, locker_rev, snap, online FROM lockers WHERE id = ?", LID)[0]
        cmds = self.query("SELECT op, state, attempts, detail FROM commands ORDER BY created_at DESC LIMIT 5")
        st = self.last_status()
        return (
            f"host: H={row[0]} R={row[1]} snap={row[2]} online={row[3]}; last commands "
            f"{[tuple(c) for c in cmds]}; last status rev={st and st.get('rev')} online={st and st.get('online')}"
            f"; service alive={self.service.alive()}"
        )

    def synced(self) -> bool:
        h = self.host_rev()
        row = self.query("SELECT locker_rev, snap FROM lockers WHERE id = ?", LID)[0]
        st = self.last_status()
        return (
            row[0] == h
            and not row[1]
            and st is not None
            and st.get("online") is True
            and st["rev"] == h
            and st["snap"] is False
        )

    def wait_synced(self, timeout: float = CONVERGE_S) -> int:
        """Until the locker's retained status shows the host's revision (and the host knows it)."""
        self.wait(self.synced, "the locker's status to show the host's revision", timeout)
        return self.host_rev()

    def missing_events(self) -> tuple[Counter[Any], Counter[Any]]:
        """(printed by the firmware for the host but not in the DB, in the DB but never printed)."""
        fw = Counter(ev_key(e) for e in self.fw_events() if for_host(e))
        host = Counter(ev_key(e) for e in self.db_events())
        return fw - host, host - fw

    def wait_all_events(self, exact: bool = True, timeout: float = CONVERGE_S) -> None:
        """Every event the firmware printed for the host is in the DB (exact: and nothing more), and
        the locker's outbox drained (the host acknowledged everything)."""

        def done() -> bool:
            lost, extra = self.missing_events()
            return not lost and (not exact or not extra)

        try:
            wait_until(done, timeout, "every event in the host's database", poll=0.05)
        except AssertionError:
            lost, extra = self.missing_events()
            raise AssertionError(f"events lost: {dict(lost)}; unexpected: {dict(extra)}\n{self.explain()}") from None
        self.board.watch(lambda: not self.outbox_files(), timeout, recheck_s=0.05)
        assert self.outbox_files() == [], f"the outbox did not drain: {self.outbox_files()}\n{self.state()}"

    def check_codes_consistent(self) -> None:
        """Each pickup recorded once per code id, and exactly the picked-up codes are `used`."""
        picked = Counter(e.get("id") for e in self.db_events() if e["k"] == "pickup")
        assert all(n == 1 for n in picked.values()), f"a pickup applied twice: {picked}"
        used = {int(r[0]) for r in self.query("SELECT id FROM codes WHERE locker_id = ? AND state = 'used'", LID)}
        assert used == set(picked), (used, picked)
        seqs = [e["seq"] for e in self.db_events()]
        assert len(seqs) == len(set(seqs))


def chains(broker: Broker, tmp_path: Path) -> Iterator[Callable[..., Chain]]:
    """The body of the `chain` fixtures (tests/e2e/conftest.py, tests/broker): `make(**options)` starts
    a Chain on `broker`; every Chain made is closed when the generator finishes."""
    made: list[Chain] = []

    def make(**kw: Any) -> Chain:
        c = Chain(broker, tmp_path, **kw)
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
            c.close()
