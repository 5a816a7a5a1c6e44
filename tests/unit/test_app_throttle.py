# The guessing throttle at the keypad: codes refused during a wait reach the host, a reset goes on
# with the wait, the count decays with quiet time. (Apart from test_app_codes: each test module
# runs in one 128K heap under MicroPython.)
from staffrig import PICKUP, Rig, wrong_codes


def test_codes_refused_during_a_wait_reach_the_host_counted_at_most_once_a_minute():
    rig = Rig("codes-wait-refused")
    try:
        wrong_codes(rig, 6, wait_out=False)  # the 6th wrong code starts a 20 s wait
        for _ in range(3):
            rig.type(PICKUP + "#")
        assert rig.board.display.lines[0] == "Te veel pogingen" and rig.energized_doors() == []
        evs = rig.events("wait_refused")
        assert [(e["c"], e["n"]) for e in evs] == [(1, 6)]  # the first at once, the next two held back
        rig.run(61000, step=500)
        evs = rig.events("wait_refused")
        assert [(e["c"], e["n"]) for e in evs] == [(1, 6), (2, 6)]
        rig.run(61000, step=500)
        assert len(rig.events("wait_refused")) == 2  # nothing more to report
    finally:
        rig.close()


def test_a_reset_goes_on_with_the_wait_where_it_was():
    rig = Rig("codes-wait-reset")
    try:
        wrong_codes(rig, 6, wait_out=False)  # the 6th wrong code starts a 20 s wait
        failed_at = rig.last("denied")["t"]
        rig.rtc = failed_at + 8  # a reset 8 s later: the RTC kept the time
        rig.boot()
        assert rig.locker.throttle.failures == 6
        rig.type(PICKUP + "#")
        # 7 of the 8 s count (whole seconds, never more than went by): 13 s left, not 20
        assert rig.board.display.lines == ("Te veel pogingen", "Wacht 13 sec")
        rig.run(13000, step=100)
        rig.type(PICKUP + "#")
        assert rig.energized_doors() == [0]
    finally:
        rig.close()


def test_the_count_decays_while_the_keypad_is_quiet():
    rig = Rig("codes-decay")
    try:
        wrong_codes(rig, 4)
        assert rig.locker.throttle.failures == 4
        rig.run(301000, step=1000)  # five minutes of quiet after the wait ran out: one step down
        assert rig.locker.throttle.failures == 3
        rig.type("12121212#")
        assert rig.last("denied")["n"] == 4
    finally:
        rig.close()
