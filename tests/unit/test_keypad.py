# MatrixKeypad: scan, debounce, multi-key (and ghost) rejection, both key maps, no allocation.
from locker.keypad import MatrixKeypad
from locker.ticks import ticks_add

KEYS_4X3 = "123456789*0#"
KEYS_4X4 = "123A456B789C*0#D"


class _RowPin:
    def __init__(self, matrix, r):
        self.m = matrix
        self.r = r
        self.level = 1

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0
        m = self.m
        if self.level:
            if m.driven == self.r:
                m.driven = -1
        else:
            if m.driven != -1 and m.driven != self.r:
                m.overlaps += 1  # two rows low at once
            m.driven = self.r
        return None


class _ColPin:
    def __init__(self, matrix, c):
        self.m = matrix
        self.c = c

    def value(self, v=None):
        return self.m.col_level(self.c)


class Matrix:
    """A keypad matrix without diodes: rows are open-drain outputs, columns have pull-ups.

    With ghosting=True a column also reads low when it reaches the driven row through a
    path of pressed keys (the classic phantom key of three keys in an L). col_level()
    allocates nothing when ghosting=False.
    """

    def __init__(self, keys, nrows, ghosting=True):
        self.keys = keys
        self.nrows = nrows
        self.ncols = len(keys) // nrows
        self.down = bytearray(len(keys))
        self.driven = -1
        self.overlaps = 0
        self.ghosting = ghosting
        self.rows = [_RowPin(self, r) for r in range(nrows)]
        self.cols = [_ColPin(self, c) for c in range(self.ncols)]

    def set(self, chars):
        """Exactly these keys are down (a string of key characters)."""
        for i in range(len(self.down)):
            self.down[i] = 0
        for ch in chars:
            self.down[self.keys.index(ch)] = 1

    def col_level(self, c):
        r = self.driven
        if r < 0:
            return 1
        nc = self.ncols
        if self.down[r * nc + c]:
            return 0
        if not self.ghosting:
            return 1
        rows = [r]
        seen_rows = {r}
        seen_cols = set()
        while rows:
            rr = rows.pop()
            for cc in range(nc):
                if self.down[rr * nc + cc] and cc not in seen_cols:
                    seen_cols.add(cc)
                    for r2 in range(self.nrows):
                        if self.down[r2 * nc + cc] and r2 not in seen_rows:
                            seen_rows.add(r2)
                            rows.append(r2)
        return 0 if c in seen_cols else 1


def make(keys=KEYS_4X3, nrows=4, debounce_ms=20, queue_size=16, ghosting=True):
    m = Matrix(keys, nrows, ghosting)
    kp = MatrixKeypad(m.rows, m.cols, keys, debounce_ms, queue_size)
    return m, kp


def drain(kp):
    out = ""
    while True:
        v = kp.events.get()
        if v < 0:
            return out
        out += chr(v)


def run(m, kp, chars, ms, t, step=5):
    """Hold `chars` down for `ms`, scanning every `step` ms from t; returns the new t."""
    m.set(chars)
    end = t + ms
    while t < end:
        kp.scan(t)
        t += step
    return t


def type_keys(m, kp, text, t=0, hold=60, gap=60):
    for ch in text:
        t = run(m, kp, ch, hold, t)
        t = run(m, kp, "", gap, t)
    return t


def test_every_key_4x3():
    m, kp = make()
    type_keys(m, kp, KEYS_4X3)
    assert drain(kp) == KEYS_4X3
    assert kp.rejected == 0
    assert m.overlaps == 0


def test_every_key_4x4():
    m, kp = make(KEYS_4X4)
    type_keys(m, kp, KEYS_4X4)
    assert drain(kp) == KEYS_4X4


def test_events_are_ord_ints():
    m, kp = make(KEYS_4X4)
    type_keys(m, kp, "A#")
    assert kp.events.get() == ord("A")
    assert kp.events.get() == ord("#")
    assert kp.events.get() == -1


def test_rows_idle_high_and_one_row_at_a_time():
    m, kp = make(KEYS_4X4)
    type_keys(m, kp, "1D")
    for p in m.rows:
        assert p.level == 1
    assert m.overlaps == 0


def test_emitted_only_after_debounce():
    m, kp = make(debounce_ms=20)
    m.set("5")
    kp.scan(100)
    kp.scan(110)
    kp.scan(119)
    assert len(kp.events) == 0
    kp.scan(120)
    assert drain(kp) == "5"


def test_press_shorter_than_debounce_emits_nothing():
    m, kp = make(debounce_ms=20)
    t = run(m, kp, "7", 15, 0)
    t = run(m, kp, "", 100, t)
    assert drain(kp) == ""


def test_bouncing_press_emits_once():
    m, kp = make(debounce_ms=20)
    t = 0
    for _ in range(5):  # contact chatter: 5 ms closed, 5 ms open
        t = run(m, kp, "3", 5, t, step=1)
        t = run(m, kp, "", 5, t, step=1)
    assert drain(kp) == ""
    t = run(m, kp, "3", 30, t, step=1)
    assert drain(kp) == "3"
    for _ in range(5):  # chatter on release too
        t = run(m, kp, "", 5, t, step=1)
        t = run(m, kp, "3", 5, t, step=1)
    t = run(m, kp, "", 100, t, step=1)
    assert drain(kp) == ""


def test_held_key_emits_once():
    m, kp = make()
    t = run(m, kp, "9", 5000, 0)
    assert drain(kp) == "9"
    run(m, kp, "", 50, t)
    assert drain(kp) == ""


def test_key_must_be_released_for_debounce_before_repeating():
    m, kp = make(debounce_ms=20)
    t = run(m, kp, "1", 50, 0)
    t = run(m, kp, "", 10, t)  # too short a release
    t = run(m, kp, "1", 50, t)
    assert drain(kp) == "1"
    t = run(m, kp, "", 30, t)  # a real release
    t = run(m, kp, "1", 50, t)
    assert drain(kp) == "1"


def test_same_key_twice():
    m, kp = make()
    type_keys(m, kp, "00#")
    assert drain(kp) == "00#"


def test_two_keys_at_once_rejected():
    m, kp = make()
    t = run(m, kp, "12", 200, 0)
    assert kp.keys_down() == 2
    assert drain(kp) == ""
    assert kp.rejected == 1
    t = run(m, kp, "", 100, t)
    assert kp.keys_down() == 0
    type_keys(m, kp, "4", t)
    assert drain(kp) == "4"


def test_keys_of_a_multi_press_stay_silent_until_all_released():
    m, kp = make()
    t = run(m, kp, "56", 100, 0)
    t = run(m, kp, "5", 200, t)  # 6 let go, 5 still held: nothing
    assert drain(kp) == ""
    t = run(m, kp, "56", 100, t)
    t = run(m, kp, "6", 200, t)
    assert drain(kp) == ""
    t = run(m, kp, "", 10, t)  # too short to count as released
    t = run(m, kp, "6", 200, t)
    assert drain(kp) == ""
    t = run(m, kp, "", 50, t)
    type_keys(m, kp, "6", t)
    assert drain(kp) == "6"
    assert kp.rejected == 2


def test_second_key_added_to_a_held_key():
    m, kp = make()
    t = run(m, kp, "8", 100, 0)
    assert drain(kp) == "8"
    t = run(m, kp, "8#", 100, t)
    t = run(m, kp, "#", 100, t)
    assert drain(kp) == ""
    assert kp.rejected == 1


def test_overlap_shorter_than_debounce_is_a_glitch():
    # Rolling from one key to the next with < debounce_ms of overlap: the second key was
    # then held alone for debounce_ms, so it counts; a stable overlap would not.
    m, kp = make(debounce_ms=20)
    t = run(m, kp, "1", 60, 0)
    t = run(m, kp, "12", 10, t)
    t = run(m, kp, "2", 60, t)
    assert drain(kp) == "12"
    assert kp.rejected == 0


def test_ghost_key_counted_and_rejected():
    # 1, 2 and 4 form an L on a 4x3 matrix without diodes: 5 shows up as a phantom key.
    m, kp = make()
    t = run(m, kp, "124", 100, 0)
    assert kp.keys_down() == 4
    assert drain(kp) == ""
    assert kp.rejected == 1
    # releasing down to a single key is still part of the rejected press
    t = run(m, kp, "4", 100, t)
    assert drain(kp) == ""
    run(m, kp, "", 100, t)
    assert kp.keys_down() == 0


def test_queue_overflow_counts_dropped():
    m, kp = make(queue_size=2)
    type_keys(m, kp, "1234")
    assert kp.events.dropped == 2
    assert drain(kp) == "12"


def test_keys_length_must_match_matrix():
    m = Matrix(KEYS_4X3, 4)
    try:
        MatrixKeypad(m.rows, m.cols, KEYS_4X4)
    except ValueError:
        return
    assert False, "bad key map accepted"


def test_debounce_across_tick_wrap():
    m, kp = make(debounce_ms=20)
    t = ticks_add(0, -12)
    m.set("2")
    for _ in range(6):
        kp.scan(t)
        t = ticks_add(t, 5)
    assert drain(kp) == "2"


def test_scan_does_not_allocate():
    try:
        import micropython

        micropython.heap_lock
    except (ImportError, AttributeError):
        return  # CPython: its micropython stand-in has no heap lock
    m, kp = make(queue_size=2, ghosting=False)
    down = m.down
    i5 = KEYS_4X3.index("5")
    i6 = KEYS_4X3.index("6")
    t = 0
    micropython.heap_lock()
    try:
        for rep in range(4):  # 4 presses into a ring of 2: two are dropped
            down[i5] = 1
            for _ in range(10):
                kp.scan(t)
                t += 5
            down[i5] = 0
            for _ in range(10):
                kp.scan(t)
                t += 5
        down[i5] = 1  # a rejected two-key press
        down[i6] = 1
        for _ in range(10):
            kp.scan(t)
            t += 5
        down[i5] = 0
        down[i6] = 0
        for _ in range(10):
            kp.scan(t)
            t += 5
        n = kp.keys_down()
    finally:
        micropython.heap_unlock()
    assert n == 0
    assert kp.events.dropped == 2
    assert kp.rejected == 1
    assert drain(kp) == "55"
