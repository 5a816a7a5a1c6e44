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
