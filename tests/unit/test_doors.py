# DoorBank: door state machines, the one-at-a-time solenoid scheduler, alarms.
# Runs under CPython (pytest) and MicroPython (mpy_runner): plain asserts, no pytest import.
from fakes import FakeClock, FakePin
from locker import doors as D
from locker.ticks import ticks_add, ticks_diff

# the door bank's state and events these tests read (locker.doors)
UNLOCKING = 1
EV_PULSE_ON = 1
EV_PULSE_OFF = 2
EV_PARCEL_IN = 10
EV_PARCEL_OUT = 11


class Rig:
    """A bank of n doors on fake pins, all closed, polled every `step` ms of fake (wrapping) ticks."""

    def __init__(self, n=2, start=1000, closed=1, parcels=False, **kw):
        self.clock = FakeClock(start)
        self.sol = [FakePin(0, self.clock) for _ in range(n)]
        self.closed = [FakePin(closed, self.clock) for _ in range(n)]
        if parcels:
            self.parcel = [FakePin(0, self.clock) for _ in range(n - 1)] + [None]
        else:
            self.parcel = [None] * n
        self.bank = D.DoorBank(self.sol, self.closed, self.parcel, **kw)
        self.log = []  # (kind, door, elapsed ms since start)
        self.start = start

    def elapsed(self):
        return ticks_diff(self.clock.now, self.start)

    def poll(self):
        self.bank.poll(self.clock.now)
        on = [i for i in range(len(self.sol)) if self.sol[i].level]
        assert len(on) <= 1, on
        assert self.bank.energized() == (on[0] if on else -1)
        ev = self.bank.events.get()
        while ev >= 0:
            self.log.append((D.event_kind(ev), D.event_door(ev), self.elapsed()))
            ev = self.bank.events.get()

    def run(self, ms, step=10):
        end = ticks_add(self.clock.now, ms)
        while ticks_diff(end, self.clock.now) > 0:
            self.clock.now = ticks_add(self.clock.now, min(step, ticks_diff(end, self.clock.now)))
            self.poll()

    def kinds(self, door=None):
        return [k for (k, d, _) in self.log if door is None or d == door]

    def times(self, kind, door):
        return [t for (k, d, t) in self.log if k == kind and d == door]

    def pulses(self, door):
        """(on, off) pairs in ms since start, from the pin's own write record."""
        out = []
        on = None
        for t, level in self.sol[door].writes:
            t = ticks_diff(t, self.start)
            if level and on is None:
                on = t
            elif not level and on is not None:
                out.append((on, t))
                on = None
        return out


def test_constructor_switches_every_solenoid_off():
    clock = FakeClock(0)
    sol = [FakePin(1, clock), FakePin(1, clock)]
    D.DoorBank(sol, [FakePin(1), FakePin(1)], [None, None])
    assert sol[0].level == 0 and sol[1].level == 0


def test_the_bank_uses_the_boards_pin_lists_not_copies():
    # One list per door role on the heap, not two: the board's lists are the bank's.
    clock = FakeClock(0)
    sol, closed, parcel = [FakePin(0, clock), FakePin(0, clock)], [FakePin(1), FakePin(1)], [None, FakePin(0)]
    bank = D.DoorBank(sol, closed, parcel)
    assert bank.sol is sol and bank.closed_pin is closed and bank.parcel_pin is parcel
    # A tuple still works (and becomes a list of its own).
    bank = D.DoorBank(tuple(sol), tuple(closed), tuple(parcel))
    assert bank.sol == sol and bank.request_unlock(1, 0)


def test_normal_unlock_open_close_cycle():
    r = Rig(n=2)
    assert r.bank.state(0) == D.LOCKED and r.bank.is_closed(0)
    assert r.bank.request_unlock(0, r.clock.now)
    assert r.bank.state(0) == UNLOCKING
    r.poll()
    assert r.sol[0].level == 1 and r.bank.energized() == 0
    r.run(300)
    assert r.sol[0].level == 0 and r.bank.energized() == -1
    assert r.pulses(0) == [(0, 300)]
    assert r.kinds() == [EV_PULSE_ON, EV_PULSE_OFF]
    assert r.bank.state(0) == UNLOCKING
    r.run(200)
    r.closed[0].level = 0  # the spring pushes the door open
    r.run(100)
    assert r.bank.state(0) == D.OPEN and not r.bank.is_closed(0)
    assert r.times(D.EV_OPENED, 0) == [560]  # first seen at 510, then 50 ms debounce
    r.run(5000)
    r.closed[0].level = 1
    r.run(100)
    assert r.bank.state(0) == D.CLOSED
    assert r.kinds() == [EV_PULSE_ON, EV_PULSE_OFF, D.EV_OPENED, D.EV_CLOSED]
    r.run(10000)  # no retry, no jam, no alarm
    assert len(r.log) == 4
    assert r.bank.acknowledge(0)
    assert r.bank.state(0) == D.LOCKED
    assert not r.bank.acknowledge(0)
    assert r.bank.state(1) == D.LOCKED and r.sol[1].writes == [(1000, 0)]


def test_two_requests_run_one_after_the_other_with_the_gap():
    r = Rig(n=3, pulse_ms=300, gap_ms=150)
    assert r.bank.request_unlock(2, r.clock.now)
    assert r.bank.request_unlock(0, r.clock.now)
    r.run(2000, step=5)  # Rig.poll asserts at most one pin is on at every poll
    p2 = r.pulses(2)
    p0 = r.pulses(0)
    assert p2 == [(5, 305)]  # first requested, first served
    assert p0 == [(455, 755)]  # 150 ms gap after the first pulse
    assert r.pulses(1) == []
    assert r.kinds() == [EV_PULSE_ON, EV_PULSE_OFF, EV_PULSE_ON, EV_PULSE_OFF]
    assert [d for (_, d, _) in r.log] == [2, 2, 0, 0]


def test_many_requests_never_overlap():
    r = Rig(n=4, pulse_ms=200, gap_ms=0)
    for d in (3, 1, 0, 2):
        assert r.bank.request_unlock(d, r.clock.now)
    r.run(3000, step=7)
    spans = []
    for d in range(4):
        p = r.pulses(d)
        assert len(p) == 1
        spans.append(p[0])
    spans.sort()
    for i in range(1, 4):
        assert spans[i][0] >= spans[i - 1][1]
    assert [d for (k, d, _) in r.log if k == EV_PULSE_ON] == [3, 1, 0, 2]


def test_already_queued_out_of_range_and_out_of_service_are_refused():
    r = Rig(n=2)
    assert not r.bank.request_unlock(2, r.clock.now)
    assert not r.bank.request_unlock(-1, r.clock.now)
    assert r.bank.request_unlock(0, r.clock.now)
    assert not r.bank.request_unlock(0, r.clock.now)  # queued
    r.poll()
    assert not r.bank.request_unlock(0, r.clock.now)  # pulsing
    r.run(500)
    assert not r.bank.request_unlock(0, r.clock.now)  # waiting to see it open
    r.bank.set_out_of_service(1, True)
    assert not r.bank.request_unlock(1, r.clock.now)
    r.bank.set_out_of_service(1, False)
    assert r.bank.request_unlock(1, r.clock.now)


def test_out_of_service_cancels_a_pulse_not_started():
    r = Rig(n=2)
    r.bank.request_unlock(0, r.clock.now)
    r.bank.request_unlock(1, r.clock.now)
    r.poll()
    r.bank.set_out_of_service(1, True)
    assert r.bank.state(1) == D.LOCKED
    r.run(2000)
    assert r.pulses(1) == []
    assert len(r.pulses(0)) == 1


def test_jammed_latch_two_pulses_then_jammed():
    r = Rig(n=1, pulse_ms=300, confirm_ms=3000, retries=1)
    r.bank.request_unlock(0, r.clock.now)
    r.run(20000)
    assert r.kinds() == [
        EV_PULSE_ON,
        EV_PULSE_OFF,
        D.EV_RETRY,
        EV_PULSE_ON,
        EV_PULSE_OFF,
        D.EV_JAMMED,
    ]
    assert r.pulses(0) == [(10, 310), (3310, 3610)]
    assert r.times(D.EV_JAMMED, 0) == [6610]
    assert r.bank.state(0) == D.LOCKED
    assert r.bank.request_unlock(0, r.clock.now)  # a new try is allowed


def test_no_retries_means_one_pulse():
    r = Rig(n=1, retries=0)
    r.bank.request_unlock(0, r.clock.now)
    r.run(10000)
    assert r.kinds() == [EV_PULSE_ON, EV_PULSE_OFF, D.EV_JAMMED]


def test_door_opening_during_the_retry_wait_cancels_the_retry():
    r = Rig(n=2, pulse_ms=300, gap_ms=150, confirm_ms=100, retries=1)
    r.bank.request_unlock(0, r.clock.now)
    r.bank.request_unlock(1, r.clock.now)
    r.run(500)  # door 0: pulse 10-310, retry queued at 410 behind door 1 (pulse from 460)
    assert r.kinds(0) == [EV_PULSE_ON, EV_PULSE_OFF, D.EV_RETRY]
    assert r.bank.energized() == 1
    r.closed[0].level = 0
    r.run(5000)
    assert r.kinds(0) == [EV_PULSE_ON, EV_PULSE_OFF, D.EV_RETRY, D.EV_OPENED]
    assert r.pulses(0) == [(10, 310)]
    assert r.bank.state(0) == D.OPEN


def test_opened_while_the_pulse_is_still_on():
    r = Rig(n=1, pulse_ms=300)
    r.bank.request_unlock(0, r.clock.now)
    r.run(100)
    r.closed[0].level = 0
    r.run(1000)
    assert r.kinds() == [EV_PULSE_ON, D.EV_OPENED, EV_PULSE_OFF]
    assert r.pulses(0) == [(10, 310)]  # the pulse runs its course
    assert r.bank.state(0) == D.OPEN
    r.run(10000)
    assert D.EV_RETRY not in r.kinds()


def test_cut_wire_still_pulses_and_counts_as_open():
    r = Rig(n=1, closed=0)  # the closed sensor reads "open" from the start
    assert not r.bank.is_closed(0)
    assert r.bank.state(0) == D.OPEN  # at boot it reads like a door standing open
    assert r.bank.request_unlock(0, r.clock.now)
    r.poll()
    assert r.sol[0].level == 1
    r.run(1000)
    assert r.kinds() == [EV_PULSE_ON, D.EV_SENSOR_SUSPECT, EV_PULSE_OFF, D.EV_OPENED]
    assert r.bank.state(0) == D.OPEN
    r.run(10000)
    assert D.EV_RETRY not in r.kinds() and D.EV_JAMMED not in r.kinds()


def test_left_open_alarm_once_per_open_period():
    r = Rig(n=1, open_alarm_ms=120000)
    r.bank.request_unlock(0, r.clock.now)
    r.run(400)
    r.closed[0].level = 0
    r.run(1000, step=10)
    opened = r.times(D.EV_OPENED, 0)[0]
    r.run(118000, step=100)
    assert D.EV_LEFT_OPEN not in r.kinds()
    r.run(10000, step=100)
    t = r.times(D.EV_LEFT_OPEN, 0)
    assert len(t) == 1
    assert 120000 <= t[0] - opened < 120100
    r.run(300000, step=1000)
    assert len(r.times(D.EV_LEFT_OPEN, 0)) == 1
    r.closed[0].level = 1
    r.run(100)
    assert r.bank.state(0) == D.CLOSED
    r.closed[0].level = 0  # opened again before the app acknowledged: not forced
    r.run(100)
    assert r.bank.state(0) == D.OPEN
    assert D.EV_FORCED not in r.kinds()
    r.run(121000, step=500)
    assert len(r.times(D.EV_LEFT_OPEN, 0)) == 2


def test_forced_open_while_locked():
    r = Rig(n=2)
    r.run(100)
    r.closed[1].level = 0
    r.run(100)
    assert r.kinds() == [D.EV_FORCED]
    assert r.log[0][1] == 1
    assert r.bank.state(1) == D.OPEN
    r.closed[1].level = 1
    r.run(100)
    assert r.kinds() == [D.EV_FORCED, D.EV_CLOSED]
    assert r.bank.state(1) == D.LOCKED  # not CLOSED: no pickup to check
    assert r.pulses(1) == []


def test_forced_door_left_open_alarms_too():
    r = Rig(n=1, open_alarm_ms=5000)
    r.closed[0].level = 0
    r.run(6000)
    assert r.kinds() == [D.EV_FORCED, D.EV_LEFT_OPEN]


def test_bouncing_contacts_make_no_events():
    r = Rig(n=1, parcels=False, sensor_debounce_ms=50)
    level = 1
    for _ in range(40):  # 10 ms bounces on a closed, locked door
        level = 1 - level
        r.closed[0].level = level
        r.run(10, step=5)
    r.closed[0].level = 1
    r.run(500)
    assert r.log == []
    assert r.bank.state(0) == D.LOCKED
    # an unlock whose door bounces as it opens gives exactly one OPENED
    r.bank.request_unlock(0, r.clock.now)
    r.run(400)
    for level in (0, 1, 0, 1, 0, 1, 0):
        r.closed[0].level = level
        r.run(20, step=5)
    r.run(200)
    assert r.kinds() == [EV_PULSE_ON, EV_PULSE_OFF, D.EV_OPENED]


def test_parcel_sensor_events_and_none_without_sensor():
    r = Rig(n=2, parcels=True)
    assert r.bank.has_parcel(0) is False
    assert r.bank.has_parcel(1) is None
    r.parcel[0].level = 1
    r.run(30)
    r.parcel[0].level = 0  # a bounce
    r.run(30)
    r.parcel[0].level = 1
    r.run(100)
    assert r.kinds() == [EV_PARCEL_IN]
    assert r.bank.has_parcel(0) is True
    r.parcel[0].level = 0
    r.run(100)
    assert r.kinds() == [EV_PARCEL_IN, EV_PARCEL_OUT]


def test_huge_pulse_ms_is_clamped():
    assert D.HARD_MAX_PULSE_MS == 1000
    r = Rig(n=1, pulse_ms=10**6)
    r.bank.request_unlock(0, r.clock.now)
    r.run(5000, step=1)
    assert r.pulses(0)[0] == (1, 1001)


def test_a_late_poll_still_switches_the_pulse_off_first():
    r = Rig(n=2, pulse_ms=300, gap_ms=0)
    r.bank.request_unlock(0, r.clock.now)
    r.bank.request_unlock(1, r.clock.now)
    r.poll()
    r.clock.now = ticks_add(r.clock.now, 5000)  # a slow flash write
    r.closed[0].level = 0
    r.poll()
    assert r.sol[0].level == 0
    assert r.sol[1].level == 1
    assert r.pulses(0) == [(0, 5000)]
    assert r.kinds()[:2] == [EV_PULSE_ON, EV_PULSE_OFF]


def test_ticks_wrap():
    start = ticks_add(0, -250)  # 250 ms before the tick counter wraps (on a 2**30 period)
    r = Rig(n=2, start=start, pulse_ms=300, gap_ms=150, confirm_ms=1000, retries=1)
    r.bank.request_unlock(0, r.clock.now)
    r.bank.request_unlock(1, r.clock.now)
    r.run(10000)
    assert r.pulses(0) == [(10, 310), (1310, 1610)]  # retry 1000 ms after its own pulse
    assert r.pulses(1) == [(460, 760), (1760, 2060)]
    assert r.times(D.EV_JAMMED, 0) == [2610]
    r.bank.request_unlock(0, r.clock.now)
    r.run(400)
    r.closed[0].level = 0
    r.run(100)
    assert r.bank.state(0) == D.OPEN


def test_all_off():
    r = Rig(n=3)
    for d in range(3):
        r.bank.request_unlock(d, r.clock.now)
    r.run(100)
    assert r.sol[0].level == 1
    r.bank.all_off()
    assert r.sol[0].level == 0 and r.bank.energized() == -1
    assert r.bank.state(1) == D.LOCKED and r.bank.state(2) == D.LOCKED
    r.run(10000)
    assert r.pulses(1) == [] and r.pulses(2) == []
    assert r.kinds(0) == [EV_PULSE_ON, EV_PULSE_OFF, D.EV_JAMMED]  # cut pulse: no retry
    assert r.bank.request_unlock(1, r.clock.now)
    r.run(1000)
    assert len(r.pulses(1)) == 1


def test_all_off_stops_retries_too():
    r = Rig(n=1, confirm_ms=1000, retries=3)
    r.bank.request_unlock(0, r.clock.now)
    r.run(500)  # pulse over, waiting to see the door open
    r.bank.all_off()
    r.run(5000)
    assert r.kinds() == [EV_PULSE_ON, EV_PULSE_OFF, D.EV_JAMMED]


def test_assume_open_after_reboot():
    r = Rig(n=1, closed=0)
    assert r.bank.assume_open(0, r.clock.now)
    assert r.bank.state(0) == D.OPEN
    r.closed[0].level = 1
    r.run(100)
    assert r.kinds() == [D.EV_CLOSED]
    assert r.bank.state(0) == D.CLOSED
    assert not r.bank.assume_open(0, r.clock.now)


def test_a_door_open_at_boot_is_open_not_locked():
    r = Rig(n=3, open_alarm_ms=5000)
    r.closed[0].level = 0  # doors 1 and 2 stood open through the power cut
    r.closed[1].level = 0
    r.bank = D.DoorBank(r.sol, r.closed, r.parcel, open_alarm_ms=5000, now_ms=r.clock.now)
    assert [r.bank.state(d) for d in range(3)] == [D.OPEN, D.OPEN, D.LOCKED]
    r.run(200)
    assert r.kinds() == []  # forced or not is the app's to say (its journal may explain the door)
    assert r.bank.assume_open(1, r.clock.now)  # door 2: a pickup the cut interrupted
    r.run(4800)
    assert r.kinds(0) == [D.EV_LEFT_OPEN] and r.times(D.EV_LEFT_OPEN, 0) == [5000]  # from the boot
    r.closed[0].level = 1
    r.closed[1].level = 1
    r.run(100)
    assert r.kinds(0)[-1] == D.EV_CLOSED and r.bank.state(0) == D.LOCKED  # nobody unlocked it
    assert r.kinds(1)[-1] == D.EV_CLOSED and r.bank.state(1) == D.CLOSED  # the pickup's close


def test_names_and_event_encoding():
    assert D.name_of_state(D.LOCKED) == "locked"
    assert D.name_of_state(UNLOCKING) == "unlocking"
    assert D.name_of_state(D.OPEN) == "open"
    assert D.name_of_state(D.CLOSED) == "closed"
    kinds = (
        EV_PULSE_ON,
        EV_PULSE_OFF,
        D.EV_OPENED,
        D.EV_CLOSED,
        D.EV_JAMMED,
        D.EV_RETRY,
        D.EV_LEFT_OPEN,
        D.EV_FORCED,
        D.EV_SENSOR_SUSPECT,
        EV_PARCEL_IN,
        EV_PARCEL_OUT,
    )
    assert len(set(kinds)) == len(kinds) and 0 not in kinds and max(kinds) < 256
    for k in kinds:
        ev = k << 8 | 7
        assert D.event_kind(ev) == k and D.event_door(ev) == 7


class _QuietPin:
    """A pin that records nothing, so a heap-locked poll can drive it."""

    def __init__(self, level=0):
        self.level = level

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = v
        return None


def test_poll_does_not_allocate():
    try:
        import micropython

        lock = micropython.heap_lock
        unlock = micropython.heap_unlock
    except (ImportError, AttributeError):  # CPython: nothing to measure, run the same path
        lock = unlock = None
    sol = [_QuietPin(), _QuietPin()]
    closed = [_QuietPin(1), _QuietPin(1)]
    parcel = [_QuietPin(1), None]
    bank = D.DoorBank(sol, closed, parcel, open_alarm_ms=2000, confirm_ms=500, queue_size=64)
    bank.request_unlock(0, 0)
    bank.request_unlock(1, 0)
    seen = 0
    if lock:
        lock()
    try:
        t = 0
        for i in range(600):
            t = ticks_add(t, 10)
            if i == 50:
                closed[0].level = 0
                parcel[0].level = 0
            elif i == 400:
                closed[0].level = 1
            bank.poll(t)
            ev = bank.events.get()
            while ev >= 0:
                seen += 1
                ev = bank.events.get()
    finally:
        if unlock:
            unlock()
    # door 0: on, off, opened, parcel_out, left_open, closed; door 1: on, off, retry, on, off, jammed
    assert seen == 12, seen
