"""The wall clock and the command gate on the real firmware under MicroPython, on the simulated
board (whose RTC, as an ESP32's, keeps its time across a reset but not across a power cut):

- the host's time reaches the RTC, so a locker that is reset (not power-cut) still knows the time;
- a damaged cmdseq.bin with a lagging clock does not admit a door.open the host signed earlier.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from lockertools.commands import CommandSigner
from lockertools.flash import LockerSecrets, prepare
from lockertools.sim import CONSOLE_SYNC_HEAP, VirtualBoard, default_micropython
from tests.support import REPO_ROOT

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]

BOARD = REPO_ROOT / "boards" / "esp32-4door.json"
# Signed commands come on the console here (over the network on a real locker): the console's heap.
DAY = 86400


def console(b: VirtualBoard, line: str | bytes) -> dict[str, Any]:
    """A console line and the firmware's answer to it."""
    done = sum("re|" in ln for ln in b.log_lines())
    b.send_console(line.decode() if isinstance(line, bytes) else line)

    def answer() -> str | None:
        lines = [ln for ln in b.log_lines() if "re|" in ln]
        return lines[done] if len(lines) > done else None

    reply: dict[str, Any] = json.loads(b.wait_for(answer, 15, "the console's answer").split("re|", 1)[1])
    return reply


def booted(b: VirtualBoard, boots: int) -> None:
    """Wait until the firmware has been ready (normal mode) `boots` times."""
    b.wait_for(lambda: sum("ready normal" in ln for ln in b.log_lines()) >= boots, 30, f"ready, boot {boots}")


def provisioned(tmp: Path) -> tuple[Path, LockerSecrets]:
    flash = tmp / "flash"
    return flash, prepare(flash, BOARD)


def test_the_hosts_time_reaches_the_rtc_and_outlives_a_reset_but_not_a_power_cut(tmp_path: Path) -> None:
    flash, sec = provisioned(tmp_path)
    signer = CommandSigner(sec.locker_id, sec.key)
    with VirtualBoard(flash, heap=CONSOLE_SYNC_HEAP, auto_reboot=True) as b:
        b.boot()  # the RTC unset (2000-01-01), the locker has never known the time
        booted(b, 1)
        assert console(b, "status")["time_known"] is False
        now = int(time.time())
        assert console(b, signer.command("time", now=now))["ok"]
        assert abs(b.state()["rtc"] - now) < 30  # on the chip's RTC, not only in the firmware's memory
        b.press_reset()
        booted(b, 2)
        assert b.events("boot")[-1]["cause"] == "hard"
        st = console(b, "status")
        assert st["time_known"] is True  # read back from the RTC at boot
        b.power_cut()
        b.boot()  # a power cut: the RTC is lost, the time is an estimate from flash
        booted(b, 3)
        assert console(b, "status")["time_known"] is False


def test_a_damaged_sequence_file_and_a_lagging_clock_do_not_admit_an_old_door_open(tmp_path: Path) -> None:
    flash, sec = provisioned(tmp_path)
    signer = CommandSigner(sec.locker_id, sec.key)
    t = int(time.time())
    with VirtualBoard(flash, heap=CONSOLE_SYNC_HEAP, auto_reboot=True) as b:
        b.boot(keep_rtc=t)
        booted(b, 1)
        assert console(b, signer.command("status", now=t))["ok"]  # the host's last word: t
        b.power_cut()
        for name in ("cmdseq.bin", "clock.bin"):  # flash damage: both unreadable
            (flash / name).write_bytes(b"LK\x01junk")
        b.boot(keep_rtc=t - 3 * DAY)  # and an RTC three days behind
        booted(b, 2)
        mark = b.mark()
        opened = {"door": "1", "by": "desk-ann", "r": "resident on the phone"}
        old = console(b, signer.command("door.open", opened, now=t - 2 * DAY))  # signed two days before
        assert not old["ok"] and old["error"] == "replay", old
        late = console(b, signer.command("door.open", opened, now=t - 60))  # a minute before the last word
        assert not late["ok"] and late["error"] == "replay", late
        assert not b.events("solenoid", since=mark), b.explain()
        fresh = console(b, signer.command("door.open", opened, now=int(time.time())))
        assert fresh["ok"], fresh.get("detail")
        b.wait_event("solenoid", since=mark, door=0, on=1)
