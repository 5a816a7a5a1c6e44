# What a typed code does to the guessing throttle and to a door's grace period, beyond a plain pickup:
# return codes, doors unlocked by someone else, and used codes the host has removed.
from staffrig import PICKUP, RETURN, Rig, _pcode, _prec, wrong_codes


def test_a_return_code_does_not_reset_the_throttle():
    rig = Rig("codes-return-throttle")
    try:
        wrong_codes(rig, 4)
        assert rig.locker.throttle.failures == 4
        rig.type(RETURN + "#")  # opens door 3 (M), which is then shut empty: the code works again
        assert rig.energized_doors() == [2]
        rig.door(2, open_=True)
        rig.door(2, open_=False)
        assert rig.last("return_empty")["id"] == 31
        assert rig.locker.throttle.failures == 4
        rig.run(7000)
        rig.type(RETURN + "#")  # and again: still no reset
        assert rig.locker.throttle.failures == 4
        rig.type("12121212#")
        assert rig.last("denied") == {"k": "denied", "t": rig.last("denied")["t"], "r": "wrong", "n": 5}
    finally:
        rig.close()


def test_a_return_code_with_no_free_door_does_not_reset_the_throttle():
    rig = Rig("codes-return-nodoor", parcels=(0, 2, 3))  # both M/L doors hold something
    try:
        wrong_codes(rig, 4)
        rig.type(RETURN + "#")
        assert rig.last("denied")["r"] == "no_door"
        assert rig.locker.throttle.failures == 4
        assert rig.locker.throttle.wait_ms(rig.ticks.now) == 0
        rig.type("12121212#")
        assert rig.locker.throttle.failures == 5
        assert rig.locker.throttle.wait_ms(rig.ticks.now) > 0
    finally:
        rig.close()


def test_a_pickup_code_resets_the_throttle_only_when_its_door_first_opens():
    rig = Rig("codes-pickup-throttle")
    try:
        wrong_codes(rig, 4)
        rig.type(PICKUP + "#")  # the door is held shut: jammed, and the code works again
        rig.run(10000)
        assert rig.last("jammed")["id"] == 11
        assert rig.locker.throttle.failures == 4
        rig.type(PICKUP + "#")
        rig.door(0, open_=True)  # now it opens: the code is used up, the count goes
        assert rig.locker.throttle.failures == 0
        rig.door(0, open_=False)  # shut with the parcel still inside: the code reopens it
        assert rig.last("closed_full")["id"] == 11
        wrong_codes(rig, 4)
        rig.type(PICKUP + "#")
        rig.door(0, open_=True)
        assert rig.last("reopened")["id"] == 11
        assert rig.locker.throttle.failures == 4  # a reopen resets nothing
    finally:
        rig.close()


def _pickup(rig):
    """The resident of door 1 takes their parcel and shuts the door: the grace period starts."""
    rig.type(PICKUP + "#")
    rig.door(0, open_=True)
    rig.door(0, parcel=False)
    rig.door(0, open_=False)
    assert rig.last("pickup")["id"] == 11


def _remote_open(rig, label):
    """What a signed door.open runs (locker.commands hands it to locker.doorops)."""
    from locker import doorops

    try:
        return doorops.command(rig.locker, "door.open", {"door": label, "by": "Ann"}, rig.ticks.now)
    finally:
        doorops.drop(rig.locker)


def test_a_remote_open_ends_the_grace_period_of_its_door():
    rig = Rig("codes-grace-remote")
    try:
        _pickup(rig)
        assert _remote_open(rig, "1")["ok"]
        rig.door(0, open_=True)
        rig.door(0, parcel=True)  # a new item goes in
        rig.door(0, open_=False)
        rig.run(7000)
        rig.type(PICKUP + "#")  # well within the 2 minutes: the old code must not open it again
        assert rig.board.display.lines[0] == "Code al gebruikt"
        assert rig.events("reopened") == []
        assert rig.last("denied")["r"] == "used"
    finally:
        rig.close()


def test_another_code_for_the_same_door_ends_its_grace_period():
    rig = Rig("codes-grace-other", extra=[_prec(0, 5)])  # a second pickup code for door 1
    try:
        _pickup(rig)
        rig.run(7000)
        rig.type(_pcode(5) + "#")  # its latch is pulsed, but the door never opens: jammed
        rig.run(10000)
        assert rig.last("jammed")["id"] == 5
        rig.type(PICKUP + "#")
        assert rig.board.display.lines[0] == "Code al gebruikt"
        assert rig.events("reopened") == []
    finally:
        rig.close()


def test_an_unlock_of_another_door_leaves_the_grace_period():
    rig = Rig("codes-grace-kept")
    try:
        _pickup(rig)
        assert _remote_open(rig, "2")["ok"]
        rig.run(7000)
        rig.type(PICKUP + "#")
        assert rig.last("reopened")["d"] == "1"
    finally:
        rig.close()


def test_a_used_code_the_host_removed_still_reopens_then_says_used():
    rig = Rig("codes-used-removed")
    try:
        _pickup(rig)
        # Online, the host removes the used code right after the pickup event (codes.apply).
        rig.locker.codes.apply(2, [], [11])
        assert rig.locker.codes.find_id(11) is None
        rig.run(3000)
        rig.type(PICKUP + "#")  # forgot something: within the grace period the door opens again
        assert rig.last("reopened") == {"k": "reopened", "t": rig.last("reopened")["t"], "d": "1", "id": 11}
        rig.door(0, open_=True)
        rig.door(0, open_=False)
        rig.ticks.advance(rig.cfg.grace_ms)
        rig.type(PICKUP + "#")  # later: "already used", no failure counted
        assert rig.board.display.lines[0] == "Code al gebruikt"
        assert rig.last("denied")["r"] == "used" and rig.last("denied")["id"] == 11
        assert rig.locker.throttle.failures == 0
        rig.boot()  # and after a reboot
        rig.type(PICKUP + "#")
        assert rig.board.display.lines[0] == "Code al gebruikt"
        assert rig.locker.throttle.failures == 0
        assert [e["r"] for e in rig.events("denied")] == ["used", "used"]
    finally:
        rig.close()
