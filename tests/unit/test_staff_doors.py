# Which door an item gets (locker.flows.pick_door, reserved, expired), returns and take-backs.
from staffrig import KEY, LABELS, RETURN, STAFF_PIN, T0, Rig, _pfree, _prec

import fakes
from locker import codes as C
from locker.hmac256 import HmacKey

NO_DOOR = 0xFF  # the door byte of a door-free kind (codes.bin)


def test_reserved_and_expired_doors():
    from locker import flows

    d = fakes.scratch_dir("staff-codes")
    s = C.CodeStore(KEY, LABELS, path=d + "/codes.bin", used_path=d + "/used.bin", capacity=16)
    s.replace(
        1,
        [
            _prec(0, 1, expiry=100),  # door 1: expired, never used
            _prec(1, 2, expiry=100),  # door 2: expired but picked up
            _prec(2, 3, expiry=10**6),  # door 3: waiting
            _pfree(4, C.KIND_DELIVERY, expiry=100, cid=40),
            _pfree(5, C.KIND_DELIVERY, expiry=100, cid=50),  # never loaded
        ],
    )
    s.consume(2, 1)
    s.complete(2)
    s.loading(40, 3)
    s.loaded(40, 3)
    assert flows.reserved(s) == bytearray([1, 0, 1, 1])
    assert flows.expired(s, 500) == [(0, 1), (3, 40)]
    assert flows.expired(s, 50) == [] and flows.expired(s, None) == []
    assert s.find_id(50) == (NO_DOOR, C.KIND_DELIVERY, 100) and s.find_id(99) is None


def test_pick_door_fits_prefers_low_when_asked_then_the_smallest():
    from locker import flows

    rig = Rig("staff-pick", parcels=())
    try:
        lk = rig.locker
        # door 1 is held by its pickup code (parcel sensed or not)
        assert flows.pick_door(lk, 0) == (1, 1)  # any size: the smallest
        assert flows.pick_door(lk, 0x20) == (2, 0)  # M: door 3
        assert flows.pick_door(lk, 0x30) == (3, 0)  # L: door 4 only
        assert flows.pick_door(lk, 0x20 | 64) == (2, 0)  # M and low: no low M door, door 3 (low 0)
        assert flows.pick_door(lk, 64) == (1, 1)
        rig.board.parcels[1].level = 1  # door 2 now holds a parcel
        rig.run(200)
        assert flows.pick_door(lk, 64) == (2, 0)  # no low door free: another, and the event says so
        lk.doors.set_out_of_service(2, True)
        assert flows.pick_door(lk, 64) == (3, 0)
        lk.doors.set_out_of_service(2, False)
        rig.board.closed[2].level = 0  # door 3 stands open
        rig.run(200)
        assert flows.pick_door(lk, 0x10) == (3, 0)
        rig.board.parcels[3].level = 1
        rig.run(200)
        assert flows.pick_door(lk, 0x30) == (-1, 0)
    finally:
        rig.close()


def test_returns_fill_an_empty_door_and_an_empty_close_gives_the_code_back():
    rig = Rig("staff-return")
    try:
        rig.type(RETURN + "#")
        assert rig.energized_doors() == [2]  # M: door 3
        rig.door(2, open_=True)
        assert rig.board.display.lines == ("Leg het in deur", "3 en sluit hem")
        rig.door(2, open_=False)
        assert rig.last("return_empty")["id"] == 31
        rig.run(7000)
        rig.type(RETURN + "#")
        rig.door(2, open_=True)
        rig.door(2, parcel=True)
        rig.door(2, open_=False)
        assert rig.last("returned") == {"k": "returned", "t": rig.last("returned")["t"], "d": "3", "id": 31}
        rig.run(7000)
        rig.type(RETURN + "#")
        assert rig.board.display.lines[0] == "Code al gebruikt"
    finally:
        rig.close()


def test_take_back_expired_items_door_by_door():
    h = HmacKey(KEY)
    extra = [(C.tag(h, "3", "12121212"), 2, C.KIND_PICKUP, T0 - 10, 13)]
    rig = Rig("staff-take", extra=extra, parcels=(0, 2))
    try:
        rig.rtc = T0
        rig.locker.clock.set(T0 + 2 * 86400, rig.ticks.now)  # door 1's code expired too
        rig.type(STAFF_PIN + "#")
        rig.type("3")
        assert rig.energized_doors() == [0]
        rig.door(0, open_=True)
        rig.door(0, parcel=False)
        rig.door(0, open_=False)
        assert rig.last("taken_back") == {"k": "taken_back", "t": T0 + 2 * 86400, "d": "1", "id": 11, "staff": 7}
        rig.run(7000)
        assert rig.board.display.lines == ("# = volgende", "* = menu")
        rig.type("#")
        assert rig.energized_doors() == [0, 2]
        rig.door(2, open_=True)
        rig.door(2, open_=False)  # still inside: not taken back, the code stays as it was
        assert rig.last("closed_full")["id"] == 13 and rig.locker.codes.state_of(13) == (0, None)
        rig.run(7000)
        rig.type("3")  # door 3's item is still there: offered again
        assert rig.locker.jobs and 2 in rig.locker.jobs
    finally:
        rig.close()
