"""lockerctl delivery / returns / staff / door, and the staff and take-back views (CliRunner)."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lockertools import BOARDS_DIR
from lockertools.cli import main
from lockertools.service import db, fleet_db, ingest

BOARD = BOARDS_DIR / "esp32-4door.json"


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "fleet.db"
    monkeypatch.setenv("LOCKER_DB", str(path))
    monkeypatch.delenv("LOCKER_NOTIFY_COMMAND", raising=False)
    monkeypatch.delenv("LOCKER_NOTIFY_URL", raising=False)
    key = tmp_path / "locker.key"
    key.write_text(bytes(range(32)).hex())
    result = CliRunner().invoke(main, ["locker", "add", "hall-1", "--board", str(BOARD), "--key-file", str(key)])
    assert result.exit_code == 0, result.output
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_delivery_prepare_list_cancel(fleet: Path) -> None:
    code, output = _run("delivery", "prepare", "hall-1", "--size", "L", "--low", "--item", "waste bags",
                        "--contact", "ann@example.org", "--case", "EL-2026-9", "--language", "fr")  # fmt: skip
    assert code == 0, output
    found = re.search(
        r"delivery (\d{6}) for hall-1: waste bags, size L, low door; load it by .*, then the resident has 5 days",
        output,
    )
    assert found is not None, output
    number = found.group(1)
    assert "warning: no notification hook" in output
    conn = db.connect(fleet)
    held = conn.execute("SELECT code FROM held_codes").fetchone()[0]
    assert held not in output  # the resident's code waits for the notification after `loaded`
    assert fleet_db.delivery_resident(conn, int(number)) == fleet_db.Resident(language="fr", case_ref="EL-2026-9")
    code, output = _run("delivery", "prepare", "hall-1", "--show-code")
    shown = re.search(r"resident's code (\d{8})", output)
    assert code == 0 and shown is not None
    code, listing = _run("delivery", "list")
    row = rf"{number}\s+hall-1\s+EL-2026-9\s+waste bags\s+delivery L low\s+to load"
    assert code == 0 and re.search(row, listing), listing
    assert held not in listing and shown.group(1) not in listing
    code, output = _run("delivery", "cancel", number)
    assert code == 0 and "cancelled" in output
    code, listing = _run("delivery", "list", "--locker", "hall-1")
    assert re.search(rf"{number}\s.*cancelled", listing), listing
    code, output = _run("delivery", "cancel", number)
    assert code == 1 and "nothing to revoke" in output
    code, output = _run("delivery", "prepare", "hall-1", "--size", "XL")
    assert code == 2
    code, output = _run("delivery", "prepare", "hall-1", "--days", "0")
    assert code == 1 and "window" in output


def test_returns_issue_shows_the_code_once(fleet: Path, tmp_path: Path) -> None:
    code, output = _run("returns", "issue", "hall-1", "--size", "M", "--recipient", "bob")
    found = re.search(r"return code (\d{8}) for hall-1 \(id (\d+)", output)
    assert code == 0 and found is not None, output
    conn = db.connect(fleet)
    row = conn.execute("SELECT door, kind, recipient FROM codes WHERE id = ?", (int(found.group(2)),)).fetchone()
    assert tuple(row) == ("*", 2 | 2 << 4, "bob")
    raw = b"".join(p.read_bytes() for p in fleet.parent.glob("fleet.db*"))
    assert found.group(1).encode() not in raw  # a return code is not held: shown once


def test_staff_add_pin_list_remove_and_names_in_events(fleet: Path) -> None:
    code, output = _run("staff", "add", "Bea Jansen", "--locker", "hall-1")
    assert code == 0, output
    found = re.search(r"staff (\d+) 'Bea Jansen' added", output)
    pin_line = re.search(r"PIN (\d{10}) for 'Bea Jansen' at hall-1, valid until (.+) \(code id (\d+)\)", output)
    assert found is not None and pin_line is not None, output
    staff_id, (pin, _until, code_id) = found.group(1), pin_line.groups()
    code, listing = _run("staff", "list")
    assert code == 0 and re.search(rf"{staff_id}\s+Bea Jansen\s+hall-1 until ", listing) and pin not in listing
    conn = db.connect(fleet)
    with db.transaction(conn):
        ingest.apply_event(conn, "hall-1", {"seq": 3, "ev": {"k": "staff_in", "staff": int(code_id)}}, 1.0e9)
    code, output = _run("events")
    assert code == 0 and f"staff='Bea Jansen'({code_id})" in output, output
    # Today's PIN again (by name): a fresh one, the earlier one revoked.
    code, output = _run("staff", "pin", "Bea Jansen", "--locker", "hall-1", "--hours", "2")
    again = re.search(r"PIN (\d{10}) for 'Bea Jansen' at hall-1, valid until .+ \(code id (\d+)\)", output)
    assert code == 0 and again is not None and again.group(2) != code_id, output
    states = dict(conn.execute("SELECT id, state FROM codes").fetchall())
    assert states == {int(code_id): "revoked", int(again.group(2)): "issued"}
    code, output = _run("staff", "pin", staff_id, "--locker", "hall-1", "--hours", "13")
    assert code == 1 and "at most 12 hours" in output, output
    code, output = _run("staff", "pin", staff_id, "--locker", "hall-1", "--days", "91")
    assert code == 1 and "at most 90 days" in output, output
    code, output = _run("staff", "pin", staff_id, "--locker", "hall-1", "--until", "25:00")
    assert code == 2 and "HH:MM" in output, output
    code, output = _run("staff", "pin", "Nobody", "--locker", "hall-1")
    assert code == 1 and "no staff member 'Nobody'" in output, output
    code, output = _run("staff", "pin", staff_id, "--locker", "hall-1", "--locker", "hall-9")
    assert code == 1 and "unknown locker 'hall-9'" in output, output
    assert dict(conn.execute("SELECT id, state FROM codes").fetchall())[int(again.group(2))] == "issued"  # kept
    code, output = _run("staff", "remove", staff_id)
    assert code == 0 and "1 locker(s) drop a PIN" in output
    code, listing = _run("staff", "list")
    assert "no staff" in listing
    code, listing = _run("staff", "list", "--all")
    assert "Bea Jansen" in listing
    code, output = _run("staff", "add", "Cem")  # a person; no PIN until one is asked for
    assert code == 0 and not re.search(r"PIN \d", output) and "lockerctl staff pin" in output, output


def test_door_open_and_service_are_queued_with_who_asked(fleet: Path) -> None:
    code, output = _run("door", "open", "hall-1", "2", "--reason", "resident on the phone", "--wait", "0")
    assert code == 2 and "--by" in output  # who asked is mandatory
    code, output = _run("door", "open", "hall-1", "2", "--by", "desk-ann", "--reason", "phone", "--wait", "0")
    assert code == 0 and "request 1: door.open 2 at hall-1, asked by desk-ann" in output, output
    code, output = _run("door", "service", "hall-1", "3", "--off", "--by", "ann", "--wait", "0")
    assert code == 0, output
    code, output = _run("door", "open", "hall-1", "9", "--by", "ann", "--wait", "0")
    assert code == 1 and "no door '9'" in output
    code, listing = _run("door", "requests")
    assert re.search(r"1\s.*hall-1\s+door.open\s+door=2 r=phone\s+desk-ann\s+queued\s+0", listing), listing
    assert re.search(r"2\s.*door.service\s+door=3 on=False\s+ann\s+queued", listing), listing
    conn = db.connect(fleet)
    args = json.loads(conn.execute("SELECT args_json FROM requests WHERE id = 2").fetchone()[0])
    assert args == {"door": "3", "on": False, "by": "ann"}
    # A reply the service recorded ends the wait.
    with db.transaction(conn):
        conn.execute("UPDATE requests SET state = 'failed', reply_json = '{\"error\": \"safe_mode\"}' WHERE id = 1")
    code, output = _run("door", "open", "hall-1", "2", "--by", "x", "--wait", "0.3")
    assert "no reply yet" in output


def test_lockers_and_codes_list_show_what_to_take_back(fleet: Path) -> None:
    conn = db.connect(fleet)
    old = fleet_db.issue_code(conn, "hall-1", "2", expires=int(time.time()) - 5)
    fleet_db.issue_code(conn, "hall-1", "3", expires=int(time.time()) - 5)  # its door is empty: nothing to take
    with db.transaction(conn):
        ingest.apply_event(conn, "hall-1", {"seq": 1, "ev": {"k": "closed_full", "d": "2", "id": old.code_id}}, 1e9)
        ingest.apply_event(conn, "hall-1", {"seq": 2, "ev": {"k": "pickup", "d": "3", "id": 1}}, 1e9)
        fleet_db.expire_codes(conn, time.time())
    code, output = _run("lockers")
    assert code == 0 and re.search(r"hall-1\s.*\s1\s+-\s+-$", output, re.M), output
    assert "lockerctl codes list --take-back" in output
    code, output = _run("codes", "list", "--take-back")
    assert code == 0 and str(old.code_id) in output and "expired: TAKE BACK" in output
    assert len(output.strip().splitlines()) == 2, output


def test_door_open_waits_for_the_reply_the_service_records(fleet: Path) -> None:
    def answer() -> None:
        conn = db.connect(fleet)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not conn.execute("SELECT 1 FROM requests").fetchone():
            time.sleep(0.02)
        with db.transaction(conn):
            conn.execute("UPDATE requests SET state = 'failed', reply_json = '{\"error\": \"safe_mode\"}'")
        conn.close()

    helper = threading.Thread(target=answer)
    helper.start()
    code, output = _run("door", "open", "hall-1", "1", "--by", "ann", "--wait", "5")
    helper.join()
    assert code == 1 and "request 1: failed: safe_mode" in output, output


def test_notifications_lists_failures_without_codes(fleet: Path) -> None:
    conn = db.connect(fleet)
    issued = fleet_db.prepare_delivery(conn, "hall-1")
    with db.transaction(conn):
        ingest.apply_event(conn, "hall-1", {"seq": 1, "ev": {"k": "loaded", "d": "2", "id": issued.number}}, 1e9)
        conn.execute("UPDATE notifications SET state = 'failed', attempts = 3, error = 'HTTP 503 from the hook'")
    code, output = _run("notifications", "--failed")
    assert code == 0 and re.search(rf"hall-1\s+2\s+loaded\s+{issued.number}\s+failed\s+3\s+HTTP 503", output), output
    assert issued.code not in output
