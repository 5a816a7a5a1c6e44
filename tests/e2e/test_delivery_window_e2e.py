"""The pickup window counts from the load, through the whole chain (e2e_chain.Chain: the real
firmware on a simulated board, real mosquitto, the host service).

Two deliveries prepared "9 days ago" (their rows shifted back on the host before the locker gets
them: with the 7-day loading allowance and the 5-day window, their rows expire 3 days from now) are
loaded now. The host moves their expiry to now + 5 days and sends the rows again; the locker keeps
them bound to their doors. With the locker's clock 4 days ahead (a reboot with its RTC set so: past
the old expiry) the resident's code opens its door; with it past the new expiry, the other code is
refused as expired."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from e2e_chain import LID, Chain

from lockertools.service import db, fleet_db
from lockertools.sim import default_micropython

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]

DAY = 86400


def _load(c: Chain, number: int, staff_id: int) -> tuple[str, int]:
    """Staff load delivery `number` (a staff session is open): (the door's label, the event's t)."""
    b = c.board
    b.tap("1")
    mark = b.mark()
    b.type_code(str(number))
    door = int(b.wait_event("solenoid", 5, since=mark, on=1)["door"])
    label = b.labels[door]
    b.wait_event("door", 5, since=mark, door=door, open=1)
    b.wait_event("solenoid", 5, since=mark, door=door, on=0)
    b.set_parcel(door, True)
    b.close_door(door)
    c.wait_fw("loaded", 1, d=label, id=number, staff=staff_id)
    (ev,) = [e for e in c.fw_events() if e["k"] == "loaded" and e.get("id") == number]
    return label, int(ev["t"])


def test_a_delivery_loaded_late_gets_its_whole_window_on_the_locker(chain: Callable[..., Chain]) -> None:
    c = chain()
    (staff_pin,) = fleet_db.add_staff(c.conn, "Bea", [LID])[1]
    staff_id, pin = staff_pin.code_id, staff_pin.pin  # the locker reports the PIN's code id
    first = fleet_db.prepare_delivery(c.conn, LID)
    second = fleet_db.prepare_delivery(c.conn, LID)
    with db.transaction(c.conn):  # prepared 9 days ago, before the locker ever saw them
        c.conn.execute(
            "UPDATE codes SET created_at = created_at - ?, expires = expires - ? WHERE id IN (?, ?)",
            (9 * DAY, 9 * DAY, first.number, second.number),
        )
    old_expiry = int(c.query("SELECT expires FROM codes WHERE id = ?", first.number)[0][0])
    c.boot()
    c.wait_synced()

    c.board.type_code(pin)
    c.wait_fw("staff_in", 1, staff=staff_id)
    label_1, t_1 = _load(c, first.number, staff_id)
    label_2, t_2 = _load(c, second.number, staff_id)
    c.board.tap("*")
    c.wait_fw("staff_out", 1, staff=staff_id)

    # The host moved both expiries to the load + 5 days and the locker has the rows again.
    def moved() -> bool:
        rows = c.query("SELECT id, door, expires FROM codes WHERE id IN (?, ?)", first.number, second.number)
        return {tuple(r) for r in rows} == {
            (first.number, label_1, t_1 + 5 * DAY),
            (second.number, label_2, t_2 + 5 * DAY),
        }

    c.wait(moved, "the new expiries on the host")
    rev = c.wait_synced()
    applied = [m for m in c.messages("cmd") if m.get("op") == "codes.apply" and m["args"]["rev"] <= rev]
    resent = {
        r[4]: r for m in applied for r in m["args"]["add"] if r[4] in (first.number, second.number) and r[1] == "*"
    }
    assert {n: r[3] for n, r in resent.items()} == {first.number: t_1 + 5 * DAY, second.number: t_2 + 5 * DAY}
    new_expiry = min(t_1, t_2) + 5 * DAY
    assert old_expiry < t_1 + 4 * DAY < new_expiry

    # Four days on (the old rows' expiry is a day behind): the resident's code opens its door. The
    # locker is offline from here: online, the service would answer the locker's clock challenge and
    # set its clock back to today's, and the expiries would not be put to the test.
    c.proxy.cut()
    c.board.boot(keep_rtc=t_1 + 4 * DAY)
    c.pickup(first.code, label_1)
    assert c.fw_count("denied", r="expired") == 0

    # Past the new expiry: the other resident's code is refused, its door stays shut.
    c.board.boot(keep_rtc=max(t_1, t_2) + 5 * DAY + 120)
    mark = c.board.mark()
    c.board.type_code(second.code)
    c.wait_fw("denied", 1, r="expired")
    assert [e for e in c.board.events("solenoid", since=mark) if e.get("on") == 1] == []
