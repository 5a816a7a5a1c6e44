"""A locker for the benchmarks: a flash folder with N codes, the firmware booted on the simulated board,
and a resident who picks parcels up (bench/run.py).

Everything here drives the real firmware through lockertools.sim.VirtualBoard; no firmware module is
imported on the host except through lockertools.flash (the firmware's own code store writes codes.bin).
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host_tools"))

from lockertools import BOARDS_DIR, SIM_BOARD_DIR  # noqa: E402
from lockertools.flash import CodeSpec, board_labels, prepare  # noqa: E402
from lockertools.sim import (  # noqa: E402
    SIM_SHIM_HEAP,
    Event,
    SimError,
    VirtualBoard,
    compiled_firmware,
    compiled_sim_board,
    default_micropython,
    heap_bytes,
)

BOARDS = {"16-door": BOARDS_DIR / "esp32-16door-mcp.json", "4-door": BOARDS_DIR / "esp32-4door.json"}
IDLE_TEXT = "Type your code"  # messages.py, language en
HOLD_MS = 45  # a brisk finger: comfortably above key_debounce_ms (20) + scan_ms (5)
GAP_MS = 35

__all__ = ["SIM_SHIM_HEAP", "heap_bytes", "SimError"]


def make_flash(tmp: Path, board: str, ncodes: int, seed: int = 1) -> tuple[Path, list[tuple[str, int]]]:
    """A flash folder with `ncodes` distinct random 8-digit codes spread over the doors.

    Returns the folder and the codes as (digits, door index), in the order a bench uses them:
    round-robin over the doors, so consecutive pickups are on different doors."""
    rng = random.Random(seed)
    flash = tmp / f"flash-{board}-{ncodes}-{seed}"
    labels = board_labels(json.loads(BOARDS[board].read_text()))
    digits: set[str] = set()
    while len(digits) < ncodes:
        digits.add(f"{rng.randrange(10**8):08d}")
    codes = [(d, i % len(labels)) for i, d in enumerate(sorted(digits, key=lambda _: rng.random()))]
    specs = [CodeSpec(d, labels[door], 0, 0, n + 1) for n, (d, door) in enumerate(codes)]
    prepare(flash, BOARDS[board], specs, config_overrides={"language": "en"}, key=bytes(range(32)))
    return flash, codes


def build() -> None:
    """Compile firmware and sim_board to .mpy once, before anything is timed."""
    mp = default_micropython()
    compiled_sim_board(SIM_BOARD_DIR, mp)
    compiled_firmware(micropython=mp)


class Locker:
    """One flash folder, booted as many times as asked. Doors are board indices."""

    def __init__(self, flash: Path, heap: str = "128K") -> None:
        self.board = VirtualBoard(flash, heap=heap, auto_reboot=False)
        self.flash = flash
        self._log_base = 0

    def __enter__(self) -> Locker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.board.close()

    # --- booting ----------------------------------------------------------------------------------

    def boot(self, timeout: float = 30.0) -> dict[str, Any]:
        """Power on; returns times from the process start (host clock, ms) to the `ready` log line
        and to the idle text on the display, and the ready line's own figures."""
        b = self.board
        log_mark = len(b.log_lines())
        since = b.mark()
        b.boot(keep_rtc=int(time.time()))
        start = b.events("boot", since)[-1]["host"]  # recorded right after Popen

        def ready() -> str | None:
            for line in b.log_lines()[log_mark:]:
                if line.startswith("log| ready"):
                    return line
            return None

        line = b.wait_for(ready, timeout, "the ready log line")
        ready_host = time.monotonic()
        disp = b.wait_for(lambda: self._idle_event(since), timeout, f"display {IDLE_TEXT!r}")
        # board time t is the host's real-time clock in us: place it on the monotonic clock
        offset = time.time() - time.monotonic()
        disp_host = disp["t"] / 1e6 - offset
        parts = line.split()  # log| ready normal <ms> ms heap <bytes>
        return {
            "mode": parts[2],
            "ready_ms": (ready_host - start) * 1000,
            "display_ms": (disp_host - start) * 1000,
            "fw_ready_ms": int(parts[3]),
            "heap_after_boot": int(parts[6]),
        }

    def _idle_event(self, since: int) -> Event | None:
        for e in self.board.events("display", since):
            if IDLE_TEXT in "\n".join(e.get("lines", [])):
                return e
        return None

    def power_cut(self) -> None:
        self.board.power_cut()

    # --- a resident -------------------------------------------------------------------------------

    def pickup(self, digits: str, door: int, timeout: float = 10.0) -> float:
        """Put a parcel in `door` (a courier), type the code, take the parcel, close the door.

        Returns the latency in ms from the board's echo of the `#` key going down to the solenoid
        turning on, both on the board's clock. Returns once the firmware logged the pickup event."""
        b = self.board
        b.set_parcel(door, True)
        since = b.mark()
        log_mark = len(b.log_lines())
        down = b.type_code(digits, hold_ms=HOLD_MS, gap_ms=GAP_MS)
        sol = b.wait_event("solenoid", timeout, since=since, door=door, on=1)
        b.wait_event("door", timeout, since=since, door=door, open=1)  # the spring pops it
        b.set_parcel(door, False)
        b.wait_event("solenoid", timeout, since=since, door=door, on=0)  # pulse over: safe to close
        b.close_door(door)
        label = b.labels[door]
        b.wait_for(
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

        return b.wait_for(reply, timeout, "the console's status reply")

    def troubles(self) -> list[str]:
        """Log lines that mean the run is not a clean one (crash, memory, reset)."""
        bad = ("MemoryError", "Traceback", "task crashed", "SAFE MODE")
        lines = [ln for ln in self.board.log_lines() if any(w in ln for w in bad)]
        lines += [json.dumps(e) for e in self.board.events("reset")]
        return lines


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


def shim_cost(board: str) -> tuple[int, int]:
    """Heap the simulated `machine` takes (after import, after the board is wired), measured as
    tests/host/test_sim.py::test_shim_heap_cost does: standalone, no controller, 128K heap."""
    mp = default_micropython()
    with tempfile.TemporaryDirectory(prefix="locker-bench-shim-") as tmp:
        flash = Path(tmp)
        (flash / "board.json").write_text(BOARDS[board].read_text())
        script = flash / "prog.py"
        script.write_text(textwrap.dedent(_SHIM_PROG))
        env = dict(os.environ, MICROPYPATH=f"{compiled_sim_board(SIM_BOARD_DIR, mp)}:.frozen")
        env.pop("LOCKER_SIM_PORT", None)
        proc = subprocess.run(
            [str(mp), "-X", "heapsize=128K", str(script)], cwd=flash, env=env, capture_output=True, text=True, timeout=60
        )
    if proc.returncode != 0:
        raise SimError(f"shim cost probe failed: {proc.stdout}{proc.stderr}")
    _, imported, wired = proc.stdout.split()
    return int(imported), int(wired)
