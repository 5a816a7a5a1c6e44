"""A delivery through the whole chain (e2e_chain.Chain: real firmware on a simulated board, real
mosquitto, the host service): prepared on the host -> the locker gets it -> staff load it at the
simulated keypad -> the host notifies the resident with the code -> the resident picks it up ->
the host records it, deletes the held code and removes the used code from the locker."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_chain import LID, Chain

from lockertools.service import fleet_db
from lockertools.service.notify import CommandNotifier
from lockertools.sim import default_micropython

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]


def test_prepare_load_notify_pickup(chain: Callable[..., Chain], tmp_path: Path) -> None:
    c = chain()
    out = tmp_path / "notes.jsonl"
    script = f"import sys; open({str(out)!r}, 'ab').write(sys.stdin.buffer.read() + b'\\n')"
    assert c.service.service is not None
    c.service.service.notifier = CommandNotifier(f"{sys.executable} -c {json.dumps(script)}")

    def notes() -> list[dict[str, object]]:
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    (staff_pin,) = fleet_db.add_staff(c.conn, "Bea", [LID])[1]

    staff_id, pin = staff_pin.code_id, staff_pin.pin  # the locker reports the PIN's code id
    delivery = fleet_db.prepare_delivery(c.conn, LID, size="M", contact="ann@example.org", item="permit")
    c.put_parcel("1")  # door 1 is taken: the locker gives another
    c.boot()
    c.wait_synced()
    st = c.last_status()
    assert st is not None and st["codes"] == 2, st  # the staff PIN and the delivery, offline-ready

    # Staff at the keypad: PIN, 1 (load a delivery), its number; a door springs open.
    b = c.board
    b.type_code(pin)
    c.wait_fw("staff_in", 1, staff=staff_id)
    b.tap("1")
    mark = b.mark()
    b.type_code(str(delivery.number))
    door = int(b.wait_event("solenoid", 5, since=mark, on=1)["door"])
    label = b.labels[door]
    assert label != "1"
    b.wait_event("door", 5, since=mark, door=door, open=1)
    b.wait_event("solenoid", 5, since=mark, door=door, on=0)
    b.set_parcel(door, True)
    b.close_door(door)
    c.wait_fw("loaded", 1, d=label, id=delivery.number, staff=staff_id)
    b.tap("*")
    c.wait_fw("staff_out", 1, staff=staff_id)

    # The host tells the resident, with the code, and holds the plain code no longer.
    c.wait(notes, "the resident's notification")
    (note,) = notes()
    assert note["kind"] == "loaded" and note["code"] == delivery.code, note
    assert (note["door"], note["recipient"], note["staff"], note["item"]) == (label, "ann@example.org", "Bea", "permit")
    c.wait(lambda: not c.query("SELECT 1 FROM held_codes"), "the held code deleted")
    assert [d["status"] for d in fleet_db.delivery_table(c.conn)] == [f"in door {label}"]

    # The resident picks up with the code from the notification.
    c.pickup(str(note["code"]), label)
    c.wait(lambda: c.query("SELECT state FROM codes WHERE id = ?", delivery.number)[0][0] == "used", "recorded")
    c.wait_all_events()  # every event recorded once, the outbox drained
    c.check_codes_consistent()
    kinds = [e["k"] for e in c.db_events()]
    assert kinds.count("loaded") == 1 and kinds.count("pickup") == 1, kinds
    c.wait_synced()
    st = c.last_status()
    assert st is not None and st["codes"] == 1, st  # the used delivery left the store; the PIN stays
    assert c.check_every_message() > 10
