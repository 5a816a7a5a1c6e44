# CodeEntry: digits, * and #, length limits, timeout, and a buffer that is really wiped.
from locker import entry
from locker.entry import BACK, CLEARED, DIGIT, FULL, LANGUAGE, SUBMIT, TOO_SHORT, CodeEntry
from locker.ticks import ticks_add

IGNORED = 7  # CodeEntry.key(): a key that does nothing


def feed(e, text, t=0):
    out = []
    for ch in text:
        out.append(e.key(ord(ch), t))
        t += 100
    return out


def all_zero(e):
    for b in e._buf:
        if b:
            return False
    return True


def test_constants_distinct():
    e = entry
    vals = (IGNORED, e.DIGIT, e.CLEARED, e.SUBMIT, e.TOO_SHORT, e.FULL, e.LANGUAGE, e.BACK)
    for i in range(len(vals)):
        for j in range(i + 1, len(vals)):
            assert vals[i] != vals[j]


def test_digits_then_submit():
    e = CodeEntry(8, 12)
    assert feed(e, "12345678") == [DIGIT] * 8
    assert e.length == 8
    assert e.masked() == "********"
    assert e.key(ord("#"), 1000) == SUBMIT
    assert bytes(e.code()) == b"12345678"
    assert e.length == 8  # the caller wipes after checking
    e.wipe()
    assert e.length == 0
    assert all_zero(e)


def test_code_is_a_view_not_a_copy():
    e = CodeEntry(4, 6)
    feed(e, "4321")
    v = e.code()
    assert isinstance(v, memoryview)
    assert bytes(v) == b"4321"
    e.wipe()
    assert bytes(v) == b"\x00\x00\x00\x00"  # the view sees the zeroed buffer
    assert len(e.code()) == 0


def test_str_keys_accepted():
    e = CodeEntry(2, 4)
    assert e.key("1", 0) == DIGIT
    assert e.key("2", 0) == DIGIT
    assert e.key("#", 0) == SUBMIT
    assert bytes(e.code()) == b"12"


def test_full_at_max_len():
    e = CodeEntry(8, 12)
    feed(e, "123456789012")
    assert e.key(ord("3"), 0) == FULL
    assert e.length == 12
    assert bytes(e.code()) == b"123456789012"
    assert e.key(ord("#"), 0) == SUBMIT


def test_hash_too_short_wipes():
    e = CodeEntry(8, 12)
    feed(e, "1234567")
    assert e.key(ord("#"), 0) == TOO_SHORT
    assert e.length == 0
    assert all_zero(e)


def test_hash_on_empty_is_too_short():
    e = CodeEntry()
    assert e.key(ord("#"), 0) == TOO_SHORT
    assert e.length == 0


def test_star_clears_and_zeroes():
    e = CodeEntry()
    feed(e, "98765")
    assert e.key(ord("*"), 0) == CLEARED
    assert e.length == 0
    assert e.masked() == ""
    assert all_zero(e)


def test_star_on_empty_is_language():
    e = CodeEntry()
    assert e.key(ord("*"), 0) == LANGUAGE
    assert e.key(ord("*"), 0) == LANGUAGE
    feed(e, "1")
    assert e.key(ord("*"), 0) == CLEARED
    assert e.key(ord("*"), 0) == LANGUAGE


def test_letters_ignored():
    e = CodeEntry()
    feed(e, "12")
    for ch in "ABC":
        assert e.key(ord(ch), 0) == IGNORED
    assert e.key(ord("x"), 0) == IGNORED
    assert bytes(e.code()) == b"12"


def test_d_takes_the_last_digit_back():
    e = CodeEntry(4, 8)
    feed(e, "1239")
    assert e.key(ord("D"), 0) == BACK
    assert bytes(e.code()) == b"123"
    assert e._buf[3] == 0  # the digit taken back is gone from memory, not just hidden
    assert e.masked() == "***"
    feed(e, "4")
    assert e.key(ord("#"), 0) == SUBMIT
    assert bytes(e.code()) == b"1234"


def test_d_on_an_empty_entry_does_nothing():
    e = CodeEntry(4, 8)
    assert e.key(ord("D"), 0) == IGNORED
    feed(e, "1")
    assert e.key(ord("D"), 0) == BACK
    assert e.length == 0 and all_zero(e)
    assert e.key(ord("D"), 0) == IGNORED
    assert e.key(ord("*"), 0) == LANGUAGE  # empty again: * is the language key, as before


def test_timeout_wipes_once():
    e = CodeEntry(timeout_ms=30000)
    feed(e, "123", 1000)  # last key at 1200
    assert not e.tick(1200 + 29999)
    assert e.length == 3
    assert e.tick(1200 + 30000)
    assert e.length == 0
    assert all_zero(e)
    assert not e.tick(1200 + 60000)


def test_each_key_restarts_the_timeout():
    e = CodeEntry(timeout_ms=1000)
    t = 0
    for ch in "12345678":
        e.key(ord(ch), t)
        assert not e.tick(t + 999)
        t += 900
    assert e.length == 8


def test_no_timeout_when_empty():
    e = CodeEntry(timeout_ms=1000)
    assert not e.tick(0)
    e.key(ord("*"), 0)
    assert not e.tick(5000)


def test_timeout_across_tick_wrap():
    e = CodeEntry(timeout_ms=1000)
    start = ticks_add(0, -300)
    e.key(ord("5"), start)
    assert not e.tick(ticks_add(start, 999))
    assert e.tick(ticks_add(start, 1000))


def test_wipe_zeroes_whole_buffer_after_submit():
    e = CodeEntry(4, 8)
    feed(e, "99999999")
    assert e.key(ord("#"), 0) == SUBMIT
    e.wipe()
    assert all_zero(e)
    assert len(e._buf) == 8
    feed(e, "12345")
    assert e.key(ord("#"), 0) == SUBMIT
    assert bytes(e.code()) == b"12345"


def test_bad_lengths_rejected():
    for lo, hi in ((0, 4), (5, 4)):
        try:
            CodeEntry(lo, hi)
        except ValueError:
            continue
        assert False, (lo, hi)
