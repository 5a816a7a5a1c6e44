# The code store: tags, lookup, expiry, one use, deltas, damaged files and power cuts.
import gc
import os

import fakes
from locker import codes, hmac256, store

NO_DOOR = 0xFF  # the door byte of a door-free kind (codes.bin)
UNKNOWN = 1  # lookup(): no such code

SLOT = codes.RECORD_SIZE + 4  # a record and its checksum, on flash

KEY = b"locker key for the unit tests, 32"
DOORS = ("1", "2", "3", "4")


class PowerCut(Exception):
    pass


class CutAfter:
    def __init__(self, k=None):
        self.k = k
        self.ops = []

    def __call__(self, op, path):
        self.ops.append((op, path))
        if self.k is not None and len(self.ops) >= self.k:
            raise PowerCut()


def _code(i):
    return "%08d" % ((i * 7919 + 12345678) % 100000000)


def _rec(door, i, kind=codes.KIND_PICKUP, expiry=0, cid=None, doors=DOORS):
    return (codes.tag(hmac256.HmacKey(KEY), doors[door], _code(i)), door, kind, expiry, i if cid is None else cid)


def _new(d, doors=DOORS, capacity=64):
    s = codes.CodeStore(KEY, doors, path=d + "/codes.bin", used_path=d + "/used.bin", capacity=capacity)
    return s


def _reboot(d, doors=DOORS, capacity=64):
    store.cleanup(d)
    s = _new(d, doors, capacity)
    problems = s.load()
    return s, problems


def _state(s):
    return (s.revision, sorted(s.records()), s.used())


def _look(s, code, now=None):
    return s.lookup(bytearray(code.encode()), now)


def test_tag_is_hmac_of_label_colon_code():
    k = hmac256.HmacKey(KEY)
    t = codes.tag(k, "12", "00001234")
    assert t == hmac256.hmac_sha256(KEY, b"12:00001234")[:16]
    assert codes.tag(KEY, b"12", memoryview(b"00001234")) == t
    assert codes.tag(k, "12", bytearray(b"00001234")) == t
    assert codes.tag(k, "1", "200001234") != t
    assert len(t) == codes.TAG_SIZE == 16


def test_empty_store_loads_without_problems():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    assert s.load() == []
    assert s.count() == 0
    assert s.revision == 0
    assert _look(s, "12345678") == (UNKNOWN, None, None, None)
    assert s.pending() == []


def test_replace_and_lookup():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    recs = [_rec(i % 4, i) for i in range(40)]
    s.replace(7, recs)
    assert s.count() == 40 and s.revision == 7
    for i in range(40):
        assert _look(s, _code(i)) == (codes.OK, i % 4, i, codes.KIND_PICKUP), i
        assert s.lookup(memoryview(_code(i).encode()), 0)[0] == codes.OK
    assert _look(s, _code(40))[0] == UNKNOWN
    assert _look(s, "")[0] == UNKNOWN
    assert sorted(s.records()) == sorted(recs)
    tags = [r[0] for r in s.records()]
    assert tags == sorted(tags)
    s2, problems = _reboot(d)
    assert problems == []
    assert _state(s2) == _state(s)
    s.replace(8, recs[:3])
    assert s.count() == 3
    assert _look(s, _code(5))[0] == UNKNOWN


def test_rare_parts_are_not_kept_loaded():
    # Loading and host updates run from locker.codefile, which is dropped again after each call.
    import sys

    import locker

    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.load()
    s.replace(3, [_rec(0, 1), _rec(1, 2)])
    s.apply(4, [_rec(2, 3)], [1])
    assert s.count() == 2 and s.revision == 4
    assert "locker.codefile" not in sys.modules
    assert not hasattr(locker, "codefile")


def test_a_code_only_opens_its_own_door():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(1, [_rec(2, 1)])
    assert _look(s, _code(1)) == (codes.OK, 2, 1, codes.KIND_PICKUP)
    # The same digits tagged for another door are a different tag.
    wrong = (codes.tag(KEY, "1", _code(1)), 0, 0, 0, 9)
    assert wrong[0] != _rec(2, 1)[0]


def _free(i, kind, expiry=0, cid=None):
    """A door-free record (staff PIN, return, delivery): tag over "*:" code, door byte 0xFF."""
    return (codes.tag(hmac256.HmacKey(KEY), "*", _code(i)), NO_DOOR, kind, expiry, i if cid is None else cid)


def test_kinds_and_expiry():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(
        1, [_free(1, codes.KIND_STAFF, 2 * 10**9), _free(2, codes.KIND_RETURN | 0x50, 1000), _rec(3, 3, expiry=2000)]
    )
    assert _look(s, _code(1), 10**9) == (codes.OK, None, 1, codes.KIND_STAFF)
    assert _look(s, _code(2), 999) == (codes.OK, None, 2, codes.KIND_RETURN | 0x50)  # size S, low
    assert _look(s, _code(2), 1000) == (codes.EXPIRED, None, 2, codes.KIND_RETURN | 0x50)
    assert _look(s, _code(2), None) == (codes.OK, None, 2, codes.KIND_RETURN | 0x50)  # clock unknown
    assert _look(s, _code(3), 5000)[0] == codes.EXPIRED
    assert codes.KIND_PICKUP == 0 and codes.KIND_STAFF == 1 and codes.KIND_RETURN == 2 and codes.KIND_DELIVERY == 3
    assert len(set((codes.OK, UNKNOWN, codes.EXPIRED, codes.USED))) == 4


def test_a_staff_pin_works_only_before_its_expiry_on_a_clock_the_locker_has():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(1, [_free(1, codes.KIND_STAFF, 5000), _free(2, codes.KIND_STAFF), _free(3, codes.KIND_RETURN)])
    assert _look(s, _code(1), 4999) == (codes.OK, None, 1, codes.KIND_STAFF)
    assert _look(s, _code(1), 5000) == (codes.EXPIRED, None, 1, codes.KIND_STAFF)
    # A locker that never knew the time cannot tell: fail secure (a resident's code is not checked).
    assert _look(s, _code(1), None) == (codes.EXPIRED, None, 1, codes.KIND_STAFF)
    assert _look(s, _code(3), None) == (codes.OK, None, 3, codes.KIND_RETURN)
    # A PIN without an expiry (from before PINs expired) never works, whatever the clock says.
    assert _look(s, _code(2), 10**9) == (codes.EXPIRED, None, 2, codes.KIND_STAFF)
    assert _look(s, _code(2), None) == (codes.EXPIRED, None, 2, codes.KIND_STAFF)


def test_door_free_rows_need_door_byte_ff_and_pickups_a_door():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    for bad in (
        _rec(0, 1, codes.KIND_STAFF),  # a door-free kind bound to a door
        (_free(1, codes.KIND_PICKUP)),  # a pickup with no door
        _free(1, 4),  # an unknown kind
        _free(1, 128 | codes.KIND_RETURN),  # kind byte past 127
    ):
        try:
            s.replace(1, [bad])
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (bad,))
    s.replace(2, [_free(1, 0x7F & ~0x0C)])  # kind 3 with every flag: accepted
    assert s.count() == 1


def test_a_delivery_is_loaded_into_a_door_and_its_code_then_opens_that_door():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(1, [_free(1, codes.KIND_DELIVERY, cid=123456), _rec(0, 2)])
    assert _look(s, _code(1)) == (codes.OK, None, 123456, codes.KIND_DELIVERY)  # not loaded yet
    s.loading(123456, 2)
    assert _look(s, _code(1)) == (codes.OK, None, 123456, codes.KIND_DELIVERY)  # being loaded: no door
    assert s.state_of(123456) == (codes.STATE_LOADING, 2)
    s.loaded(123456, 2)
    assert _look(s, _code(1)) == (codes.OK, 2, 123456, codes.KIND_DELIVERY)
    s2, problems = _reboot(d)
    assert problems == [] and _look(s2, _code(1)) == (codes.OK, 2, 123456, codes.KIND_DELIVERY)
    # a pickup that jams (or is undone after a reboot) goes back to loaded, never loses the door
    s2.consume(123456, 2)
    assert _look(s2, _code(1))[0] == codes.USED
    assert s2.release(123456)
    assert s2.state_of(123456) == (codes.STATE_LOADED, 2)
    s3, _ = _reboot(d)
    assert s3.state_of(123456) == (codes.STATE_LOADED, 2)
    s3.journal_limit = 0  # every write compacts: the loaded entry stays while its code is stored
    s3.consume(1, 0)
    s3.release(1)
    assert s3.state_of(123456) == (codes.STATE_LOADED, 2)
    assert _reboot(d)[0].state_of(123456) == (codes.STATE_LOADED, 2)
    s3.consume(123456, 2)
    s3.complete(123456)
    assert _look(s3, _code(1)) == (codes.USED, 2, 123456, codes.KIND_DELIVERY)
    # the host removes the delivery: its entry goes at the next compaction
    s3.apply(2, [], [123456])
    assert s3.state_of(123456) == (0, None)


def test_a_load_by_size_and_a_load_given_up():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(1, [_free(1, codes.KIND_DELIVERY, cid=7)])
    s.loading(0, 1)  # by size: code id 0
    s.loading(7, 3)
    assert sorted(s.pending(codes.STATE_LOADING)) == [(0, 1), (7, 3)]
    assert s.loaded(0, 1)  # by size: nothing stays in the journal
    assert s.release(7)  # closed empty: not loaded
    assert s.used() == [] and _look(s, _code(1))[1] is None
    assert _reboot(d)[0].used() == []


def test_consume_persists_and_never_comes_back():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(1, [_rec(0, 1), _rec(1, 2)])
    s.consume(1, 0)
    assert _look(s, _code(1)) == (codes.USED, 0, 1, codes.KIND_PICKUP)
    assert s.pending() == [(1, 0)]
    s2, problems = _reboot(d)
    assert problems == []
    assert _look(s2, _code(1))[0] == codes.USED
    assert s2.pending() == [(1, 0)]
    assert s2.complete(1)
    assert s2.pending() == []
    s3, _ = _reboot(d)
    assert s3.pending() == []
    assert _look(s3, _code(1))[0] == codes.USED
    assert _look(s3, _code(2))[0] == codes.OK
    assert not s3.complete(99)
    assert s3.used() == [(1, 0, codes.STATE_COMPLETED)]


def test_release_undoes_a_consume_but_never_a_completed_pickup():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(1, [_rec(0, 1), _rec(1, 2)])
    s.consume(1, 0)
    s.consume(2, 1)
    s.complete(2)
    assert s.release(1)
    assert not s.release(1)
    assert not s.release(2)
    assert not s.release(99)
    assert _look(s, _code(1))[0] == codes.OK
    assert _look(s, _code(2))[0] == codes.USED
    s2, problems = _reboot(d)
    assert problems == [] and s2.pending() == []
    assert _look(s2, _code(1))[0] == codes.OK


def test_consume_twice_and_complete_twice_write_once():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(1, [_rec(0, 1)])
    s.consume(1, 0)
    store.reset_counter()
    s.consume(1, 0)
    assert store.bytes_written() == 0
    s.complete(1)
    n = store.bytes_written()
    assert n > 0
    s.complete(1)
    assert store.bytes_written() == n


def test_shared_code_opens_the_next_unused_door():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(1, [_rec(1, 5, cid=50), _rec(3, 5, cid=51, expiry=100)])
    assert _look(s, _code(5), 50) == (codes.OK, 1, 50, 0)
    s.consume(50, 1)
    assert _look(s, _code(5), 50) == (codes.OK, 3, 51, 0)
    assert _look(s, _code(5), 200) == (codes.EXPIRED, 3, 51, 0)
    s.consume(51, 3)
    assert _look(s, _code(5), 50) == (codes.USED, 1, 50, 0)


def test_apply_delta():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(1, [_rec(i % 4, i) for i in range(20)])
    s.apply(2, [_rec(0, 100), _rec(1, 101), _rec(2, 3, cid=3)], [0, 1, 2, 99])
    assert s.revision == 2
    assert s.count() == 20 - 3 + 2  # 3 was replaced by an equal id (now on door 2)
    for i in (0, 1, 2):
        assert _look(s, _code(i))[0] == UNKNOWN
    assert _look(s, _code(3))[:3] == (codes.OK, 2, 3)
    assert _look(s, _code(100))[:3] == (codes.OK, 0, 100)
    tags = [r[0] for r in s.records()]
    assert tags == sorted(tags)
    s2, problems = _reboot(d)
    assert problems == []
    assert _state(s2) == _state(s)
    s.apply(3, [], [])
    assert s.count() == 19 and s.revision == 3


def test_capacity_is_enforced_without_change():
    d = fakes.scratch_dir("codes")
    s = _new(d, capacity=5)
    s.replace(1, [_rec(0, i) for i in range(5)])
    for bad in (lambda: s.replace(2, [_rec(0, i) for i in range(6)]), lambda: s.apply(2, [_rec(1, 9)], [])):
        try:
            bad()
            raised = False
        except ValueError:
            raised = True
        assert raised
    assert s.count() == 5 and s.revision == 1
    s.apply(2, [_rec(1, 9)], [0])
    assert s.count() == 5


def test_bad_records_are_refused():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    good = _rec(0, 1)
    for bad in (
        (b"short",) + good[1:],
        good[:1] + (4,) + good[2:],
        good[:2] + (3,) + good[3:],
        good[:3] + (-1, 1),
        good[:4] + (1 << 32,),
    ):
        try:
            s.replace(1, [bad])
            raised = False
        except ValueError:
            raised = True
        assert raised, bad
    assert s.count() == 0
    assert not os.listdir(d)


def test_journal_prunes_completed_codes_that_are_gone_but_keeps_pending():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(1, [_rec(0, i) for i in range(6)])
    for i in range(4):
        s.consume(i, 0)
    s.complete(0)
    s.complete(1)
    store.reset_counter()
    s.apply(2, [], [0, 2, 5])  # 0 completed and gone, 2 pending and gone, 1 completed but present
    # the used codes 0 and 2 kept in usedtags.bin (a 11-byte frame, 2 records), codes.bin, then the
    # journal compacted: 12 + 3 entries
    assert store.bytes_written() == 11 + 2 * codes.RECORD_SIZE + 16 + 3 * SLOT + 12 + 3 * 10
    assert [e[0] for e in s.used()] == [1, 2, 3]
    s.consume(4, 0)
    assert [e[0] for e in s.used()] == [1, 2, 3, 4]
    assert s.pending() == [(2, 0), (3, 0), (4, 0)]
    s2, problems = _reboot(d)
    assert problems == [] and s2.used() == s.used()


def _damage(path, fn):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data = fn(data)
    with open(path, "wb") as f:
        f.write(data)


def test_damaged_record_loses_only_itself():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    recs = [_rec(i % 4, i) for i in range(10)]
    s.replace(5, recs)
    order = list(s.records())

    def flip(data):
        data[16 + SLOT * 3 + 10] ^= 0xFF  # inside the 4th record
        return data

    _damage(d + "/codes.bin", flip)
    s2, problems = _reboot(d)
    assert len(problems) == 1 and "lost 1" in problems[0], problems
    assert list(s2.records()) == order[:3] + order[4:]
    assert s2.revision == 0  # data lost: ask the host for a full snapshot


def test_truncated_file_keeps_whole_records():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(5, [_rec(i % 4, i) for i in range(10)])
    order = list(s.records())
    _damage(d + "/codes.bin", lambda data: data[: 16 + SLOT * 6 + 20])
    s2, problems = _reboot(d)
    assert problems and "lost 4" in problems[-1], problems
    assert list(s2.records()) == order[:6]


def test_damaged_header_keeps_records():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(5, [_rec(i % 4, i) for i in range(10)])
    order = list(s.records())

    def flip(data):
        data[5] ^= 1
        return data

    _damage(d + "/codes.bin", flip)
    s2, problems = _reboot(d)
    assert problems and "header" in problems[0]
    assert list(s2.records()) == order
    assert s2.revision == 0


def test_empty_or_garbage_files_do_not_raise():
    d = fakes.scratch_dir("codes")
    for content in (b"", b"LC", b"\x00" * 100, b"garbage" * 50):
        with open(d + "/codes.bin", "wb") as f:
            f.write(content)
        with open(d + "/used.bin", "wb") as f:
            f.write(content)
        s, problems = _reboot(d)
        assert s.count() == 0
        assert problems, content


def test_damaged_journal_entry_is_reported():
    d = fakes.scratch_dir("codes")
    s = _new(d)
    s.replace(1, [_rec(0, i) for i in range(3)])
    for i in range(3):
        s.consume(i, 0)

    def flip(data):
        data[12 + 10 + 2] ^= 1  # the second entry
        return data

    _damage(d + "/used.bin", flip)
    s2, problems = _reboot(d)
    assert problems and "lost 1" in problems[0]
    assert [e[0] for e in s2.used()] == [0, 2]


def _looks(s):
    return [_look(s, _code(i)) for i in range(27)]


def _cut_everywhere(name, setup, op):
    # Run op with a cut after each of its steps, on littlefs (an append not closed is lost) and on a
    # file system that keeps what was written. The rebooted store reports no problem; until op's first
    # commit it is the before, from then on its codes and lookups are the after; the journal on flash
    # is the before until its own commit (after codes.bin's), then the after. Returns the step count.
    d = fakes.scratch_dir(name)
    s = setup(d)
    before = _state(s) + (_looks(s),)
    hook = CutAfter()
    store.set_fault_hook(hook)
    try:
        op(s)
    finally:
        store.set_fault_hook(None)
    after = _state(s) + (_looks(s),)
    ops = hook.ops
    assert before != after and len(ops) >= 3
    j = d + "/used.bin"
    # usedtags.bin is written first and changes nothing on its own (the table answers first)
    tags = d + "/usedtags.bin"
    commits = [
        k + 1 for k in range(len(ops)) if (ops[k][0] == "rename" and tags not in ops[k]) or ops[k] == ("close", j)
    ]
    jc = [k + 1 for k in range(len(ops)) if ops[k] in (("rename", j), ("close", j))] + [len(ops) + 1]
    for littlefs in (True, False):
        for k in range(1, len(ops) + 1):
            d = fakes.scratch_dir(name)
            s = setup(d)
            j = d + "/used.bin"
            saved = _read(j)
            cut = CutAfter(k)
            store.set_fault_hook(cut)
            try:
                op(s)
                raise AssertionError("no cut")
            except PowerCut:
                pass
            finally:
                store.set_fault_hook(None)
            ops = cut.ops
            if littlefs and ("open", j) in ops and ("close", j) not in ops:
                _write(j, saved)  # littlefs commits on close
            s2, problems = _reboot(d, capacity=16)
            assert problems == [], (k, problems)
            got = _state(s2) + (_looks(s2),)
            for i, c in enumerate((commits[0], commits[0], jc[0], commits[0])):
                assert got[i] == (after if k >= c else before)[i] if littlefs else got[i] in (before[i], after[i]), k
            assert not [n for n in os.listdir(d) if n.endswith(".tmp")]
            s2.consume(26, 0)  # it goes on from there: the next write and boot are clean
            s3, problems = _reboot(d, capacity=16)
            assert problems == [] and _state(s3) == _state(s2), k
    return len(hook.ops)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _setup(d, aged=False, limit=None):
    s = _new(d, capacity=16)
    s.replace(3, [_rec(i % 4, i) for i in range(12)])
    s.consume(1, 1)
    if aged:  # entries appended, and a recorded pickup (3) that apply/replace will drop
        s.consume(3, 3)
        s.complete(3)
        s.consume(6, 2)
    if limit:  # the appended part of the journal at its limit: the next write compacts
        s.journal_limit = limit
    return s


def _aged(d):
    return _setup(d, True)


def _full(d):
    return _setup(d, True, 30)


def test_power_cut_at_every_step_of_consume():
    def op(s):
        s.consume(5, 1)
        assert _look(s, _code(5))[0] == codes.USED

    assert _cut_everywhere("consume", _setup, op) == 3  # open, write, close: one append
    assert _cut_everywhere("consume", _aged, op) == 3
    _cut_everywhere("consume", lambda d: _new(d, capacity=16), lambda s: s.consume(5, 1))  # the first: tmp + rename
    assert _cut_everywhere("consume", lambda d: _setup(d, True, 15), op) > 3  # compacts at twice the limit


def test_power_cut_at_every_step_of_complete():
    assert _cut_everywhere("complete", _setup, lambda s: s.complete(1)) == 3
    assert _cut_everywhere("complete", _aged, lambda s: s.complete(6)) == 3
    assert _cut_everywhere("complete", _full, lambda s: s.complete(6)) > 3  # a compaction


def test_power_cut_at_every_step_of_release():
    assert _cut_everywhere("release", _setup, lambda s: s.release(1)) == 3
    assert _cut_everywhere("release", _aged, lambda s: s.release(6)) == 3
    assert _cut_everywhere("release", _full, lambda s: s.release(6)) > 3


def test_power_cut_at_every_step_of_apply():
    for setup in (_setup, _aged):
        _cut_everywhere("apply", setup, lambda s: s.apply(4, [_rec(0, 20), _rec(2, 21)], [0, 3, 7]))


def test_power_cut_at_every_step_of_replace():
    for setup in (_setup, _aged):
        _cut_everywhere("replace", setup, lambda s: s.replace(9, [_rec(1, i) for i in range(20, 26)]))


def test_500_codes_24_doors_fit_and_are_found():
    d = fakes.scratch_dir("codes")
    doors = tuple(str(i + 1) for i in range(24))
    gc.collect()
    try:
        before = gc.mem_alloc()
    except AttributeError:  # CPython
        before = None
    s = _new(d, doors, 600)
    if before is not None:
        gc.collect()
        assert gc.mem_alloc() - before < 32 * 1024
    k = hmac256.HmacKey(KEY)
    for batch in range(10):
        recs = [(codes.tag(k, doors[i % 24], _code(i)), i % 24, 0, 0, i) for i in range(batch * 50, batch * 50 + 50)]
        s.apply(batch + 1, recs, [])
    assert s.count() == 500
    for i in range(0, 500, 37):
        assert _look(s, _code(i)) == (codes.OK, i % 24, i, 0), i
    assert _look(s, "99999999")[0] in (UNKNOWN, codes.OK)
    # 400 pickups kept in the journal (the host cannot remove them): each appends 20 bytes
    for i in range(400):
        if i == 399:
            s.apply(11, [], [])  # compacted by the host's update: the next pickup only appends
            store.reset_counter()
        s.consume(i, i % 24)
        s.complete(i)
    assert store.bytes_written() == 20
    s = None
    gc.collect()
    s2 = _new(d, doors, 600)
    gc.collect()
    if before is not None:
        before = gc.mem_alloc()
    assert s2.load() == [] and s2.count() == 500 and s2.revision == 11 and s2.pending() == []
    if before is not None:
        gc.collect()
        assert gc.mem_alloc() - before < 512  # the journal in the preallocated buffer: nothing per entry
    for i in range(0, 500, 37):
        assert _look(s2, _code(i))[0] == (codes.USED if i < 400 else codes.OK), i


def test_a_records_item_is_kept_through_writes_and_reboots():
    d = fakes.scratch_dir("codes-item")
    s = _new(d)
    s.replace(1, [_rec(0, 1) + (1,), _rec(1, 2), _rec(2, 3) + (3,)])
    assert (s.item_of(1), s.item_of(2), s.item_of(3), s.item_of(99)) == (1, 0, 3, 0)
    s.apply(2, [_rec(3, 4) + (2,)], [1])
    assert (s.item_of(1), s.item_of(3), s.item_of(4)) == (0, 3, 2)
    s, problems = _reboot(d)
    assert problems == []
    assert (s.item_of(2), s.item_of(3), s.item_of(4)) == (0, 3, 2)
    assert _look(s, _code(4))[0] == codes.OK


def test_a_code_file_from_before_items_loads_with_parcels():
    # codes.bin version 1: 26-byte records (no item byte), as an older firmware wrote it
    import struct

    d = fakes.scratch_dir("codes-v1")
    recs = sorted([_rec(0, 1), _rec(1, 2), _rec(2, 3, cid=77)])
    head = struct.pack("<2sBBII", b"LC", 1, 0, 5, len(recs))
    out = head + store.checksum(head)
    for t, door, kind, expiry, cid in recs:
        rec = t + struct.pack("<BBII", door, kind, expiry, cid)
        out += rec + store.checksum(rec)
    with open(d + "/codes.bin", "wb") as f:
        f.write(out)
    s, problems = _reboot(d)
    assert problems == [] and s.revision == 5 and s.count() == 3 and not s.damaged
    assert (s.item_of(1), s.item_of(77)) == (0, 0)
    assert _look(s, _code(3))[:3] == (codes.OK, 2, 77)
    s.apply(6, [_rec(3, 4) + (4,)], [])  # written back in the current version, with items
    s, problems = _reboot(d)
    assert problems == [] and s.count() == 4 and s.item_of(4) == 4 and s.item_of(77) == 0


def test_an_item_out_of_range_is_refused():
    d = fakes.scratch_dir("codes-item-bad")
    s = _new(d)
    for item in (-1, 256, "1"):
        try:
            s.replace(1, [_rec(0, 1) + (item,)])
            assert False, item
        except (ValueError, TypeError):
            pass
    assert s.count() == 0
