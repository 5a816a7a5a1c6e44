# Staff sessions at the keypad: loading a delivery, the bad paths of a load, and a code typed during
# a session (locker.staff, locker.flows), on a fake board.
import json

from staffrig import DELIVERY, KEY, PICKUP, STAFF_PIN, T0, Rig

from locker import codes as C
from locker.hmac256 import HmacKey


def test_staff_load_then_the_resident_picks_up_offline():
    rig = Rig("staff-load")
    try:
        rig.type(DELIVERY + "#")  # too early
        assert rig.board.display.lines[0] == "Nog niet binnen"
        assert rig.last("denied")["r"] == "not_loaded" and rig.locker.throttle.failures == 0
        rig.type(STAFF_PIN + "#")
        assert rig.last("staff_in")["staff"] == 7
        assert rig.board.display.lines == ("1 Laden  2 Maat", "3 Terug  4 Deur")
        assert STAFF_PIN not in json.dumps(rig.events())  # never in an event
        rig.type("1123456#")
        assert rig.energized_doors() == [1]  # door 1 holds a parcel: the smallest free door is 2
        rig.door(1, open_=True)
        assert rig.board.display.lines == ("Deur 2 open", "Leg erin, sluit")
        rig.door(1, parcel=True)
        rig.door(1, open_=False)
        ev = rig.last("loaded")
        assert (ev["d"], ev["id"], ev["staff"]) == ("2", 123456, 7) and "low" not in ev
        assert rig.locker.codes.state_of(123456) == (C.STATE_LOADED, 1)
        rig.type("*")
        assert rig.last("staff_out")["r"] == "done" and rig.locker.staff is None
        rig.run(7000)
        rig.type(DELIVERY + "#")
        assert rig.energized_doors() == [1]
        assert rig.last("unlock")["id"] == 123456
        rig.door(1, open_=True)
        rig.door(1, parcel=False)
        rig.door(1, open_=False)
        assert rig.last("pickup")["id"] == 123456
    finally:
        rig.close()


def test_load_closed_empty_then_jammed_then_timed_out():
    cfg = None
    rig = Rig("staff-bad")
    try:
        cfg = rig.cfg
        cfg.staff_timeout_ms = 10000
        rig.type(STAFF_PIN + "#")
        rig.type("1123456#")
        rig.door(1, open_=True)
        rig.door(1, open_=False)  # nothing put in
        ev = rig.last("load_empty")
        assert (ev["d"], ev["id"], ev["staff"]) == ("2", 123456, 7)
        assert rig.locker.codes.state_of(123456) == (0, None)
        assert rig.board.display.lines == ("Deur 2 leeg", "Niets geladen")
        # the door never opens: jammed and abandoned
        rig.type("1123456#")
        rig.run(cfg.confirm_ms * (cfg.unlock_retries + 1) + 2000)
        assert rig.last("load_abandoned")["id"] == 123456 and rig.last("jammed")["d"] == "2"
        assert rig.locker.codes.state_of(123456) == (0, None) and not rig.locker.jobs
        # open, and the session times out
        rig.type("1123456#")
        rig.door(1, open_=True)
        rig.run(10500)
        assert rig.last("staff_out")["r"] == "timeout" and rig.locker.staff is None
        assert len(rig.events("load_abandoned")) == 2
        assert rig.locker.codes.state_of(123456) == (0, None)
    finally:
        rig.close()


def test_a_code_typed_in_a_session_is_not_a_pickup():
    rig = Rig("staff-code")
    try:
        rig.type(STAFF_PIN + "#")
        before = len(rig.board.solenoids[0].writes)
        rig.type(PICKUP + "#")
        rig.run(500)
        assert len(rig.board.solenoids[0].writes) == before
        assert rig.events("unlock") == [] and rig.events("denied") == []
        rig.type("**")
        rig.type(PICKUP + "#")
        assert rig.last("unlock")["d"] == "1"
    finally:
        rig.close()


def test_a_session_left_alone_ends_after_the_short_idle_time_out():
    h = HmacKey(KEY)
    expired = [(C.tag(h, "3", "12121212"), 2, C.KIND_PICKUP, T0 - 10, 13)]
    rig = Rig("staff-idle", extra=expired, parcels=(0, 2))
    try:
        cfg = rig.cfg
        assert cfg.staff_idle_ms < cfg.staff_timeout_ms
        rig.type(STAFF_PIN + "#")
        rig.run(cfg.staff_idle_ms - 1000)
        assert rig.locker.staff is not None  # still at the menu, within the short time-out
        rig.type("2")  # a key: the time-out starts again
        rig.run(cfg.staff_idle_ms - 1000)
        assert rig.locker.staff is not None
        rig.run(1100)
        assert rig.locker.staff is None and rig.last("staff_out")["r"] == "timeout"
        # a door job: the long time-out while the door stands open, the short one once it is shut
        rig.type(STAFF_PIN + "#")
        rig.type("23")
        assert rig.energized_doors() == [3]  # L: door 4
        rig.door(3, open_=True)
        rig.run(cfg.staff_idle_ms + 1000)
        assert rig.locker.staff is not None  # the door is still open: the load goes on
        rig.door(3, parcel=True)
        rig.door(3, open_=False)
        assert rig.last("loaded")["d"] == "4"
        rig.run(cfg.staff_idle_ms + 100)  # staff walk away
        assert rig.locker.staff is None and len(rig.events("staff_out")) == 2
        assert rig.last("staff_out")["r"] == "timeout"
        # the next person presses 3: no take-back, door 3's expired item stays locked in
        rig.type("3")
        rig.run(500)
        assert rig.energized_doors() == [3] and not rig.locker.jobs
        assert rig.board.display.lines[0] == "Uw code:"
    finally:
        rig.close()


def test_d_takes_back_a_digit_of_the_delivery_number():
    rig = Rig("staff-back")
    try:
        rig.type(STAFF_PIN + "#")
        rig.type("1123457")
        assert rig.board.display.lines == ("Leveringsnummer", "123457")
        rig.type("D")
        assert rig.board.display.lines == ("Leveringsnummer", "12345")
        rig.type("6#")
        assert rig.energized_doors() == [1]
        assert rig.locker.codes.state_of(123456)[0] == C.STATE_LOADING
    finally:
        rig.close()
