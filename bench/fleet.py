"""The fleet figure: events per second the host service ingests from 200 simulated lockers at once, and
the delay from publish to the event's row being committed (docs/benchmarks.md, "6. Host service").

Processes, all on this machine: mosquitto (a `lockertools.broker.BrokerSetup`: the lockers and the host
as users, ACLs on, plain MQTT on loopback, started by tests/support/mosquitto.py), the host service
(`runner.Service` in its own process, a fresh database with every locker registered: SQLite, then
PostgreSQL, a throwaway server on loopback as the tests run it, tests/support/postgres.py) and the
`lockertools.fleet.SimLocker`s (the firmware's protocol module) split over LOADGEN_PROCS processes, so
the service's cost is what is measured, not the load generator's. Two phases:

1. steady: every locker does a pickup (unlock, opened, pickup: 3 events over 1.2 s) every
   `pickup_every_s`, each at its own random phase, for `steady_s`;
2. burst: every locker publishes `burst` events back to back (each after the broker's PUBACK of the
   one before, as the firmware's uplink does).

Delay = the wall clock in the SimLocker just before the publish, to the wall clock just after the
service's transaction holding the event committed (the one hook: `TimedService` below notes when each
batch began and committed; the events' `received_at` says which batch they were in). Each phase ends
when every outbox is empty (the host's acks), then the database is checked: every event sent is
recorded, once. Figures are printed, never asserted.

The whole run happens once per database (--db, default both), and the figures stand side by side.

Usage: python bench/fleet.py [--quick] [--db sqlite|postgresql|both] [--lockers N] [--steady-s S]
       [--pickup-every S] [--burst N]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import logging
import math
import multiprocessing
import os
import random
import secrets
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # tests.support.mosquitto: the broker the service tests run

from report import Figure, cores, main_run, pct  # noqa: E402

from lockertools.broker import AUTOSAVE_S, BrokerSetup  # noqa: E402
from lockertools.fleet import SimLocker  # noqa: E402
from lockertools.service import db, fleet_db  # noqa: E402
from lockertools.service.runner import Service, ServiceConfig  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

LABELS = ["A1", "A2", "A3", "A4"]
P99_GOAL_MS = 250.0
PICKUP = ((0.0, "unlock"), (0.3, "opened"), (1.2, "pickup"))  # offset (s) and kind of a pickup's events
RESEND_S = 3600.0  # the SimLockers' resend timer: off for the run, so a lost event shows as missing
READY_TIMEOUT = 120.0
DRAIN_TIMEOUT = 60.0
HOST_USER = "host"

Say = Callable[[str], None]


class BenchError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    lockers: int = 200
    steady_s: float = 20.0
    pickup_every_s: float = 4.0  # per locker: 200 lockers offer 150 events/s
    burst: int = 25  # events per locker
    procs: int = 2  # load-generator processes
    workdir: Path | None = None  # kept afterwards (broker log, database); None: a temporary directory
    broker_autosave: int | None = None  # diagnosis: the broker saves every N changes (the set-up: every 30 s)
    databases: tuple[str, ...] = ("sqlite", "postgresql")  # one whole run on each

    @classmethod
    def quick(cls) -> Settings:
        return cls(steady_s=5.0, burst=10)


@dataclass(frozen=True)
class LockerSpec:
    lid: str
    key: bytes
    password: str
    codes: list[tuple[str, int]]  # (door, code id) for each pickup of the steady phase


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    lockers: list[LockerSpec]
    seed: int


# --- the load generator (child processes) ----------------------------------------------------------


class BenchSim(SimLocker):
    """A SimLocker that notes the wall clock just before each new event goes to the MQTT client."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent_at: dict[int, float] = {}
        self._stamp: int | None = None

    async def event(self, kind: str, repeat: int = 1, **fields: Any) -> int:
        self._stamp = self.next_seq  # event() signs, then calls publish() with no await in between
        return await super().event(kind, repeat, **fields)

    async def publish(self, kind: str, wire: bytes, retain: bool = False) -> None:
        if kind == "events" and self._stamp is not None:
            self.sent_at[self._stamp] = time.time()
            self._stamp = None
        await super().publish(kind, wire, retain)


async def _wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _sleep_until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))


async def _pickups(
    sim: BenchSim, codes: list[tuple[str, int]], t0: float, until: float, every: float, phase: float
) -> None:
    for k, (door, code_id) in enumerate(codes):
        start = t0 + phase + k * every
        if start >= until:
            return
        for offset, kind in PICKUP:
            await _sleep_until(start + offset)
            fields: dict[str, Any] = {"d": door} if kind == "opened" else {"d": door, "id": code_id}
            if kind == "pickup":
                fields["sensor"] = 1
            await sim.event(kind, **fields)


async def _burst(sim: BenchSim, n: int) -> None:
    for k in range(n):
        await sim.event("denied", r="wrong", n=k + 1)


def _take_sent(sims: list[BenchSim]) -> dict[str, dict[int, float]]:
    out = {}
    for sim in sims:
        out[sim.locker_id], sim.sent_at = sim.sent_at, {}
    return out


async def _loadgen(pipe: Connection, spec: LoadSpec) -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(spec.seed)
    sims = [
        BenchSim(lk.lid, lk.key, LABELS, spec.host, spec.port, password=lk.password, resend_s=RESEND_S)
        for lk in spec.lockers
    ]
    codes = {lk.lid: lk.codes for lk in spec.lockers}
    tasks = [asyncio.create_task(sim.run()) for sim in sims]
    try:
        await _wait_for(lambda: all(s.connected.is_set() for s in sims), READY_TIMEOUT, "the lockers to connect")
        pipe.send(("ok", os.getpid()))
        while True:
            cmd, arg = await loop.run_in_executor(None, pipe.recv)
            if cmd == "stop":
                return
            if cmd == "steady":
                t0, until, every = arg
                await asyncio.gather(
                    *(_pickups(s, codes[s.locker_id], t0, until, every, rng.uniform(0, every)) for s in sims)
                )
                pipe.send(("ok", _take_sent(sims)))
            elif cmd == "burst":
                t0, n = arg
                await _sleep_until(t0)
                await asyncio.gather(*(_burst(s, n) for s in sims))
                pipe.send(("ok", _take_sent(sims)))
            elif cmd == "drain":  # until every outbox is empty (acknowledged) or the deadline
                with contextlib.suppress(TimeoutError):
                    await _wait_for(lambda: not any(s.outbox for s in sims), arg - time.time(), "acks")
                left = {s.locker_id: len(s.outbox) for s in sims if s.outbox}
                offline = sum(not s.connected.is_set() for s in sims)
                pipe.send(("ok", (left, offline)))
            else:
                raise BenchError(f"unknown command {cmd!r}")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- the host service (child process) --------------------------------------------------------------


class TimedService(Service):
    """runner.Service, plus the wall clock when each batch began and when its transaction committed.

    `_process` takes `now = time.time()` for the whole batch (every event's `received_at`) right after
    `began` and commits before returning: an event belongs to the last batch that began at or before its
    `received_at`. Two time.time() calls and an append per batch: nothing the figures would show."""

    def __init__(self, config: ServiceConfig) -> None:
        super().__init__(config)
        self.batch_times: list[tuple[float, float]] = []

    def _process(self, batch: list[Any]) -> None:
        began = time.time()
        super()._process(batch)
        self.batch_times.append((began, time.time()))


class _PendingPublishes(logging.Filter):
    """Counts aiomqtt's "There are N pending publish calls." warnings (one per publish above 10) instead of
    printing thousands of them; keeps the largest N."""

    def __init__(self) -> None:
        super().__init__()
        self.warnings = 0
        self.most = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "pending publish calls" not in str(record.msg):
            return True
        self.warnings += 1
        if record.args and isinstance(record.args, tuple) and isinstance(record.args[0], int):
            self.most = max(self.most, record.args[0])
        return False


_pending = _PendingPublishes()


def _snapshot(service: TimedService) -> dict[str, Any]:
    counters = dict(vars(service.counters))
    counters["rejected"] = dict(service.counters.rejected)
    counters["pending_warnings"] = _pending.warnings
    counters["pending_most"] = _pending.most
    return {"counters": counters, "batch_times": list(service.batch_times)}


async def _serve(pipe: Connection, config: ServiceConfig) -> None:
    loop = asyncio.get_running_loop()
    service = TimedService(config)
    task = asyncio.create_task(service.run())
    try:
        await _wait_for(lambda: service.connected.is_set() or task.done(), 30, "the service to connect")
        if task.done():
            task.result()
        pipe.send(("ok", os.getpid()))
        while True:
            cmd, _ = await loop.run_in_executor(None, pipe.recv)
            if task.done():
                task.result()  # the service died: its exception goes to the parent
                raise BenchError("the service stopped")
            pipe.send(("ok", _snapshot(service)))
            if cmd == "stop":
                return
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _child(pipe: Connection, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    # Ctrl-C reaches the whole process group: the parent handles it and stops the children.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(body())
    except Exception:
        with contextlib.suppress(OSError):
            pipe.send(("error", traceback.format_exc()))
        sys.exit(1)


def service_main(pipe: Connection, config: ServiceConfig) -> None:
    logging.basicConfig(level=logging.WARNING, format="service: %(levelname)s %(message)s")
    logging.getLogger("mqtt").addFilter(_pending)  # aiomqtt's logger
    _child(pipe, lambda: _serve(pipe, config))


def loadgen_main(pipe: Connection, spec: LoadSpec) -> None:
    _child(pipe, lambda: _loadgen(pipe, spec))


# --- the parent ---------------------------------------------------------------------------------------


class Child:
    """A spawned process with a command pipe: ask() sends (command, argument) and returns the answer."""

    def __init__(self, name: str, target: Callable[[Connection, Any], None], arg: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self.pipe, theirs = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(theirs, arg), name=name, daemon=True)
        self.proc.start()
        theirs.close()

    def send(self, cmd: str, arg: Any = None) -> None:
        self.pipe.send((cmd, arg))

    def reply(self, timeout: float) -> Any:
        if not self.pipe.poll(timeout):
            raise BenchError(f"{self.name}: no answer within {timeout:.0f} s")
        try:
            tag, payload = self.pipe.recv()
        except EOFError:
            self.proc.join(1)
            raise BenchError(f"{self.name} exited (code {self.proc.exitcode})") from None
        if tag == "error":
            raise BenchError(f"{self.name} failed:\n{payload}")
        return payload

    def ask(self, cmd: str, arg: Any = None, timeout: float = 30.0) -> Any:
        self.send(cmd, arg)
        return self.reply(timeout)

    def close(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self.send("stop")
            self.proc.join(3)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(3)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.pipe.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat; 0 when unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass
class Phase:
    name: str
    sent: dict[tuple[str, int], float]  # (locker, seq) -> published (wall clock)
    committed: dict[tuple[str, int], float] = field(default_factory=dict)  # -> committed (wall clock)
    received: dict[tuple[str, int], float] = field(default_factory=dict)  # -> received_at (batch began)
    left: dict[str, int] = field(default_factory=dict)  # lockers whose outbox is not empty: events left
    offline: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds during the phase
    wall_s: float = 0.0
    counters: dict[str, Any] = field(default_factory=dict)  # the service's counters, this phase only
    broker_saves: int = 0

    def delays_ms(self) -> list[float]:
        return [(self.committed[k] - t) * 1000 for k, t in self.sent.items() if k in self.committed]

    @property
    def missing(self) -> int:
        return len(self.sent) - len(self.committed)


@dataclass
class Rig:
    settings: Settings
    say: Say
    db_path: str | Path
    conn: db.Connection
    broker: Mosquitto
    service: Child
    loadgens: list[Child]
    pids: dict[str, int]
    last: dict[str, Any] = field(default_factory=dict)  # the service's last snapshot

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def saves(self) -> int:
        return self.broker.log(this_run=True).count("Saving in-memory database")

    def phase(self, name: str, cmd: str, arg: Any, timeout: float) -> Phase:
        cpu0, saves0, began = self.cpu(), self.saves(), time.monotonic()
        for lg in self.loadgens:
            lg.send(cmd, arg)
        sent: dict[tuple[str, int], float] = {}
        for lg in self.loadgens:
            for lid, seqs in lg.reply(timeout).items():
                sent.update({(lid, seq): t for seq, t in seqs.items()})
        phase = Phase(name, sent)
        self.say(f"{name}: {len(sent)} events published; waiting for every ack")
        deadline = time.time() + DRAIN_TIMEOUT
        for lg in self.loadgens:
            left, offline = lg.ask("drain", deadline, DRAIN_TIMEOUT + 30)
            phase.left.update(left)
            phase.offline += offline
        phase.wall_s = time.monotonic() - began
        cpu1 = self.cpu()
        phase.cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
        phase.broker_saves = self.saves() - saves0
        snap = self.service.ask("stats")
        before = self.last.get("counters", {})
        phase.counters = {
            k: v - before.get(k, 0) for k, v in snap["counters"].items() if isinstance(v, int | float)
        } | {k: snap["counters"][k] for k in ("rejected", "pending_most", "backlog_most")}
        self.last = snap
        self._match(phase, snap["batch_times"])
        return phase

    def _match(self, phase: Phase, batch_times: list[tuple[float, float]]) -> None:
        starts = [b for b, _ in batch_times]
        for lid, seq, received_at in self.conn.execute("SELECT locker_id, seq, received_at FROM events"):
            key = (lid, seq)
            if key not in phase.sent:
                continue
            i = bisect.bisect_right(starts, received_at) - 1
            phase.received[key] = received_at
            phase.committed[key] = batch_times[i][1] if i >= 0 else received_at


class _AutosaveSetup(BrokerSetup):
    """BrokerSetup saving every `autosave` changes (--broker-autosave; a diagnosis, not the deployed set-up:
    1 is what it used to be)."""

    autosave = 1

    def conf_text(self) -> str:
        timed = f"autosave_on_changes false\nautosave_interval {AUTOSAVE_S}\n"
        text = super().conf_text()
        assert timed in text, "BrokerSetup's autosave lines changed"
        return text.replace(timed, f"autosave_on_changes true\nautosave_interval {self.autosave}\n")


def _fleet(tmp: Path, settings: Settings, target: str | Path) -> tuple[BrokerSetup, str, list[LockerSpec]]:
    if settings.broker_autosave is None:
        setup = BrokerSetup(tmp / "broker", host="127.0.0.1", port=0, tls_port=None)
    else:
        setup = _AutosaveSetup(tmp / "broker", host="127.0.0.1", port=0, tls_port=None)
        setup.autosave = settings.broker_autosave
    host_password = setup.add_host(HOST_USER)
    lids = [f"bench-{n:03d}" for n in range(settings.lockers)]
    pickups = math.ceil(settings.steady_s / settings.pickup_every_s)
    conn = db.connect(target, create=True)
    specs = []
    try:
        for n, lid in enumerate(lids):
            key = secrets.token_bytes(32)
            fleet_db.add_locker(conn, lid, key, LABELS)
            codes = []
            for k in range(pickups):
                door = LABELS[(n + k) % len(LABELS)]
                codes.append((door, fleet_db.issue_code(conn, lid, door).code_id))
            specs.append(LockerSpec(lid, key, setup.add_locker(lid), codes))
    finally:
        conn.close()
    return setup, host_password, specs


@contextlib.contextmanager
def rig(settings: Settings, say: Say, database: str) -> Iterator[Rig]:
    """Broker, service (on `database`: sqlite or postgresql) and lockers up, every locker online and
    holding its codes; all stopped on exit."""
    with contextlib.ExitStack() as stack:
        if settings.workdir is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleet-bench-")))
        else:
            tmp = settings.workdir.resolve() / database
            tmp.mkdir(parents=True)
        target: str | Path = tmp / "fleet.db"
        if database == "postgresql":
            server = PostgresServer()
            server.start()
            stack.callback(server.stop)
            target = server.create_database("fleet")
        setup, host_password, specs = _fleet(tmp, settings, target)
        broker = Mosquitto(setup)
        broker.start()
        stack.callback(broker.kill)
        assert broker.proc is not None
        say(f"fleet: mosquitto on {broker.host}:{broker.port}, {settings.lockers} lockers registered in {database}")
        config = ServiceConfig(
            db_path=target,
            host=broker.host,
            port=broker.port,
            username=HOST_USER,
            password=host_password,
            client_id=HOST_USER,
        )
        service = Child("service", service_main, config)
        stack.callback(service.close)
        service_pid = service.reply(30)
        loadgens = []
        share = math.ceil(len(specs) / settings.procs)
        for i in range(settings.procs):
            part = specs[i * share : (i + 1) * share]
            lg = Child(f"lockers-{i + 1}", loadgen_main, LoadSpec(broker.host, broker.port, part, seed=i))
            stack.callback(lg.close)
            loadgens.append(lg)
        pids = {"service": service_pid, "mosquitto": broker.proc.pid}
        pids |= {lg.name: lg.reply(READY_TIMEOUT + 10) for lg in loadgens}
        conn = stack.enter_context(contextlib.closing(db.connect(config.db_path)))
        began = time.monotonic()
        while True:
            synced = conn.execute("SELECT count(*) FROM lockers WHERE online = 1 AND locker_rev = host_rev").fetchone()
            if synced[0] == settings.lockers:
                break
            if time.monotonic() - began > READY_TIMEOUT:
                raise BenchError(f"only {synced[0]} of {settings.lockers} lockers online with their codes")
            time.sleep(0.2)
        say(f"fleet: {settings.lockers} lockers online and synced ({time.monotonic() - began:.1f} s)")
        yield Rig(settings, say, config.db_path, conn, broker, service, loadgens, pids)


def measure(settings: Settings, say: Say, database: str) -> tuple[Phase, Phase, dict[str, int]]:
    with rig(settings, say, database) as r:
        r.last = r.service.ask("stats")
        t0 = time.time() + 1.0
        every = settings.pickup_every_s
        say(f"fleet: steady, a pickup every {every:g} s per locker, {settings.steady_s:g} s")
        steady = r.phase("steady", "steady", (t0, t0 + settings.steady_s, every), settings.steady_s + 60)
        say(f"fleet: burst, {settings.burst} events per locker")
        burst = r.phase("burst", "burst", (time.time() + 0.5, settings.burst), 300)
        r.service.ask("stop")
        return steady, burst, r.pids


def _spread(delays: list[float]) -> str:
    if not delays:
        return "no events recorded"
    return f"p50 {pct(delays, 50):.1f} ms, p99 {pct(delays, 99):.1f} ms (max {max(delays):.1f})"


def _checks(phase: Phase) -> str | None:
    """What went wrong with delivery in a phase, or None."""
    problems = []
    if phase.missing:
        problems.append(f"{phase.missing} of {len(phase.sent)} events not recorded")
    if phase.counters.get("duplicates"):
        problems.append(f"{phase.counters['duplicates']} delivered twice (recorded once)")
    if phase.counters.get("errors") or phase.counters["rejected"]:
        problems.append(f"{phase.counters.get('errors')} errors, rejected {phase.counters['rejected']}")
    if phase.left:
        problems.append(f"{len(phase.left)} outboxes not emptied ({sum(phase.left.values())} events)")
    if phase.offline:
        problems.append(f"{phase.offline} lockers disconnected")
    if phase.counters.get("connects"):
        problems.append(f"the service reconnected {phase.counters['connects']} times")
    return "; ".join(problems) or None


def figures(settings: Settings, steady: Phase, burst: Phase) -> tuple[list[Figure], list[str]]:
    n = settings.lockers
    offered = 3 * n / settings.pickup_every_s
    first, last = min(steady.sent.values(), default=0.0), max(steady.sent.values(), default=1.0)
    span = max(last - first, 1e-3)
    recorded = sum(1 for t in steady.committed.values() if first <= t <= last)
    sd = steady.delays_ms()
    p99 = pct(sd, 99) if sd else math.inf
    rows: list[Figure] = [
        (
            f"fleet: events/s recorded, {n} lockers, steady (a pickup = 3 events every {settings.pickup_every_s:g} s)",
            f"{recorded / span:.0f}/s (published {len(steady.sent) / span:.0f}/s over {span:.1f} s, nominal"
            f" {offered:.0f}/s)",
            "-",
            None,
        ),
        ("fleet: publish -> committed, steady", _spread(sd), f"p99 < {P99_GOAL_MS:.0f} ms", p99 < P99_GOAL_MS),
    ]
    bd = burst.delays_ms()
    if burst.sent and burst.committed:
        first = min(burst.sent.values())
        span = max(burst.committed.values()) - first
        pub = max(burst.sent.values()) - first
        rows.append(
            (
                f"fleet: burst drain, {n} lockers x {settings.burst} events",
                f"{len(burst.committed) / span:.0f} events/s ({len(burst.committed)} in {span:.2f} s;"
                f" published at {len(burst.sent) / pub:.0f}/s)",
                "-",
                None,
            )
        )
    rows.append(("fleet: publish -> committed, burst", _spread(bd), "-", None))
    problems = [f"{p.name}: {c}" for p in (steady, burst) if (c := _checks(p))]
    total = len(steady.sent) + len(burst.sent)
    rows.append(
        (
            "fleet: every event recorded once, every outbox emptied by acks",
            "; ".join(problems) if problems else f"yes ({total} events)",
            "all",
            not problems,
        )
    )
    notes = [
        f"fleet: {cores()} cores shared by mosquitto, the service and {settings.procs} load-generator processes"
        " (SimLockers); the service's own process runs runner.Service with its default settings",
    ]
    for p in (steady, burst):
        c = p.counters
        cpu = ", ".join(f"{k} {v / p.wall_s * 100:.0f}%" for k, v in p.cpu.items())
        notes.append(
            f"fleet {p.name}: CPU (of one core, over {p.wall_s:.1f} s) {cpu}; service: {c['messages']} messages in"
            f" {c['batches']} transactions ({c['messages'] / max(1, c['batches']):.1f} per), busy {c['busy_s']:.2f} s,"
            f" {c['acks_sent']} ack commands for {c['acked_seqs']} seqs ({c['acked_seqs'] / max(1, c['acks_sent']):.1f}"
            f" per), at most {c['backlog_most']} lockers waiting for an ack so far, {c['requeued_seqs']} seqs"
            f" requeued, {c['stalls']} stalls; aiomqtt 'pending publish calls' warnings {c['pending_warnings']};"
            f" broker database saves {p.broker_saves}"
        )
        recv = [(p.committed[k] - p.received[k]) * 1000 for k in p.committed]
        if recv:
            notes.append(
                f"fleet {p.name}: batch began (received_at) -> committed: p50 {pct(recv, 50):.1f} ms,"
                f" p99 {pct(recv, 99):.1f} ms"
            )
    return rows, notes


def run(settings: Settings, say: Say) -> tuple[list[Figure], list[str]]:
    """Measure on each database and return the table rows and notes, each database's figure beside the
    other's (bench/run.py adds them to its table)."""
    per_db = []
    for database in settings.databases:
        steady, burst, _ = measure(settings, say, database)
        per_db.append((database, *figures(settings, steady, burst)))
    rows: list[Figure] = []
    notes: list[str] = []
    for i in range(len(per_db[0][1])):  # the same figure on each database, one after the other
        for database, db_rows, _ in per_db:
            name, *rest = db_rows[i]
            rows.append((name.replace("fleet:", f"fleet [{database}]:", 1), *rest))  # type: ignore[arg-type]
    for database, _, db_notes in per_db:
        notes += [n.replace("fleet", f"fleet [{database}]", 1) for n in db_notes]
    return rows, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run: 5 s steady, 10 events per locker in the burst")
    ap.add_argument("--lockers", type=int, help="simulated lockers (default 200)")
    ap.add_argument("--steady-s", type=float, help="length of the steady phase (default 20 s)")
    ap.add_argument("--pickup-every", type=float, help="seconds between one locker's pickups (default 4, >= 1.5)")
    ap.add_argument("--burst", type=int, help="events per locker in the burst (default 50)")
    ap.add_argument("--procs", type=int, help="load-generator processes (default 2)")
    ap.add_argument(
        "--broker-autosave",
        type=int,
        metavar="N",
        help=f"diagnosis: the broker saves every N changes (set-up: every {AUTOSAVE_S} s; it used to be every change)",
    )
    ap.add_argument("--workdir", type=Path, help="a new directory to work in, kept afterwards (broker log, database)")
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both", help="the service's database")
    args = ap.parse_args()
    settings = Settings.quick() if args.quick else Settings()
    given = {
        "lockers": args.lockers,
        "steady_s": args.steady_s,
        "pickup_every_s": args.pickup_every,
        "burst": args.burst,
        "procs": args.procs,
        "workdir": args.workdir,
        "broker_autosave": args.broker_autosave,
        "databases": ("sqlite", "postgresql") if args.db == "both" else (args.db,),
    }
    settings = replace(settings, **{k: v for k, v in given.items() if v is not None})
    if settings.pickup_every_s < PICKUP[-1][0] + 0.3:
        ap.error("--pickup-every: a pickup's events span 1.2 s; give at least 1.5")
    return main_run("fleet", settings, run)


if __name__ == "__main__":
    sys.exit(main())
