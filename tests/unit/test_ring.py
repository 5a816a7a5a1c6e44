# Ring: bounded FIFO of small ints that counts what it drops.
from locker.ring import Ring


def test_fifo_order_and_empty():
    r = Ring(4)
    assert len(r) == 0
    assert r.get() == -1
    for v in (49, 50, 51):
        assert r.put(v)
    assert len(r) == 3
    assert r.get() == 49
    assert r.get() == 50
    assert r.get() == 51
    assert r.get() == -1
    assert len(r) == 0


def test_overflow_drops_newest_and_counts():
    r = Ring(2)
    assert r.put(1)
    assert r.put(2)
    assert not r.put(3)
    assert not r.put(4)
    assert r.dropped == 2
    assert len(r) == 2
    assert r.get() == 1
    assert r.put(5)
    assert r.dropped == 2
    assert r.get() == 2
    assert r.get() == 5
    assert r.get() == -1


def test_wraps_around_many_times():
    r = Ring(3)
    expect = 0
    for i in range(100):
        assert r.put(i)
        if i % 2:
            assert r.put(1000 + i)
        while len(r) > 1:
            v = r.get()
            assert v >= 0
            expect += 1
    assert r.dropped == 0
    assert expect > 100


def test_order_preserved_across_wrap():
    r = Ring(3)
    seq = []
    out = []
    for i in range(20):
        r.put(i)
        seq.append(i)
        if i % 3 == 2:
            while len(r):
                out.append(r.get())
    while len(r):
        out.append(r.get())
    assert out == seq


def test_clear_empties_but_keeps_drop_count():
    r = Ring(1)
    r.put(7)
    r.put(8)
    assert r.dropped == 1
    r.clear()
    assert len(r) == 0
    assert r.get() == -1
    assert r.dropped == 1
    assert r.put(9)
    assert r.get() == 9


def test_size_must_be_positive():
    try:
        Ring(0)
    except ValueError:
        return
    assert False, "Ring(0) accepted"


def test_slots_hold_what_the_queues_carry_in_two_bytes():
    # Door events (kind << 8 | door), key codes and lock-board events all fit 16 bits: a slot of
    # two bytes, not four (the door bank's ring has 32 of them).
    r = Ring(32)
    assert len(bytes(r._buf)) == 2 * 32
    assert r.put(0xFFFF) and r.put(11 << 8 | 255)
    assert r.get() == 0xFFFF and r.get() == 11 << 8 | 255


def test_a_value_that_does_not_fit_is_refused_not_cut_short():
    r = Ring(2)
    for bad in (0x10000, -1):
        try:
            r.put(bad)
        except ValueError:
            pass
        else:
            assert False, "%d accepted" % bad
    assert len(r) == 0 and r.dropped == 0
