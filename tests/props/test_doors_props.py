"""Property tests for DoorBank: whatever the call pattern, one solenoid at a time, bounded pulses."""

from hypothesis import given, settings
from hypothesis import strategies as st

from locker import doors as D
from locker.ticks import ticks_add, ticks_diff

# the door bank's state and events these tests read (locker.doors)
UNLOCKING = 1
EV_PULSE_ON = 1
EV_PULSE_OFF = 2
EV_PARCEL_IN = 10
EV_PARCEL_OUT = 11

KINDS = {
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
}


class Board:
    """Solenoid pins that check, at every write, that no other solenoid is on."""

    def __init__(self, n, now):
        self.now = now
        self.sol = [0] * n
        self.on_since = [None] * n
        self.longest = 0  # longest finished pulse, ms

    def pin(self, i):
        board = self

        class Sol:
            def value(self, v=None):
                if v is None:
                    return board.sol[i]
                if v:
                    others = [j for j, lv in enumerate(board.sol) if lv and j != i]
                    assert not others, "solenoid %d energized while %r on" % (i, others)
                    if not board.sol[i]:
                        board.on_since[i] = board.now
                elif board.sol[i]:
                    board.longest = max(board.longest, ticks_diff(board.now, board.on_since[i]))
                    board.on_since[i] = None
                board.sol[i] = 1 if v else 0

        return Sol()


class In:
    def __init__(self, level):
        self.level = level

    def value(self, v=None):
        assert v is None, "sensors are inputs"
        return self.level


SMALL_STEP = st.integers(0, 60)
MEDIUM_STEP = st.integers(60, 3000)
BIG_JUMP = st.integers(3000, 300_000)  # a slow flash write, a blocking network call...

SAFE_OPS = st.one_of(
    st.tuples(st.just("req"), st.integers(-2, 6)),
    st.tuples(st.just("flip_closed"), st.integers(0, 5)),
    st.tuples(st.just("flip_parcel"), st.integers(0, 5)),
    st.tuples(st.just("step"), st.one_of(SMALL_STEP, SMALL_STEP, MEDIUM_STEP, BIG_JUMP)),
    st.tuples(st.just("ack"), st.integers(0, 5)),
)
HOSTILE_OPS = st.one_of(
    SAFE_OPS,
    st.tuples(st.just("all_off"), st.just(0)),
    st.tuples(st.just("oos"), st.integers(0, 5)),
    st.tuples(st.just("in_service"), st.integers(0, 5)),
    st.tuples(st.just("assume_open"), st.integers(0, 5)),
)

CONFIG = st.fixed_dictionaries(
    {
        "n": st.integers(1, 5),
        "pulse_ms": st.one_of(st.integers(-10, 1500), st.integers(1500, 10**7)),
        "gap_ms": st.integers(0, 500),
        "confirm_ms": st.integers(0, 5000),
        "retries": st.integers(0, 3),
        "open_alarm_ms": st.integers(0, 200_000),
        "sensor_debounce_ms": st.integers(0, 100),
        # anywhere, or right before the 2**30 tick wrap
        "start": st.one_of(st.integers(0, (1 << 30) - 1), st.integers(-5000, 0).map(lambda d: ticks_add(0, d))),
        "closed": st.lists(st.booleans(), min_size=5, max_size=5),
        "parcels": st.lists(st.sampled_from([None, 0, 1]), min_size=5, max_size=5),
    }
)


def run(cfg, ops):
    n = cfg["n"]
    board = Board(n, cfg["start"])
    closed = [In(1 if cfg["closed"][i] else 0) for i in range(n)]
    parcels = [None if cfg["parcels"][i] is None else In(cfg["parcels"][i]) for i in range(n)]
    bank = D.DoorBank(
        [board.pin(i) for i in range(n)],
        closed,
        parcels,
        pulse_ms=cfg["pulse_ms"],
        gap_ms=cfg["gap_ms"],
        confirm_ms=cfg["confirm_ms"],
        retries=cfg["retries"],
        open_alarm_ms=cfg["open_alarm_ms"],
        sensor_debounce_ms=cfg["sensor_debounce_ms"],
        queue_size=64,
    )
    assert board.sol == [0] * n
    st_ = {"max_step": 0, "waiting": [False] * n, "pulsing": -1}

    def check_and_drain():
        on = [i for i in range(n) if board.sol[i]]
        assert len(on) <= 1
        assert bank.energized() == (on[0] if on else -1)
        # The bound: poll() switches a pulse off at the first poll at or after pulse_ms (<= HARD_MAX),
        # so a pulse can overrun by less than the time step that reached that poll.
        bound = D.HARD_MAX_PULSE_MS + st_["max_step"]
        for i in on:
            assert ticks_diff(board.now, board.on_since[i]) < bound, (i, board.on_since[i], board.now)
        assert board.longest < bound, (board.longest, bound)
        ev = bank.events.get()
        while ev >= 0:
            kind, door = D.event_kind(ev), D.event_door(ev)
            assert kind in KINDS, ev
            assert 0 <= door < n, ev
            if kind == EV_PULSE_ON:
                assert st_["pulsing"] == -1
                st_["pulsing"] = door
                st_["waiting"][door] = False
            elif kind == EV_PULSE_OFF:
                assert st_["pulsing"] == door
                st_["pulsing"] = -1
            ev = bank.events.get()
        assert bank.events.dropped == 0

    def step(ms):
        st_["max_step"] = max(st_["max_step"], ms)
        board.now = ticks_add(board.now, ms)
        bank.poll(board.now)
        check_and_drain()

    for op, arg in ops:
        if op == "req":
            ok = bank.request_unlock(arg, board.now)
            if not (0 <= arg < n):
                assert ok is False
            elif ok:
                assert not st_["waiting"][arg]
                st_["waiting"][arg] = True
                assert bank.state(arg) == UNLOCKING
        elif op == "flip_closed" and arg < n:
            closed[arg].level ^= 1
        elif op == "flip_parcel" and arg < n and parcels[arg] is not None:
            parcels[arg].level ^= 1
        elif op == "step":
            step(arg)
        elif op == "ack" and arg < n:
            bank.acknowledge(arg)
        elif op == "all_off":
            bank.all_off()
            assert board.sol == [0] * n
            st_["waiting"] = [False] * n  # pending unlocks are cancelled
        elif op == "oos" and arg < n:
            bank.set_out_of_service(arg, True)
            st_["waiting"][arg] = False  # may be cancelled
        elif op == "in_service" and arg < n:
            bank.set_out_of_service(arg, False)
        elif op == "assume_open" and arg < n:
            bank.assume_open(arg, board.now)
        check_and_drain()
    # Then let it run: every accepted request must have got its pulse.
    for _ in range(2000):
        step(10)
    assert st_["waiting"] == [False] * n, st_["waiting"]
    for _ in range(300):
        step(1000)
    assert bank.energized() == -1
    assert board.sol == [0] * n


@settings(max_examples=400, deadline=None)
@given(CONFIG, st.lists(SAFE_OPS, max_size=80))
def test_one_solenoid_bounded_pulses_and_every_request_pulses(cfg, ops):
    run(cfg, ops)


@settings(max_examples=300, deadline=None)
@given(CONFIG, st.lists(HOSTILE_OPS, max_size=80))
def test_safety_holds_with_all_off_and_out_of_service(cfg, ops):
    run(cfg, ops)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**7), st.lists(st.integers(1, 400), min_size=1, max_size=60))
def test_pulse_length_is_clamped_and_overruns_by_less_than_one_step(pulse_ms, steps):
    board = Board(1, 0)
    bank = D.DoorBank([board.pin(0)], [In(1)], [None], pulse_ms=pulse_ms)
    bank.request_unlock(0, 0)
    bank.poll(0)
    assert board.sol[0] == 1
    expected = min(pulse_ms, D.HARD_MAX_PULSE_MS)
    i = 0
    while board.sol[0]:
        s = steps[i % len(steps)]
        i += 1
        board.now = ticks_add(board.now, s)
        bank.poll(board.now)
        on_for = ticks_diff(board.now, 0)
        if board.sol[0]:
            assert on_for < expected
        else:
            assert expected <= on_for < expected + s
