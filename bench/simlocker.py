"""A locker for the benchmarks: a flash folder with N codes, the firmware booted on the simulated board,
and a resident who picks parcels up (bench/run.py).

Everything here drives the real firmware through lockertools.sim.VirtualBoard. On the host, firmware
modules are used only the way provisioning uses them (lockertools.flash, locker.codes.CodeStore), to
write the flash folder before a boot.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host_tools"))

from lockertools import BOARDS_DIR, FIRMWARE_DIR, SIM_BOARD_DIR  # noqa: E402
from lockertools.flash import CodeSpec, board_labels, prepare  # noqa: E402
from lockertools.sim import (  # noqa: E402
    SIM_SHIM_HEAP,
    SimError,
    SimTimeout,
    VirtualBoard,
    compiled_firmware,
    compiled_sim_board,
    default_micropython,
    heap_bytes,
)

T = TypeVar("T")

BOARDS = {
    "16-door": BOARDS_DIR / "esp32-16door-mcp.json",
    "4-door": BOARDS_DIR / "esp32-4door.json",
    "32-door-rs485": BOARDS_DIR / "esp32-32door-rs485.json",
}
KEY = bytes(range(32))
IDLE_TEXT = "Type your code"  # messages.py, language en
HOLD_MS = 45  # a brisk finger: comfortably above key_debounce_ms (20) + scan_ms (5)
GAP_MS = 35

__all__ = ["SIM_SHIM_HEAP", "SimError", "heap_bytes", "Crashed", "Locker", "make_flash", "shim_cost"]


class Crashed(SimError):
    """The firmware died (exception, MemoryError, reset) during a bench run."""


def make_flash(
    tmp: Path,
    board: str,
    ncodes: int,
    used: int = 0,
    seed: int = 1,
    extra: Sequence[CodeSpec] = (),
    net: Mapping[str, Any] | None = None,
) -> tuple[Path, list[tuple[str, int]]]:
    """A flash folder with `ncodes` distinct random 8-digit codes spread over the doors, the first
    `used` of them already picked up (journal entries in state "completed", as after `used` pickups
    the host has not yet cleaned up); `extra` codes after them (a staff PIN), and net.json if `net`.

    Returns the folder and the codes not yet used as (digits, door index), round-robin over the
    doors so consecutive pickups are on different doors."""
    rng = random.Random(seed)
    flash = tmp / f"flash-{board}-{ncodes}-{used}-{seed}"
    labels = board_labels(json.loads(BOARDS[board].read_text()))
    digits: set[str] = set()
    while len(digits) < ncodes:
        digits.add(f"{rng.randrange(10**8):08d}")
    order = sorted(digits)
    rng.shuffle(order)
    codes = [(d, i % len(labels)) for i, d in enumerate(order)]
    specs = [CodeSpec(d, labels[door], 0, 0, n + 1) for n, (d, door) in enumerate(codes)]
    prepare(flash, BOARDS[board], [*specs, *extra], config_overrides={"language": "en"}, key=KEY, net=net)
    if used:
        # The firmware's own code store marks them, exactly as the board does at each pickup.
        from locker.codes import CodeStore  # type: ignore[import-not-found]

        store = CodeStore(KEY, labels, path=str(flash / "codes.bin"), used_path=str(flash / "used.bin"))
        store.load()
        for n in range(used):
            store.consume(n + 1, codes[n][1])
            store.complete(n + 1)
    return flash, codes[used:]


def build() -> None:
    """Compile firmware and sim_board to .mpy once, before anything is timed."""
    mp = default_micropython()
    compiled_sim_board(SIM_BOARD_DIR, mp)
    compiled_firmware(FIRMWARE_DIR, mp)


def events_in(lines: list[str]) -> list[dict[str, Any]]:
    """The firmware's `event {json}` log lines (app.Locker.record), parsed."""
    out = []
    for line in lines:
        if line.startswith("event "):
            try:
                out.append(json.loads(line[6:]))
            except ValueError:
                pass
    return out


class Locker:
    """One flash folder on the simulated board, booted as many times as asked. Doors are board indices.
    Every wait gives up at once (Crashed) when the firmware dies."""

    def __init__(self, flash: Path, heap: str) -> None:
        self.board = VirtualBoard(flash, heap=heap, auto_reboot=False)
        self.flash = flash
        self.heap = heap
        self._boot_mark = 0
        self._log_mark = 0

    def __enter__(self) -> Locker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.board.close()

    def _wait(self, pred: Callable[[], T | None], timeout: float, what: str) -> T:
        b = self.board

        def check() -> tuple[bool, Any] | None:
            value = pred()
            if value:
                return (True, value)
            for e in b.events(None, self._boot_mark):
                if e.get("ev") in ("exit", "reset"):
                    return (False, e)
            return None

        got = b.watch(check, timeout)
        if got is None:
            raise SimTimeout(f"timed out after {timeout:g}s waiting for {what}\n{b.explain()}")
        ok, value = got
        if not ok:
            raise Crashed(f"the firmware died waiting for {what}: {self.why()}")
        result: T = value
        return result

    def why(self) -> str:
        """The firmware's last error line (MemoryError: ...), or its exit."""
        lines = self.board.log_lines()
        for line in reversed(lines):
            if "Error" in line or "crashed" in line:
                return line.strip()
        return f"exit status {self.board.exit_code}"

    def _lines(self) -> list[str]:
        return self.board.log_lines()[self._log_mark :]

    # --- booting ----------------------------------------------------------------------------------

    def boot(self, timeout: float = 30.0) -> dict[str, Any]:
        """Power on; returns times from the process start (host clock, ms) to the `ready` log line
        and to the idle text on the display, and the ready line's own figures."""
        b = self.board
        self._log_mark = len(b.log_lines())
        self._boot_mark = b.mark()
        try:
            b.boot(keep_rtc=int(time.time()))
        except SimError as exc:
            raise Crashed(f"no boot: {self.why()}") from exc
        start = b.events("boot", self._boot_mark)[-1]["host"]  # recorded right after Popen

        def ready() -> str | None:
            return next((ln for ln in self._lines() if ln.startswith("log| ready")), None)

        line = self._wait(ready, timeout, "the ready log line")
        ready_host = time.monotonic()

        def idle() -> dict[str, Any] | None:
            for e in b.events("display", self._boot_mark):
                if IDLE_TEXT in "\n".join(e.get("lines", [])):
                    return e
            return None

        disp = self._wait(idle, timeout, f"display {IDLE_TEXT!r}")
        # board time t is the host's real-time clock in us: place it on the monotonic clock
        offset = time.time() - time.monotonic()
        parts = line.split()  # log| ready normal <ms> ms heap <bytes>
        if parts[2] != "normal":
            raise Crashed(f"booted in {parts[2]} mode: {self.why()}")
        return {
            "ready_ms": (ready_host - start) * 1000,
            "display_ms": (disp["t"] / 1e6 - offset - start) * 1000,
            "fw_ready_ms": int(parts[3]),
            "heap_after_boot": int(parts[6]),
        }

    def power_cut(self) -> None:
        self.board.power_cut()

    # --- a resident -------------------------------------------------------------------------------

    def pickup(self, digits: str, door: int, timeout: float = 10.0) -> float:
        """A courier puts a parcel in `door`; a resident types the code, takes the parcel, closes the
        door. Returns the ms from the board's echo of the `#` key going down to the solenoid turning
        on, both on the board's clock, once the firmware has recorded the pickup."""
        b = self.board
        try:
            b.set_parcel(door, True)
            since = b.mark()
            log_mark = len(b.log_lines())
            down = b.type_code(digits, hold_ms=HOLD_MS, gap_ms=GAP_MS)
        except SimError as exc:
            if b.running:
                raise
            raise Crashed(f"the firmware died while a code was typed: {self.why()}") from exc
        sol = self._wait(lambda: b.events_find("solenoid", since, door=door, on=1), timeout, "the solenoid")
        self._wait(lambda: b.events_find("door", since, door=door, open=1), timeout, "the door to pop open")
        b.set_parcel(door, False)
        self._wait(lambda: b.events_find("solenoid", since, door=door, on=0), timeout, "the end of the pulse")
        b.close_door(door)
        label = b.labels[door]
        self._wait(
            lambda: any(e.get("k") == "pickup" and e.get("d") == label for e in events_in(b.log_lines()[log_mark:])),
            timeout,
            f"the pickup event for door {label}",
        )
        return (int(sol["t"]) - int(down["t"])) / 1000.0

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """`status` on the console: the firmware's re|{json} reply."""
        b = self.board
        log_mark = len(b.log_lines())
        b.send_console("status")

        def reply() -> dict[str, Any] | None:
            for line in b.log_lines()[log_mark:]:
                if line.startswith("re|"):
                    data: dict[str, Any] = json.loads(line[3:])
                    return data
            return None

        return self._wait(reply, timeout, "the console's status reply")

    def clean(self) -> bool:
        """No traceback, MemoryError or reset in this locker's whole life."""
        bad = ("MemoryError", "Traceback", "task crashed", "SAFE MODE")
        return not any(any(w in ln for w in bad) for ln in self.board.log_lines()) and not self.board.events("reset")


# --- what the simulated hardware costs the heap ----------------------------------------------------

_SHIM_PROG = """
import gc
gc.collect(); a0 = gc.mem_alloc()
import machine
gc.collect(); a1 = gc.mem_alloc()
machine.Pin(13, machine.Pin.OUT, value=1)
gc.collect(); a2 = gc.mem_alloc()
print("cost", a1 - a0, a2 - a0)
"""


def run_standalone(board: str, program: str, heap: str = "128K", with_firmware: bool = False) -> str:
    """Run a MicroPython program on the simulated board with no controller (the board runs alone),
    cwd = a flash folder holding the board's board.json. Returns its stdout."""
    mp = default_micropython()
    path = [str(compiled_sim_board(SIM_BOARD_DIR, mp))]
    if with_firmware:
        path.append(str(compiled_firmware(FIRMWARE_DIR, mp)))
    with tempfile.TemporaryDirectory(prefix="locker-bench-") as tmp:
        flash = Path(tmp)
        prepare(flash, BOARDS[board], [], config_overrides={"language": "en"}, key=KEY)
        script = flash / "prog.py"
        script.write_text(textwrap.dedent(program))
        env = dict(os.environ, MICROPYPATH=":".join([*path, ".frozen"]))
        env.pop("LOCKER_SIM_PORT", None)
        proc = subprocess.run(
            [str(mp), "-X", f"heapsize={heap}", str(script)],
            cwd=flash,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    if proc.returncode != 0:
        raise SimError(f"standalone program failed ({proc.returncode}): {proc.stdout[-500:]}{proc.stderr[-500:]}")
    return proc.stdout


def shim_cost(board: str) -> tuple[int, int]:
    """Heap the simulated `machine` takes (after import, after the board is wired), measured as
    tests/host/test_sim.py::test_shim_heap_cost does: standalone, no controller, 128K heap."""
    out = run_standalone(board, _SHIM_PROG)
    _, imported, wired = out.split()
    return int(imported), int(wired)
