# Debouncer: a new raw level must hold for stable_ms before it becomes the state.
from locker.debounce import Debouncer
from locker.ticks import ticks_add


def test_initial_state():
    d = Debouncer(1, 20)
    assert d.state == 1
    assert not d.update(1, 0)
    assert d.state == 1


def test_change_needs_stable_ms():
    d = Debouncer(0, 20)
    assert not d.update(1, 100)
    assert not d.update(1, 110)
    assert not d.update(1, 119)
    assert d.state == 0
    assert d.update(1, 120)
    assert d.state == 1
    assert not d.update(1, 130)  # reported once


def test_bounce_restarts_the_wait():
    d = Debouncer(0, 20)
    t = 0
    for level in (1, 0, 1, 0, 1):
        assert not d.update(level, t)
        t += 5
    # last bounce to 1 at t=20; it must hold until t=40
    assert not d.update(1, 39)
    assert d.update(1, 40)
    assert d.state == 1


def test_glitch_back_to_state_cancels():
    d = Debouncer(1, 20)
    assert not d.update(0, 0)
    assert not d.update(1, 10)
    assert not d.update(1, 50)
    assert d.state == 1


def test_release_debounced_too():
    d = Debouncer(0, 10)
    d.update(1, 0)
    assert d.update(1, 10)
    assert not d.update(0, 20)
    assert not d.update(1, 25)
    assert not d.update(0, 26)
    assert d.update(0, 36)
    assert d.state == 0


def test_zero_stable_ms_is_immediate():
    d = Debouncer(0, 0)
    assert d.update(1, 5)
    assert d.update(0, 5)


def test_small_int_states():
    d = Debouncer(-1, 20)
    d.update(3, 0)
    d.update(4, 15)  # a different value restarts the wait
    assert not d.update(4, 30)
    assert d.update(4, 35)
    assert d.state == 4


def test_across_tick_wrap():
    start = ticks_add(0, -5)
    d = Debouncer(0, 20)
    assert not d.update(1, start)
    assert not d.update(1, ticks_add(start, 10))
    assert d.update(1, ticks_add(start, 20))
