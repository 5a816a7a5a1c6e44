import fakes
from locker.clock import WallClock

T0 = 1_790_000_000  # an epoch in 2026


def test_rtc_time_is_known():
    d = fakes.scratch_dir("clock")
    c = WallClock(d + "/clock.bin")
    c.boot(T0, 0)
    assert c.known
    assert c.now(5000) == T0 + 5


def test_never_known_means_none():
    d = fakes.scratch_dir("clock")
    c = WallClock(d + "/clock.bin")
    c.boot(None, 0)
    assert c.now(1000) is None and not c.known


def test_after_power_cut_estimate_starts_from_last_saved_time():
    d = fakes.scratch_dir("clock")
    c = WallClock(d + "/clock.bin")
    c.boot(None, 0)
    c.set(T0, 0)
    c.tick(700_000)  # saves every 10 minutes
    again = WallClock(d + "/clock.bin")
    again.boot(None, 50)  # the RTC lost its time
    assert not again.known
    assert again.now(50) == T0 + 700  # never later than the true time
    assert again.now(10_050) == T0 + 710


def test_rtc_behind_saved_time_is_not_trusted():
    d = fakes.scratch_dir("clock")
    c = WallClock(d + "/clock.bin")
    c.boot(None, 0)
    c.set(T0, 0)
    again = WallClock(d + "/clock.bin")
    again.boot(T0 - 86400, 0)
    assert not again.known and again.now(0) == T0


def test_corrupt_clock_file_is_reported_not_fatal():
    d = fakes.scratch_dir("clock")
    with open(d + "/clock.bin", "wb") as f:
        f.write(b"LK\x01garbage")
    c = WallClock(d + "/clock.bin")
    c.boot(None, 0)
    assert c.problem
    assert c.now(0) is None


def test_rtc_time_is_saved_at_boot_so_a_quick_power_cut_keeps_an_estimate():
    d = fakes.scratch_dir("clock")
    WallClock(d + "/clock.bin").boot(T0, 0)  # knew the time, cut within seconds
    again = WallClock(d + "/clock.bin")
    again.boot(None, 0)
    assert not again.known
    assert again.now(0) == T0


def test_the_hosts_time_goes_to_the_rtc_which_keeps_it_across_a_reset():
    d = fakes.scratch_dir("clock")
    rtc = []
    c = WallClock(d + "/clock.bin", rtc=rtc.append, vouched_path=d + "/vouched.bin")
    c.boot(None, 0)
    c.host_time(T0, 0)
    assert rtc == [T0] and c.known
    c.host_time(T0 + 2, 1000)  # in step (2 s): nothing to set
    assert rtc == [T0]
    c.host_time(T0 + 100, 2000)
    assert rtc == [T0, T0 + 100]
    again = WallClock(d + "/clock.bin", vouched_path=d + "/vouched.bin")
    again.boot(rtc[-1] + 5, 0)  # after a reset the RTC still runs
    assert again.known and again.now(0) == T0 + 105


def test_the_vouched_time_survives_a_damaged_clock_file_and_floors_a_lagging_rtc():
    d = fakes.scratch_dir("clock")
    c = WallClock(d + "/clock.bin", vouched_path=d + "/vouched.bin")
    c.boot(T0 - 100, 0)
    c.host_time(T0, 0)
    assert c.vouched == T0
    with open(d + "/clock.bin", "wb") as f:
        f.write(b"LK\x01garbage")
    again = WallClock(d + "/clock.bin", vouched_path=d + "/vouched.bin")
    again.boot(T0 - 3 * 86400, 0)  # an RTC three days behind a time the host vouched for
    assert again.problem
    assert again.vouched == T0
    assert not again.known and again.now(0) == T0


def test_the_vouched_time_only_rises_but_a_proven_time_sets_it():
    d = fakes.scratch_dir("clock")
    c = WallClock(d + "/clock.bin", vouched_path=d + "/vouched.bin")
    c.boot(None, 0)
    c.host_time(T0 + 100, 0)
    c.host_time(T0 + 50, 0)  # an older command (the gate admitted it): the clock follows, not the mark
    assert c.vouched == T0 + 100 and c.now(0) == T0 + 50
    c.host_time(T0 - 86400, 0, proven=True)
    assert c.vouched == T0 - 86400 and c.now(0) == T0 - 86400 and c.known
    again = WallClock(d + "/clock.bin", vouched_path=d + "/vouched.bin")
    again.boot(None, 0)
    assert again.vouched == T0 - 86400 and again.now(0) == T0 - 86400
