# Growing delays after wrong codes, kept across reboots; the guessing arithmetic.
import fakes
from locker import store, throttle
from locker.ticks import ticks_add

T0 = 1_790_000_000


def _new(d, **kw):
    return throttle.Throttle(path=d + "/throttle.bin", **kw)


def test_delay_schedule():
    f = [throttle.delay_after(n, 3, 5000, 300000) for n in range(0, 13)]
    assert f == [0, 0, 0, 0, 5000, 10000, 20000, 40000, 80000, 160000, 300000, 300000, 300000]
    assert throttle.delay_after(10**6, 3, 5000, 300000) == 300000
    assert throttle.delay_after(1, 0, 1000, 60000) == 1000


def test_free_failures_then_waits():
    d = fakes.scratch_dir("throttle")
    t = _new(d)
    assert t.load() == []
    assert t.failures == 0
    assert t.wait_ms(0) == 0
    for i in range(3):
        t.failure(i * 1000)
        assert t.wait_ms(i * 1000) == 0
    t.failure(10000)
    assert t.failures == 4
    assert t.wait_ms(10000) == 5000
    assert t.wait_ms(12000) == 3000
    assert t.wait_ms(15000) == 0
    t.failure(16000)
    assert t.wait_ms(16001) == 9999


def test_success_resets_and_writes_only_when_needed():
    d = fakes.scratch_dir("throttle")
    t = _new(d)
    t.load()
    store.reset_counter()
    t.success()
    assert store.bytes_written() == 0
    t.failure(0)
    t.success()
    assert t.failures == 0 and t.wait_ms(0) == 0
    t2 = _new(d)
    t2.load()
    assert t2.failures == 0


def test_count_survives_a_reboot_without_a_clock_and_the_wait_restarts_in_full():
    d = fakes.scratch_dir("throttle")
    t = _new(d)
    t.load()
    for i in range(6):
        t.failure(1000 * i)  # no wall clock known
    assert t.wait_ms(5000) == 20000
    # Power cut 19 s into the wait: the new boot's ticks start anywhere, and nothing tells the time.
    t2 = _new(d)
    assert t2.load(777, None) == []
    assert t2.failures == 6
    assert t2.wait_ms(777) == 20000
    assert t2.wait_ms(10777) == 10000
    assert t2.wait_ms(20777) == 0
    t2.failure(30000)
    assert t2.wait_ms(30000) == 40000


def test_a_reboot_goes_on_with_the_wait_from_the_failures_time():
    d = fakes.scratch_dir("throttle")
    t = _new(d)
    t.load(0, T0)
    for i in range(6):
        t.failure(1000 * i, T0 + i)
    assert t.wait_ms(5000) == 20000
    # A reset 12 s after the last failure, the RTC still set: 11 s of it count (whole seconds on
    # both sides, never more than went by), so 9 s are left.
    t2 = _new(d)
    assert t2.load(50, T0 + 5 + 12) == []
    assert t2.failures == 6
    assert t2.wait_ms(50) == 9000
    assert t2.wait_ms(9050) == 0
    # After a power cut the estimated clock can be behind the failure: then the full wait again.
    t3 = _new(d)
    t3.load(0, T0 + 2)
    assert t3.wait_ms(0) == 20000
    # A reboot long after: the count decayed meanwhile, and is gone from flash too.
    t4 = _new(d)
    t4.load(0, T0 + 5 + 3600)
    assert t4.failures == 0 and t4.wait_ms(0) == 0
    t5 = _new(d)
    t5.load(0, None)
    assert t5.failures == 0


def test_an_old_count_only_file_waits_in_full():
    d = fakes.scratch_dir("throttle")
    store.save(d + "/throttle.bin", b"\x05\x00")
    t = _new(d)
    assert t.load(100, T0) == []
    assert t.failures == 5 and t.wait_ms(100) == 10000


def test_the_count_decays_with_quiet_time_after_the_wait():
    d = fakes.scratch_dir("throttle")
    t = _new(d)
    t.load()
    assert t.level == 10 and t.decay_ms == 300000
    now = 0
    for _ in range(40):  # an attack: 40 wrong codes, each as soon as the wait allows
        now += t.wait_ms(now)
        t.failure(now)
    assert t.failures == 40 and t.wait_ms(now) == 300000
    end = now + 300000  # the last wait runs out here
    t.settle(end + 299999)
    assert t.failures == 40
    t.settle(end + 300000)  # the first step comes down from the level where waits stop growing
    assert t.failures == 9
    t.settle(end + 3 * 300000)
    assert t.failures == 7
    # A resident who mistypes now waits as at the 8th failure, not the 41st.
    t.failure(end + 3 * 300000)
    assert t.failures == 8 and t.wait_ms(end + 3 * 300000) == 80000
    # Fifty minutes of quiet after that wait and the count is gone: the first wrong code is free again.
    end = end + 3 * 300000 + 80000
    t.settle(end + 8 * 300000)
    assert t.failures == 0
    assert store.load(d + "/throttle.bin") == b"\x00" * 6
    t.failure(end + 8 * 300000)
    assert t.failures == 1 and t.wait_ms(end + 8 * 300000) == 0


def test_decay_is_never_quicker_than_the_longest_wait():
    d = fakes.scratch_dir("throttle")
    t = _new(d, decay_ms=1000)
    assert t.decay_ms == 300000


def test_wait_survives_tick_wrap():
    d = fakes.scratch_dir("throttle")
    t = _new(d)
    t.load()
    start = ticks_add(0, -2000)  # 2 s before the ticks wrap
    for _ in range(4):
        t.failure(start)
    assert t.wait_ms(start) == 5000
    assert t.wait_ms(ticks_add(start, 3000)) == 2000
    assert t.wait_ms(ticks_add(start, 5000)) == 0


def test_damaged_file_counts_as_free_failures():
    d = fakes.scratch_dir("throttle")
    with open(d + "/throttle.bin", "wb") as f:
        f.write(b"LK\x01junk")
    t = _new(d)
    problems = t.load()
    assert len(problems) == 1
    assert t.failures == 3
    assert t.wait_ms(0) == 0
    t.failure(0)
    assert t.wait_ms(0) == 5000


def test_failure_is_on_flash_before_it_returns():
    d = fakes.scratch_dir("throttle")
    t = _new(d)
    t.load()
    store.reset_counter()
    t.failure(0)
    assert store.bytes_written() > 0
    assert store.load(d + "/throttle.bin") is not None


def test_a_file_of_the_wrong_length_counts_as_free_failures():
    d = fakes.scratch_dir("throttle")
    store.save(d + "/throttle.bin", b"\x01\x02\x03")
    t = _new(d)
    assert t.load(0, T0) == [d + "/throttle.bin: bad length"]
    assert t.failures == 3 and t.wait_ms(0) == 0
    t.failure(0, T0)
    assert t.wait_ms(0) == 5000
