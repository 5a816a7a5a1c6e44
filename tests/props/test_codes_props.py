"""Properties of CodeStore against a plain dict model: random host updates, pickups, loads of
deliveries (door-free codes and the journal's loading/loaded states), power cuts and damaged files
(CPython only)."""

import os
import shutil
import struct
import tempfile

from hypothesis import event, given, settings
from hypothesis import strategies as st

from locker import codes, hmac256, store

NO_DOOR = 0xFF  # the door byte of a door-free kind (codes.bin)
UNKNOWN = 1  # lookup(): no such code

SLOT = codes.RECORD_SIZE + 4  # a record and its checksum, on flash

KEY = b"property test key"
DOORS = ("A1", "A2", "B1")
POOL = ("0000", "1234", "9999", "5555", "00001234", "42")  # few codes: tags collide across updates
CAPACITY = 8
HKEY = hmac256.HmacKey(KEY)
FREE = len(DOORS)  # the door index of a door-free record in the specs below ("*:" tag, door 0xFF)
TAGS = {(d, c): codes.tag(HKEY, DOORS[d] if d < FREE else "*", c) for d in range(FREE + 1) for c in POOL}


class PowerCut(Exception):
    pass


def _dir() -> str:
    return tempfile.mkdtemp(prefix="locker-codes-props-")


def _boot(d):
    store.cleanup(d)
    s = codes.CodeStore(KEY, DOORS, path=d + "/codes.bin", used_path=d + "/used.bin", capacity=CAPACITY)
    problems = s.load()
    return s, problems


def _state(s):
    return (s.revision, sorted(s.records()), s.used())


rec_spec = st.one_of(
    st.tuples(
        st.integers(0, len(DOORS) - 1),  # door
        st.integers(0, len(POOL) - 1),  # code
        st.sampled_from([0, 0x10, 0x50]),  # a pickup (with a size, a low door)
        st.sampled_from([0, 0, 100, 200]),  # expiry
        st.integers(0, 11),  # code_id
    ),
    st.tuples(
        st.just(FREE),  # door-free
        st.integers(0, len(POOL) - 1),
        st.sampled_from([codes.KIND_STAFF, codes.KIND_RETURN, codes.KIND_DELIVERY, 0x23, 0x43]),
        st.sampled_from([0, 0, 100, 200]),
        st.integers(0, 11),
    ),
)


def _rec(spec):
    door, code, kind, expiry, cid = spec
    return (TAGS[(door, POOL[code])], NO_DOOR if door == FREE else door, kind, expiry, cid)


ops = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, 2**32 - 1), st.lists(rec_spec, max_size=10)),
    st.tuples(
        st.just("apply"),
        st.integers(0, 2**32 - 1),
        st.lists(rec_spec, max_size=4),
        st.lists(st.integers(0, 11), max_size=4),
    ),
    # journal ops on few ids, so that complete and release often find a consumed code
    st.tuples(st.just("consume"), st.integers(0, 4), st.integers(0, len(DOORS) - 1)),
    st.tuples(st.just("complete"), st.integers(0, 4)),
    st.tuples(st.just("release"), st.integers(0, 4)),
    st.tuples(st.just("loading"), st.integers(0, 4), st.integers(0, len(DOORS) - 1)),
    st.tuples(st.just("loaded"), st.integers(0, 4), st.integers(0, len(DOORS) - 1)),
)


# --- the model -------------------------------------------------------------------------------------


class Model:
    def __init__(self):
        self.revision = 0
        self.codes = {}  # code_id -> record
        self.used = {}  # code_id -> [door, state]
        self.gone = []  # records of used codes the host removed, oldest first (usedtags.bin)

    def _displace(self, rec):
        for cid in [c for c, r in self.codes.items() if c == rec[4] or r[0] == rec[0]]:
            del self.codes[cid]
        self.codes[rec[4]] = rec

    def replace(self, revision, recs):
        new = Model()
        for r in recs:
            new._displace(r)
        if len(new.codes) > CAPACITY:
            raise ValueError
        self._retire([r for c, r in sorted(self.codes.items(), key=lambda i: i[1][0]) if c not in new.codes])
        self.codes, self.revision = new.codes, revision
        self._prune()

    def apply(self, revision, adds, removes):
        saved = dict(self.codes)
        for cid in removes:
            self.codes.pop(cid, None)
        for r in adds:
            self._displace(r)
        if len(self.codes) > CAPACITY:
            self.codes = saved
            raise ValueError
        add_ids = {r[4] for r in adds}
        self._retire(
            [r for c, r in sorted(saved.items(), key=lambda i: i[1][0]) if c not in self.codes and c not in add_ids]
        )
        self.revision = revision
        self._prune()

    def _retire(self, removed):
        """Removed records (in tag order) whose code was used go to `gone`, with the door used at."""
        for r in removed:
            j = self.used.get(r[4])
            if j is None or j[1] not in (codes.STATE_CONSUMED, codes.STATE_COMPLETED):
                continue
            kept = (r[0], j[0], r[2], r[3], r[4])
            same = [k for k, g in enumerate(self.gone) if g[4] == r[4]]
            if same:
                self.gone[same[0]] = kept
            else:
                self.gone = (self.gone + [kept])[-codes.GONE_KEPT :]

    def _prune(self):
        # The host changed the store: the journal is compacted without the recorded pickups whose
        # code is gone, and the loaded deliveries whose code is gone (pending ones and loads in
        # progress stay until settled).
        gone = (codes.STATE_COMPLETED, codes.STATE_LOADED)
        for cid in [c for c, (_, st_) in self.used.items() if st_ in gone and c not in self.codes]:
            del self.used[cid]

    def _to(self, cid, door, state):
        """The journal's one rule: a recorded pickup is final; anything else takes the new state."""
        old = self.used.get(cid)
        if old is None or old[1] != codes.STATE_COMPLETED:
            self.used[cid] = [door, state]

    def consume(self, cid, door):
        if self.used.get(cid, [0, 0])[1] != codes.STATE_CONSUMED:
            self._to(cid, door, codes.STATE_CONSUMED)

    def complete(self, cid):
        if cid in self.used and self.used[cid][1] != codes.STATE_COMPLETED:
            self.used[cid][1] = codes.STATE_COMPLETED

    def release(self, cid):
        old = self.used.get(cid)
        if old is None or old[1] == codes.STATE_COMPLETED:
            return
        rec = self.codes.get(cid)
        if old[1] == codes.STATE_CONSUMED and rec is not None and rec[2] & 15 == codes.KIND_DELIVERY:
            old[1] = codes.STATE_LOADED  # a delivery taken out of its door's journal goes back in
        else:
            del self.used[cid]

    def loading(self, cid, door):
        self._to(cid, door, codes.STATE_LOADING)

    def loaded(self, cid, door):
        if cid:
            self._to(cid, door, codes.STATE_LOADED)
        elif cid in self.used and self.used[cid][1] != codes.STATE_COMPLETED:
            del self.used[cid]

    def state(self):
        used = sorted((c, d, s) for c, (d, s) in self.used.items())
        return (self.revision, sorted(self.codes.values()), used)

    def lookup(self, code, now):
        by_tag = {r[0]: r for r in self.codes.values()}
        best = None
        for door in range(FREE + 1):
            t = codes.tag(HKEY, DOORS[door] if door < FREE else "*", code)
            r = by_tag.get(t)
            if r is None and best is None:
                # a used code the host removed: still USED (checked where the table has no such tag)
                for g in self.gone:
                    if g[0] == t and (g[1] if not g[2] & 15 else NO_DOOR) == (door if door < FREE else NO_DOOR):
                        best = (codes.USED, g[1], g[4], g[2])
                        break
            if r is None or r[1] != (door if door < FREE else NO_DOOR):
                continue
            j = self.used.get(r[4])
            d = door
            if door == FREE:
                d = j[0] if j is not None and j[1] != codes.STATE_LOADING else None
            if j is not None and j[1] in (codes.STATE_CONSUMED, codes.STATE_COMPLETED):
                status = codes.USED
            elif r[3] and now is not None and now >= r[3]:
                status = codes.EXPIRED
            elif r[2] & codes.KIND_MASK == codes.KIND_STAFF and (not r[3] or now is None):
                status = codes.EXPIRED  # a staff PIN needs an expiry and a clock to check it against
            else:
                return (codes.OK, d, r[4], r[2])
            if best is None or (status == codes.EXPIRED and best[0] == codes.USED):
                best = (status, d, r[4], r[2])
        return best or (UNKNOWN, None, None, None)

    def copy(self):
        m = Model()
        m.revision, m.codes, m.used = self.revision, dict(self.codes), {c: list(v) for c, v in self.used.items()}
        m.gone = list(self.gone)
        return m


def _run(target, op):
    kind = op[0]
    if kind == "replace":
        target.replace(op[1], [_rec(s) for s in op[2]])
    elif kind == "apply":
        target.apply(op[1], [_rec(s) for s in op[2]], op[3])
    elif kind == "consume":
        target.consume(op[1], op[2])
    elif kind == "release":
        target.release(op[1])
    elif kind == "loading":
        target.loading(op[1], op[2])
    elif kind == "loaded":
        target.loaded(op[1], op[2])
    else:
        target.complete(op[1])


def _gone(s):
    """usedtags as the store holds it: (tag, door, kind, expiry, code_id) records, oldest first."""
    out = []
    for k in range(len(s.gone) // codes.RECORD_SIZE):
        off = k * codes.RECORD_SIZE
        door, kind, expiry, cid = struct.unpack_from("<BBII", s.gone, off + codes.TAG_SIZE)
        out.append((bytes(s.gone[off : off + codes.TAG_SIZE]), door, kind, expiry, cid))
    return out


def _check_lookups(s, model):
    for code in POOL + ("7777",):
        for now in (None, 0, 150, 10**9):
            assert s.lookup(bytearray(code.encode()), now) == model.lookup(code, now), (code, now)


# --- properties ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    seq=st.lists(st.tuples(ops, st.one_of(st.none(), st.floats(0, 1, exclude_max=True))), max_size=12),
    littlefs=st.booleans(),
)
def test_power_cut_anywhere_leaves_before_or_after(seq, littlefs):
    d = _dir()
    model = Model()
    try:
        for op, cut_at in seq:
            s, problems = _boot(d)
            assert problems == []
            before = _state(s)
            assert before == model.state()
            assert _gone(s) == model.gone
            _check_lookups(s, model)
            # The uncut run, on a copy of the flash: the "after" state and the number of steps.
            shutil.copytree(d, d + ".after")
            sa, _ = _boot(d + ".after")
            steps = []
            store.set_fault_hook(lambda o, p, steps=steps: steps.append(o))
            try:
                _run(sa, op)
                refused = False
            except ValueError:
                refused = True
            finally:
                store.set_fault_hook(None)
            after_model = model.copy()
            try:
                _run(after_model, op)
            except ValueError:
                assert refused
            assert _state(sa) == after_model.state()
            assert _state(_boot(d + ".after")[0]) == after_model.state()
            shutil.rmtree(d + ".after")
            if refused:
                assert not steps
                continue
            if cut_at is not None and steps:
                k = 1 + int(cut_at * len(steps))
                s, _ = _boot(d)
                journal_before = _raw(d) if os.path.exists(d + "/used.bin") else b""
                count = []

                def hook(o, p, count=count, k=k):
                    count.append(o)
                    if len(count) >= k:
                        raise PowerCut()

                store.set_fault_hook(hook)
                try:
                    _run(s, op)
                    raise AssertionError("no cut")
                except PowerCut:
                    pass
                finally:
                    store.set_fault_hook(None)
                if littlefs and steps[k:].count("close") > steps[k:].count("rename"):
                    # cut between an append's open and its close: littlefs keeps the old contents
                    with open(d + "/used.bin", "wb") as f:
                        f.write(journal_before)
                s2, problems = _boot(d)
                assert problems == []
                got = _state(s2)
                after = after_model.state()
                # codes.bin is committed first, then the journal: each is the before or the after,
                # and the journal's after never comes with codes.bin's before
                assert got[:2] in (before[:2], after[:2]), (k, len(steps))
                assert got[2] in (before[2], after[2]), (k, len(steps))
                assert not (got[:2] == before[:2] != after[:2] and got[2] == after[2] != before[2])
                done = got[:2] == after[:2] and (before[:2] != after[:2] or got[2] == after[2])
                event("cut in %s: %s" % (op[0], "after" if done else "before"))
                # usedtags.bin is written first and whole: the before or the after
                assert _gone(s2) in (model.gone, after_model.gone), (k, len(steps))
                gone = _gone(s2)
                model = after_model if done else model
                model.used = {c: [dd, st_] for c, dd, st_ in got[2]}  # the journal as on flash
                model.gone = gone
                _check_lookups(s2, model)
                assert not [n for n in os.listdir(d) if n.endswith(".tmp")]
            else:
                s, _ = _boot(d)
                _run(s, op)
                model = after_model
                assert _state(s) == model.state()
    finally:
        store.set_fault_hook(None)
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(d + ".after", ignore_errors=True)


@settings(max_examples=300, deadline=None)
@given(
    specs=st.lists(rec_spec, min_size=1, max_size=CAPACITY * 3),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_damaged_codes_file_never_raises_and_keeps_every_intact_record(specs, flips, cut):
    d = _dir()
    try:
        s, _ = _boot(d)
        recs = []
        for spec in specs:  # keep under capacity
            r = _rec(spec)
            if len(recs) < CAPACITY and all(r[0] != x[0] and r[4] != x[4] for x in recs):
                recs.append(r)
        s.replace(77, recs)
        for cid in range(0, 12, 3):
            s.consume(cid, 0)
        original = list(s.records())
        path = d + "/codes.bin"
        with open(path, "rb") as f:
            good = f.read()
        data = bytearray(good)
        for pos, x in flips:
            data[pos % len(data)] ^= x
        if cut is not None:
            data = data[: cut % (len(data) + 1)]
        with open(path, "wb") as f:
            f.write(data)
        s2, problems = _boot(d)
        got = list(s2.records())
        assert set(got) <= set(original)
        header_ok = data[:16] == good[:16]
        for i, r in enumerate(original):
            a = 16 + SLOT * i
            if data[a : a + SLOT] == good[a : a + SLOT] and len(data) >= a + SLOT:
                assert r in got, i
        damaged = bytes(data) != good
        if damaged:
            assert problems
            assert s2.revision == 0 or (header_ok and len(got) == len(original))
        else:
            assert problems == [] and got == original and s2.revision == 77
        assert s2.used() == s.used()
        _check_lookups(s2, _model_of(s2))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _model_of(s):
    m = Model()
    m.revision = s.revision
    m.codes = {r[4]: r for r in s.records()}
    m.used = {c: [d, st_] for c, d, st_ in s.used()}
    return m


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_files_never_raise(data):
    d = _dir()
    try:
        for name in ("codes.bin", "used.bin"):
            with open(d + "/" + name, "wb") as f:
                f.write(data)
        s, problems = _boot(d)
        assert s.count() <= CAPACITY
        assert problems  # empty or garbage: always reported
        _check_lookups(s, _model_of(s))
    finally:
        shutil.rmtree(d, ignore_errors=True)


@settings(max_examples=200, deadline=None)
@given(seq=st.lists(ops, max_size=15), now=st.sampled_from([None, 0, 100, 150, 250]))
def test_lookup_agrees_with_the_model(seq, now):
    d = _dir()
    try:
        s, _ = _boot(d)
        model = Model()
        for op in seq:
            try:
                _run(model, op)
                ok = True
            except ValueError:
                ok = False
            try:
                _run(s, op)
                assert ok
            except ValueError:
                assert not ok
            assert s.used() == model.state()[2]
            assert sorted(s.records()) == sorted(model.codes.values())
            assert s.revision == model.revision
            for code in POOL:
                assert s.lookup(memoryview(code.encode()), now) == model.lookup(code, now)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- the journal on flash (used.bin, version 2) ------------------------------------------------------


def _header(base, version=2):
    head = struct.pack("<2sBBI", b"LU", version, 0, base)
    return head + store.checksum(head)


def _entry(cid, door, state):
    e = struct.pack("<IBB", cid, door, state)
    return e + store.checksum(e)


def _raw(d):
    with open(d + "/used.bin", "rb") as f:
        return f.read()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _stocked(d, n=6, capacity=CAPACITY):
    s = codes.CodeStore(KEY, DOORS, path=d + "/codes.bin", used_path=d + "/used.bin", capacity=capacity)
    s.load()
    s.replace(1, [(codes.tag(HKEY, DOORS[0], "%08d" % i), 0, 0, 0, i) for i in range(n)])
    return s


def _lookup_states(s, n=6):
    return [s.lookup(b"%08d" % i, None)[0] for i in range(n)]


def test_journal_format_one_entry_appended_per_step():
    d = _dir()
    try:
        s = _stocked(d)
        assert _raw(d) == _header(0)  # the first host update writes an empty journal (tmp + rename)
        store.reset_counter()
        s.consume(4, 2)
        s.consume(2, 0)
        s.complete(4)
        assert s.release(2)
        assert store.bytes_written() == 4 * 10
        assert _raw(d) == _header(0) + _entry(4, 2, 1) + _entry(2, 0, 1) + _entry(4, 2, 2) + _entry(2, 0, 3)
        assert s.used() == [(4, 2, codes.STATE_COMPLETED)] and s.pending() == []
        s2, problems = _boot(d)
        assert problems == [] and s2.used() == s.used()
        store.reset_counter()
        s2.apply(2, [], [4])  # the host's update compacts it: 4's pickup is gone with its code,
        # whose record is kept in usedtags.bin (an 11-byte frame and the record)
        tags = 11 + codes.RECORD_SIZE
        assert _raw(d) == _header(0) and store.bytes_written() == tags + 16 + 5 * SLOT + 12
        assert [g[4] for g in _gone(s2)] == [4]
        s2.apply(3, [], [])  # nothing appended, nothing to drop: not rewritten
        assert store.bytes_written() == tags + 2 * (16 + 5 * SLOT) + 12
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_replay_later_state_wins_and_a_pickup_is_never_released():
    d = _dir()
    try:
        _stocked(d)
        entries = (
            _entry(3, 1, 1),
            _entry(1, 0, 1),
            _entry(1, 0, 2),
            _entry(1, 0, 3),  # ignored: 1's pickup was recorded
            _entry(2, 2, 1),
            _entry(2, 2, 3),  # released
            _entry(4, 2, 2),  # a completion whose consume was lost still counts
            _entry(5, 1, 3),  # releasing what is not there: nothing
        )
        _write(d + "/used.bin", _header(1) + b"".join(entries))
        s, problems = _boot(d)
        assert problems == []
        assert s.used() == [(1, 0, 2), (3, 1, 1), (4, 2, 2)] and s.pending() == [(3, 1)]
        assert _lookup_states(s) == [0, 3, 0, 3, 3, 0]
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_torn_or_bad_last_entry_is_dropped_and_reported():
    for tail in (_entry(5, 0, 1)[:1], _entry(5, 0, 1)[:9], _entry(5, 0, 1)[:9] + b"x", _entry(5, 0, 6)):
        d = _dir()
        try:
            s = _stocked(d)
            s.consume(1, 0)
            s.consume(2, 0)
            with open(d + "/used.bin", "ab") as f:
                f.write(tail)
            s2, problems = _boot(d)
            assert len(problems) == 1 and "lost 1" in problems[0], (tail, problems)
            assert s2.used() == s.used() and _lookup_states(s2)[5] == codes.OK
            store.reset_counter()
            s2.consume(3, 0)  # rewritten whole: no entry goes after the torn one
            assert store.bytes_written() == 12 + 3 * 10
            s3, problems = _boot(d)
            assert problems == [] and s3.used() == s2.used()
        finally:
            shutil.rmtree(d, ignore_errors=True)


def test_version_1_journal_is_read_and_rewritten_as_version_2():
    d = _dir()
    try:
        _stocked(d)
        _write(d + "/used.bin", _header(2, version=1) + _entry(1, 0, 2) + _entry(4, 2, 1))
        s, problems = _boot(d)
        assert problems == [] and s.used() == [(1, 0, 2), (4, 2, 1)] and s.pending() == [(4, 2)]
        s.complete(4)  # the first write after a version 1 file rewrites it
        assert _raw(d) == _header(2) + _entry(1, 0, 2) + _entry(4, 2, 2)
        for bad in (_header(2, version=7), b"LU" + bytes(10)):  # unknown header: the entries still count
            _write(d + "/used.bin", bad + _entry(1, 0, 2) + _entry(4, 2, 1))
            s, problems = _boot(d)
            assert len(problems) == 1 and s.used() == [(1, 0, 2), (4, 2, 1)], problems
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_nothing_is_dropped_from_the_journal_while_codes_bin_is_damaged():
    d = _dir()
    try:
        s = _stocked(d, 4)
        for i in range(4):
            s.consume(i, 0)
            s.complete(i)
        with open(d + "/codes.bin", "rb") as f:
            data = f.read()
        _write(d + "/codes.bin", data[: 16 + SLOT * 2])  # two records lost
        s, problems = _boot(d)
        assert problems and s.revision == 0 and s.count() == 2
        s.apply(6, [], [])
        assert len(s.used()) == 4  # the host's snapshot may bring the lost codes back: still used
        s.replace(7, [(codes.tag(HKEY, DOORS[0], "%08d" % i), 0, 0, 0, i) for i in range(4)])
        assert _lookup_states(s, 4) == [codes.USED] * 4
        s.replace(8, [(codes.tag(HKEY, DOORS[0], "%08d" % 1), 0, 0, 0, 1)])
        assert s.used() == [(1, 0, codes.STATE_COMPLETED)]
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_journal_grows_past_capacity_when_it_must():
    d = _dir()
    try:
        s = _stocked(d, 4, capacity=4)
        for i in range(4):
            s.consume(i, 0)
        s.replace(2, [(codes.tag(HKEY, DOORS[1], "%08d" % i), 1, 0, 0, i) for i in range(10, 14)])
        for i in range(10, 14):  # 0..3 are pending: kept, and the journal holds 8
            s.consume(i, 1)
        assert [e[0] for e in s.used()] == [0, 1, 2, 3, 10, 11, 12, 13]
        s2 = codes.CodeStore(KEY, DOORS, path=d + "/codes.bin", used_path=d + "/used.bin", capacity=4)
        assert s2.load() == [] and s2.used() == s.used()
    finally:
        shutil.rmtree(d, ignore_errors=True)


journal_ops = st.lists(
    st.tuples(
        st.sampled_from(["consume", "complete", "release", "loading", "loaded"]), st.integers(0, 5), st.integers(0, 2)
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(seq=journal_ops, limit=st.sampled_from([10, 40, 100, 4096]))
def test_journal_ops_survive_reboots_and_compactions(seq, limit):
    d = _dir()
    try:
        s = _stocked(d)
        s.journal_limit = limit
        for op, cid, door in seq:
            store.reset_counter()
            if op in ("consume", "loading", "loaded"):
                getattr(s, op)(cid, door)
            else:
                getattr(s, op)(cid)
            # one entry appended, or the whole journal (at most 6 entries) rewritten
            assert store.bytes_written() in (0, 10, 12 + 10 * len(s.used()))
            assert os.path.getsize(d + "/used.bin") <= 12 + 10 * 6 + 2 * limit
            s2, problems = _boot(d)
            assert problems == [] and s2.used() == s.used()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@settings(max_examples=200, deadline=None)
@given(seq=journal_ops, cut=st.integers(0, 10**6))
def test_journal_cut_anywhere_is_a_prefix_of_the_steps(seq, cut):
    # A file system that keeps part of a write: used.bin cut at any byte loads the state after the
    # last whole entry; a partial entry is reported, never fatal.
    d = _dir()
    try:
        s = _stocked(d)
        s.journal_limit = 10**6
        states = {12: []}  # the host's update wrote the header
        for op, cid, door in seq:
            if op in ("consume", "loading", "loaded"):
                getattr(s, op)(cid, door)
            else:
                getattr(s, op)(cid)
            states[os.path.getsize(d + "/used.bin")] = s.used()
        data = _raw(d)
        n = 12 + cut % (len(data) - 11)
        _write(d + "/used.bin", data[:n])
        s2, problems = _boot(d)
        whole = max(size for size in states if size <= n)
        assert s2.used() == states[whole]
        assert bool(problems) == (n != whole), problems
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- staged snapshots (locker.snapshot) -------------------------------------------------------------

snap_steps = st.lists(
    st.tuples(
        st.sampled_from(["next", "next", "next", "next", "skip", "again", "restart", "rev", "late", "tick", "apply"]),
        st.integers(0, 3),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(
    old=st.lists(rec_spec, max_size=6),
    new=st.lists(rec_spec, max_size=CAPACITY),
    size=st.integers(1, 4),
    steps=snap_steps,
    cut=st.one_of(st.none(), st.integers(1, 30)),
)
def test_snapshot_parts_in_any_order_leave_the_old_store_or_the_whole_new_one(old, new, size, steps, cut):
    """Parts sent, skipped, repeated, restarted, late, with housekeeping ticks and deltas in between,
    and perhaps a power cut: the store (in RAM and after a reboot) is always the old one or the whole
    snapshot, never a mix, and a reboot finds no staged file."""
    from binascii import hexlify

    from locker.snapshot import Snapshot

    GAP_MS = 60_000  # the longest wait for the next part (locker.snapshot)

    d = _dir()
    try:
        s, _ = _boot(d)
        s.replace(1, [_rec(x) for x in old])
        target = Model()
        target.replace(9, [_rec(x) for x in new])
        recs = sorted(target.codes.values())
        rows = [[hexlify(r[0]).decode(), DOORS[r[1]] if r[1] < FREE else "*", r[2], r[3], r[4]] for r in recs]
        n = max(1, -(-len(rows) // size))
        parts = [
            {"rev": 9, "part": k + 1, "parts": n, "total": len(rows), "codes": rows[k * size : (k + 1) * size]}
            for k in range(n)
        ]
        states = [(s.revision, sorted(s.records()))]  # every store the snapshot may leave
        full = (9, recs)
        other = (8, recs)  # "rev" on a part 1: another snapshot, complete in itself
        snap = Snapshot(s)
        now = 0
        k = 0  # the next part to send
        count = [0]

        def hook(op, path):
            count[0] += 1
            if cut is not None and count[0] >= cut:
                raise PowerCut()

        store.set_fault_hook(hook)
        try:
            for what, arg in steps:
                if what == "tick":
                    now += arg * 30_000
                    snap.tick(now)
                    continue
                if what == "apply":  # a delta in between (commands.py abandons the snapshot first)
                    snap.abandon()
                    # Listed before the call: a cut after its rename (in the journal's compaction)
                    # leaves the delta applied.
                    states.append((s.revision + 1, sorted(r for r in s.records() if r[4] != arg)))
                    s.apply(s.revision + 1, [], [arg])
                    assert (s.revision, sorted(s.records())) == states[-1]
                    continue
                if what == "skip":
                    k += 1
                elif what == "again":
                    k = max(k - 1, 0)
                elif what == "restart":
                    k = 0
                elif what == "late":
                    now += GAP_MS
                if k >= n:
                    k = 0
                args = dict(parts[k])
                if what == "rev":
                    args["rev"] = 8
                now += 10
                r = snap.part(args, DOORS, now)
                assert (s.revision, sorted(s.records())) in states + [full, other]
                if r["ok"] and "rev" in r:
                    assert (s.revision, sorted(s.records())) == (args["rev"], recs)
                    states.append((args["rev"], recs))
                k = k + 1 if r["ok"] else 0
        except PowerCut:
            pass
        finally:
            store.set_fault_hook(None)
            if snap._f is not None:
                snap._f.close()
                snap._f = None
        s2, problems = _boot(d)
        assert problems == []
        assert (s2.revision, sorted(s2.records())) in states + [full, other]
        assert not [x for x in os.listdir(d) if x.endswith(".tmp")]
        if cut is None:
            assert (s2.revision, sorted(s2.records())) == (s.revision, sorted(s.records()))
    finally:
        shutil.rmtree(d, ignore_errors=True)
