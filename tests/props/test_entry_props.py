"""Properties of CodeEntry over random key sequences, checked against a plain model (CPython only)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from locker.entry import BACK, CLEARED, DIGIT, FULL, LANGUAGE, SUBMIT, TOO_SHORT, CodeEntry

IGNORED = 7  # CodeEntry.key(): a key that does nothing

KEYS = "0123456789*#ABCD"

steps = st.lists(
    st.tuples(
        st.sampled_from(["key", "key", "key", "key", "tick", "wipe"]),
        st.sampled_from(KEYS),
        st.one_of(st.integers(0, 2000), st.integers(0, 100000)),
    ),
    max_size=80,
)


def _zeroed(e: CodeEntry) -> bool:
    return not any(e._buf)


@settings(max_examples=500, deadline=None)
@given(
    lengths=st.tuples(st.integers(1, 14), st.integers(0, 6)),
    timeout_ms=st.integers(1, 60000),
    seq=steps,
)
def test_entry_matches_model(lengths, timeout_ms, seq):
    min_len, extra = lengths
    max_len = min_len + extra
    e = CodeEntry(min_len, max_len, timeout_ms)
    model = ""
    last = 0
    t = 0
    for action, ch, gap in seq:
        t += gap
        if action == "tick":
            fired = e.tick(t)
            assert fired == (bool(model) and t - last >= timeout_ms)
            if fired:
                model = ""
                assert _zeroed(e)
        elif action == "wipe":
            e.wipe()
            model = ""
            assert _zeroed(e)
        else:
            r = e.key(ord(ch), t)
            last = t
            if ch.isdigit():
                if len(model) < max_len:
                    assert r == DIGIT
                    model += ch
                else:
                    assert r == FULL
            elif ch == "*":
                assert r == (CLEARED if model else LANGUAGE)
                model = ""
                assert _zeroed(e)
            elif ch == "#":
                if min_len <= len(model) <= max_len:
                    assert r == SUBMIT
                    assert min_len <= e.length <= max_len
                else:
                    assert r == TOO_SHORT
                    model = ""
                    assert _zeroed(e)
            elif ch == "D" and model:  # backspace (4x4 keypads): the last digit goes
                assert r == BACK
                model = model[:-1]
            else:
                assert r == IGNORED
        assert e.length == len(model) <= max_len
        assert bytes(e.code()) == model.encode()
        assert e.masked() == "*" * len(model)
        # nothing beyond the entered digits is left in the buffer
        assert not any(e._buf[e.length :])


@settings(max_examples=300, deadline=None)
@given(digits=st.text(alphabet="0123456789", max_size=20), min_len=st.integers(1, 12), extra=st.integers(0, 4))
def test_submit_only_with_valid_length_then_wipe_zeroes(digits, min_len, extra):
    max_len = min_len + extra
    e = CodeEntry(min_len, max_len)
    for ch in digits:
        e.key(ord(ch), 0)
    r = e.key(ord("#"), 0)
    kept = digits[:max_len]
    if r == SUBMIT:
        assert min_len <= len(kept) <= max_len
        assert bytes(e.code()) == kept.encode()
        e.wipe()
    else:
        assert r == TOO_SHORT
        assert len(kept) < min_len
    assert e.length == 0
    assert _zeroed(e)
