# Growing delays after wrong codes, kept across reboots; the guessing arithmetic.
import fakes
from locker import store, throttle
from locker.ticks import ticks_add


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


def test_count_survives_a_reboot_and_the_wait_restarts_in_full():
    d = fakes.scratch_dir("throttle")
    t = _new(d)
    t.load()
    for i in range(6):
        t.failure(1000 * i)
    assert t.wait_ms(5000) == 20000
    # Power cut 19 s into the wait: the new boot's ticks start anywhere.
    t2 = _new(d)
    assert t2.load() == []
    assert t2.failures == 6
    assert t2.wait_ms(777) == 20000
    assert t2.wait_ms(10777) == 10000
    assert t2.wait_ms(20777) == 0
    t2.failure(30000)
    assert t2.wait_ms(30000) == 40000


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


def test_guesses_per_day():
    # 3 free guesses, then 5+10+...+160 s of growing waits, then one guess per 304 s
    assert throttle.max_guesses_per_day(3, 5000, 300000, 4) == 293
    # one guess per 1 s typing + 1 s wait
    assert throttle.max_guesses_per_day(0, 1000, 1000, 1) == 43200
    # no throttle: one guess every 4 s
    assert throttle.max_guesses_per_day(10**9, 5000, 300000, 4) == 21600


def test_eight_digit_codes_on_24_doors_are_safe_for_a_day():
    per_day = throttle.max_guesses_per_day(3, 5000, 300000)
    assert per_day * 24 / 10**8 < 1e-4
