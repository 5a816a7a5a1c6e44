"""Code-sync figures: the real firmware on the simulated board, online, against a real local mosquitto
and the host service (docs/benchmarks.md, section 7).

1. issue -> acknowledgement: a code committed in the host database by `fleet_db.issue_code` in a
   connection of its own (what `lockerctl codes issue` does), to the service handling the locker's
   reply to the `codes.apply` that carries it. p50/p99 over >= 100 issues, goal p99 < 100 ms.
2. full sync: a freshly provisioned locker (empty store, revision 0, code_capacity 1024) comes online
   while the host holds 1,000 active codes for it; from its first status to its status showing the
   host's revision, then a code of the last message typed at the keypad (goal < 5 s). Both ways the
   host can send them: deltas (the change log as it stands) and a snapshot (the log pruned).
3. free heap (`heap` of the locker's status) during a TLS session at TLS_HEAP, idle and right after a
   64-row codes.apply; the same over plain MQTT for comparison.

Processes: mosquitto (a `lockertools.broker.BrokerSetup`, started by tests/support/mosquitto.py), one
`micropython` per simulated board (`lockertools.sim.VirtualBoard`), and this process: the host
service (`runner.Service` in a background asyncio loop, its default settings) and a paho observer
subscribed to every locker topic (a second host user) that notes when each message arrives.
Figures are printed, never asserted.

Usage: python bench/sync.py [--quick] [--runs N] [--issues N] [--full-heap 224K] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import platform
import random
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as paho

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # tests.support.mosquitto: the broker the tests run

from report import Figure, cores, kb, main_run, pct  # noqa: E402

from lockertools import FIRMWARE_DIR, flash  # noqa: E402
from lockertools.broker import BrokerSetup  # noqa: E402
from lockertools.commands import CommandSigner  # noqa: E402
from lockertools.contract import check_wire  # noqa: E402
from lockertools.service import db, fleet_db  # noqa: E402
from lockertools.service.runner import Service, ServiceConfig  # noqa: E402
from lockertools.service.sync import Planned  # noqa: E402
from lockertools.sim import NET_HEAP, SIM_SHIM_HEAP, TLS_HEAP, SimError, VirtualBoard, heap_bytes  # noqa: E402
from tests.support.mosquitto import Mosquitto, MqttClient  # noqa: E402

BOARD = ROOT / "boards" / "esp32-4door.json"
LID = "bench-1"
ISSUE_GOAL_MS = 15.0  # the sync is woken by the commit (it was 100 ms with a 20 ms poll)
FULL_GOAL_S = 5.0
FULL_CODES = 1000
FULL_CAPACITY = 1024  # config.py: code_capacity 16..2000
FULL_HEAPS = (NET_HEAP, "256K", "288K")  # tried in turn until the full sync runs
WARMUP_ISSUES = 2  # first commands of a boot (imports on the locker): left out of the figure
WAIT_S = 20.0
FULL_TIMEOUT_S = 60.0
ROWS_64 = 64

Say = Callable[[str], None]
T = TypeVar("T")


class BenchError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    runs: int = 3  # of each figure
    issues: int = 100  # measured per run of figure 1
    full_heap: str | None = None  # figure 2's heap; None: FULL_HEAPS in turn
    snapshot: bool = True  # figure 2 also by snapshot
    parts: tuple[str, ...] = ("issue", "full", "heap")
    firmware: Path = FIRMWARE_DIR  # diagnosis: another firmware tree (a patched copy)
    workdir: Path | None = None

    @classmethod
    def quick(cls) -> Settings:
        return cls(runs=1, snapshot=False)


def dist(values: list[float], unit: str = "ms", digits: int = 1) -> str:
    if not values:
        return "(none)"
    f = f"{{:.{digits}f}}"
    return (
        f"p50 {f.format(pct(values, 50))} {unit}, p99 {f.format(pct(values, 99))} {unit},"
        f" max {f.format(max(values))} {unit}"
    )


def _body(wire: bytes) -> dict[str, Any]:
    """The JSON of a signed message (64 hex digits, a space, the payload); the signature is checked
    where it matters (check_wire), not on every observed message."""
    out: dict[str, Any] = json.loads(wire[65:])
    return out


# --- the pieces --------------------------------------------------------------------------------------


@dataclass
class Broker:
    setup: BrokerSetup
    server: Mosquitto
    passwords: dict[str, str]

    @property
    def port(self) -> int:
        return self.server.tls_port if self.setup.port is None else self.server.port

    @property
    def ca(self) -> Path | None:
        return self.setup.ca_path if self.setup.tls else None


def start_broker(stack: contextlib.ExitStack, directory: Path, *, tls: bool = False) -> Broker:
    setup = BrokerSetup(
        directory, host="127.0.0.1", port=None if tls else 0, tls_port=0 if tls else None, names=["localhost"]
    )
    passwords = {"host": setup.add_host("host"), "observer": setup.add_host("observer")}
    passwords[LID] = setup.add_locker(LID)
    server = Mosquitto(setup)
    server.start()
    stack.callback(server.stop)
    return Broker(setup, server, passwords)


class Observer(MqttClient):
    """A paho client on every locker topic (its own host user) that notes when each message arrives
    (time.monotonic(), in paho's network thread) and wakes up waiters."""

    def __init__(self, broker: Broker, user: str = "observer") -> None:
        super().__init__(
            "127.0.0.1", broker.port, user, broker.passwords[user], client_id=user, clean_session=True, ca=broker.ca
        )
        self.stamped: list[tuple[float, str, dict[str, Any]]] = []

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        at = time.monotonic()
        try:
            body = _body(bytes(msg.payload))
        except ValueError:
            body = {}
        with self._cond:
            self.stamped.append((at, msg.topic.rsplit("/", 1)[-1], body))
        super()._on_message(client, userdata, msg)

    def find(self, leaf: str, pred: Callable[[dict[str, Any]], bool], since: int = 0) -> tuple[float, dict[str, Any]]:
        with self._cond:
            for at, lf, body in self.stamped[since:]:
                if lf == leaf and pred(body):
                    return at, body
        raise KeyError(leaf)

    def wait_for(
        self, leaf: str, pred: Callable[[dict[str, Any]], bool], what: str, timeout: float = WAIT_S, since: int = 0
    ) -> tuple[float, dict[str, Any]]:
        def found() -> bool:
            return any(lf == leaf and pred(b) for _, lf, b in self.stamped[since:])

        with self._cond:
            if not self._cond.wait_for(found, timeout):
                raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        return self.find(leaf, pred, since)

    def mark(self) -> int:
        with self._cond:
            return len(self.stamped)


@contextlib.contextmanager
def observer(broker: Broker, user: str = "observer") -> Iterator[Observer]:
    obs = Observer(broker, user)
    try:
        if obs.connect() != 0:
            raise BenchError(f"the broker refused the {user} client\n{broker.server.log(this_run=True)}")
        if obs.subscribe("lockers/+/#") != 1:
            raise BenchError("the observer's subscription was refused")
        yield obs
    finally:
        obs.close()


class TimedService(Service):
    """runner.Service plus a few clock reads (time.monotonic()); its code is unchanged:
    - `built[tx]`: when a sync command was signed and recorded (the poller noticed the change, or a
      reply let the next one go), with its planned revision in `tx_of_rev`;
    - `replied[tx]`: when `_on_reply` handled its reply (inside the batch's transaction);
    - `committed[tx]`: when that transaction committed (just after `_process`)."""

    def __init__(self, config: ServiceConfig) -> None:
        super().__init__(config)
        self.cond = threading.Condition()
        self.built: dict[str, float] = {}
        self.tx_of_rev: dict[int, str] = {}
        self.ops: dict[str, str] = {}
        self.replied: dict[str, float] = {}
        self.committed: dict[str, float] = {}
        self.reply_of: dict[str, dict[str, Any]] = {}
        self._batch: list[str] = []

    def _send(self, lid: str, planned: Planned, rest: list[Planned], now: float) -> tuple[str, bytes]:
        out = super()._send(lid, planned, rest, now)
        outstanding = self.sync_state(lid).outstanding
        assert outstanding is not None
        tx = outstanding.tx
        self.built[tx] = time.monotonic()
        self.ops[tx] = planned.op
        if planned.rev is not None:
            self.tx_of_rev[planned.rev] = tx
        return out

    def _on_reply(self, lid: str, msg: dict[str, Any], now: float, out: list[tuple[str, bytes]]) -> None:
        self.replied.setdefault(str(msg["tx"]), time.monotonic())
        self.reply_of[str(msg["tx"])] = msg
        self._batch.append(str(msg["tx"]))
        super()._on_reply(lid, msg, now, out)

    def _process(self, batch: list[Any]) -> None:
        self._batch = []
        try:
            super()._process(batch)
        finally:
            at = time.monotonic()
            with self.cond:
                for tx in self._batch:
                    self.committed.setdefault(tx, at)
                self.cond.notify_all()

    def wait(self, cond: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
        with self.cond:
            if not self.cond.wait_for(cond, timeout):
                raise BenchError(f"timed out after {timeout:g} s waiting for {what}")


class ServiceThread:
    """The service in a background asyncio loop (as tests/service/service_helpers.py runs it)."""

    def __init__(self, broker: Broker, db_path: Path) -> None:
        config = ServiceConfig(
            db_path=db_path,
            host="127.0.0.1",
            port=broker.port,
            username="host",
            password=broker.passwords["host"],
            client_id="host",
            tls_ca=broker.ca,
        )
        self.service = TimedService(config)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="service-loop", daemon=True)
        self._thread.start()
        self._task: asyncio.Task[None] | None = self._call(self._spawn(self.service.run()))

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return asyncio.create_task(coro)

    async def _cancel(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def wait_connected(self, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self.service.connected.is_set():
            if self._task is not None and self._task.done():
                self._task.result()  # its exception
            if time.monotonic() > deadline:
                raise BenchError("the service did not connect to the broker")
            time.sleep(0.01)

    def close(self) -> None:
        try:
            if self._task is not None:
                task, self._task = self._task, None
                self._call(self._cancel(task))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self.loop.close()


def start_service(stack: contextlib.ExitStack, broker: Broker, db_path: Path) -> TimedService:
    st = ServiceThread(broker, db_path)
    stack.callback(st.close)
    st.wait_connected()
    return st.service


def new_locker(
    stack: contextlib.ExitStack,
    flash_dir: Path,
    broker: Broker,
    key: bytes,
    heap: str,
    *,
    codes: Sequence[tuple[str, str]] = (),
    revision: int = 0,
    config: dict[str, Any] | None = None,
    firmware: Path = FIRMWARE_DIR,
) -> VirtualBoard:
    """A provisioned locker (flash folder written by lockertools.flash, default settings plus
    `config`), not booted yet."""
    b: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": broker.port,
        "tls": broker.setup.tls,
        "user": LID,
        "password": broker.passwords[LID],
    }
    if broker.setup.tls:
        b.update(ca_file=str(broker.setup.ca_path), server_hostname="localhost")
    flash.prepare(
        flash_dir,
        BOARD,
        codes=[(c, d, 0, 0, 500 + n) for n, (c, d) in enumerate(codes, start=1)],
        config_overrides={"language": "en", **(config or {})},
        locker_id=LID,
        key=key,
        revision=revision,
        net={"broker": b, "keepalive": 30},
    )
    board = VirtualBoard(flash_dir, firmware_dir=firmware, heap=heap)
    stack.callback(board.close)
    return board


def has(key: str, value: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda m: bool(m.get(key) == value)


def watched(
    board: VirtualBoard, obs: Observer, leaf: str, pred: Callable[[dict[str, Any]], bool], what: str, timeout: float
) -> tuple[float, dict[str, Any]]:
    """obs.wait_for(), giving up as soon as the firmware's log shows trouble (a MemoryError: the
    locker runs on, but the sync never ends)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return obs.wait_for(leaf, pred, what, 0.25)
        except BenchError:
            trouble = board_trouble(board)
            if trouble:
                raise BenchError(trouble) from None
            if time.monotonic() > deadline:
                raise


def board_trouble(board: VirtualBoard) -> str | None:
    """A MemoryError or traceback in the firmware's log, a reset, or the process gone."""
    for line in board.log_lines():
        if "MemoryError" in line or "Traceback" in line:
            return line.strip()[:200]
    resets = board.events("reset")
    if resets:
        return f"the firmware reset ({resets[0].get('cause')})"
    if not board.running:
        return f"the firmware exited (status {board.exit_code})"
    return None


def fleet_db_with(path: Path, key: bytes, labels: list[str]) -> db.Connection:
    conn = db.connect(path, create=True)
    fleet_db.add_locker(conn, LID, key, labels)
    return conn


# --- 1. issue -> acknowledgement ---------------------------------------------------------------------


@dataclass
class IssueRun:
    total: list[float] = field(default_factory=list)  # issue committed -> reply handled (ms)
    committed: list[float] = field(default_factory=list)  # ... -> the reply's transaction committed
    notice: list[float] = field(default_factory=list)  # issue committed -> command signed (poller)
    to_wire: list[float] = field(default_factory=list)  # command signed -> seen on the broker
    locker_status: list[float] = field(default_factory=list)  # command seen -> status with the rev seen
    locker_reply: list[float] = field(default_factory=list)  # command seen -> reply seen
    host_in: list[float] = field(default_factory=list)  # reply seen -> reply handled by the service
    issue_call: list[float] = field(default_factory=list)  # issue_code() itself
    missing: int = 0
    heap: str = NET_HEAP
    trouble: str | None = None


def issue_run(tmp: Path, settings: Settings, say: Say, n: int) -> IssueRun:
    out = IssueRun()
    tmp.mkdir(parents=True)
    labels = flash.board_labels(json.loads(BOARD.read_text()))
    with contextlib.ExitStack() as stack:
        broker = start_broker(stack, tmp / "broker")
        key = secrets.token_bytes(32)
        conn = fleet_db_with(tmp / "fleet.db", key, labels)
        stack.callback(conn.close)
        service = start_service(stack, broker, tmp / "fleet.db")
        obs = stack.enter_context(observer(broker))
        board = new_locker(stack, tmp / "flash", broker, key, NET_HEAP, firmware=settings.firmware)
        board.boot(keep_rtc=int(time.time()))
        service.wait(lambda: service.sync_state(LID).online, "the locker's first status at the service")
        rng = random.Random(n)
        rev = 0
        for k in range(WARMUP_ISSUES + settings.issues):
            # A random gap, so the issues fall at every phase of the locker's 100 ms publisher tick (and
            # of the service's 20 ms fallback poll).
            time.sleep(rng.uniform(0.05, 0.25))
            door = labels[k % len(labels)]
            t0 = time.monotonic()
            fleet_db.issue_code(conn, LID, door)
            t1 = time.monotonic()
            rev += 1
            want = rev

            def acked(want: int = want) -> bool:
                tx = service.tx_of_rev.get(want)
                return tx is not None and tx in service.committed

            try:
                service.wait(acked, f"the reply to revision {want}", 10.0)
            except BenchError:
                out.missing += 1
                out.trouble = board_trouble(board) or out.trouble
                say(f"sync issue run {n}: no reply for revision {want} within 10 s")
                if out.missing >= 3:
                    raise BenchError(f"3 issues unacknowledged\n{board.explain()}") from None
                continue
            if k < WARMUP_ISSUES:
                continue
            tx = service.tx_of_rev[want]
            reply = service.reply_of[tx]
            if not reply.get("ok") or reply.get("rev") != want:
                raise BenchError(f"revision {want}: the locker answered {reply}")
            t_cmd, _ = obs.wait_for("cmd", has("tx", tx), f"command {tx} on the broker", 2)
            t_st, _ = obs.wait_for("status", has("rev", want), f"status at rev {want}", 2)
            t_rp, _ = obs.wait_for("reply", has("tx", tx), f"reply {tx} on the broker", 2)
            ms = 1000.0
            out.issue_call.append((t1 - t0) * ms)
            out.total.append((service.replied[tx] - t1) * ms)
            out.committed.append((service.committed[tx] - t1) * ms)
            out.notice.append((service.built[tx] - t1) * ms)
            out.to_wire.append((t_cmd - service.built[tx]) * ms)
            out.locker_status.append((t_st - t_cmd) * ms)
            out.locker_reply.append((t_rp - t_cmd) * ms)
            out.host_in.append((service.replied[tx] - t_rp) * ms)
        out.trouble = board_trouble(board) or out.trouble
    return out


# --- 2. full sync of 1,000 codes ---------------------------------------------------------------------


@dataclass(frozen=True)
class FullTemplate:
    db_path: Path
    key: bytes
    host_rev: int
    codes: list[fleet_db.IssuedCode]  # in issue order
    issue_s: float


def full_template(tmp: Path, say: Say) -> FullTemplate:
    """A database holding 1,000 active codes for the locker, issued one by one with issue_code
    (revisions 1..1000), made once and copied for each run."""
    labels = flash.board_labels(json.loads(BOARD.read_text()))
    key = secrets.token_bytes(32)
    path = tmp / "template.db"
    conn = fleet_db_with(path, key, labels)
    t0 = time.monotonic()
    try:
        codes = [fleet_db.issue_code(conn, LID, labels[k % len(labels)]) for k in range(FULL_CODES)]
        host_rev = int(conn.execute("SELECT host_rev FROM lockers WHERE id = ?", (LID,)).fetchone()[0])
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    issue_s = time.monotonic() - t0
    say(f"sync full: {FULL_CODES} codes issued in the template database in {issue_s:.1f} s")
    return FullTemplate(path, key, host_rev, codes, issue_s)


@dataclass
class FullRun:
    path: str  # "deltas" or "snapshot"
    heap: str
    ok: bool = False
    why: str = ""
    online_to_status_s: float = 0.0  # first status seen -> status with the host's revision seen
    online_to_reply_s: float = 0.0  # first status seen -> the service handled the last reply
    boot_to_online_s: float = 0.0
    commands: int = 0
    code_count: int = 0
    keypad_ok: bool = False
    heap_after: int | None = None
    per_command_ms: list[float] = field(default_factory=list)  # signed -> reply handled


def full_run(tmp: Path, tpl: FullTemplate, path: str, heap: str, firmware: Path = FIRMWARE_DIR) -> FullRun:
    out = FullRun(path, heap)
    tmp.mkdir(parents=True)
    db_path = tmp / "fleet.db"
    shutil.copyfile(tpl.db_path, db_path)
    if path == "snapshot":
        conn = db.connect(db_path)
        try:
            fleet_db.prune_log(conn, LID, keep=0)  # the log no longer reaches revision 0: a snapshot
        finally:
            conn.close()
    # The code to type: one in the last message the host sends (deltas: the last issued; a snapshot
    # is sorted by tag, so the highest tag).
    target = tpl.codes[-1] if path == "deltas" else max(tpl.codes, key=lambda c: _tag(tpl.key, c))
    with contextlib.ExitStack() as stack:
        broker = start_broker(stack, tmp / "broker")
        service = start_service(stack, broker, db_path)
        obs = stack.enter_context(observer(broker))
        board = new_locker(
            stack, tmp / "flash", broker, tpl.key, heap, config={"code_capacity": FULL_CAPACITY}, firmware=firmware
        )
        t_boot = time.monotonic()
        board.boot(keep_rtc=int(time.time()))
        try:
            t_on, first = obs.wait_for("status", lambda m: m.get("online") is True, "the locker's first status")
            if first.get("rev") != 0 or first.get("codes") != 0:
                raise BenchError(f"not a fresh locker: {first}")
            t_st, st = watched(
                board, obs, "status", has("rev", tpl.host_rev), f"status at revision {tpl.host_rev}", FULL_TIMEOUT_S
            )

            def last_reply() -> bool:
                tx = service.tx_of_rev.get(tpl.host_rev)
                return tx is not None and tx in service.replied

            service.wait(last_reply, "the reply to the last sync command", 30)
        except BenchError as exc:
            out.why = board_trouble(board) or str(exc).splitlines()[0]
            return out
        out.boot_to_online_s = t_on - t_boot
        out.online_to_status_s = t_st - t_on
        out.online_to_reply_s = service.replied[service.tx_of_rev[tpl.host_rev]] - t_on
        out.code_count = int(st.get("codes") or 0)
        out.heap_after = st.get("heap")
        out.commands = len(service.built)
        out.per_command_ms = [
            (service.replied[tx] - t) * 1000 for tx, t in service.built.items() if tx in service.replied
        ]
        # Usable: the code typed at the keypad opens its door.
        idx = board.door_index(target.door)
        mark = board.mark()
        try:
            board.type_code(target.code)
            board.wait_event("solenoid", 5, since=mark, door=idx, on=1)
            out.keypad_ok = True
        except SimError as exc:
            out.why = f"the code did not open door {target.door}: {str(exc).splitlines()[0]}"
        trouble = board_trouble(board)
        if trouble:
            out.why = trouble
        out.ok = out.keypad_ok and out.code_count == FULL_CODES and not trouble
        if not out.ok and not out.why:
            out.why = f"the locker holds {out.code_count} codes"
    return out


def _tag(key: bytes, code: fleet_db.IssuedCode) -> str:
    return fleet_db.tag_hex(key, code.door, code.code)


# --- 3. free heap during a session -------------------------------------------------------------------


@dataclass
class HeapRun:
    transport: str
    heap: str
    idle: int = 0  # status command, a second after the locker came online
    after_status: int = 0  # the status the locker published right after applying the 64 rows
    after_cmd: int = 0  # status command right after the apply's reply
    ok: bool = False
    why: str = ""


def heap_run(tmp: Path, tls: bool, heap: str, firmware: Path = FIRMWARE_DIR) -> HeapRun:
    out = HeapRun("TLS" if tls else "plain MQTT", heap)
    labels = flash.board_labels(json.loads(BOARD.read_text()))
    with contextlib.ExitStack() as stack:
        broker = start_broker(stack, tmp / "broker", tls=tls)
        key = secrets.token_bytes(32)
        board = new_locker(
            stack, tmp / "flash", broker, key, heap, codes=[("48291357", labels[1])], revision=1, firmware=firmware
        )
        host = stack.enter_context(observer(broker, "host"))
        signer = CommandSigner(LID, key)

        def call(op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
            wire = signer.command(op, args)
            tx = _body(wire)["tx"]
            since = host.mark()
            host.publish(f"lockers/{LID}/cmd", wire, 1)
            host.wait_for("reply", lambda m: m.get("tx") == tx, f"the reply to {op}", since=since)
            for m in host.received(f"lockers/{LID}/reply"):
                body = check_wire(m.topic, m.payload, key)  # signature and schema
                if body.get("tx") == tx:
                    return body
            raise BenchError(f"no reply to {op}")

        board.boot(keep_rtc=int(time.time()))
        try:
            host.wait_for("status", lambda m: m.get("online") is True, "the locker online")
            host.wait_for("doors", lambda m: True, "the doors snapshot")
            time.sleep(1.0)
            out.idle = int(call("status")["status"]["heap"])
            rows = [
                [fleet_db.tag_hex(key, labels[3], f"{10000000 + i:08d}"), labels[3], 0, 0, 600 + i]
                for i in range(ROWS_64)
            ]
            mark = host.mark()
            reply = call("codes.apply", {"base": 1, "rev": 2, "add": rows, "del": []})
            if not reply.get("ok") or reply.get("count") != ROWS_64 + 1:
                raise BenchError(f"the 64-row apply: {reply}")
            _, st = host.wait_for("status", lambda m: m.get("rev") == 2, "the status at rev 2", since=mark)
            out.after_status = int(st["heap"])
            out.after_cmd = int(call("status")["status"]["heap"])
        except BenchError as exc:
            out.why = board_trouble(board) or str(exc).splitlines()[0]
            return out
        trouble = board_trouble(board)
        out.ok = trouble is None
        out.why = trouble or ""
    return out


# --- the whole bench ---------------------------------------------------------------------------------


@contextlib.contextmanager
def workdir(settings: Settings) -> Iterator[Path]:
    if settings.workdir is not None:
        settings.workdir.mkdir(parents=True, exist_ok=False)
        yield settings.workdir
        return
    with tempfile.TemporaryDirectory(prefix="locker-sync-") as name:
        yield Path(name)


def issue_figures(tmp: Path, settings: Settings, say: Say, rows: list[Figure], notes: list[str]) -> None:
    """1. issue -> acknowledgement."""
    issues: list[IssueRun] = []
    for n in range(1, settings.runs + 1):
        say(f"sync: issue -> ack, run {n}/{settings.runs}, {settings.issues} issues")
        r = issue_run(tmp / f"issue-{n}", settings, say, n)
        issues.append(r)
        say(f"sync: issue -> ack, run {n}: {dist(r.total)}")
    for n, r in enumerate(issues, start=1):
        p99 = pct(r.total, 99) if r.total else math.inf
        rows.append(
            (
                f"issue -> locker's reply handled, run {n}, {len(r.total)} issues (at {r.heap})",
                dist(r.total) + (f"; {r.missing} unanswered" if r.missing else ""),
                f"p99 < {ISSUE_GOAL_MS:g} ms",
                p99 < ISSUE_GOAL_MS and not r.missing,
            )
        )
    every = IssueRun()
    for r in issues:
        for name in ("committed", "notice", "to_wire", "locker_status", "locker_reply", "host_in", "issue_call"):
            getattr(every, name).extend(getattr(r, name))
    notes.append(
        f"sync issue -> ack, breakdown over all {sum(len(r.total) for r in issues)} issues:"
        f" host notices the commit (woken by it: db.on_change, no poll) and signs the command {dist(every.notice)};"
        f" signed -> on the broker {dist(every.to_wire)};"
        f" on the broker -> the locker's status with the new revision {dist(every.locker_status)},"
        f" -> its reply {dist(every.locker_reply)};"
        f" reply on the broker -> handled by the service {dist(every.host_in)};"
        f" -> its transaction committed (from the issue) {dist(every.committed)}."
        f" issue_code() itself (not counted) {dist(every.issue_call)}"
    )
    for n, r in enumerate(issues, start=1):
        if r.trouble:
            notes.append(f"sync issue run {n}: the firmware log shows: {r.trouble}")


def full_figures(tmp: Path, settings: Settings, say: Say, rows: list[Figure], notes: list[str]) -> None:
    """2. full sync of 1,000 codes."""
    tpl = full_template(tmp, say)
    paths = ["deltas", "snapshot"] if settings.snapshot else ["deltas"]
    heaps = [settings.full_heap] if settings.full_heap else list(FULL_HEAPS)
    fulls: list[FullRun] = []
    heap_used = heaps[0]
    for path in paths:
        for n in range(1, settings.runs + 1):
            while True:
                say(f"sync: full sync of {FULL_CODES} codes by {path}, run {n}/{settings.runs}, heap {heap_used}")
                r = full_run(tmp / f"full-{path}-{n}-{heap_used}", tpl, path, heap_used, settings.firmware)
                if r.ok or settings.full_heap or heap_used == heaps[-1]:
                    break
                notes.append(f"sync full ({path}): failed at heap {heap_used} ({r.why}); trying a larger heap")
                say(f"sync: failed at {heap_used}: {r.why}")
                heap_used = heaps[heaps.index(heap_used) + 1]
            fulls.append(r)
            say(
                f"sync: full by {path}, run {n}: "
                + (f"{r.online_to_status_s:.2f} s, {r.commands} commands" if r.ok else f"FAILED: {r.why}")
            )
    for path in paths:
        runs = [r for r in fulls if r.path == path]
        for n, r in enumerate(runs, start=1):
            if not r.ok:
                rows.append(
                    (f"full sync, {FULL_CODES} codes, {path}, run {n} (at {r.heap})", f"FAILED: {r.why}", "", False)
                )
                continue
            rows.append(
                (
                    f"full sync, {FULL_CODES} codes, {path}, run {n} (at {r.heap})",
                    f"{r.online_to_status_s:.2f} s to the status at rev {tpl.host_rev}"
                    f" ({r.online_to_reply_s:.2f} s to the last reply), {r.commands} commands,"
                    f" code typed: {'opens' if r.keypad_ok else 'NO'}",
                    f"< {FULL_GOAL_S:g} s",
                    r.online_to_status_s < FULL_GOAL_S,
                )
            )
        done = [r for r in runs if r.ok]
        if done:
            per = [x for r in done for x in r.per_command_ms]
            notes.append(
                f"sync full ({path}): per sync command (signed -> reply handled) {dist(per)};"
                f" boot -> first status {dist([r.boot_to_online_s * 1000 for r in done], 'ms', 0)};"
                f" free heap in the status at rev {tpl.host_rev}: {[r.heap_after for r in done]} B"
                f" (process heap {done[0].heap} + shim {SIM_SHIM_HEAP // 1024}K)"
            )


def heap_figures(tmp: Path, settings: Settings, say: Say, rows: list[Figure], notes: list[str]) -> None:
    """3. free heap during a session."""
    heap_runs: list[HeapRun] = []
    for tls, heap in ((True, TLS_HEAP), (False, TLS_HEAP), (False, NET_HEAP)):
        for n in range(1, settings.runs + 1):
            say(f"sync: free heap, {'TLS' if tls else 'plain'} at {heap}, run {n}/{settings.runs}")
            heap_runs.append(heap_run(tmp / f"heap-{tls}-{heap}-{n}", tls, heap, settings.firmware))
    for tls, heap in ((True, TLS_HEAP), (False, TLS_HEAP), (False, NET_HEAP)):
        transport = "TLS" if tls else "plain MQTT"
        runs = [r for r in heap_runs if r.transport == transport and r.heap == heap]
        done = [r for r in runs if r.ok]
        failed = [r.why for r in runs if not r.ok]
        if done:
            value = (
                f"idle {'/'.join(kb(r.idle) for r in done)}; after a 64-row apply:"
                f" status {'/'.join(kb(r.after_status) for r in done)},"
                f" then `status` {'/'.join(kb(r.after_cmd) for r in done)}"
            )
        else:
            value = "FAILED"
        if failed:
            value += f"; {len(failed)} run(s) failed: {failed[0]}"
        rows.append(
            (
                f"free heap, {transport} session, heap {heap} + {SIM_SHIM_HEAP // 1024}K shim, {len(runs)} run(s)",
                value,
                "-",
                None,
            )
        )
    notes.append(
        "sync free heap: the `heap` field of the locker's status (gc.mem_free() after gc.collect()) in the"
        f" micropython process, whose heap is the figure's heap + {SIM_SHIM_HEAP // 1024}K for the simulated"
        " machine module (~21 KB of it used); runs separated by '/'"
    )


PARTS: dict[str, Callable[[Path, Settings, Say, list[Figure], list[str]], None]] = {
    "issue": issue_figures,
    "full": full_figures,
    "heap": heap_figures,
}


def run(settings: Settings, say: Say) -> tuple[list[Figure], list[str]]:
    """Measure and return the table rows and notes (bench/run.py adds them to its table)."""
    rows: list[Figure] = []
    notes: list[str] = [
        f"sync: measured on {platform.node()} ({platform.machine()}, {cores()} cores) shared by mosquitto,"
        " the locker's micropython process and this one (host service in a background asyncio loop, paho"
        " observer, the bench)"
    ]
    logging.getLogger("lockertools.service").setLevel(logging.ERROR)
    if settings.firmware != FIRMWARE_DIR:
        notes.append(f"sync: DIAGNOSIS RUN, firmware from {settings.firmware}, not firmware/")
    with workdir(settings) as tmp:
        for name in settings.parts:
            try:
                PARTS[name](tmp, settings, say, rows, notes)
            except Exception as exc:  # noqa: BLE001 - print what was measured, and why the rest is missing
                notes.append(f"sync {name} figures failed: {type(exc).__name__}: {str(exc)[:600]}")
                say(f"sync: {name} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return rows, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one run of each figure, no snapshot path")
    ap.add_argument("--runs", type=int, help="runs of each figure (default 3)")
    ap.add_argument("--issues", type=int, help="issues measured per run of figure 1 (default 100)")
    ap.add_argument(
        "--full-heap", help=f"the locker's heap for the full sync (default: {', '.join(FULL_HEAPS)} in turn)"
    )
    ap.add_argument("--only", help="comma-separated parts to run: issue, full, heap (default: all)")
    ap.add_argument("--firmware", type=Path, help="diagnosis: run this firmware tree instead of firmware/")
    ap.add_argument("--workdir", type=Path, help="a new directory to work in, kept afterwards (logs, databases)")
    args = ap.parse_args()
    settings = Settings.quick() if args.quick else Settings()
    given = {
        "runs": args.runs,
        "issues": args.issues,
        "full_heap": args.full_heap,
        "workdir": args.workdir,
        "firmware": args.firmware,
    }
    settings = replace(settings, **{k: v for k, v in given.items() if v is not None})
    if args.only:
        parts = tuple(p.strip() for p in args.only.split(",") if p.strip())
        if not parts or any(p not in PARTS for p in parts):
            ap.error(f"--only: some of {', '.join(PARTS)}")
        settings = replace(settings, parts=parts)
    if args.full_heap is not None and not re.fullmatch(r"\d+[KkMm]?", args.full_heap):
        ap.error("--full-heap: a size such as 256K")
    heap_bytes(settings.full_heap or NET_HEAP)
    return main_run("sync", settings, run)


if __name__ == "__main__":
    sys.exit(main())
