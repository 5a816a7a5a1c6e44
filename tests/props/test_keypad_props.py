"""Properties of MatrixKeypad over random raw key timelines (CPython only).

The timeline is what the fingers do; the simulated matrix has no diodes, so three keys in
an L also show a phantom fourth. Keys are classified per scan as: none, one key, or many.
A "run" is a stretch of consecutive scans of the same class; it is "registered" at the
first scan at least debounce_ms after the run began, if its class differs from the last
registered one (initially none).
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from test_keypad import KEYS_4X3, KEYS_4X4, Matrix

from locker.keypad import MatrixKeypad

NONE, MULTI = -1, -2

KEYMAPS = st.sampled_from([KEYS_4X3, KEYS_4X4])


def _segments(keys: str, max_len: int, max_keys: int):
    chord = st.lists(st.sampled_from(keys), min_size=0, max_size=max_keys, unique=True).map("".join)
    return st.lists(st.tuples(chord, st.integers(1, 120)), min_size=1, max_size=max_len)


def _klass(keys: str, chars: str) -> int:
    if not chars:
        return NONE
    if len(chars) > 1:
        return MULTI
    return keys.index(chars)


def _simulate(keys, segments, debounce_ms, step):
    m = Matrix(keys, 4, ghosting=True)
    kp = MatrixKeypad(m.rows, m.cols, keys, debounce_ms, queue_size=1000)
    scans = []  # (t, class, emitted key index or None, keys_down)
    t = 0
    for chars, ms in segments:
        m.set(chars)
        end = t + ms
        while t < end:
            kp.scan(t)
            v = kp.events.get()
            assert kp.events.get() == -1  # at most one event per scan
            emitted = None if v < 0 else keys.index(chr(v))
            scans.append((t, _klass(keys, chars), emitted, kp.keys_down()))
            t += step
    assert m.overlaps == 0
    return kp, scans


def _runs(scans, debounce_ms):
    """[(class, first scan index, last scan index, registering scan index or None)]"""
    runs = []
    i = 0
    while i < len(scans):
        j = i
        while j + 1 < len(scans) and scans[j + 1][1] == scans[i][1]:
            j += 1
        reg = None
        for k in range(i, j + 1):
            if scans[k][0] - scans[i][0] >= debounce_ms:
                reg = k
                break
        runs.append((scans[i][1], i, j, reg))
        i = j + 1
    return runs


def _registered(scans, debounce_ms):
    """{scan index: class} for every registered change of the debounced class."""
    out = {}
    stable = NONE
    for klass, _, _, reg in _runs(scans, debounce_ms):
        if reg is not None and klass != stable:
            out[reg] = klass
            stable = klass
    return out


params = dict(
    keys=KEYMAPS,
    debounce_ms=st.integers(1, 40),
    step=st.integers(1, 10),
)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), **params)
def test_emits_only_keys_held_alone_for_debounce(data, keys, debounce_ms, step):
    segments = data.draw(_segments(keys, 25, 3))
    kp, scans = _simulate(keys, segments, debounce_ms, step)
    run_of = {}
    for run in _runs(scans, debounce_ms):
        for i in range(run[1], run[2] + 1):
            run_of[i] = run
    for i, (t, klass, emitted, down) in enumerate(scans):
        if emitted is None:
            continue
        assert klass == emitted and down == 1
        _, first, _, _ = run_of[i]
        assert t - scans[first][0] >= debounce_ms, "emitted before it was stable"


@settings(max_examples=300, deadline=None)
@given(data=st.data(), **params)
def test_nothing_from_a_multi_key_press_until_all_released(data, keys, debounce_ms, step):
    segments = data.draw(_segments(keys, 25, 4))
    kp, scans = _simulate(keys, segments, debounce_ms, step)
    registered = _registered(scans, debounce_ms)
    blocked = False
    multis = 0
    for i, (_, _, emitted, down) in enumerate(scans):
        if down > 1:
            assert emitted is None
        r = registered.get(i)
        if r == MULTI:
            blocked = True
            multis += 1
        elif r == NONE:
            blocked = False
        if emitted is not None:
            assert not blocked, "a key of a rejected multi-key press was emitted"
        # and every other debounced single-key press is emitted
        assert (emitted is not None) == (r is not None and r >= 0 and not blocked)
    assert kp.rejected == multis


@settings(max_examples=300, deadline=None)
@given(data=st.data(), **params)
def test_a_key_emits_once_per_debounced_press(data, keys, debounce_ms, step):
    segments = data.draw(_segments(keys, 25, 2))
    _, scans = _simulate(keys, segments, debounce_ms, step)
    registered = _registered(scans, debounce_ms)
    last = None  # last key emitted, reset by any other registered state
    for i, (_, _, emitted, _) in enumerate(scans):
        r = registered.get(i)
        if emitted is not None:
            assert emitted != last, "repeat without a debounced release"
            last = emitted
        elif r is not None and r != last:
            last = None


@settings(max_examples=200, deadline=None)
@given(
    keys=KEYMAPS,
    debounce_ms=st.integers(1, 40),
    step=st.integers(1, 10),
    data=st.data(),
)
def test_clean_presses_all_arrive_in_order(keys, debounce_ms, step, data):
    text = data.draw(st.text(alphabet=keys, min_size=1, max_size=20))
    long = debounce_ms + 2 * step
    segments = []
    for ch in text:
        segments.append((ch, data.draw(st.integers(long, long + 200))))
        segments.append(("", data.draw(st.integers(long, long + 200))))
    _, scans = _simulate(keys, segments, debounce_ms, step)
    got = "".join(keys[e] for _, _, e, _ in scans if e is not None)
    assert got == text


@settings(max_examples=200, deadline=None)
@given(keys=KEYMAPS, debounce_ms=st.integers(5, 40), data=st.data())
def test_presses_shorter_than_debounce_emit_nothing(keys, debounce_ms, data):
    step = 1
    segs = data.draw(
        st.lists(
            st.tuples(st.sampled_from(keys), st.integers(1, debounce_ms - 1)),
            min_size=1,
            max_size=30,
        )
    )
    segments = []
    for ch, ms in segs:
        segments.append((ch, ms))
        segments.append(("", data.draw(st.integers(1, 100))))
    _, scans = _simulate(keys, segments, debounce_ms, step)
    assert all(e is None for _, _, e, _ in scans)
