"""Drive the real firmware on a simulated board: one MicroPython unix-port process per boot.

`VirtualBoard` owns the locker process and the world around it: it listens on a loopback port,
starts `micropython` with host_tools/sim_board first on MICROPYPATH (so `machine` is simulated),
accepts the board's control connection and records every event the board reports, with the host's
clock (`host`, monotonic seconds) and the board's (`t`, microseconds). The physical state that
outlives a reboot (doors open, parcels, jams) is kept here and handed to each new boot.

All waits are condition waits on the event stream: nothing polls in a sleep loop. The control
channel is described in docs/simulator.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from lockertools import FIRMWARE_DIR, SIM_BOARD_DIR
from lockertools.build import compile_tree
from lockertools.extras import ExtraMissing, install_hint

Event = dict[str, Any]
T = TypeVar("T")

# exit status of the locker process -> the reset cause of the reboot that follows
EXIT_CAUSES = {3: "watchdog", 4: "hard", 5: "soft"}
_RESET_GRACE_S = 0.5  # after a reset report, a process still alive (hung) is killed


def default_micropython() -> Path:
    beside = Path(sys.executable).with_name("micropython")  # the sim extra installs it into the venv
    if beside.exists():
        return beside
    found = shutil.which("micropython")
    return Path(found) if found else Path("micropython")


class SimError(RuntimeError):
    """The simulated locker did not do what was asked (died, never connected, refused)."""


class MicroPythonMissing(SimError, ExtraMissing):
    pass


class SimTimeout(SimError, TimeoutError):
    """A wait ran out of time. The message carries recent events and the firmware log tail."""


# The simulated hardware (machine, network) is Python living in the locker's heap on the unix
# port, where a board has it in C and flash. The firmware's own budget stays `heap`; the board
# process gets this much more: the shim's peak (22.8 KB wired up on the 16-door board, up to 4 KB more
# inside one call of its I2C model, and the 1.5 KB the start-up, _launch, keeps while the firmware
# runs: 28.4 KB measured, docs/benchmarks.md) with room for its garbage.
SIM_SHIM_HEAP = 32 * 1024

# The firmware's heap in the simulator: a board's 128 KB (the simulated hardware's own modules get
# SIM_SHIM_HEAP on top). The unix port is 64-bit, so every object slot takes 8 bytes where the
# ESP32 takes 4: this is stricter than a board. Every scenario runs in it; what needs more says so
# (CONSOLE_SYNC_HEAP).
DEFAULT_HEAP = "128K"
# Signed code changes of up to 64 codes on the console parse a large JSON message; on the 64-bit
# port that has run out of memory at 128K (power-cut campaign), so the tests that send them use this.
# It was 160K until the staff flows (deliveries, returns, staff PINs) added about 4 KB to what a booted
# locker holds: the campaign's 64-row apply right after a boot then answered `no_memory` at 160K
# (seed 691471032).
CONSOLE_SYNC_HEAP = "168K"
# A networked locker (net.json) also holds the MQTT client, the uplink and the command handler
# (about 36 KB resident on this 64-bit port) and, while a command is handled, its message (up to
# 8 KB) parsed. The smallest heaps that ran tests/net, a 64-row codes.apply included, were 184K for
# plain MQTT and 184K for TLS (176K ran out of memory in that command); with small commands only,
# 160K and 168K. TLS takes about 5-7 KB of this heap (context, CA, session): mbedtls's record buffers
# are not in the MicroPython heap in this build (on the ESP32 they are in the IDF heap, outside the
# MicroPython heap, too). These add a margin of about 20 %; docs/simulator.md, "The heap", has the figures.
NET_HEAP = "224K"
TLS_HEAP = "232K"


def heap_bytes(heap: str) -> int:
    """'128K' -> 131072 (also M and plain bytes)."""
    units = {"K": 1024, "M": 1024 * 1024}
    text = heap.strip().upper()
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def compiled_sim_board(source_dir: Path = SIM_BOARD_DIR, micropython: Path | None = None) -> Path:
    """The sim_board modules compiled with mpy-cross (cached: lockertools.build).

    Compiling _simboard.py from source on the locker's own 128K heap would need most of that heap
    (the parser keeps the whole tree); loading bytecode needs only what stays resident.
    """
    tool = (micropython or default_micropython()).with_name("mpy-cross")
    return compile_tree(source_dir, "sim_board", mpy_cross=tool if tool.exists() else None)


def compiled_firmware(firmware_dir: Path = FIRMWARE_DIR, micropython: Path | None = None) -> Path:
    """The firmware as a board runs it: modules as .mpy, main.py as source."""
    tool = (micropython or default_micropython()).with_name("mpy-cross")
    return compile_tree(firmware_dir, "firmware", mpy_cross=tool if tool.exists() else None)


class _Run:
    """One boot: the process, its control connection and the threads reading them."""

    def __init__(self, n: int, cause: str, proc: subprocess.Popen[bytes]) -> None:
        self.n = n
        self.cause = cause
        self.proc = proc
        self.conn: socket.socket | None = None
        self.cut = False
        self.reset: Event | None = None
        self.threads: list[threading.Thread] = []


class VirtualBoard:
    """The firmware running on a simulated board, and the hands and eyes around it.

    Doors are board indices (0-based, the order of "doors" in board.json); `labels` maps them to
    what residents see.
    """

    def __init__(
        self,
        flash_dir: Path,
        firmware_dir: Path = FIRMWARE_DIR,
        heap: str = DEFAULT_HEAP,
        micropython: Path | None = None,
        *,
        script: Path | None = None,
        auto_reboot: bool = False,
        connect_timeout: float = 15.0,
        sim_board_dir: Path = SIM_BOARD_DIR,
        precompile: bool = True,
        env: dict[str, str] | None = None,
        on_event: Callable[[Event], None] | None = None,
        log_limit: int = 20000,
        net: dict[str, Any] | None = None,
        app_on_flash: bool = False,
        console_fd: int | None = None,
    ) -> None:
        self.flash_dir = Path(flash_dir)
        # The firmware's stdin/stdout/stderr: a tty (lockertools.provision.virtual.UsbUart) instead of
        # pipes. Its output then goes there only: log_lines() stays empty, send_console() is refused.
        self.console_fd = console_fd
        # The loader (boot.py), main.py and the application (app/) come from the flash folder, as a
        # board installed by provisioning runs them (docs/maintenance.md); nothing on MICROPYPATH
        # but the simulated hardware. See lockertools.maint.bundle.install_app.
        self.app_on_flash = app_on_flash
        if net is not None:
            self.write_net(net)
        self.firmware_dir = Path(firmware_dir)
        self.heap = heap
        # The firmware gets `heap`; our simulated hardware's modules come on top (see SIM_SHIM_HEAP).
        self.process_heap = heap_bytes(heap) + (SIM_SHIM_HEAP if script is None else 0)
        self.micropython = Path(micropython) if micropython else default_micropython()
        self.script = Path(script) if script else self.firmware_dir / "main.py"
        # The firmware's own entry point runs from the compiled tree, as on a board.
        self.script_is_firmware = self.script.parent == self.firmware_dir
        self.auto_reboot = auto_reboot
        self.connect_timeout = connect_timeout
        self.sim_board_dir = Path(sim_board_dir)
        self.precompile = precompile
        self.extra_env = dict(env or {})
        self.on_event = on_event
        self._cond = threading.Condition(threading.RLock())
        self._life = threading.RLock()  # boot / power cut / close
        self._send_lock = threading.Lock()
        self._events: list[Event] = []
        self._log: deque[str] = deque(maxlen=log_limit)
        self._run: _Run | None = None
        self._boots = 0
        self._ids = 0
        self._closing = False
        self.opened: set[int] = set()  # physical state that survives a reboot
        self.parcels: set[int] = set()
        self.jammed: set[int] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(2)
        self.port: int = self._listener.getsockname()[1]
        self.board: dict[str, Any] = {}
        self._load_board()

    def write_net(self, net: dict[str, Any] | None) -> None:
        """Write (None: remove) the locker's net.json and CA, as provisioning would
        (`lockertools.flash.write_net`). Takes effect at the next boot; write it with the power off."""
        from lockertools.flash import write_net

        write_net(self.flash_dir, net)

    # --- life cycle ---------------------------------------------------------------------------

    def _load_board(self) -> None:
        path = self.flash_dir / "board.json"
        if path.exists():
            self.board = json.loads(path.read_text())

    @property
    def labels(self) -> list[str]:
        return [str(d.get("label", i + 1)) for i, d in enumerate(self.board.get("doors", []))]

    def door_index(self, label: str | int) -> int:
        """The board index of the door residents know as `label`."""
        labels = self.labels
        if str(label) not in labels:
            raise SimError(f"no door labelled {label!r} (doors: {', '.join(labels)})")
        return labels.index(str(label))

    @property
    def running(self) -> bool:
        run = self._run
        return run is not None and run.proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        """Exit status of the locker process (None while it runs); -9 after a power cut."""
        run = self._run
        return None if run is None else run.proc.poll()

    @property
    def pid(self) -> int | None:
        """The firmware process of the current boot (None before the first)."""
        run = self._run
        return None if run is None else run.proc.pid

    @property
    def boot_count(self) -> int:
        return self._boots

    def boot(self, reset_cause: str = "power_on", keep_rtc: int | None = None, wait_hello: bool = True) -> None:
        """Start the firmware. `keep_rtc`: the epoch the RTC holds at boot (None: RTC unset, 2000).

        A board that is running is power-cut first. Returns once the board said hello (its first
        hardware access), or raises SimError with the log tail if the firmware died before.
        """
        with self._life:
            if self._closing:
                raise SimError("board is closed")
            if self.running:
                self.power_cut()
            if self._run is not None:
                self._dispose(self._run)
            self._load_board()
            self._boots += 1
            n = self._boots
            phys = {"open": sorted(self.opened), "parcel": sorted(self.parcels), "jam": sorted(self.jammed)}
            if not self.micropython.exists() and shutil.which(str(self.micropython)) is None:
                raise MicroPythonMissing(
                    f"{self.micropython}: MicroPython's unix port is not installed: {install_hint('sim')}"
                )
            env = dict(os.environ)
            env.update(self.extra_env)
            board_dir = (
                compiled_sim_board(self.sim_board_dir, self.micropython) if self.precompile else self.sim_board_dir
            )
            firmware_dir = self.firmware_dir
            script = self.script
            if self.precompile and self.script_is_firmware:
                firmware_dir = compiled_firmware(self.firmware_dir, self.micropython)
                script = firmware_dir / self.script.name
            path = f"{board_dir}:.frozen" if self.app_on_flash else f"{board_dir}:{firmware_dir}:.frozen"
            env.update(
                MICROPYPATH=path,
                LOCKER_SIM_PORT=str(self.port),
                LOCKER_SIM_RESET_CAUSE=reset_cause,
                LOCKER_SIM_STATE=json.dumps(phys, separators=(",", ":")),
            )
            env.pop("LOCKER_SIM_RTC", None)
            env.pop("LOCKER_SIM_SCRIPT", None)
            if not self.app_on_flash:
                env["LOCKER_SIM_SCRIPT"] = str(script)
            if keep_rtc is not None:
                env["LOCKER_SIM_RTC"] = str(int(keep_rtc))
            self._log.append(f"--- boot {n} ({reset_cause}) ---")
            proc = subprocess.Popen(
                # _launch: a program that raises stays at the REPL, as on a board (see there)
                [str(self.micropython), "-X", f"heapsize={self.process_heap}", "-m", "_launch"],
                cwd=self.flash_dir,
                env=env,
                stdin=subprocess.PIPE if self.console_fd is None else self.console_fd,
                stdout=subprocess.PIPE if self.console_fd is None else self.console_fd,
                stderr=subprocess.STDOUT if self.console_fd is None else self.console_fd,
                start_new_session=True,  # a Ctrl-C in the terminal is not the locker's
            )
            run = _Run(n, reset_cause, proc)
            self._run = run
            if proc.stdout is not None:
                self._start(run, self._read_log, proc.stdout)
            self._record({"ev": "boot", "cause": reset_cause, "rtc": keep_rtc}, run)
            mark = len(self._events)
            run.conn = self._accept(run)
            self._start(run, self._read_events, run.conn)
        if wait_hello:
            self.wait_for(
                lambda: self._find("hello", mark, {}) or self._find("exit", mark, {"boot": n}),
                self.connect_timeout,
                "the board's hello",
            )
            hello = self._find("hello", mark, {})
            if hello is None:
                raise SimError(f"the firmware exited with status {proc.poll()} before it said hello\n{self.log_tail()}")
            if hello.get("repl"):
                stopped = f"the firmware stopped at the REPL before it touched the hardware: {hello['repl']}"
                raise SimError(f"{stopped}\n{self.log_tail()}")

    def _start(self, run: _Run, target: Callable[[_Run, Any], None], arg: Any) -> None:
        t = threading.Thread(target=target, args=(run, arg), daemon=True, name=f"sim-{target.__name__}-{run.n}")
        run.threads.append(t)
        t.start()

    def _accept(self, run: _Run) -> socket.socket:
        deadline = time.monotonic() + self.connect_timeout
        self._listener.settimeout(0.05)
        while True:
            try:
                conn, _ = self._listener.accept()
                conn.settimeout(None)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return conn
            except TimeoutError:
                pass
            rc = run.proc.poll()
            if rc is not None:
                # give the log reader a moment to collect the traceback
                for t in run.threads:
                    t.join(1.0)
                raise SimError(f"the firmware exited with status {rc} before connecting\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise SimError(
                    f"the board did not connect within {self.connect_timeout}s "
                    f"(does the firmware touch machine?)\n{self.log_tail()}"
                )

    def power_cut(self) -> None:
        """Power off at once: SIGKILL, no cleanup, files as they are on flash."""
        with self._life:
            run = self._run
            if run is None or run.proc.poll() is not None:
                return
            run.cut = True
            run.proc.send_signal(signal.SIGKILL)
            run.proc.wait()
            self._record({"ev": "power_cut"}, run)
            for t in run.threads:
                t.join(2.0)

    def _dispose(self, run: _Run) -> None:
        """Release a finished boot's pipes and connection once its readers are done."""
        me = threading.current_thread()
        for t in run.threads:
            if t is not me:
                t.join(2.0)
        for f in (run.proc.stdin, run.proc.stdout):
            if f is not None and not f.closed:
                try:
                    f.close()
                except OSError:
                    pass
        if run.conn is not None:
            run.conn.close()

    def close(self) -> None:
        with self._life:
            self._closing = True
            run = self._run
            if run is not None:
                if run.proc.poll() is None:
                    run.cut = True
                    run.proc.kill()
                    run.proc.wait()
                self._dispose(run)
            self._listener.close()

    def __enter__(self) -> VirtualBoard:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- reading the board --------------------------------------------------------------------

    def _read_events(self, run: _Run, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        ev = {"ev": "garbled", "line": line.decode(errors="replace")}
                    self._record(ev, run)
        except OSError:
            pass
        try:
            rc = run.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            rc = run.proc.wait()
        for t in run.threads[:1]:  # the log reader: the exit's traceback belongs before the exit
            if t is not threading.current_thread():  # (no log reader when the console is a tty)
                t.join(1.0)
        exit_ev: Event = {"ev": "exit", "code": rc}
        cause = run.reset["cause"] if run.reset else EXIT_CAUSES.get(rc)
        if cause and not run.cut:
            exit_ev["cause"] = cause
        self._record(exit_ev, run)
        if self.auto_reboot and cause and not run.cut and not self._closing and self._run is run:
            rtc = run.reset.get("rtc") if run.reset else None
            try:
                self.boot(cause, keep_rtc=rtc)  # the RTC survives a reset, not a power cut
            except SimError as exc:
                self._record({"ev": "error", "error": f"auto reboot failed: {exc}"}, run)

    def _read_log(self, run: _Run, out: IO[bytes]) -> None:
        for raw in iter(out.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            with self._cond:
                self._log.append(line)
                self._cond.notify_all()

    def _record(self, ev: Event, run: _Run) -> None:
        ev["host"] = time.monotonic()
        ev["boot"] = run.n
        kind = ev.get("ev")
        with self._cond:
            if kind == "door" and isinstance(ev.get("door"), int):
                (self.opened.add if ev.get("open") else self.opened.discard)(ev["door"])
            elif kind == "reset":
                run.reset = ev
                proc = run.proc
                timer = threading.Timer(_RESET_GRACE_S, _kill_if_alive, args=(proc,))
                timer.daemon = True
                timer.start()
            self._events.append(ev)
            self._cond.notify_all()
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception as exc:  # noqa: BLE001 - a broken printer must not stop the event reader
                with self._cond:
                    self._log.append(f"[sim] on_event failed: {exc!r}")

    def events(self, kind: str | None = None, since: int = 0) -> list[Event]:
        """Every recorded event (or those of one kind), oldest first, from index `since`."""
        with self._cond:
            return [e for e in self._events[since:] if kind is None or e.get("ev") == kind]

    def mark(self) -> int:
        """The index the next event will have: pass it as `since` to look only at what follows."""
        with self._cond:
            return len(self._events)

    def log_lines(self) -> list[str]:
        """What the firmware printed (stdout and stderr), across boots."""
        with self._cond:
            return list(self._log)

    def click_after(self, since: int, down: Event) -> Event | None:
        """The firmware's key click (buzzer on) after the key-down echo `down`."""
        for e in self._events[since:]:
            if e.get("ev") == "buzzer" and e.get("duty") and e.get("t", 0) >= down.get("t", 0):
                return e
        return None

    def _find(self, kind: str, since: int, match: dict[str, Any]) -> Event | None:
        for e in self._events[since:]:
            if e.get("ev") == kind and all(e.get(k) == v for k, v in match.items()):
                return e
        return None

    def watch(self, predicate: Callable[[], T | None], timeout: float, recheck_s: float | None = None) -> T | None:
        """predicate()'s first truthy value within `timeout` seconds, else None (no exception).

        Re-checked on every event and log line (and every `recheck_s` for outside state such as files).
        The predicate runs with the event lock held: keep it to looking at events, the log or files.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left if recheck_s is None else min(left, recheck_s))

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10.0, what: str = "a condition") -> T:
        """Wait until predicate() is truthy and return its value; SimTimeout (with context) otherwise."""
        value = self.watch(predicate, timeout)
        if value is None or not value:
            raise SimTimeout(f"timed out after {timeout:g}s waiting for {what}\n{self.explain()}")
        return value

    def events_find(self, kind: str, since: int = 0, **match: Any) -> Event | None:
        """The first event of `kind` at or after index `since` whose fields equal `match`, if any."""
        with self._cond:
            return self._find(kind, since, match)

    def wait_event(self, ev: str, timeout: float = 10.0, since: int = 0, **match: Any) -> Event:
        """The first event of kind `ev` at or after index `since` whose fields equal `match`."""
        desc = ev + "".join(f" {k}={v!r}" for k, v in match.items())
        return self.wait_for(lambda: self._find(ev, since, match), timeout, f"event {desc}")

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """The first firmware log line (this boot or any) containing `text`."""
        return self.wait_for(lambda: next((ln for ln in self._log if text in ln), ""), timeout, f"log {text!r}")

    def explain(self, events: int = 15, lines: int = 30) -> str:
        with self._cond:
            recent = self._events[-events:] if events > 0 else []
        evs = "\n".join("  " + json.dumps(e, separators=(",", ":")) for e in recent) or "  (none)"
        return f"--- last {len(recent)} events ---\n{evs}\n{self.log_tail(lines)}"

    def log_tail(self, lines: int = 30) -> str:
        with self._cond:
            tail = list(self._log)[-lines:]
        return f"--- firmware log (last {len(tail)} lines) ---\n" + ("\n".join(tail) or "(empty)")

    # --- acting on the board ------------------------------------------------------------------

    def _send(self, *objs: dict[str, Any]) -> None:
        run = self._run
        if run is None or run.conn is None or run.proc.poll() is not None:
            raise SimError(f"the board is not running (exit status {self.exit_code})\n{self.log_tail(10)}")
        data = "".join(json.dumps(obj, separators=(",", ":")) + "\n" for obj in objs).encode()
        with self._send_lock:
            try:
                run.conn.sendall(data)
            except OSError as exc:
                raise SimError(f"the board's control connection broke: {exc}\n{self.log_tail(10)}") from exc

    def command(self, obj: dict[str, Any], timeout: float = 5.0) -> Event:
        """Send a control command with an id and wait for the board to apply it (its ack or reply)."""
        with self._cond:
            self._ids += 1
            cid = self._ids
        since = self.mark()
        self._send({**obj, "id": cid})
        kind = "state" if obj.get("cmd") == "state" else "ack"
        return self.wait_event(kind, timeout, since=since, id=cid)

    def press(self, key: str, wait: bool = True, timeout: float = 5.0) -> Event | None:
        """Hold a key down; with `wait`, return the board's echo (its `t` is when it was applied)."""
        return self._key(key, 1, wait, timeout)

    def release(self, key: str, wait: bool = True, timeout: float = 5.0) -> Event | None:
        return self._key(key, 0, wait, timeout)

    def release_and_press(self, key: str) -> None:
        """Release a held key and press it again in one write: what a loaded host may deliver in one
        pump. The board holds the press back until the firmware's scans saw the key up for longer than
        its debounce, so the second press still counts."""
        self._send({"cmd": "key", "key": key, "down": 0}, {"cmd": "key", "key": key, "down": 1})

    def _key(self, key: str, down: int, wait: bool, timeout: float) -> Event | None:
        keys = self.board.get("keypad", {}).get("keys", "")
        if keys and key not in keys:
            raise SimError(f"the keypad has no key {key!r} (keys: {keys})")
        since = self.mark()
        self._send({"cmd": "key", "key": key, "down": down})
        return self.wait_event("key", timeout, since=since, key=key, down=down) if wait else None

    def tap(self, key: str, hold_ms: int = 60, gap_ms: int = 60) -> Event:
        """Press, hold for hold_ms once the board has the key down, release, leave gap_ms. Returns the echo."""
        with self._cond:
            mark = len(self._events)
        down = self.press(key)
        assert down is not None
        time.sleep(hold_ms / 1000)  # a finger on the key: the duration is the point, not a wait
        # A person keeps the key down until the locker clicks. On a loaded host the firmware's scan
        # loop can be late by more than hold_ms; without this, the key would be lost to the host's
        # load, not to anything the firmware does. Bounded: a board that ignores keys (safe mode)
        # gets the plain hold.
        self.watch(lambda: self.click_after(mark, down), timeout=1.0)
        self.release(key)
        time.sleep(gap_ms / 1000)
        return down

    def type_code(self, digits: str, submit: bool = True, hold_ms: int = 60, gap_ms: int = 60) -> Event:
        """Tap each digit, then # when `submit`. Returns the last key-down echo (the # when submitted)."""
        last: Event | None = None
        for ch in digits + ("#" if submit else ""):
            last = self.tap(ch, hold_ms, gap_ms)
        if last is None:
            raise SimError("nothing to type")
        return last

    # Doors, parcels and jams are physical: they change with the board off too, and the next boot
    # starts from them.

    def _physical(self, obj: dict[str, Any]) -> None:
        if self.running:
            self.command(obj)

    def open_door(self, i: int) -> None:
        self.opened.add(i)
        self._physical({"cmd": "door", "door": i, "open": 1})

    def close_door(self, i: int) -> None:
        self.opened.discard(i)
        self._physical({"cmd": "door", "door": i, "open": 0})

    def set_parcel(self, i: int, present: bool) -> None:
        (self.parcels.add if present else self.parcels.discard)(i)
        self._physical({"cmd": "parcel", "door": i, "present": int(present)})

    def jam(self, i: int, on: bool = True) -> None:
        (self.jammed.add if on else self.jammed.discard)(i)
        self._physical({"cmd": "jam", "door": i, "on": int(on)})

    def cable(self, plugged: bool) -> None:
        """Plug the board's Ethernet cable in, or pull it (network.LAN's link; for this boot)."""
        self.command({"cmd": "cable", "on": int(plugged)})

    def dead_key(self, key: str, on: bool = True) -> None:
        """Make a keypad key dead (pressing it closes no contact), or alive again. For this boot."""
        self.command({"cmd": "dead_key", "key": key, "on": int(on)})

    def press_reset(self) -> None:
        """Press the board's reset (EN) button: a hard reset, the RTC keeps its time. Returns once
        the board reported the reset (with auto_reboot, the next boot follows)."""
        mark = self.mark()
        self._send({"cmd": "reset"})
        self.wait_event("reset", since=mark)

    def set_time(self, epoch: int) -> None:
        """Set the board's RTC (what a battery-backed clock or the host would give it)."""
        self.command({"cmd": "time", "epoch": int(epoch)})

    def fail_i2c(self, address: int, on: bool = True) -> None:
        """Make an I2C device stop answering (OSError ENODEV), or answer again."""
        self.command({"cmd": "i2c_fail", "address": address, "on": int(on)})

    def lockboard(
        self, address: int, *, silent: bool | None = None, corrupt: int | None = None, unlock_ms: int | None = None
    ) -> None:
        """Faults of an RS485 lock board (for this boot): `silent` (it neither answers nor acts, as
        unpowered or cut off), `corrupt` (its next N replies carry a flipped bit), `unlock_ms` (the
        pulse it gives a lock, as set on the board; 250 by default)."""
        cmd: dict[str, Any] = {"cmd": "lockboard", "address": address}
        if silent is not None:
            cmd["silent"] = int(silent)
        if corrupt is not None:
            cmd["corrupt"] = int(corrupt)
        if unlock_ms is not None:
            cmd["unlock_ms"] = int(unlock_ms)
        self.command(cmd)

    def state(self, timeout: float = 5.0) -> Event:
        """Everything the board knows now: doors, parcels, solenoids, display, led, buzzer, RTC."""
        return self.command({"cmd": "state"}, timeout)

    def display(self) -> list[str]:
        """The display's text right now (rows, as the resident reads them)."""
        lines: list[str] = self.state()["display"]
        return lines

    def last_display(self) -> list[str]:
        """The text of the latest display event (no round trip to the board)."""
        with self._cond:
            for e in reversed(self._events):
                if e.get("ev") == "display":
                    lines: list[str] = e["lines"]
                    return lines
        return []

    def wait_display(self, text: str, timeout: float = 10.0) -> list[str]:
        """Wait until the display shows `text` (a substring of its lines joined by newlines)."""

        def shown() -> list[str] | None:
            lines = self.last_display()
            return lines if text in "\n".join(lines) else None

        return self.wait_for(
            shown,
            timeout,
            f"display showing {text!r} (now {self.last_display()!r})",
        )

    def solenoid_on(self, i: int) -> bool:
        """Whether door i's solenoid is energized, from the events of the current boot."""
        with self._cond:
            for e in reversed(self._events):
                if e.get("boot") != self._boots:
                    break
                if e.get("ev") == "solenoid" and e.get("door") == i:
                    return bool(e.get("on"))
        return False

    def send_console(self, line: str) -> None:
        """Type a line on the firmware's console (its stdin)."""
        run = self._run
        if run is None or run.proc.stdin is None or run.proc.poll() is not None:
            raise SimError("the board is not running")
        run.proc.stdin.write(line.encode() + b"\n")
        run.proc.stdin.flush()


def _kill_if_alive(proc: subprocess.Popen[bytes]) -> None:
    # a board that reported a reset but is still running is hung: the chip would be resetting now
    if proc.poll() is None:
        proc.kill()


def board_latency_ms(first: Event, then: Event) -> float:
    """Milliseconds between two board events on the board's own clock (`t`, microseconds)."""
    return (int(then["t"]) - int(first["t"])) / 1000.0


def format_event(ev: Event, labels: Iterable[str] = ()) -> str:
    """One readable line for an event (used by the scenario trace and `lockerctl sim run`)."""
    names = list(labels)
    kind = ev.get("ev")

    def door() -> str:
        i = ev.get("door")
        return names[i] if isinstance(i, int) and i < len(names) else str(i)

    if kind == "solenoid":
        return f"solenoid door {door()} {'ON' if ev.get('on') else 'off'}"
    if kind == "door":
        return f"door {door()} {'opened' if ev.get('open') else 'closed'} (spring)"
    if kind == "display":
        return "display " + " | ".join(repr(ln) for ln in ev.get("lines", []))
    if kind == "key":
        return f"key {ev.get('key')} {'down' if ev.get('down') else 'up'}"
    if kind == "buzzer":
        return f"buzzer {ev.get('freq')} Hz duty {ev.get('duty')}" if ev.get("duty") else "buzzer off"
    if kind == "led":
        return f"led {'on' if ev.get('on') else 'off'}"
    if kind == "reset":
        return f"RESET ({ev.get('cause')})"
    if kind == "exit":
        return f"process exit {ev.get('code')}" + (f" ({ev['cause']})" if ev.get("cause") else "")
    if kind == "hello":
        return f"hello: board {ev.get('board')}, {ev.get('doors')} doors, reset cause {ev.get('cause')}"
    if kind == "boot":
        return f"boot ({ev.get('cause')})"
    if kind == "wdt":
        return f"watchdog armed, {ev.get('timeout')} ms"
    rest = {k: v for k, v in ev.items() if k not in ("ev", "t", "host", "boot")}
    return f"{kind} {json.dumps(rest, separators=(',', ':'))}" if rest else str(kind)
