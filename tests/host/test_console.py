"""The technician's console on the whole firmware: status, and signed code changes admitted once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockertools import BOARDS_DIR
from lockertools.commands import CommandSigner
from lockertools.flash import CodeSpec, code_rows, prepare
from lockertools.sim import CONSOLE_SYNC_HEAP, VirtualBoard

pytestmark = pytest.mark.scenario
BOARD = BOARDS_DIR / "esp32-4door.json"
NOW = 1_790_000_000


def _replies(board: VirtualBoard) -> list[dict[str, object]]:
    return [json.loads(line.split("re|", 1)[1]) for line in board.log_lines() if "re|" in line]


def _wait_reply(board: VirtualBoard, n: int) -> dict[str, object]:
    return board.wait_for(lambda: _replies(board)[n] if len(_replies(board)) > n else None, 10, f"reply #{n + 1}")


def _apply_row(key: bytes, code: str, door: str, code_id: int) -> list[object]:
    tag, _, kind, expiry, cid = code_rows(key, ["1", "2", "3", "4"], [CodeSpec(code, door, 0, 0, code_id)])[0]
    return [tag.hex(), door, kind, expiry, cid]


def test_status_never_shows_codes_or_key(tmp_path: Path) -> None:
    secrets = prepare(tmp_path, BOARD, [CodeSpec("48291357", "2", 0, 0, 7)], locker_id="L1")
    with VirtualBoard(tmp_path) as board:
        board.boot(keep_rtc=NOW)
        board.wait_log("ready normal")
        board.send_console("status")
        status = _wait_reply(board, 0)
        assert status["codes"] == 1 and status["locker_id"] == "L1"
        assert status["doors"] == ["locked"] * 4
        text = "\n".join(board.log_lines())
        assert "48291357" not in text and secrets.key.hex() not in text


def test_signed_code_change_is_applied_once_and_forgeries_are_refused(tmp_path: Path) -> None:
    secrets = prepare(tmp_path, BOARD, [CodeSpec("48291357", "2", 0, 0, 7)], locker_id="L1", revision=1)
    signer = CommandSigner("L1", secrets.key)
    add = signer.command("codes.apply", {"rev": 2, "base": 1, "add": [_apply_row(secrets.key, "55550000", "3", 8)]})
    forged = CommandSigner("L1", b"x" * 32).command("codes.apply", {"rev": 3, "base": 2, "add": [], "del": [7]})
    with VirtualBoard(tmp_path, heap=CONSOLE_SYNC_HEAP) as board:
        board.boot(keep_rtc=NOW)
        board.wait_log("ready normal")
        board.send_console(add.decode())
        assert _wait_reply(board, 0) == {
            "ok": True,
            "rev": 2,
            "count": 2,
            "tx": json.loads(add.split(b" ", 1)[1])["tx"],
        }
        board.send_console(add.decode())  # the same command again: a replay
        assert _wait_reply(board, 1)["error"] == "replay"
        board.send_console(forged.decode())
        assert _wait_reply(board, 2)["error"] == "bad_signature"
        board.wait_event("display", lines=["Typ uw code     ", "en druk op #    "])
        board.type_code("55550000")
        board.wait_for(lambda: board.solenoid_on(2) or None, 5, "door 3's solenoid")
        # the change survives a power cut
        board.power_cut()
        board.boot(keep_rtc=NOW)
        board.wait_log("ready normal")
        board.send_console("status")
        assert _wait_reply(board, 3)["rev"] == 2
