# Doors the locker knows hold an item (locker.flows.hold): a return or a load stays in its door,
# parcel sensor or not, across a reboot, until staff take it back or its resident picks it up.
from staffrig import DELIVERY, RETURN, STAFF_PIN, T0, Rig, _pcode, _pfree

from locker import codes as C

RETURN_2 = _pcode(5)  # a second return code, size M, id 32


def _no_sensors(rig):
    """Reboot the rig's locker on a board whose doors have no parcel sensor."""
    rig.board.parcels = [None] * len(rig.board.parcels)
    rig.boot()


def _pulses(rig, d):
    return sum(1 for _, level in rig.board.solenoids[d].writes if level)


def test_a_return_keeps_its_door_without_a_parcel_sensor_until_taken_back():
    extra = [_pfree(5, C.KIND_RETURN | 0x20, expiry=T0 + 86400, cid=32)]
    rig = Rig("staff-held", extra=extra)
    try:
        _no_sensors(rig)
        rig.type(RETURN + "#")
        assert rig.energized_doors() == [2]  # M: door 3
        rig.door(2, open_=True)
        rig.door(2, open_=False)
        assert rig.last("returned")["d"] == "3" and rig.last("returned")["sensor"] == 0
        rig.run(7000)
        rig.type(RETURN_2 + "#")  # the next return: not into door 3, which holds the first one
        assert _pulses(rig, 2) == 1 and rig.energized_doors() == [2, 3]
        rig.door(3, open_=True)
        rig.door(3, open_=False)
        assert rig.last("returned")["d"] == "4"
        rig.run(7000)

        rig.boot()  # a power cut: both doors still hold their returns
        rig.type(STAFF_PIN + "#")
        rig.type("22")  # a load by size M: doors 3 and 4 hold items, nothing else fits
        assert rig.board.display.lines == ("Geen deur vrij", "die past")
        assert _pulses(rig, 2) == 1 and _pulses(rig, 3) == 1
        rig.run(7000)
        rig.type("*3")  # take back: the returned items, door by door
        assert _pulses(rig, 2) == 2
        rig.door(2, open_=True)
        rig.door(2, open_=False)
        ev = rig.last("taken_back")
        assert (ev["d"], ev["id"], ev["staff"]) == ("3", 31, 7)
        rig.run(7000)
        assert rig.board.display.lines == ("# = volgende", "* = menu")
        rig.type("#")
        assert _pulses(rig, 3) == 2
        rig.door(3, open_=True)
        rig.door(3, open_=False)
        assert rig.last("taken_back")["id"] == 32
        rig.run(7000)
        rig.type("22")  # door 3 is free again
        assert _pulses(rig, 2) == 3 and rig.locker.jobs[2][0] == 1  # a load
    finally:
        rig.close()


def test_a_load_keeps_its_door_until_the_resident_picks_it_up():
    from locker import flows

    rig = Rig("staff-held-load")
    try:
        _no_sensors(rig)
        rig.type(STAFF_PIN + "#")
        rig.type("1123456#")  # the delivery: door 2, the smallest free one (door 1 has a code)
        rig.door(1, open_=True)
        rig.door(1, open_=False)
        assert rig.last("loaded")["d"] == "2" and rig.last("loaded")["sensor"] == 0
        rig.run(7000)
        rig.type("23")  # a load by size L: door 4, its pickup code comes from the host later
        rig.door(3, open_=True)
        rig.door(3, open_=False)
        assert rig.last("loaded")["d"] == "4"
        rig.run(7000)
        rig.type("23")  # another L item: door 4 is full, whatever its (missing) sensor says
        assert rig.board.display.lines == ("Geen deur vrij", "die past")
        rig.run(7000)
        rig.type("*")
        rig.boot()
        lk = rig.locker
        assert flows.pick_door(lk, 0x10) == (2, 0) and flows.pick_door(lk, 0x30) == (-1, 0)
        assert flows.to_take_back(lk, T0) == []  # both wait for their residents
        flows.idle(lk)
        rig.run(7000)
        rig.type(DELIVERY + "#")  # the resident takes the delivery: door 2 is free again
        rig.door(1, open_=True)
        rig.door(1, open_=False)
        assert rig.last("pickup")["id"] == 123456 and 1 not in lk.held and 3 in lk.held
        assert flows.pick_door(lk, 0x10) == (1, 1)
        flows.idle(lk)
    finally:
        rig.close()


def test_a_damaged_held_file_is_reported_and_the_codes_still_hold_their_doors():
    from locker import flows

    rig = Rig("staff-held-bad")
    try:
        f = open("held.bin", "wb")
        f.write(b"garbage")
        f.close()
        rig.boot()
        assert [e["m"][:9] for e in rig.events("problem")] == ["held.bin:"]
        assert rig.locker.held == {}
        assert flows.pick_door(rig.locker, 0) == (1, 1)  # door 1 is still its pickup code's
        flows.idle(rig.locker)
    finally:
        rig.close()
