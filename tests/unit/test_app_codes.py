# What a typed code does to the guessing throttle and to a door's grace period, beyond a plain pickup:
# return codes, doors unlocked by someone else, and used codes the host has removed.
from staffrig import RETURN, Rig


def _wrong(rig, times):
    for i in range(times):
        rig.type("%08d#" % (90000000 + i))
    rig.run(rig.locker.throttle.wait_ms(rig.ticks.now) + 10)


def test_a_return_code_does_not_reset_the_throttle():
    rig = Rig("codes-return-throttle")
    try:
        _wrong(rig, 4)
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
        _wrong(rig, 4)
        rig.type(RETURN + "#")
        assert rig.last("denied")["r"] == "no_door"
        assert rig.locker.throttle.failures == 4
        assert rig.locker.throttle.wait_ms(rig.ticks.now) == 0
        rig.type("12121212#")
        assert rig.locker.throttle.failures == 5
        assert rig.locker.throttle.wait_ms(rig.ticks.now) > 0
    finally:
        rig.close()
