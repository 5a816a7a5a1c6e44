"""Scenarios: a locker's story in YAML, played against the real firmware on the simulated board.

The format is documented for people who don't read this code in docs/simulator.md. In short::

    name: pickup with a valid code
    board: esp32-4door              # boards/<name>.json, or a path relative to the scenario file
    config: {code_min: 8}           # merged into config.json
    time: 2025-06-01T12:00:00Z      # the RTC at the first boot (omit: RTC unset)
    codes:
      - {code: "48291357", door: "2", expiry: +2d}
    parcels: ["2"]                  # doors holding a parcel at the start
    steps:
      - expect_display: "Typ uw code"
      - type: "48291357"
      - expect_solenoid: {door: "2", on: 1, within_ms: 500}

Codes may be door-free (`door: "*"`): `kind: staff | return | delivery` (default pickup), `id` (the
code id: a delivery's number, a staff member's id), `size: S | M | L`, `low: true`, `item` (what
the resident takes out: parcel, document, permit, waste bags, borrowed material; default parcel). The `command`
action sends a command signed with the locker's key on the console: `{op, args, tx?}` (the same `tx`
again: a re-sent command).

Actions change the world; expectations wait (up to `within_ms`) for the firmware to react.
`within_ms` counts from the last action (`wait_ms` is not an action: time just passes).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

from lockertools import BOARDS_DIR, FIRMWARE_DIR
from lockertools.service.fleet.common import ITEMS
from lockertools.sim.board import DEFAULT_HEAP, Event, SimError, VirtualBoard, format_event

ACTIONS = {
    "press",
    "type",
    "open_door",
    "close_door",
    "parcel",
    "jam",
    "lockboard",
    "wait_ms",
    "power_cut",
    "boot",
    "set_time",
    "console",
    "command",
    "write_file",
    "delete_file",
}
# actions on the flash folder: they may come before the first `boot` (the board has never run)
FILE_ACTIONS = {"write_file", "delete_file"}
EXPECTATIONS = {
    "expect_display",
    "expect_solenoid",
    "expect_no_solenoid",
    "expect_event",
    "expect_outbox",
    "expect_no_outbox",
    "expect_log",
    "expect_solenoid_timeline",
}
TOP_LEVEL = {"name", "board", "config", "codes", "time", "parcels", "heap", "steps", "description"}
DEFAULT_WITHIN_MS = {"expect_display": 2000, "expect_solenoid": 1000, "expect_event": 2000, "expect_outbox": 2000}
# events that would drown the trace: key echoes (the action line says it), acks, state replies
QUIET = {"key", "ack", "state", "buzzer", "wdt"}


class ScenarioError(ValueError):
    """The scenario file is not valid: says which step and why."""


class ExpectationFailed(AssertionError):
    pass


@dataclass
class Step:
    index: int  # 1-based, as people count
    kind: str
    arg: Any

    def describe(self) -> str:
        if self.arg is None:
            return self.kind
        return f"{self.kind}: {json.dumps(self.arg, default=str)}"


@dataclass
class Scenario:
    path: Path
    name: str
    board: Path
    config: dict[str, Any]
    codes: list[tuple[str, str, int] | tuple[str, str, int, int, int] | tuple[str, str, int, int, int, int]]
    time: int | None
    parcels: list[str]
    heap: str | None
    steps: list[Step]


@dataclass
class Result:
    scenario: Scenario
    passed: bool
    trace: list[str] = field(default_factory=list)
    failure: str | None = None
    latencies_ms: list[float] = field(default_factory=list)


# --- loading ------------------------------------------------------------------------------------


def parse_time(value: Any, now: int | None = None) -> int:
    """Epoch seconds from an int, an ISO 8601 date/time (UTC unless it says otherwise), or
    a relative '+2d' / '-3h' / '+90m' / '+30s' (relative to `now`)."""
    if isinstance(value, bool):
        raise ScenarioError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, dt.datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp())
    if isinstance(value, dt.date):
        return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp())
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([+-])\s*(\d+)\s*([dhms])\s*", value)
        if m:
            base = now if now is not None else int(time.time())
            secs = int(m[2]) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[m[3]]
            return base + secs if m[1] == "+" else base - secs
        try:
            return parse_time(dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
        except ValueError:
            pass
    raise ScenarioError(f"not a time: {value!r} (use epoch seconds, ISO 8601, or +2d/+3h/+10m/+30s)")


def _board_path(value: Any, base: Path) -> Path:
    name = str(value)
    for cand in (base / name, BOARDS_DIR / name, BOARDS_DIR / f"{name}.json"):
        if cand.is_file():
            return cand.resolve()
    raise ScenarioError(f"board {name!r}: no such file (next to the scenario or in {BOARDS_DIR})")


def load(path: Path, board_override: Path | None = None) -> Scenario:
    path = Path(path)
    yaml = importlib.import_module("yaml")  # PyYAML (no type stubs in the tool chain)
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping with at least `board` and `steps`")
    unknown = set(doc) - TOP_LEVEL
    if unknown:
        raise ScenarioError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_LEVEL)}")
    if board_override is None and "board" not in doc:
        raise ScenarioError(f"{path}: `board` is missing")
    board = board_override.resolve() if board_override else _board_path(doc["board"], path.parent)
    start = parse_time(doc["time"]) if doc.get("time") is not None else None
    codes: list[tuple[str, str, int] | tuple[str, str, int, int, int] | tuple[str, str, int, int, int, int]] = []
    for n, c in enumerate(doc.get("codes") or [], 1):
        if not isinstance(c, dict) or "code" not in c or "door" not in c:
            raise ScenarioError(f"{path}: code #{n} needs `code` and `door` (got {c!r})")
        expiry = c.get("expiry")
        spec = (str(c["code"]), str(c["door"]), 0 if expiry in (None, 0) else parse_time(expiry, start))
        kind, cid = _kind_byte(path, n, c), int(c.get("id", 0))
        item = c.get("item", "parcel")
        if item not in ITEMS:
            raise ScenarioError(f"{path}: code #{n}: item is one of {', '.join(ITEMS)}")
        # (code, door, expiry) for a plain pickup, as before; with a kind, an id or an item, flash.CodeSpec's order
        if ITEMS.index(item):
            codes.append(spec + (kind, cid, ITEMS.index(item)))
        else:
            codes.append(spec + (kind, cid) if kind or cid else spec)
    steps = []
    for n, raw in enumerate(doc.get("steps") or [], 1):
        steps.append(_step(path, n, raw))
    if not steps:
        raise ScenarioError(f"{path}: no steps")
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ScenarioError(f"{path}: `config` must be a mapping of config.json settings")
    return Scenario(
        path=path,
        name=str(doc.get("name") or path.stem),
        board=board,
        config=config,
        codes=codes,
        time=start,
        parcels=[str(p) for p in doc.get("parcels") or []],
        heap=str(doc["heap"]) if doc.get("heap") else None,
        steps=steps,
    )


KINDS = {"pickup": 0, "staff": 1, "return": 2, "delivery": 3}
SIZES = {None: 0, "S": 1, "M": 2, "L": 3}


def _kind_byte(path: Path, n: int, c: dict[str, Any]) -> int:
    """A code's kind byte from `kind` (pickup, staff, return, delivery), `size` (S/M/L) and `low`."""
    kind = c.get("kind", "pickup")
    size = c.get("size")
    if kind not in KINDS or size not in SIZES:
        raise ScenarioError(f"{path}: code #{n}: kind is one of {sorted(KINDS)}, size one of S, M, L")
    if (KINDS[kind] != 0) != (str(c["door"]) == "*"):
        raise ScenarioError(f'{path}: code #{n}: staff, return and delivery codes take door "*", pickups a door')
    return KINDS[kind] | SIZES[size] << 4 | (64 if c.get("low") else 0)


def _step(path: Path, n: int, raw: Any) -> Step:
    if isinstance(raw, str):
        kind, arg = raw, None
    elif isinstance(raw, dict) and len(raw) == 1:
        ((kind, arg),) = raw.items()
    else:
        raise ScenarioError(
            f'{path}: step {n}: one action or expectation per step, e.g. `- type: "1234"` (got {raw!r})'
        )
    if isinstance(arg, dict):
        # YAML 1.1 reads a bare `on`/`off`/`yes`/`no` key as a boolean: `{on: 1}` means "on"
        arg = {("on" if k is True else "off" if k is False else k): v for k, v in arg.items()}
    if kind not in ACTIONS | EXPECTATIONS:
        raise ScenarioError(
            f"{path}: step {n}: unknown step {kind!r}; actions: {', '.join(sorted(ACTIONS))}; "
            f"expectations: {', '.join(sorted(EXPECTATIONS))}"
        )
    needs_arg = kind not in ("power_cut", "boot", "expect_solenoid_timeline")
    if needs_arg and arg is None:
        raise ScenarioError(f"{path}: step {n}: `{kind}` needs a value")
    if kind in ("expect_solenoid", "parcel") and not (isinstance(arg, dict) and "door" in arg):
        raise ScenarioError(f"{path}: step {n}: `{kind}` takes a mapping with `door`")
    if kind in ("expect_event",) and not (isinstance(arg, dict) and "ev" in arg):
        raise ScenarioError(f"{path}: step {n}: `expect_event` takes a mapping with `ev` (the event kind)")
    if kind == "expect_outbox" and not (isinstance(arg, dict) and "kind" in arg):
        raise ScenarioError(f"{path}: step {n}: `expect_outbox` takes a mapping with `kind`")
    if kind == "lockboard":
        allowed = {"address", "silent", "corrupt", "unlock_ms"}
        if not (isinstance(arg, dict) and isinstance(arg.get("address"), int)) or set(arg) - allowed:
            raise ScenarioError(
                f"{path}: step {n}: `lockboard` takes a mapping with `address` and any of silent, corrupt, unlock_ms"
            )
    if kind in ("wait_ms",) and not isinstance(arg, int):
        raise ScenarioError(f"{path}: step {n}: `wait_ms` takes a number of milliseconds")
    if kind == "expect_no_outbox" and not (isinstance(arg, dict) and "kind" in arg):
        raise ScenarioError(f"{path}: step {n}: `expect_no_outbox` takes a mapping with `kind`")
    if kind == "expect_solenoid_timeline" and arg is not None:
        allowed = {"pulses", "max_on", "max_pulse_ms", "min_gap_ms"}
        if not isinstance(arg, dict) or set(arg) - allowed:
            raise ScenarioError(f"{path}: step {n}: `expect_solenoid_timeline` takes {sorted(allowed)}")
        if "pulses" in arg and not isinstance(arg["pulses"], list):
            raise ScenarioError(f'{path}: step {n}: `pulses` is a list of door labels, e.g. ["2", "3"]')
    if kind == "command" and not (isinstance(arg, dict) and isinstance(arg.get("op"), str)):
        raise ScenarioError(f"{path}: step {n}: `command` takes a mapping with `op` (and `args`, `tx`)")
    if kind in FILE_ACTIONS:
        _check_file_step(path, n, kind, arg)
    return Step(n, kind, arg)


def _flash_name(value: Any) -> str | None:
    """A file name inside the flash folder (no absolute paths, no way out of it), or None."""
    name = str(value)
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts:
        return None
    return name


def _check_file_step(path: Path, n: int, kind: str, arg: Any) -> None:
    if kind == "delete_file":
        if isinstance(arg, dict) or _flash_name(arg) is None:
            raise ScenarioError(f"{path}: step {n}: `delete_file` takes a file name in the flash folder")
        return
    if not isinstance(arg, dict) or _flash_name(arg.get("name", "")) is None:
        raise ScenarioError(f"{path}: step {n}: `write_file` takes a mapping with `name` (in the flash folder)")
    if ("text" in arg) == ("hex" in arg):
        raise ScenarioError(f"{path}: step {n}: `write_file` takes one of `text` or `hex`")
    if "hex" in arg:
        try:
            bytes.fromhex(str(arg["hex"]))
        except ValueError:
            raise ScenarioError(f"{path}: step {n}: `hex` is not hexadecimal: {arg['hex']!r}") from None
    at = arg.get("at")
    if at is not None and at != "end" and not (isinstance(at, int) and not isinstance(at, bool) and at >= 0):
        raise ScenarioError(f"{path}: step {n}: `at` is a byte offset (0, 1, ...) or `end`")


# --- running ------------------------------------------------------------------------------------

Prepare = Callable[..., Any]
T = TypeVar("T")


class Runner:
    """Plays one scenario; `out` gets the trace as it happens."""

    def __init__(
        self,
        scenario: Scenario,
        out: TextIO | None = None,
        *,
        flash_dir: Path | None = None,
        heap: str | None = None,
        firmware_dir: Path = FIRMWARE_DIR,
        script: Path | None = None,
        prepare: Prepare | None = None,
        verbose: bool = False,
    ) -> None:
        self.sc = scenario
        self.out = out
        self.flash_dir = flash_dir
        self.heap = heap or scenario.heap or DEFAULT_HEAP
        self.firmware_dir = firmware_dir
        self.script = script
        self.prepare = prepare
        self.verbose = verbose
        self.trace: list[str] = []
        self.latencies: list[float] = []
        self._t0 = time.monotonic()
        self._out_lock = threading.Lock()
        self.board: VirtualBoard | None = None
        # the last action: event index, host wall time (us), board time of its key-down if a key
        self._ref_mark = 0
        self._ref_us = 0
        self._ref_outbox: set[str] = set()
        self._rtc: tuple[int, float] | None = None  # (epoch, monotonic) the RTC was last known at
        self._secrets: Any = None  # what prepare() returned: the locker's id and key, for `command`
        self._seq = int(time.time() * 1000)

    # trace ------------------------------------------------------------------------------------

    def _emit(self, text: str, t: float | None = None) -> None:
        stamp = (time.monotonic() if t is None else t) - self._t0
        line = f"{stamp:8.3f}s  {text}"
        with self._out_lock:
            self.trace.append(line)
            if self.out is not None:
                print(line, file=self.out, flush=True)

    def _on_event(self, ev: Event) -> None:
        if ev.get("ev") in QUIET and not self.verbose:
            return
        labels = self.board.labels if self.board is not None else []
        self._emit("   < " + format_event(ev, labels), ev.get("host"))

    # running ----------------------------------------------------------------------------------

    def run(self) -> Result:
        result = Result(self.sc, passed=False, trace=self.trace, latencies_ms=self.latencies)
        with tempfile.TemporaryDirectory(prefix="locker-scenario-") as tmp:
            flash = self.flash_dir or Path(tmp) / "flash"
            try:
                self._prepare(flash)
                board = VirtualBoard(
                    flash,
                    firmware_dir=self.firmware_dir,
                    heap=self.heap,
                    script=self.script,
                    auto_reboot=True,
                    on_event=self._on_event,
                )
                self.board = board
                with board:
                    for label in self.sc.parcels:
                        board.parcels.add(board.door_index(label))
                    steps = self.sc.steps
                    # file actions before the first `boot` change a flash folder that has never run
                    lead = 0
                    while lead < len(steps) and steps[lead].kind in FILE_ACTIONS:
                        lead += 1
                    if lead == len(steps) or steps[lead].kind != "boot":
                        self._boot(None)
                    for step in steps:
                        self._do(step)
                result.passed = True
                self._emit(f"PASS {self.sc.name}")
            except (ExpectationFailed, SimError, ScenarioError) as exc:
                result.failure = str(exc)
                self._emit(f"FAIL {self.sc.name}")
        return result

    def _prepare(self, flash: Path) -> None:
        prepare = self.prepare
        if prepare is None:
            from lockertools.flash import prepare as flash_prepare

            prepare = flash_prepare
        self._secrets = prepare(flash, self.sc.board, codes=list(self.sc.codes), config_overrides=dict(self.sc.config))
        if not (flash / "board.json").exists():
            (flash / "board.json").write_text(self.sc.board.read_text())

    def _door(self, value: Any) -> int:
        assert self.board is not None
        if isinstance(value, dict):
            value = value.get("door")
        return self.board.door_index(str(value))

    def _mark(self, board_t: int | None = None) -> None:
        assert self.board is not None
        self._ref_mark = self.board.mark()
        self._ref_us = board_t if board_t is not None else time.time_ns() // 1000
        self._ref_outbox = set(self._outbox_files())

    def _do(self, step: Step) -> None:
        b = self.board
        assert b is not None
        kind, arg = step.kind, step.arg
        self._emit(f"{step.index:3d} > {step.describe()}")
        try:
            if kind in EXPECTATIONS:
                getattr(self, "_" + kind)(arg)
                return
            if kind == "wait_ms":
                time.sleep(int(arg) / 1000)  # time passing is the point of this step
                return
            if kind in ("press", "type"):
                self._keys(kind, arg)
                return
            self._mark()
            if kind == "open_door":
                b.open_door(self._door(arg))
            elif kind == "close_door":
                b.close_door(self._door(arg))
            elif kind == "parcel":
                b.set_parcel(self._door(arg), bool(arg.get("present", True)))
            elif kind == "jam":
                on = bool(arg.get("on", True)) if isinstance(arg, dict) else True
                b.jam(self._door(arg), on)
            elif kind == "lockboard":
                b.lockboard(
                    int(arg["address"]),
                    silent=None if "silent" not in arg else bool(arg["silent"]),
                    corrupt=arg.get("corrupt"),
                    unlock_ms=arg.get("unlock_ms"),
                )
            elif kind == "power_cut":
                b.power_cut()
            elif kind == "boot":
                self._boot(arg)
            elif kind == "set_time":
                epoch = parse_time(arg, self._rtc_now())
                self._rtc = (epoch, time.monotonic())
                b.set_time(epoch)
            elif kind == "console":
                b.send_console(str(arg))
            elif kind == "command":
                b.send_console(self._signed(arg))
            elif kind == "write_file":
                self._write_file(arg)
            elif kind == "delete_file":
                target = b.flash_dir / str(arg)
                if not target.is_file():
                    raise ScenarioError(f"delete_file: there is no {arg} in the flash folder")
                target.unlink()
        except ExpectationFailed as exc:
            raise ExpectationFailed(self._explain(step, str(exc))) from None
        except SimError as exc:
            raise SimError(self._explain(step, str(exc))) from None
        except ScenarioError as exc:
            raise ScenarioError(self._explain(step, str(exc))) from None

    def _write_file(self, arg: dict[str, Any]) -> None:
        """Bytes into a file of the flash folder: the whole file, or over part of it (`at`)."""
        assert self.board is not None
        target = self.board.flash_dir / str(arg["name"])
        data = bytes.fromhex(str(arg["hex"])) if "hex" in arg else str(arg["text"]).encode()
        at = arg.get("at")
        if at is None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            return
        if not target.is_file():
            raise ScenarioError(f"write_file: there is no {arg['name']} in the flash folder to write into")
        old = bytearray(target.read_bytes())
        pos = len(old) if at == "end" else int(at)
        if pos > len(old):
            raise ScenarioError(f"write_file: {arg['name']} has only {len(old)} bytes (at: {pos})")
        old[pos : pos + len(data)] = data
        target.write_bytes(bytes(old))

    def _signed(self, arg: dict[str, Any]) -> str:
        """A command signed with the locker's key, as the host sends it (a console line). `tx` given:
        the same transaction again (a re-sent command), under a new sequence number."""
        sec = self._secrets
        if sec is None or not hasattr(sec, "key"):
            raise ScenarioError("command: the flash folder was prepared without a known key")

        protocol = importlib.import_module("locker.protocol")
        hkey = importlib.import_module("locker.hmac256").HmacKey(sec.key)
        now = self._rtc_now() or int(time.time())
        self._seq += 1
        payload = {
            "v": 1,
            "lid": sec.locker_id,
            "seq": self._seq,
            "now": now,
            "exp": now + 300,
            "tx": str(arg.get("tx") or f"tx{self._seq}"),
            "op": arg["op"],
            "args": arg.get("args") or {},
        }
        wire: bytes = protocol.sign(hkey, protocol.encode(payload))
        return wire.decode()

    def _keys(self, kind: str, arg: Any) -> None:
        b = self.board
        assert b is not None
        if kind == "press":
            key, hold = (str(arg.get("key")), int(arg.get("hold_ms", 60))) if isinstance(arg, dict) else (str(arg), 60)
            self._mark()
            down = b.press(key)
            assert down is not None
            self._ref_us = int(down["t"])
            time.sleep(hold / 1000)
            b.release(key)
            time.sleep(0.06)
            return
        opts = arg if isinstance(arg, dict) else {"code": arg}
        code, submit = str(opts.get("code")), bool(opts.get("submit", True))
        hold, gap = int(opts.get("hold_ms", 60)), int(opts.get("gap_ms", 60))
        self._mark()
        last = b.type_code(code, submit=submit, hold_ms=hold, gap_ms=gap)
        # timings after typing count from the last key going down, on the board's clock
        self._ref_us = int(last["t"])

    def _rtc_now(self) -> int | None:
        if self._rtc is None:
            return None
        epoch, at = self._rtc
        return epoch + int(time.monotonic() - at)

    def _boot(self, arg: Any) -> None:
        b = self.board
        assert b is not None
        opts = arg if isinstance(arg, dict) else {}
        cause = str(opts.get("cause", "power_on"))
        keep = opts.get("keep_rtc", False)
        if self._rtc is None and self.sc.time is not None and b.boot_count == 0:
            self._rtc = (self.sc.time, time.monotonic())
            keep = True
        if keep is True:
            rtc = self._rtc_now()
        elif keep in (False, None):
            rtc = None
            self._rtc = None
        else:
            rtc = parse_time(keep, self._rtc_now())
        if rtc is not None:
            self._rtc = (rtc, time.monotonic())
        self._mark()
        b.boot(cause, keep_rtc=rtc)

    # expectations -----------------------------------------------------------------------------

    def _watch(self, predicate: Callable[[], T | None], timeout: float, recheck_s: float | None = None) -> T | None:
        """VirtualBoard.watch, but a firmware that crashed (exited without a reset) fails at once."""
        b = self.board
        assert b is not None
        since = self._ref_mark

        def check() -> tuple[T | None, Event | None] | None:
            value = predicate()
            if value:
                return value, None
            for e in b.events("exit", since):
                if not e.get("cause") and e.get("code") != -9:  # -9: our own power cut
                    return None, e
            return None

        got = b.watch(check, timeout, recheck_s)
        if got is None:
            return None
        value, crash = got
        if crash is not None:
            raise ExpectationFailed(f"the firmware exited with status {crash['code']} (it crashed)")
        return value

    def _within(self, kind: str, arg: Any) -> int:
        if isinstance(arg, dict) and "within_ms" in arg:
            return int(arg["within_ms"])
        return DEFAULT_WITHIN_MS.get(kind, 2000)

    def _deadline_s(self, within_ms: int) -> float:
        """Seconds left until the last action + within_ms (+ delivery slack), from now."""
        left_us = self._ref_us + within_ms * 1000 - time.time_ns() // 1000
        return max(left_us / 1e6, 0.0) + 0.25

    def _expect_display(self, arg: Any) -> None:
        b = self.board
        assert b is not None
        text = str(arg.get("text")) if isinstance(arg, dict) else str(arg)
        within = self._within("expect_display", arg)
        since = self._ref_mark if isinstance(arg, dict) and arg.get("since_action") else None

        def check() -> bool:
            if since is not None and any(_shows(e.get("lines", []), text) for e in b.events("display", since)):
                return True
            return _shows(self._display_now(), text)

        # displays are checked from now: the text may well have been there before the action
        # (`since_action`: or any screen shown since the last action, for screens that pass quickly)
        got = self._watch(check, within / 1000)
        if not got and not _shows(b.display(), text):
            raise ExpectationFailed(f"the display never showed {text!r} within {within} ms; it shows {b.display()!r}")

    def _display_now(self) -> list[str]:
        """The text of this boot's latest display event: a screen from before a power cut is gone."""
        b = self.board
        assert b is not None
        shown = [e for e in b.events("display") if e.get("boot") == b.boot_count]
        lines: list[str] = shown[-1]["lines"] if shown else []
        return lines

    def _expect_solenoid(self, arg: dict[str, Any]) -> None:
        b = self.board
        assert b is not None
        door = self._door(arg)
        on = 1 if arg.get("on", 1) else 0
        within = self._within("expect_solenoid", arg)
        since = self._ref_mark

        def check() -> Event | bool | None:
            hit = b.events_find("solenoid", since, door=door, on=on)
            if hit is not None:
                return hit
            return b.solenoid_on(door) == bool(on) and b.events_find("solenoid", since, door=door) is None

        got = self._watch(check, self._deadline_s(within))
        label = b.labels[door]
        if not got:
            raise ExpectationFailed(f"solenoid of door {label} did not turn {'on' if on else 'off'} within {within} ms")
        if isinstance(got, dict):
            late = (int(got["t"]) - self._ref_us) / 1000
            self.latencies.append(late)
            self._emit(f"      solenoid {label} {'on' if on else 'off'} {late:.1f} ms after the last action")
            if late > within:
                state = "on" if on else "off"
                raise ExpectationFailed(f"solenoid of door {label} turned {state} after {late:.1f} ms, not {within} ms")

    def _expect_no_solenoid(self, arg: Any) -> None:
        b = self.board
        assert b is not None
        within = int(arg.get("within_ms", 1000)) if isinstance(arg, dict) else int(arg)
        door = self._door(arg) if isinstance(arg, dict) and "door" in arg else None
        since = self._ref_mark
        match: dict[str, Any] = {"on": 1} if door is None else {"on": 1, "door": door}
        hit = self._watch(lambda: b.events_find("solenoid", since, **match), self._deadline_s(within) - 0.25)
        if hit:
            raise ExpectationFailed(f"a solenoid turned on: {format_event(hit, b.labels)}")

    def _expect_event(self, arg: dict[str, Any]) -> None:
        b = self.board
        assert b is not None
        match = {k: v for k, v in arg.items() if k not in ("ev", "within_ms")}
        if "door" in match:
            match["door"] = self._door(match["door"])
        match = {k: int(v) if isinstance(v, bool) else v for k, v in match.items()}
        within = self._within("expect_event", arg)
        since = self._ref_mark
        hit = self._watch(lambda: b.events_find(str(arg["ev"]), since, **match), self._deadline_s(within))
        if not hit:
            raise ExpectationFailed(f"no {arg['ev']} event matching {match} within {within} ms")

    def _outbox_files(self) -> list[str]:
        if self.board is None:
            return []
        d = self.board.flash_dir / "outbox"
        return sorted(p.name for p in d.glob("*.ev")) if d.is_dir() else []

    def _outbox_events(self) -> list[dict[str, Any]]:
        assert self.board is not None
        d = self.board.flash_dir / "outbox"
        out = []
        for name in self._outbox_files():
            if name in self._ref_outbox:
                continue
            payload = _read_framed(d / name)
            if isinstance(payload, dict):
                out.append(payload)
        return out

    def _expect_outbox(self, arg: dict[str, Any]) -> None:
        b = self.board
        assert b is not None
        want = {"k": str(arg["kind"])}
        if "door" in arg:
            want["d"] = b.labels[self._door(arg["door"])]
        extra = {k: v for k, v in arg.items() if k not in ("kind", "door", "within_ms")}
        within = self._within("expect_outbox", arg)

        def check() -> dict[str, Any] | None:
            for ev in self._outbox_events():
                if all(ev.get(k) == v for k, v in {**want, **extra}.items()):
                    return ev
            return None

        # files make no events: re-checked on every event and log line, and every 50 ms
        hit = self._watch(check, self._deadline_s(within), recheck_s=0.05)
        if not hit:
            seen = self._outbox_events()
            raise ExpectationFailed(f"no outbox event {want | extra} within {within} ms; new in the outbox: {seen}")
        self._emit(f"      outbox: {json.dumps(hit)}")

    def _expect_no_outbox(self, arg: dict[str, Any]) -> None:
        b = self.board
        assert b is not None
        want = {"k": str(arg["kind"])}
        if "door" in arg:
            want["d"] = b.labels[self._door(arg["door"])]
        want |= {k: v for k, v in arg.items() if k not in ("kind", "door", "within_ms")}
        within = int(arg.get("within_ms", 1000))

        def check() -> dict[str, Any] | None:
            for ev in self._outbox_events():
                if all(ev.get(k) == v for k, v in want.items()):
                    return ev
            return None

        hit = self._watch(check, self._deadline_s(within) - 0.25, recheck_s=0.05) or check()
        if hit:
            raise ExpectationFailed(f"the firmware queued {json.dumps(hit)} for the host")

    def _expect_solenoid_timeline(self, arg: Any) -> None:
        """Checks every latch event since the scenario started (all boots); does not wait."""
        b = self.board
        assert b is not None
        opts = arg if isinstance(arg, dict) else {}
        max_on = int(opts.get("max_on", 1))
        max_pulse = int(opts.get("max_pulse_ms", 1050))  # the 1 s hard cap + the loop's poll slack
        min_gap = opts.get("min_gap_ms")
        labels = b.labels
        on: dict[int, int] = {}  # door -> board time (us) its latch went on
        pulses: list[str] = []
        lengths: list[str] = []
        problems: list[str] = []
        last_off: int | None = None
        for e in b.events():
            kind = e.get("ev")
            if kind in ("boot", "power_cut", "exit"):  # a new boot starts with every latch off
                on.clear()
                last_off = None
                continue
            if kind != "solenoid":
                continue
            door, t = int(e["door"]), int(e["t"])
            label = labels[door] if door < len(labels) else str(door)
            if e.get("on"):
                if door in on:
                    continue
                if min_gap is not None and last_off is not None and not on and (t - last_off) / 1000 < int(min_gap):
                    problems.append(f"door {label}'s latch went on {(t - last_off) / 1000:.0f} ms after the last one")
                on[door] = t
                pulses.append(label)
                if len(on) > max_on:
                    both = ", ".join(labels[d] for d in on)
                    problems.append(f"{len(on)} latches on at the same moment (doors {both}); at most {max_on}")
            else:
                start = on.pop(door, None)
                last_off = t
                if start is not None:
                    ms = (t - start) / 1000
                    lengths.append(f"{label} {ms:.0f} ms")
                    if ms > max_pulse:
                        problems.append(f"door {label}'s latch was on for {ms:.0f} ms (at most {max_pulse})")
        now_us = time.time_ns() // 1000
        for door, start in on.items():
            if (now_us - start) / 1000 > max_pulse + 250:  # + delivery slack for the `off` event
                problems.append(f"door {labels[door]}'s latch has been on for {(now_us - start) / 1000:.0f} ms")
        if "pulses" in opts and pulses != [str(p) for p in opts["pulses"]]:
            problems.append(f"pulses were {pulses}, not {[str(p) for p in opts['pulses']]}")
        lengths += [f"{labels[d]} still on" for d in on]
        self._emit(f"      pulses: {', '.join(lengths) or 'none'}")
        if problems:
            raise ExpectationFailed("; ".join(problems))

    def _expect_log(self, arg: Any) -> None:
        b = self.board
        assert b is not None
        text = str(arg.get("text")) if isinstance(arg, dict) else str(arg)
        within = self._within("expect_log", arg)
        hit = self._watch(lambda: any(text in ln for ln in b.log_lines()), self._deadline_s(within))
        if not hit:
            raise ExpectationFailed(f"the firmware never printed {text!r}")

    def _explain(self, step: Step, why: str) -> str:
        around = "\n".join(self.trace[-25:])
        tail = self.board.log_tail(15) if self.board is not None else ""
        return f"{self.sc.path}: step {step.index} failed: {step.describe()}\n  {why}\n--- trace ---\n{around}\n{tail}"


def _shows(lines: list[str], text: str) -> bool:
    """Whether display lines show `text`: as they are, or with each line's trailing blanks cut,
    so that "Sluit deur 2\nalstublieft" matches a padded 16x2 screen."""
    return text in "\n".join(lines) or text in "\n".join(ln.rstrip() for ln in lines)


def _read_framed(path: Path) -> Any:
    """An outbox file's JSON payload, read with the firmware's own store format when it can."""
    try:
        from locker import store  # type: ignore[import-not-found]

        raw = store.load(str(path))
        if raw is not None:
            return json.loads(bytes(raw))
    except Exception:  # noqa: BLE001 - fall back to finding the JSON in the frame
        pass
    try:
        data = path.read_bytes()
        start = data.index(b"{")
        return json.JSONDecoder().raw_decode(data[start:].decode("utf-8", errors="replace"))[0]
    except (OSError, ValueError):
        return None


def run_files(
    paths: list[Path],
    out: TextIO = sys.stdout,
    *,
    board: Path | None = None,
    heap: str | None = None,
    verbose: bool = False,
    firmware_dir: Path = FIRMWARE_DIR,
    script: Path | None = None,
    prepare: Prepare | None = None,
) -> list[Result]:
    """Run scenario files one after the other; prints each trace and, for failures, why."""
    results = []
    for path in paths:
        print(f"=== {path}", file=out, flush=True)
        try:
            sc = load(path, board)
        except ScenarioError as exc:
            print(f"INVALID {exc}", file=out, flush=True)
            results.append(
                Result(Scenario(path, path.stem, Path(), {}, [], None, [], None, []), False, failure=str(exc))
            )
            continue
        res = Runner(
            sc, out, heap=heap, verbose=verbose, firmware_dir=firmware_dir, script=script, prepare=prepare
        ).run()
        if res.failure:
            print(res.failure, file=out, flush=True)
        results.append(res)
    passed = sum(r.passed for r in results)
    print(f"{passed} passed, {len(results) - passed} failed", file=out, flush=True)
    return results
