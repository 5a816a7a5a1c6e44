"""The staff flows through the running service, a real mosquitto and protocol-level lockers (DeliverySim):
deliveries from preparing to pickup, size-only loads, returns, take-back, reminders, the notification
hook (contents, failures retried, the plain code deleted once notified, never logged) and the
request queue for door.open / door.service."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import DeliverySim, Rig

from lockertools.contract import check_wire
from lockertools.service import db, fleet_db
from tests.support.fixtures import Broker


class Hook:
    """A notification command that appends each JSON document to a file, and fails (status 1)
    while `fail` exists."""

    def __init__(self, tmp_path: Path) -> None:
        self.out = tmp_path / "notes.jsonl"
        self.fail = tmp_path / "fail"
        script = (
            "import os, sys; data = sys.stdin.buffer.read(); "
            f"os.path.exists({str(self.fail)!r}) and sys.exit(1); "
            f"open({str(self.out)!r}, 'ab').write(data + b'\\n')"
        )
        self.command = f"{sys.executable} -c {json.dumps(script)}"

    def notes(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines()]


@pytest.fixture
def hook(tmp_path: Path) -> Hook:
    return Hook(tmp_path)


@pytest.fixture
def make_rig(broker: Broker, tmp_path: Path, hook: Hook) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**config: Any) -> Rig:
        settings = {"notify_command": hook.command, "notify_retry_min_s": 0.2, "resend_s": 0.5} | config
        rig = Rig(broker, tmp_path, sim_class=DeliverySim, **settings)
        made.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in made:
            rig.close()


def _sim(rig: Rig) -> DeliverySim:
    sim = rig.sims["hall-1"]
    assert isinstance(sim, DeliverySim)
    return sim


def _one(rig: Rig, sql: str, *params: Any) -> Any:
    return rig.query(sql, *params)[0][0]


def test_a_delivery_from_preparing_to_pickup(make_rig: Callable[..., Rig], hook: Hook, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    rig = make_rig()
    (staff_pin,) = fleet_db.add_staff(rig.conn, "Bea", ["hall-1"])[1]
    staff_id, pin = staff_pin.code_id, staff_pin.pin  # the locker reports the PIN's code id
    issued = fleet_db.prepare_delivery(rig.conn, "hall-1", size="M", contact="ann@example.org", item="document")
    rig.start_service()
    sim = _sim(rig)
    rig.start_locker()
    # The locker has the delivery (door-free, by its number) and the staff PIN, offline-ready.
    rig.wait(lambda: sim.lookup_any(issued.code) == (issued.number, "*"), "the delivery on the locker")
    assert sim.lookup_any(pin) == (staff_id, "*")
    assert sim.store[issued.number][2] == 3 | 2 << 4
    assert hook.notes() == []  # nothing to tell the resident before the item is in
    # Staff load it at A2: the locker binds the code to A2 and reports `loaded`.
    rig.call(sim.event("staff_in", staff=staff_id))
    sim.load(issued.number, "A2")
    rig.call(sim.event("loaded", d="A2", id=issued.number, staff=staff_id))
    rig.call(sim.event("staff_out", staff=staff_id, r="done"))
    rig.wait(hook.notes, "the resident's notification")
    (note,) = hook.notes()
    assert note == {
        "locker": "hall-1",
        "door": "A2",
        "code": issued.code,
        "expires": _one(rig, "SELECT expires FROM codes WHERE id = ?", issued.number),  # loaded + 5 days
        "code_id": issued.number,
        "recipient": "ann@example.org",
        "kind": "loaded",
        "item": "document",
        "staff": "Bea",
    }
    # Once notified, the host holds the plain code no more.
    rig.wait(lambda: not rig.query("SELECT 1 FROM held_codes"), "the held code deleted")
    assert _one(rig, "SELECT notify_state FROM codes WHERE id = ?", issued.number) == "sent"
    # The resident picks up at A2: recorded once, the code leaves the locker's store.
    assert sim.lookup_any(issued.code) == (issued.number, "A2")
    seq = rig.call(sim.event("pickup", d="A2", id=issued.number, repeat=2))
    rig.wait(lambda: seq in sim.acked and issued.number not in sim.store, "the pickup recorded and cleaned up")
    assert _one(rig, "SELECT state FROM codes WHERE id = ?", issued.number) == "used"
    assert _one(rig, "SELECT count(*) FROM events WHERE kind = 'pickup'") == 1
    assert [d["status"] for d in fleet_db.delivery_table(rig.conn)] == ["picked up"]
    # The code never reached a log line; every message both ways kept the contract.
    assert all(issued.code not in r.getMessage() and pin not in r.getMessage() for r in caplog.records)
    for topic, wire in sim.traffic:
        check_wire(topic, wire, rig.keys["hall-1"])
    assert rig.service is not None and rig.service.counters.notifications == 1


def test_a_failed_notification_is_recorded_and_retried_and_the_code_held_until_then(
    make_rig: Callable[..., Rig], hook: Hook
) -> None:
    rig = make_rig()
    hook.fail.touch()
    issued = fleet_db.prepare_delivery(rig.conn, "hall-1")
    rig.start_service()
    sim = _sim(rig)
    rig.start_locker()
    rig.wait(lambda: sim.lookup_any(issued.code) is not None, "the delivery on the locker")
    sim.load(issued.number, "A1")
    rig.call(sim.event("loaded", d="A1", id=issued.number, staff=1))
    rig.wait(lambda: rig.query("SELECT 1 FROM notifications WHERE attempts >= 2"), "a retry failing too", timeout=15)
    row = rig.query("SELECT state, error FROM notifications")[0]
    assert (row["state"], row["error"]) == ("failed", f"{sys.executable} exited with status 1")
    code_row = rig.query("SELECT notify_state, notify_error FROM codes WHERE id = ?", issued.number)[0]
    assert code_row["notify_state"] == "failed" and issued.code not in code_row["notify_error"]
    assert rig.query("SELECT code FROM held_codes")[0][0] == issued.code  # not lost: needed for the retry
    hook.fail.unlink()
    rig.wait(hook.notes, "the retry succeeding", timeout=15)
    assert [n["code"] for n in hook.notes()] == [issued.code]
    rig.wait(lambda: not rig.query("SELECT 1 FROM held_codes"), "the held code deleted")
    assert _one(rig, "SELECT state FROM notifications") == "sent"


def test_loading_by_size_only_gets_a_pickup_code_for_that_door(make_rig: Callable[..., Rig], hook: Hook) -> None:
    rig = make_rig()
    (staff_pin,) = fleet_db.add_staff(rig.conn, "Cem", ["hall-1"])[1]
    staff_id = staff_pin.code_id  # the locker reports the PIN's code id
    rig.start_service()
    sim = _sim(rig)
    rig.start_locker()
    rig.wait(lambda: staff_id in sim.store, "the staff PIN on the locker")
    rig.call(sim.event("loaded", d="A3", id=0, staff=staff_id))
    rig.wait(hook.notes, "the notification")
    (note,) = hook.notes()
    assert (note["kind"], note["door"], note["staff"], note["recipient"]) == ("loaded", "A3", "Cem", None)
    # The code is bound to A3 and reaches the locker.
    rig.wait(lambda: sim.lookup("A3", note["code"]) == note["code_id"], "the pickup code on the locker")
    assert sim.lookup("A1", note["code"]) is None
    rig.wait(lambda: not rig.query("SELECT 1 FROM held_codes"), "the held code deleted")


def test_a_return_is_notified_to_staff(make_rig: Callable[..., Rig], hook: Hook) -> None:
    rig = make_rig()
    issued = fleet_db.issue_return_code(rig.conn, "hall-1", size="L", recipient="bob")
    rig.start_service()
    sim = _sim(rig)
    rig.start_locker()
    rig.wait(lambda: sim.lookup_any(issued.code) == (issued.code_id, "*"), "the return code on the locker")
    rig.call(sim.event("return_empty", d="A1", id=issued.code_id))
    rig.call(sim.event("returned", d="A1", id=issued.code_id))
    rig.wait(hook.notes, "the staff notification")
    (note,) = hook.notes()
    assert (note["kind"], note["door"], note["code"], note["recipient"]) == ("returned", "A1", None, None)
    assert note["item"] == "borrowed material"
    rig.wait(lambda: issued.code_id not in sim.store, "the used return code removed")
    assert _one(rig, "SELECT count(*) FROM events WHERE kind = 'return_empty'") == 1
    assert tuple(rig.query("SELECT doors.full FROM doors WHERE label = 'A1'")[0]) == (1,)


def test_expired_items_are_flagged_taken_back_and_staff_told(make_rig: Callable[..., Rig], hook: Hook) -> None:
    rig = make_rig()
    (staff_pin,) = fleet_db.add_staff(rig.conn, "Dan", ["hall-1"])[1]
    staff_id = staff_pin.code_id  # the locker reports the PIN's code id
    old = fleet_db.issue_code(rig.conn, "hall-1", "A2", expires=int(time.time()) - 10)
    rig.start_service()  # its first expiry pass marks the code expired
    sim = _sim(rig)
    rig.start_locker()
    rig.call(sim.event("closed_full", d="A2", id=old.code_id))
    rig.wait(lambda: [r["id"] for r in fleet_db.take_back_table(rig.conn)] == [old.code_id], "flagged to take back")
    rig.call(sim.event("taken_back", d="A2", id=old.code_id, staff=staff_id))
    rig.wait(hook.notes, "the staff notification")
    assert [(n["kind"], n["door"], n["staff"], n["code"]) for n in hook.notes()] == [("taken_back", "A2", "Dan", None)]
    assert fleet_db.take_back_table(rig.conn) == []
    assert _one(rig, "SELECT state FROM codes WHERE id = ?", old.code_id) == "taken_back"


def test_a_reminder_goes_once_without_the_code(make_rig: Callable[..., Rig], hook: Hook) -> None:
    rig = make_rig()
    issued = fleet_db.issue_code(rig.conn, "hall-1", "A1", expires=int(time.time()) + 3600, recipient="eve")
    with db.transaction(rig.conn):
        rig.conn.execute("UPDATE codes SET created_at = created_at - 5 * 86400")
    rig.start_service()
    rig.wait(hook.notes, "the reminder")
    (note,) = hook.notes()
    assert (note["kind"], note["code"], note["recipient"], note["code_id"]) == ("reminder", None, "eve", issued.code_id)
    assert _one(rig, "SELECT count(*) FROM notifications") == 1


def test_door_open_is_sent_resent_with_its_tx_acts_once_and_is_logged(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.start_service()
    sim = _sim(rig)
    rig.start_locker()
    sim.mute_replies = 1  # the first reply is lost: the service resends with the same tx
    request_id, tx = fleet_db.queue_request(rig.conn, "hall-1", "door.open", {"door": "A2", "r": "phone"}, "desk-ann")
    rig.wait(lambda: _one(rig, "SELECT state FROM requests WHERE id = ?", request_id) == "ok", "the reply", timeout=15)
    row = rig.query("SELECT * FROM requests WHERE id = ?", request_id)[0]
    assert row["attempts"] == 2 and json.loads(row["reply_json"])["dup"] is True
    assert sim.door_ops == [("door.open", {"door": "A2", "r": "phone", "by": "desk-ann"})]  # opened once
    cmds = [json.loads(w.split(b" ", 1)[1]) for t, w in sim.traffic if t.endswith("/cmd")]
    assert {c["seq"] for c in cmds if c.get("tx") == tx} and len([c for c in cmds if c.get("tx") == tx]) == 2
    rig.call(sim.event("remote_open", d="A2", by="desk-ann", r="phone"))
    rig.wait(lambda: rig.query("SELECT 1 FROM events WHERE kind = 'remote_open'"), "the event")
    # door.service: out of service on the locker, and the event moves the host's record.
    request_id, _ = fleet_db.queue_request(rig.conn, "hall-1", "door.service", {"door": "A3", "on": False}, "ann")
    rig.wait(lambda: _one(rig, "SELECT state FROM requests WHERE id = ?", request_id) == "ok", "the reply")
    assert sim.in_service["A3"] is False
    rig.call(sim.event("door_service", d="A3", on=False, by="ann"))
    rig.wait(lambda: _one(rig, "SELECT in_service FROM doors WHERE label = 'A3'") == 0, "the door out of service")
    for topic, wire in sim.traffic:
        check_wire(topic, wire, rig.keys["hall-1"])


def test_a_request_nobody_could_deliver_expires_unsent(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(request_ttl_s=0.5)
    rig.start_service()  # the locker stays offline
    request_id, _ = fleet_db.queue_request(rig.conn, "hall-1", "door.open", {"door": "A1"}, "ann")
    rig.wait(lambda: _one(rig, "SELECT state FROM requests WHERE id = ?", request_id) == "expired", "expiry")
    assert _one(rig, "SELECT attempts FROM requests WHERE id = ?", request_id) == 0
    sim = _sim(rig)
    rig.start_locker()
    later = fleet_db.issue_code(rig.conn, "hall-1", "A1")  # a sync round with the locker online
    rig.wait(lambda: later.code_id in sim.store, "the locker synced")
    assert sim.ops["door.open"] == 0 and sim.door_ops == []
