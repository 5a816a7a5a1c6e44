"""A staff PIN through the whole chain (e2e_chain.Chain: the real firmware on a simulated board, real
mosquitto, the host service): issued on the host for this locker with its expiry -> the locker has it
and opens a staff session with it -> cut off from the host, the locker refuses it once its own clock
is past the expiry, and also when it has never known the time (clock file lost, RTC unset: fail
secure) -> back online, the host deletes the expired PIN from the locker."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from e2e_chain import LID, Chain

from lockertools.service import db, fleet_db
from lockertools.sim import default_micropython

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]


def _refused(c: Chain, pin: fleet_db.StaffPin) -> None:
    """The PIN is typed and refused as expired: no staff session, no door."""
    before = c.fw_count("denied", r="expired", id=pin.code_id)
    sessions = c.fw_count("staff_in")
    mark = c.board.mark()
    c.board.type_code(pin.pin)
    c.wait_fw("denied", before + 1, r="expired", id=pin.code_id)
    assert c.fw_count("staff_in") == sessions
    assert [e for e in c.board.events("solenoid", since=mark) if e.get("on") == 1] == []


def test_a_staff_pin_works_at_its_locker_until_it_expires_even_offline(chain: Callable[..., Chain]) -> None:
    c = chain()
    staff_id, _ = fleet_db.add_staff(c.conn, "Bea")
    pin = fleet_db.issue_staff_pin(c.conn, staff_id, LID, int(time.time()) + 2 * 3600)
    c.boot()
    c.wait_synced()
    st = c.last_status()
    assert st is not None and st["codes"] == 1, st

    c.board.type_code(pin.pin)
    c.wait_fw("staff_in", 1, staff=pin.code_id)
    c.board.tap("*")
    c.wait_fw("staff_out", 1, staff=pin.code_id)
    c.wait(lambda: c.query("SELECT 1 FROM events WHERE kind = 'staff_in'"), "the session on the host")
    assert [e["staff"] for e in c.db_events() if e["k"] == "staff_in"] == [pin.code_id]

    # Offline, and the locker's clock past the expiry (its RTC kept over a reset): refused.
    c.proxy.cut()
    c.board.power_cut()
    c.board.boot(keep_rtc=pin.expires + 60)
    _refused(c, pin)

    # Still offline; a power cut unsets the RTC and the saved clock is lost: the locker has never
    # known the time, cannot tell whether the PIN expired, and refuses it.
    c.board.power_cut()
    for saved in ("clock.bin", "vouched.bin"):  # the saved clock and the latest host time it had seen
        (c.flash_dir / saved).unlink(missing_ok=True)
    c.board.boot(keep_rtc=None)
    _refused(c, pin)

    # The working day ended on the host too: once the locker is back, the service deletes the PIN.
    with db.transaction(c.conn):
        c.conn.execute("UPDATE codes SET expires = ? WHERE id = ?", (int(time.time()) - 1, pin.code_id))
    c.restart_service()  # its first pass over the expiries happens at start
    c.proxy.heal()
    c.wait(lambda: c.query("SELECT state FROM codes WHERE id = ?", pin.code_id)[0][0] == "expired", "expired")
    c.wait_synced()
    st = c.last_status()
    assert st is not None and st["codes"] == 0, st
    c.wait_all_events()
