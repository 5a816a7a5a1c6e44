"""A fault during the boot, on the real firmware under MicroPython on the simulated board, which
models an ESP32 here: a program that raises stays at the REPL (alive, latches as they were) until
its watchdog resets it. The firmware must never leave it there: latches off, the error logged, a
reset; the boot counter then brings a board that fails at every boot to safe mode.

The fault is injected as a monkeypatched module: a copy of the firmware whose `locker.app` (the
locker built in normal mode only; safe mode never imports it) energizes a latch and then raises
MemoryError, or hangs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lockertools import FIRMWARE_DIR
from lockertools.flash import prepare
from lockertools.sim import VirtualBoard, default_micropython
from tests.support import REPO_ROOT

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]

BOARD = REPO_ROOT / "boards" / "esp32-4door.json"

CRASHING_APP = """
class Locker:
    def __init__(self, board, *args):
        board.solenoids[0].value(1)  # a latch energized when the fault strikes
        raise MemoryError("injected: no heap for the locker")
"""

HANGING_APP = """
class Locker:
    def __init__(self, board, *args):
        board.solenoids[0].value(1)
        while True:
            pass
"""


def firmware_with_app(tmp: Path, source: str) -> Path:
    fw = tmp / "firmware"
    shutil.copytree(FIRMWARE_DIR, fw, ignore=shutil.ignore_patterns("__pycache__"))
    (fw / "locker" / "app.py").write_text(source)
    return fw


def test_an_exception_in_boot_turns_the_latch_off_logs_resets_and_ends_in_safe_mode(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    prepare(flash, BOARD, config_overrides={"safe_mode_boots": 2})
    fw = firmware_with_app(tmp_path, CRASHING_APP)
    with VirtualBoard(flash, firmware_dir=fw, auto_reboot=True) as b:
        b.boot()
        for n in (1, 2):  # two failed boots, each ended by a reset
            on = b.wait_event("solenoid", boot=n, door=0, on=1)
            reset = b.wait_event("reset", timeout=30, boot=n)
            assert reset["cause"] == "hard"
            off = b.events_find("solenoid", boot=n, door=0, on=0)
            assert off is not None and b.events().index(off) < b.events().index(reset), b.explain()
            assert b.events().index(on) < b.events().index(off)
            assert not b.events("repl"), b.explain()
        b.wait_log("crashed: MemoryError(")
        assert any("injected: no heap for the locker" in line for line in b.log_lines())
        b.wait_event("boot", timeout=30, cause="hard", boot=3)
        b.wait_log("SAFE MODE: 2 failed boots in a row", timeout=30)
        b.wait_log("ready safe", timeout=30)
        assert b.running and not b.solenoid_on(0)
        assert not b.events("repl"), b.explain()


def test_a_boot_that_hangs_is_reset_by_the_watchdog(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    prepare(flash, BOARD)
    fw = firmware_with_app(tmp_path, HANGING_APP)
    with VirtualBoard(flash, firmware_dir=fw, auto_reboot=True) as b:
        b.boot()
        b.wait_event("wdt", boot=1)
        b.wait_event("solenoid", boot=1, door=0, on=1)
        reset = b.wait_event("reset", timeout=90, boot=1)
        assert reset["cause"] == "watchdog"
        b.wait_event("boot", timeout=30, cause="watchdog", boot=2)
