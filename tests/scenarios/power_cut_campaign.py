"""The power-cut campaign: cut the firmware's power (SIGKILL) at random moments, boot it again on the
same flash folder, and check after every cut that nothing on flash is half-written or lost.

A `Campaign` owns one simulated locker (lockertools.sim.VirtualBoard) and a model of what the host
and the residents did to it: the codes in the store (with their revision), which codes were typed,
which doors the harness saw open for which code, which pickups the firmware announced. Each round
ends with exactly one power cut, at a moment chosen by the seeded generator:

- event triggers: right after a digit's or the `#` key's echo, the latch turning on, the door
  popping open, the parcel taken, the door closed, the `pickup` event printed (plus a small random
  delay);
- random delays: from the `#` key or from the start of the action (a pickup, a used or wrong code,
  a signed `codes.apply`), from the board's hello (during boot and the settling of interrupted
  pickups);
- file triggers: the moment `codes.bin.tmp` exists while a `codes.apply` is being written.

After the cut, the flash folder is read on CPython with the firmware's own modules (on a copy, so
nothing is cleaned up before the firmware's own boot sees it) and the invariants are checked; the
next boot's `problem` events and its settling of interrupted pickups are checked too.

Reproduce a run with LOCKER_CUT_SEED=<seed> (printed by each test and in every failure). The seed
fixes every choice the harness makes; the firmware runs in real time, so the exact instruction a
cut lands on can differ between two runs of the same seed.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from locker import codes as fw_codes  # noqa: E402  (firmware modules, importable only now)
from locker import store  # noqa: E402
from locker.clock import WallClock  # noqa: E402
from locker.codes import CodeStore  # noqa: E402
from locker.hmac256 import HmacKey  # noqa: E402
from locker.outbox import Outbox  # noqa: E402
from locker.protocol import CommandGate  # noqa: E402
from locker.safemode import BootCounter  # noqa: E402
from locker.throttle import Throttle  # noqa: E402
from lockertools import BOARDS_DIR
from lockertools.commands import CommandSigner
from lockertools.flash import CodeSpec, prepare
from lockertools.sim import CONSOLE_SYNC_HEAP, SimError, SimTimeout, VirtualBoard
from tests.support.settings import FAST_TIMINGS

T = TypeVar("T")

BOARD = BOARDS_DIR / "esp32-4door.json"
# Fast settings: short messages and pulses, quick debounce; no safe mode from many short boots;
# room in the outbox for every event of a campaign (nothing is ever acknowledged); many wrong
# codes before the throttle waits.
CONFIG = {
    **FAST_TIMINGS,
    "safe_mode_boots": 100,
    "boot_ok_ms": 1000,
    "outbox_capacity": 5000,
    "throttle_free": 10,
    "grace_ms": 0,  # a used code retyped must say "used", not reopen its door (grace_reopen.yaml)
}
HOLD_S = 0.025  # a finger on a key (the sim's tap() semantics: the duration is the point)
GAP_S = 0.025
WAIT_S = 5.0  # every condition wait; the firmware answers in milliseconds
DAY = 86400

# Texts on the (Dutch) display
TXT_USED = "Code al gebruikt"
TXT_WRONG = "Code klopt niet"
TXT_EXPIRED = "Code is verlopen"
TXT_THROTTLED = "Te veel pogingen"

# Files that are not checksummed frames: the code store's own formats, provisioning, the audit log
# (appended, a cut may leave a partial last line by design).
NOT_FRAMED = {"board.json", "config.json", "locker.key", "codes.bin", "used.bin", "audit.log", "audit.log.1"}


def campaign_seed(test_name: str) -> tuple[int, random.Random]:
    """The run's seed (LOCKER_CUT_SEED, else a fresh one) and this test's generator."""
    raw = os.environ.get("LOCKER_CUT_SEED")
    seed = int(raw) if raw else secrets.randbelow(10**9)
    return seed, random.Random(f"{seed}:{test_name}")


class Cut(Exception):
    """The planned power cut happened: the round is over."""


class Violation(AssertionError):
    """An invariant does not hold."""


@dataclass
class Code:
    cid: int
    digits: str
    door: int
    tag: bytes
    submitted: bool = False  # its '#' was sent at least once
    opened: bool = False  # the harness saw its door pop open after its '#'
    picked: bool = False  # the firmware announced its pickup


@dataclass
class Plan:
    """When this round's cut comes: `stage` (a trigger the flow reports with at()) + `delay` seconds.

    Stage "start" triggers when the round begins; "none" never triggers (the round ends with a cut
    once its action is over).
    """

    phase: str  # "boot" (cut while booting/settling) or the action: pickup, used, wrong, apply
    stage: str
    delay: float
    arg: int = 0  # stage "digit": after which digit
    jam: bool = False  # pickup with a stuck latch
    deadline: float | None = None
    fired: bool = False

    def describe(self) -> str:
        extra = f" #{self.arg}" if self.stage == "digit" else ""
        extra += " (latch jammed)" if self.jam else ""
        return f"{self.phase}: {self.stage}{extra} + {self.delay * 1000:.1f} ms"


@dataclass
class FlashView:
    """What the flash folder holds, read with the firmware's own modules on CPython."""

    problems: list[str]
    tmp: list[str]
    revision: int
    records: frozenset[tuple[bytes, int, int, int, int]]
    journal: list[tuple[int, int, int]]  # (code_id, door, state)
    events: list[dict[str, Any]]
    lookup: Callable[[str], int]

    @property
    def pending(self) -> list[tuple[int, int]]:
        return [(cid, door) for cid, door, state in self.journal if state == fw_codes.STATE_CONSUMED]


def read_flash(flash: Path, scratch: Path, key: bytes, labels: list[str], locker_id: str) -> FlashView:
    """Load every file of a (powered-off) flash folder the way a boot would, on a copy of it."""
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(flash, scratch)
    problems: list[str] = []
    tmp = sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*.tmp"))
    store.cleanup(str(scratch))  # the runtime does this silently at boot
    cs = CodeStore(key, labels, path=str(scratch / "codes.bin"), used_path=str(scratch / "used.bin"), capacity=4096)
    problems += cs.load()
    ob_dir = scratch / "outbox"
    if ob_dir.exists():
        for p in Outbox(directory=str(ob_dir), capacity=10**6).load():
            if not (p.startswith("outbox: removed ") and p.endswith(".tmp")):
                problems.append(p)
    events = []
    for p in sorted(ob_dir.glob("*.ev")) if ob_dir.exists() else []:
        events.append(json.loads(store.load(str(p))))
    problems += Throttle(path=str(scratch / "throttle.bin")).load()
    clock = WallClock(path=str(scratch / "clock.bin"), vouched_path=str(scratch / "vouched.bin"))
    clock.boot(None, 0)
    boots = BootCounter(100, path=str(scratch / "boots.bin"))
    boots.start()
    gate = CommandGate(HmacKey(key), locker_id, path=str(scratch / "cmdseq.bin"))
    gate.load()
    problems += [p for p in (clock.problem, boots.problem, gate.problem) if p]
    # Whatever else is on flash (a module added later): a checksummed frame that must load.
    for p in sorted(scratch.rglob("*")):
        if p.is_file() and p.name not in NOT_FRAMED and p.parent.name != "outbox":
            try:
                store.load(str(p))
            except store.Corrupt as exc:
                problems.append(str(exc))

    def lookup(digits: str) -> int:
        return int(cs.lookup(digits.encode(), None)[0])

    return FlashView(problems, tmp, cs.revision, frozenset(cs.records()), cs.used(), events, lookup)


def pending_on_flash(flash: Path, key: bytes, labels: list[str]) -> list[tuple[int, int]]:
    """The journal's consumed-but-not-completed entries, read while the firmware runs (atomic file)."""
    cs = CodeStore(key, labels, path=str(flash / "no-codes"), used_path=str(flash / "used.bin"), capacity=16)
    cs.load()
    return cs.pending()


class LogView:
    """The firmware's stdout, parsed as it comes: events (`event {...}`), console replies, ready."""

    def __init__(self, board: VirtualBoard, on_event: Callable[[int, dict[str, Any]], None]) -> None:
        self.b = board
        self.on_event = on_event
        self.pos = 0
        self.boot = 0
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.replies: list[dict[str, Any]] = []
        self.ready: dict[int, str] = {}

    def pump(self) -> None:
        lines = self.b.log_lines()
        if len(lines) < self.pos:
            raise RuntimeError("the simulator's firmware log overflowed: raise log_limit")
        for line in lines[self.pos :]:
            self.pos += 1
            if line.startswith("--- boot "):
                self.boot = int(line.split()[2])
            elif line.startswith("event "):
                try:
                    ev = json.loads(line[6:])
                except ValueError:
                    continue  # cut in the middle of the line: it was printed after the write anyway
                self.events.append((self.boot, ev))
                self.on_event(self.boot, ev)
            elif line.startswith("re|"):
                try:
                    self.replies.append(json.loads(line[3:]))
                except ValueError:
                    pass
            elif line.startswith("log| ready"):
                self.ready[self.boot] = line

    def find(self, boot: int, **match: Any) -> dict[str, Any] | None:
        self.pump()
        for n, ev in self.events:
            if n == boot and all(ev.get(k) == v for k, v in match.items()):
                return ev
        return None


@dataclass
class Stats:
    cuts: int = 0
    stages: Counter[str] = field(default_factory=Counter)
    pickups: int = 0
    duplicate_pickups: int = 0
    undone: int = 0
    resumed: int = 0
    applies: Counter[str] = field(default_factory=Counter)
    tmp_left: int = 0
    used_checks: int = 0
    jammed: int = 0

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v}" for k, v in sorted(self.stages.items()))
        applies = ", ".join(f"{k} {v}" for k, v in sorted(self.applies.items())) or "none"
        return (
            f"{self.cuts} cuts ({stages}); {self.pickups} pickups, {self.duplicate_pickups} repeated after a cut, "
            f"{self.resumed} finished after reboot, {self.undone} undone; applies after a cut: {applies}; "
            f"stray .tmp after {self.tmp_left} cuts; {self.used_checks} used codes retyped; "
            f"{self.jammed} jammed latches"
        )


class Campaign:
    def __init__(
        self,
        tmp: Path,
        name: str,
        seed: int,
        rng: random.Random,
        initial_codes: int = 160,
        firmware_dir: Path | None = None,  # another firmware tree (e.g. a deliberately broken copy)
    ) -> None:
        self.name = name
        self.seed = seed
        self.rng = rng
        self.flash = tmp / "flash"
        self.scratch = tmp / "scratch"
        self.stats = Stats()
        self.round = 0
        self.plan: Plan | None = None
        self.key = rng.randbytes(32)
        self.hkey = HmacKey(self.key)
        self.now = int(time.time())
        self._digits: set[str] = set()
        self.codes: dict[int, Code] = {}  # every code ever given to the locker, by id
        self.next_id = 1
        labels = [str(d["label"]) for d in json.loads(BOARD.read_text())["doors"]]
        self.labels = labels
        specs = []
        store_recs = {}
        for _ in range(initial_codes):
            code = self._new_code(rng.randrange(len(labels)))
            expiry = self._expiry()
            specs.append(CodeSpec(code.digits, labels[code.door], expiry, 0, code.cid))
            store_recs[code.cid] = (code.tag, code.door, 0, expiry, code.cid)
        self.secrets = prepare(self.flash, BOARD, specs, CONFIG, locker_id=f"cut-{name}"[:32], key=self.key)
        self.rev = 1
        self.store: dict[int, tuple[bytes, int, int, int, int]] = store_recs  # the model: code id -> record
        self.signer = CommandSigner(self.secrets.locker_id, self.key)
        self.b = VirtualBoard(
            self.flash,
            heap=CONSOLE_SYNC_HEAP,  # signed code changes on the console: see lockertools.sim
            log_limit=10**6,
            **({"firmware_dir": firmware_dir} if firmware_dir else {}),
        )
        self.b.parcels.update(range(len(labels)))  # a parcel waits behind every door
        self.log = LogView(self.b, self._on_fw_event)
        self.announced: dict[int, str] = {}  # code id -> door label of every pickup announced
        self.apply_old: tuple[int, dict[int, tuple[bytes, int, int, int, int]]] | None = None
        self.apply_new: tuple[int, dict[int, tuple[bytes, int, int, int, int]]] | None = None
        self.apply_tx: str | None = None
        self.apply_ok = False
        self.apply_latency = 0.012  # seconds from send to reply, learnt from applies that were not cut
        self.inflight: Code | None = None
        self.hash_mark: int | None = None
        self.pending: list[tuple[int, int]] = []  # the journal's consumed entries at the last cut
        self.failures = 0  # the firmware's wrong-code count, as far as the harness knows
        self.journal_now: list[tuple[int, int, int]] = []  # used.bin after the last settle
        self.muted = False  # stage triggers ignored (the check typed between boot and action)
        self.last_opened: Code | None = None

    # --- the model ------------------------------------------------------------------------------

    def _new_code(self, door: int) -> Code:
        while True:
            digits = "%08d" % self.rng.randrange(10**8)
            if digits not in self._digits:
                break
        self._digits.add(digits)
        cid = self.next_id
        self.next_id += 1
        code = Code(cid, digits, door, bytes(fw_codes.tag(self.hkey, self.labels[door], digits)))
        self.codes[cid] = code
        return code

    def _expiry(self) -> int:
        return 0 if self.rng.random() < 0.3 else self.now + self.rng.randrange(20, 60) * DAY

    def _wrong_digits(self) -> str:
        while True:
            digits = "%08d" % self.rng.randrange(10**8)
            if digits not in self._digits:
                return digits

    def available(self, door: int) -> list[Code]:
        """Codes of that door in the store, never consumed (or given back)."""
        used = {cid for cid, _, _ in self.journal_now}
        return [
            self.codes[cid]
            for cid, rec in self.store.items()
            if rec[1] == door and cid not in used and not self.codes[cid].opened
        ]

    def used_in_store(self) -> list[Code]:
        return [self.codes[cid] for cid in self.store if self.codes[cid].opened]

    # --- what the firmware prints -----------------------------------------------------------------

    def _on_fw_event(self, boot: int, ev: dict[str, Any]) -> None:
        kind = ev.get("k")
        if "code" in ev or any(isinstance(v, str) and v in self._digits for v in ev.values()):
            raise Violation(f"an event carries a code: {ev}")
        if kind == "problem":
            m = str(ev.get("m", ""))
            if not (m.startswith("outbox: removed ") and m.endswith(".tmp")):
                raise Violation(f"boot {boot} reported a problem: {m!r} (half-written or damaged state)")
        elif kind == "pickup":
            cid = ev.get("id")
            code = self.codes.get(cid) if isinstance(cid, int) else None
            if code is None or not code.opened:
                raise Violation(f"pickup announced for code id {cid}, whose door the harness never saw open: {ev}")
            if ev.get("d") != self.labels[code.door]:
                raise Violation(f"pickup for code id {cid} names door {ev.get('d')}, not {self.labels[code.door]}")
            if cid in self.announced:
                self.stats.duplicate_pickups += 1
            else:
                self.stats.pickups += 1
            self.announced[cid] = ev["d"]
            code.picked = True
        elif kind == "pickup_undone":
            cid = ev.get("id")
            code = self.codes.get(cid) if isinstance(cid, int) else None
            if code is None:
                raise Violation(f"pickup_undone for an unknown code id: {ev}")
            if code.opened:
                raise Violation(
                    f"code id {cid} was given back (pickup_undone) although its door was seen open: "
                    "a consumed code came back"
                )
            self.stats.undone += 1
        elif kind == "denied" and ev.get("r") == "wrong":
            self.failures = int(ev.get("n") or 0)
        elif kind == "unlock":
            self.failures = 0

    # --- waiting, cut-aware -------------------------------------------------------------------------

    def at(self, stage: str, arg: int = 0) -> None:
        """The flow reached `stage`: start the planned delay when it is this round's trigger."""
        p = self.plan
        if self.muted:
            pass  # a check between boot and action: the round's action has not begun
        elif p is not None and p.deadline is None and p.stage == stage and (stage != "digit" or p.arg == arg):
            p.deadline = time.monotonic() + p.delay
        self.check_deadline()

    def check_deadline(self) -> None:
        p = self.plan
        if p is not None and p.deadline is not None and time.monotonic() >= p.deadline:
            self.cut()

    def cut(self) -> None:
        p = self.plan
        assert p is not None
        p.fired = True
        self.b.power_cut()
        self.stats.cuts += 1
        self.stats.stages[f"{p.phase}/{p.stage}"] += 1
        raise Cut

    def sleep(self, seconds: float) -> None:
        """Let time pass (a finger on a key, a planned cut delay); the cut comes on time."""
        p = self.plan
        end = time.monotonic() + seconds
        if p is not None and p.deadline is not None and p.deadline <= end:
            time.sleep(max(0.0, p.deadline - time.monotonic()))
            self.cut()
        time.sleep(max(0.0, end - time.monotonic()))

    def wait(
        self, predicate: Callable[[], T | None], what: str, timeout: float = WAIT_S, recheck_s: float | None = None
    ) -> T:
        """predicate()'s first truthy value; the planned cut interrupts the wait on time."""
        end = time.monotonic() + timeout
        run_boot = self.b.boot_count

        def check() -> Any:
            v = predicate()
            if v:
                return v
            if not self.b.running and self.b.boot_count == run_boot:
                return "__died__"
            return None

        while True:
            limit = end - time.monotonic()
            p = self.plan
            if p is not None and p.deadline is not None:
                limit = min(limit, p.deadline - time.monotonic())
            v = self.b.watch(check, max(limit, 0.0), recheck_s)
            if v == "__died__":
                raise SimError(f"the firmware died (exit status {self.b.exit_code}) waiting for {what}")
            if v:
                return v  # type: ignore[no-any-return]
            self.check_deadline()
            if time.monotonic() >= end:
                raise SimTimeout(f"timed out after {timeout:g}s waiting for {what}")

    # --- hands on the board ----------------------------------------------------------------------

    def tap(
        self, key: str, stage: str | None = None, arg: int = 0, on_down: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        since = self.b.mark()
        self.b.press(key, wait=False)
        down = self.wait(lambda: self.b.events_find("key", since, key=key, down=1), f"key {key} down")
        if stage:
            self.at(stage, arg)
        if on_down is not None:
            on_down()
        self.sleep(HOLD_S)
        # Held until the locker clicks (bounded), as VirtualBoard.tap does: host load must not eat keys.
        self.b.watch(lambda: self.b.click_after(since, down), timeout=1.0)
        since = self.b.mark()
        self.b.release(key, wait=False)
        self.wait(lambda: self.b.events_find("key", since, key=key, down=0), f"key {key} up")
        self.sleep(GAP_S)
        return down

    def type_digits(self, digits: str, journal_trigger: bool = False) -> int:
        """Type a code and #; returns the event mark taken just before the #."""
        for i, ch in enumerate(digits):
            self.tap(ch, "digit", i)
        mark = self.b.mark()
        self.hash_mark = mark
        p = self.plan
        on_down = None
        if journal_trigger and not self.muted and p is not None and p.stage == "journal":
            # cut the moment used.bin is replaced (the code consumed), before the latch if we can
            used = self.flash / "used.bin"
            before = _stat(used)

            def on_down() -> None:
                self.wait(
                    lambda: _stat(used) != before or self.b.events_find("solenoid", mark, on=1),
                    "the journal written",
                    recheck_s=0.0001,
                )
                self.at("journal")

        self.tap("#", "hash", on_down=on_down)
        return mark

    def shows(self, since: int, text: str) -> bool:
        return any(text in "\n".join(e.get("lines", [])) for e in self.b.events("display", since))

    # --- actions ---------------------------------------------------------------------------------

    def pickup(self, code: Code, jam: bool = False, while_open: Callable[[], None] | None = None) -> None:
        """A resident picks up a parcel. `jam`: the latch is stuck, the door never opens (the code
        is consumed; a cut then gives it back, as the door never opened)."""
        d = code.door
        b = self.b
        self.inflight = code
        self.hash_mark = None  # set just before its '#': a door event before that is not this code's
        code.submitted = True
        if jam:
            b.jam(d, True)
            self.stats.jammed += 1
        mark = self.type_digits(code.digits, journal_trigger=True)

        def latch_or_refusal() -> Any:
            on = b.events_find("solenoid", mark, door=d, on=1)
            if on:
                return on
            for text in (TXT_USED, TXT_WRONG, TXT_EXPIRED, TXT_THROTTLED):
                if self.shows(mark, text):
                    return text
            return None

        got = self.wait(latch_or_refusal, f"door {self.labels[d]}'s latch for code id {code.cid}")
        if isinstance(got, str):
            raise Violation(f"code id {code.cid} (never opened a door) was refused: {got!r}")
        self.at("solenoid")
        if jam:
            n = b.boot_count
            self.wait(lambda: self.log.find(n, k="jammed", d=self.labels[d]), f"door {self.labels[d]} jammed")
            self.at("jammed")
            return
        self.wait(lambda: b.events_find("door", mark, door=d, open=1), f"door {self.labels[d]} popping open")
        code.opened = True
        self.last_opened = code
        self.at("open")
        b.set_parcel(d, False)
        self.at("take")
        if while_open is not None:
            while_open()
        self.wait(lambda: b.events_find("solenoid", mark, door=d, on=0), f"door {self.labels[d]}'s latch off")
        b.close_door(d)
        self.at("close")
        self.wait(lambda: self.log.find(b.boot_count, k="pickup", id=code.cid), f"pickup event for code id {code.cid}")
        self.at("pickup")
        self.wait(lambda: self.shows(mark, "Dank u wel"), "the thank-you")
        self.at("thanks")

    def retype_used(self, code: Code) -> None:
        """A code whose door opened once: typed again, it must open nothing."""
        b = self.b
        mark = self.type_digits(code.digits)

        def verdict() -> Any:
            for e in b.events("solenoid", mark):
                if e.get("on"):
                    return e
            for text in (TXT_USED, TXT_WRONG, TXT_EXPIRED, TXT_THROTTLED):
                if self.shows(mark, text):
                    return text
            return None

        got = self.wait(verdict, f"the verdict on used code id {code.cid}")
        if got != TXT_USED:
            raise Violation(
                f"code id {code.cid}, whose door was seen open before, typed again: {got!r}, not {TXT_USED!r}"
            )
        self.stats.used_checks += 1
        self.at("verdict")

    def wrong(self) -> None:
        mark = self.type_digits(self._wrong_digits())

        def verdict() -> Any:
            for e in self.b.events("solenoid", mark):
                if e.get("on"):
                    return e
            return TXT_WRONG if self.shows(mark, TXT_WRONG) else None

        got = self.wait(verdict, "'wrong code'")
        if got != TXT_WRONG:
            raise Violation(f"a wrong code opened a door: {got}")
        self.at("verdict")

    def apply(self, delete: tuple[int, ...] = ()) -> None:
        """A signed codes.apply on the console: adds, updates (same id, new expiry) and deletes."""
        rng = self.rng
        size = len(self.store)
        n_add = rng.randint(1, 16) if size < 260 else rng.randint(0, 4)
        n_del = rng.randint(0, 6) if size < 140 else rng.randint(4, 16)
        n_upd = rng.randint(0, 4)
        ids = sorted(self.store)
        dels = rng.sample(ids, min(n_del, len(ids)))
        dels += [cid for cid in delete if cid in self.store and cid not in dels]
        upds = rng.sample([i for i in ids if i not in dels], min(n_upd, len(ids) - len(dels)))
        rows = []
        adds: dict[int, tuple[bytes, int, int, int, int]] = {}
        for cid in upds:
            code = self.codes[cid]
            adds[cid] = (code.tag, code.door, 0, self._expiry(), cid)
        for _ in range(n_add):
            code = self._new_code(rng.randrange(len(self.labels)))
            adds[code.cid] = (code.tag, code.door, 0, self._expiry(), code.cid)
        for rec in adds.values():
            rows.append([rec[0].hex(), self.labels[rec[1]], rec[2], rec[3], rec[4]])
        new_rev = self.rev + rng.randint(1, 3)
        add_tags = {r[0] for r in adds.values()}
        new = {
            cid: rec
            for cid, rec in self.store.items()
            if cid not in dels and cid not in adds and rec[0] not in add_tags
        }
        new.update(adds)
        wire = self.signer.command("codes.apply", {"rev": new_rev, "base": self.rev, "add": rows, "del": dels})
        tx = json.loads(wire.split(b" ", 1)[1])["tx"]
        self.apply_old = (self.rev, dict(self.store))
        self.apply_new = (new_rev, new)
        self.apply_tx, self.apply_ok = tx, False
        self.log.pump()
        start = time.monotonic()
        self.b.send_console(wire.decode())
        self.at("sent")
        tmp = self.flash / "codes.bin.tmp"
        if self.plan is not None and self.plan.stage == "tmp":
            self.wait(lambda: tmp.exists() or self._reply(tx), "codes.bin.tmp", recheck_s=0.0002)
            self.at("tmp")
        reply = self.wait(lambda: self._reply(tx), f"the reply to codes.apply rev {new_rev}")
        if not reply.get("ok") or reply.get("rev") != new_rev or reply.get("count") != len(new):
            raise Violation(f"codes.apply rev {self.rev} -> {new_rev} ({len(new)} codes) answered {reply}")
        self.apply_ok = True
        self.apply_latency = 0.8 * self.apply_latency + 0.2 * (time.monotonic() - start)
        self.rev, self.store = new_rev, new
        self.at("reply")

    def _reply(self, tx: str) -> dict[str, Any] | None:
        self.log.pump()
        for r in reversed(self.log.replies):
            if r.get("tx") == tx:
                return r
        return None

    # --- boot and settle --------------------------------------------------------------------------

    def boot_and_settle(self) -> None:
        """Power on; check the boot's problem reports; finish the pickups a cut interrupted the way
        a resident would (take the parcel from an open door, shut it); refill the emptied doors."""
        b = self.b
        b.boot()
        n = b.boot_count
        self.at("hello")
        ready = self.wait(lambda: self._ready(n), "the firmware's ready")
        if "normal" not in ready:
            raise Violation(f"the locker booted into safe mode: {ready}")
        self.at("ready")
        expect: dict[int, str] = {}
        pending_doors = set()
        for cid, door in self.pending:
            code = self.codes[cid]
            if door != code.door:
                raise Violation(f"the journal has code id {cid} on door {door}, not its door {code.door}")
            pending_doors.add(door)
            if door in b.opened:
                if not code.opened:
                    raise Violation(f"door {self.labels[door]} is open for code id {cid} that the harness never saw")
                if door in b.parcels:
                    b.set_parcel(door, False)
                b.close_door(door)
                self.at("settle_close")
                expect[cid] = "pickup"
            elif door not in b.parcels:
                expect[cid] = "pickup"
            else:
                expect[cid] = "pickup_undone"
        for door in b.opened - pending_doors:
            raise Violation(f"door {self.labels[door]} is open with no pickup pending in the journal")
        for cid, kind in expect.items():
            self.wait(
                lambda cid=cid, kind=kind: self.log.find(n, k=kind, id=cid), f"{kind} for code id {cid} after boot"
            )
            if kind == "pickup":
                self.stats.resumed += 1
        # The journal says every interrupted pickup is settled before a door is refilled: a parcel
        # put in before complete() is written would make the next boot give the code back.
        self.wait(lambda: not pending_on_flash(self.flash, self.key, self.labels), "a settled journal", recheck_s=0.005)
        self.at("settled")
        for door in range(len(self.labels)):
            if door not in b.parcels and door not in b.opened:
                b.set_parcel(door, True)
        self.pending = []
        self.journal_now = self._journal()

    def _ready(self, n: int) -> str | None:
        self.log.pump()
        return self.log.ready.get(n)

    def _journal(self) -> list[tuple[int, int, int]]:
        cs = CodeStore(self.key, self.labels, path=str(self.flash / "no-codes"), used_path=str(self.flash / "used.bin"))
        cs.load()
        return cs.used()

    # --- after a cut -----------------------------------------------------------------------------

    def after_cut(self) -> None:
        """The invariants, on the flash folder of a locker whose power has just been cut."""
        b = self.b
        self.log.pump()
        code = self.inflight
        mark = self.hash_mark
        if code is not None and mark is not None and b.events_find("door", mark, door=code.door, open=1):
            code.opened = True  # it popped open just before the cut
            self.last_opened = code
        self.inflight = None
        for door in list(b.jammed):
            b.jam(door, False)  # a technician frees the latch while the power is off
        view = read_flash(self.flash, self.scratch, self.key, self.labels, self.secrets.locker_id)
        if view.tmp:
            self.stats.tmp_left += 1
        if view.problems:
            raise Violation(f"flash after the cut: {view.problems} (stray tmp files: {view.tmp})")
        # Code changes are atomic: exactly the old set or exactly the new one.
        got = (view.revision, view.records)
        if self.apply_old is not None and self.apply_new is not None:
            old, new = self.apply_old, self.apply_new
            if got == _records(new):
                self.rev, self.store = new
                self.stats.applies["new"] += 1
            elif got == _records(old):
                if self.apply_ok:
                    raise Violation(f"codes.apply rev {new[0]} was answered ok, but flash holds rev {old[0]} again")
                self.rev, self.store = old
                self.stats.applies["old"] += 1
            else:
                raise Violation(
                    f"codes.apply {old[0]} -> {new[0]} cut: flash holds rev {view.revision} with "
                    f"{len(view.records)} codes, neither the old ({len(old[1])}) nor the new set ({len(new[1])})"
                    + _diff(view.records, _records(old)[1], _records(new)[1])
                )
            self.apply_old = self.apply_new = None
        elif got != _records((self.rev, self.store)):
            raise Violation(
                f"code store changed without a command: rev {view.revision} (model {self.rev}), "
                f"{len(view.records)} codes (model {len(self.store)})"
                + _diff(view.records, _records((self.rev, self.store))[1], frozenset())
            )
        # No consumed code comes back.
        for c in self.used_in_store():
            status = view.lookup(c.digits)
            if status != fw_codes.USED:
                raise Violation(
                    f"code id {c.cid} opened door {self.labels[c.door]}, yet the store says {status} (not USED)"
                )
        submitted = {c.cid for c in self.codes.values() if c.submitted}
        announced_ev = Counter(e.get("id") for e in view.events if e.get("k") == "pickup")
        for cid, _door, state in view.journal:
            if cid not in submitted:
                raise Violation(f"the journal holds code id {cid}, which was never typed")
            if state == fw_codes.STATE_COMPLETED and cid not in self.announced:
                raise Violation(f"the journal says code id {cid}'s pickup was recorded, but it was never announced")
        # No announced pickup is lost.
        for cid, label in self.announced.items():
            if announced_ev[cid] == 0:
                raise Violation(f"the pickup of code id {cid} (door {label}) was announced but is not in the outbox")
        for e in view.events:
            if e.get("k") == "pickup" and e.get("id") not in self.announced:
                # written, then cut before the line was printed: the same pickup will come again
                code = self.codes.get(e.get("id"))  # type: ignore[arg-type]
                if code is None or not code.opened:
                    raise Violation(f"outbox holds a pickup for code id {e.get('id')}, whose door never opened: {e}")
        self.pending = view.pending
        self.journal_now = view.journal


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _records(
    model: tuple[int, dict[int, tuple[bytes, int, int, int, int]]],
) -> tuple[int, frozenset[tuple[bytes, int, int, int, int]]]:
    return model[0], frozenset(model[1].values())


def _diff(got: frozenset[Any], old: frozenset[Any], new: frozenset[Any]) -> str:
    ids = lambda s: sorted(r[4] for r in s)  # noqa: E731
    return (
        f"\n  only on flash: {ids(got - old - new)[:20]}\n  missing from flash (old): {ids(old - got)[:20]}"
        f"\n  missing from flash (new): {ids(new - got)[:20]}"
    )


# --- running a campaign ----------------------------------------------------------------------------

Chooser = Callable[[Campaign], Plan]


def run(camp: Campaign, rounds: int, choose: Chooser, verify_p: float = 0.3) -> Stats:
    """`rounds` rounds of: (boot and settle if off) -> the planned action -> power cut -> checks."""
    t0 = time.monotonic()
    print(
        f"power-cut campaign {camp.name}: seed {camp.seed} (reproduce: LOCKER_CUT_SEED={camp.seed}), {rounds} cuts",
        flush=True,
    )
    try:
        for r in range(1, rounds + 1):
            camp.round = r
            camp.plan = plan = choose(camp)
            try:
                if not camp.b.running:
                    camp.boot_and_settle()
                    used = camp.used_in_store()
                    if used and camp.rng.random() < verify_p:
                        # a code whose door opened before this cut, typed again: it opens nothing
                        last = camp.last_opened
                        camp.muted = plan.phase != "boot"
                        try:
                            camp.retype_used(last if last in used else camp.rng.choice(used))
                        finally:
                            camp.muted = False
                if plan.phase != "boot":
                    act(camp, plan)
                finish(camp)
            except Cut:
                pass
            camp.plan = None
            camp.after_cut()
    except Exception as exc:
        plan = camp.plan
        raise Violation(
            f"power-cut campaign {camp.name}: seed {camp.seed} (reproduce: LOCKER_CUT_SEED={camp.seed}), "
            f"round {camp.round}, cut #{camp.stats.cuts}"
            + (f", plan {plan.describe()}" if plan else " (checking the flash after it)")
            + f"\n{type(exc).__name__}: {exc}\n{camp.b.explain(25, 60)}"
        ) from exc
    finally:
        camp.b.close()
    print(f"{camp.name}: {camp.stats.summary()}; {time.monotonic() - t0:.1f} s", flush=True)
    return camp.stats


def act(camp: Campaign, plan: Plan) -> None:
    camp.at("start")
    phase = plan.phase
    if phase == "used":
        used = camp.used_in_store()
        if used:
            camp.retype_used(camp.rng.choice(used))
            return
        phase = "pickup"
    if phase == "wrong":
        if camp.failures < 6:
            camp.wrong()
            return
        phase = "pickup"
    if phase == "apply":
        camp.apply()
        return
    if phase == "apply+pickup":
        camp.apply()
    doors = [d for d in range(len(camp.labels)) if d in camp.b.parcels and d not in camp.b.opened]
    camp.rng.shuffle(doors)
    for d in doors:
        codes = camp.available(d)
        if codes:
            newest = max(codes, key=lambda c: c.cid)
            code = newest if phase == "apply+pickup" else camp.rng.choice(codes)
            if phase == "pickup+apply":
                # the host deletes the code (and others) while its door is open
                camp.pickup(code, while_open=lambda cid=code.cid: camp.apply(delete=(cid,)))
            else:
                camp.pickup(code, jam=plan.jam)
            return
    raise Violation(f"no door with a parcel and an unused code (doors with parcels: {sorted(camp.b.parcels)})")


def finish(camp: Campaign) -> None:
    """The action is over: cut at the planned moment, or now when its trigger never came."""
    plan = camp.plan
    assert plan is not None
    if plan.deadline is None:
        plan.stage, plan.delay = "end", 0.0  # its trigger never came (e.g. no door to settle)
        plan.deadline = time.monotonic()
    camp.sleep(max(0.0, plan.deadline - time.monotonic()) + 1.0)  # sleep() cuts at the deadline
