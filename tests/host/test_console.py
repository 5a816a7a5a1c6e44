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
    tag, _, kind, expiry, cid, _ = code_rows(key, ["1", "2", "3", "4"], [CodeSpec(code, door, 0, 0, code_id)])[0]
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
        sent = json.loads(add.split(b" ", 1)[1])
        assert _wait_reply(board, 0) == {
            "v": 1,
            "lid": "L1",
            "ok": True,
            "rev": 2,
            "count": 2,
            "tx": sent["tx"],
            "cseq": sent["seq"],
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


def _snapshot_parts(key: bytes, specs: list[CodeSpec], size: int, rev: int) -> list[dict[str, object]]:
    recs = sorted(code_rows(key, ["1", "2", "3", "4"], specs))
    rows = [[r[0].hex(), ["1", "2", "3", "4"][r[1]], r[2], r[3], r[4]] for r in recs]
    n = -(-len(rows) // size)
    return [
        {"rev": rev, "part": k + 1, "parts": n, "total": len(rows), "codes": rows[k * size : (k + 1) * size]}
        for k in range(n)
    ]


def test_a_staged_snapshot_switches_at_its_last_part_and_a_cut_keeps_the_old_store(tmp_path: Path) -> None:
    secrets = prepare(tmp_path, BOARD, [CodeSpec("48291357", "2", 0, 0, 7)], locker_id="L1", revision=1)
    signer = CommandSigner("L1", secrets.key)
    specs = [CodeSpec("%08d" % (31415926 + 7 * i), str(1 + i % 4), 0, 0, 100 + i) for i in range(10)]
    parts = _snapshot_parts(secrets.key, specs, 4, 5)
    with VirtualBoard(tmp_path, heap=CONSOLE_SYNC_HEAP) as board:  # the console parses whole parts
        board.boot(keep_rtc=NOW)
        board.wait_log("ready normal")
        # two parts of three, then a power cut: the old store stays, the staged file goes
        for k in range(2):
            board.send_console(signer.command("codes.snapshot", parts[k]).decode())
            assert _wait_reply(board, k)["part"] == k + 1
        assert (tmp_path / "codes.bin.tmp").exists()
        board.power_cut()
        board.boot(keep_rtc=NOW)
        board.wait_log("ready normal")
        board.send_console(signer.command("status").decode())
        st = _wait_reply(board, 2)["status"]
        assert not any(tmp_path.rglob("codes.bin.tmp"))  # removed at boot
        assert (st["rev"], st["codes"], st["snap"]) == (1, 1, False)
        # the whole snapshot: the store switches at the last part
        for k in range(3):
            board.send_console(signer.command("codes.snapshot", parts[k]).decode())
        last = _wait_reply(board, 5)
        assert (last["ok"], last["rev"], last["count"]) == (True, 5, 10), last
        board.wait_event("display", lines=["Typ uw code     ", "en druk op #    "])
        board.type_code(specs[2].code)
        board.wait_for(lambda: board.solenoid_on(2) or None, 5, "door 3's solenoid")
