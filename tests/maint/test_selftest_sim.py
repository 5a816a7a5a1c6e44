"""The self-test against a VirtualBoard, the test playing the technician: doors pulsed one at a time
(door.open by "selftest"), closed by hand, the keypad walked through; a jammed door and a dead key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lockertools import BOARDS_DIR
from lockertools.flash import prepare
from lockertools.maint.client import Maint
from lockertools.maint.links import Console, SimConsole, parse_key
from lockertools.maint.selftest import selftest
from lockertools.sim import CONSOLE_SYNC_HEAP, VirtualBoard
from tests.support.settings import FAST_TIMINGS

pytestmark = pytest.mark.scenario
BOARD = BOARDS_DIR / "esp32-4door.json"
NOW = 1_790_000_000


class Tech:
    """Closes each door it is asked to, presses every key it is asked to (dead ones do nothing)."""

    def __init__(self, board: VirtualBoard, console: Console) -> None:
        self.board, self.console = board, console
        self.said: list[str] = []

    def say(self, text: str) -> None:
        self.said.append(text)

    def close_door(self, label: str) -> None:
        i = self.board.door_index(label)
        # a person pushes the door shut once the latch has let go of it (the pulse is over)
        self.board.wait_for(lambda: not self.board.solenoid_on(i), 5.0, f"door {label}'s solenoid off")
        self.board.close_door(i)

    def press_keys(self, keys: str) -> None:
        for k in keys:
            mark = self.console.mark()
            self.board.press(k)
            # a finger stays on the key until the locker has seen it (or, a dead key, for a moment)
            self.console.wait(lambda ln, k=k: parse_key(ln) == k, mark, 1.0)
            self.board.release(k)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[VirtualBoard, SimConsole, Maint]]:
    secrets = prepare(tmp_path, BOARD, locker_id="S1", config_overrides=FAST_TIMINGS)
    board = VirtualBoard(tmp_path, heap=CONSOLE_SYNC_HEAP)
    console = SimConsole(board)
    try:
        board.boot(keep_rtc=NOW)
        board.wait_log("ready normal", 20)
        board.set_parcel(2, True)
        yield board, console, Maint(console, "S1", secrets.key)
    finally:
        console.close()
        board.close()


def test_selftest_passes_on_a_good_board(rig: tuple[VirtualBoard, SimConsole, Maint]) -> None:
    board, console, m = rig
    res = selftest(m, console, Tech(board, console), close_timeout=30, key_timeout=30)
    assert [(d.door, d.opened, d.closed, d.parcel) for d in res.doors] == [
        ("1", "ok", "ok", "empty"),
        ("2", "ok", "ok", "empty"),
        ("3", "ok", "ok", "full"),
        ("4", "ok", "ok", "empty"),
    ]
    keys = board.board["keypad"]["keys"]
    assert res.keys_seen == keys and res.keys_missing == "" and res.passed
    # one door at a time, each opened by "selftest" and seen by the sensor; the keys coded nothing
    log = [ln for ln in board.log_lines() if ln.startswith("event ")]
    opened = [ln for ln in log if '"opened"' in ln or '"remote_open"' in ln]
    assert len(opened) == 8 and all('"by": "selftest"' in ln for ln in opened if "remote_open" in ln)
    assert not any('"denied"' in ln for ln in log)


def test_selftest_reports_a_jammed_door_and_a_dead_key(rig: tuple[VirtualBoard, SimConsole, Maint]) -> None:
    board, console, m = rig
    board.jam(1)
    board.dead_key("5")
    tech = Tech(board, console)
    res = selftest(m, console, tech, close_timeout=30, key_timeout=30, key_idle=3)
    rows = {d.door: (d.opened, d.closed) for d in res.doors}
    assert rows == {"1": ("ok", "ok"), "2": ("JAMMED", "-"), "3": ("ok", "ok"), "4": ("ok", "ok")}
    assert res.keys_missing == "5" and "5" not in res.keys_seen and not res.passed
    assert any("door 2 did not open (jammed)" in s for s in tech.said)


def test_diag_answers_in_safe_mode_and_the_selftest_refuses(tmp_path: Path) -> None:
    import struct

    from lockertools.maint import MaintError

    secrets = prepare(tmp_path, BOARD, locker_id="S2", config_overrides={**FAST_TIMINGS, "safe_mode_boots": 2})
    from locker import store  # type: ignore[import-not-found]

    store.save(str(tmp_path / "boots.bin"), struct.pack("<H", 2))  # two failed boots already
    board = VirtualBoard(tmp_path, heap=CONSOLE_SYNC_HEAP)
    console = SimConsole(board)
    try:
        board.boot(keep_rtc=NOW, reset_cause="watchdog")
        board.wait_log("ready safe", 20)
        m = Maint(console, "S2", secrets.key)
        d = m.diag()
        assert d["safe"] == "2 failed boots in a row" and d["reset"] == "watchdog"
        assert d["doors"] == [] and d["codes"] == 0 and d["heap_free"] > 0 and d["fw"]
        with pytest.raises(MaintError, match="safe mode"):
            selftest(m, console, Tech(board, console))
        assert m.call("selftest.keys", {"on": True})["error"] == "safe_mode"
    finally:
        console.close()
        board.close()


class PtyBridge:
    """A pty whose other end is a VirtualBoard's console, as a USB serial port is a board's: what is
    written to the port goes to the firmware's stdin; what the firmware prints comes out of it."""

    def __init__(self, board: VirtualBoard) -> None:
        import os
        import pty
        import threading
        import tty

        self.board = board
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        self.stop = False
        self.follow = SimConsole(board)
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._to_board, self._from_board)]
        for t in self.threads:
            t.start()

    def _to_board(self) -> None:
        import os
        import select

        buf = b""
        while not self.stop:
            if not select.select([self.master], [], [], 0.2)[0]:
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.board.send_console(line.decode().rstrip("\r"))

    def _from_board(self) -> None:
        import os

        pos = 0
        while not self.stop:
            self.follow.wait(lambda _ln: False, pos, 0.2)
            lines = self.follow.lines(pos)
            pos += len(lines)
            for ln in lines:
                os.write(self.master, ln.encode() + b"\r\n")

    def close(self) -> None:
        import os

        self.stop = True
        self.follow.close()
        for t in self.threads:
            t.join(2)
        os.close(self.master)
        os.close(self.slave)


def test_selftest_through_a_serial_port(rig: tuple[VirtualBoard, SimConsole, Maint]) -> None:
    from lockertools.maint.links import SerialConsole

    board, _, m = rig
    bridge = PtyBridge(board)
    port = SerialConsole(bridge.path)
    try:
        sm = Maint(port, "S1", m.key)
        res = selftest(sm, port, Tech(board, port), doors=["1", "3"], close_timeout=30, key_timeout=30)
        assert [(d.door, d.opened, d.closed, d.parcel) for d in res.doors] == [
            ("1", "ok", "ok", "empty"),
            ("3", "ok", "ok", "full"),
        ]
        assert res.passed and res.keys_seen == board.board["keypad"]["keys"]
    finally:
        port.close()
        bridge.close()
