"""Properties of CodeStore against a plain dict model: random host updates, pickups, power cuts and
damaged files (CPython only)."""

import os
import shutil
import tempfile

from hypothesis import event, given, settings
from hypothesis import strategies as st

from locker import codes, hmac256, store

SLOT = codes.RECORD_SIZE + 4  # a record and its checksum, on flash

KEY = b"property test key"
DOORS = ("A1", "A2", "B1")
POOL = ("0000", "1234", "9999", "5555", "00001234", "42")  # few codes: tags collide across updates
CAPACITY = 8
HKEY = hmac256.HmacKey(KEY)
TAGS = {(d, c): codes.tag(HKEY, DOORS[d], c) for d in range(len(DOORS)) for c in POOL}


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


rec_spec = st.tuples(
    st.integers(0, len(DOORS) - 1),  # door
    st.integers(0, len(POOL) - 1),  # code
    st.integers(0, 2),  # kind
    st.sampled_from([0, 0, 100, 200]),  # expiry
    st.integers(0, 11),  # code_id
)


def _rec(spec):
    door, code, kind, expiry, cid = spec
    return (TAGS[(door, POOL[code])], door, kind, expiry, cid)


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
)


# --- the model -------------------------------------------------------------------------------------


class Model:
    def __init__(self):
        self.revision = 0
        self.codes = {}  # code_id -> record
        self.used = {}  # code_id -> [door, state]

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
        self.codes, self.revision = new.codes, revision

    def apply(self, revision, adds, removes):
        saved = dict(self.codes)
        for cid in removes:
            self.codes.pop(cid, None)
        for r in adds:
            self._displace(r)
        if len(self.codes) > CAPACITY:
            self.codes = saved
            raise ValueError
        self.revision = revision

    def _rewrite_journal(self):
        # Every step starts from a fresh boot, so each journal rewrite prunes.
        for cid in [c for c, (_, st_) in self.used.items() if st_ == codes.STATE_COMPLETED and c not in self.codes]:
            del self.used[cid]

    def consume(self, cid, door):
        if cid not in self.used:
            self.used[cid] = [door, codes.STATE_CONSUMED]
            self._rewrite_journal()

    def complete(self, cid):
        if cid in self.used and self.used[cid][1] != codes.STATE_COMPLETED:
            self.used[cid][1] = codes.STATE_COMPLETED
            self._rewrite_journal()

    def release(self, cid):
        if cid in self.used and self.used[cid][1] == codes.STATE_CONSUMED:
            del self.used[cid]
            self._rewrite_journal()

    def state(self):
        used = sorted((c, d, s) for c, (d, s) in self.used.items())
        return (self.revision, sorted(self.codes.values()), used)

    def lookup(self, code, now):
        by_tag = {r[0]: r for r in self.codes.values()}
        best = None
        for door in range(len(DOORS)):
            r = by_tag.get(codes.tag(HKEY, DOORS[door], code))
            if r is None:
                continue
            if r[4] in self.used:
                status = codes.USED
            elif r[3] and now is not None and now >= r[3]:
                status = codes.EXPIRED
            else:
                return (codes.OK, door, r[4], r[2])
            if best is None or (status == codes.EXPIRED and best[0] == codes.USED):
                best = (status, door, r[4], r[2])
        return best or (codes.UNKNOWN, None, None, None)

    def copy(self):
        m = Model()
        m.revision, m.codes, m.used = self.revision, dict(self.codes), {c: list(v) for c, v in self.used.items()}
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
    else:
        target.complete(op[1])


def _check_lookups(s, model):
    for code in POOL + ("7777",):
        for now in (None, 0, 150, 10**9):
            assert s.lookup(bytearray(code.encode()), now) == model.lookup(code, now), (code, now)


# --- properties ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(seq=st.lists(st.tuples(ops, st.one_of(st.none(), st.floats(0, 1, exclude_max=True))), max_size=12))
def test_power_cut_anywhere_leaves_before_or_after(seq):
    d = _dir()
    model = Model()
    try:
        for op, cut_at in seq:
            s, problems = _boot(d)
            assert problems == []
            before = _state(s)
            assert before == model.state()
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
                got = _state(_boot(d)[0])
                assert got in (before, after_model.state()), (k, len(steps))
                event("cut in %s: %s" % (op[0], "after" if got == after_model.state() else "before"))
                if got == after_model.state():
                    model = after_model
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
            # the model prunes at every journal rewrite; the store only after the codes changed
            if op[0] in ("consume", "complete", "release"):
                model.used = {c: [dd, st_] for c, dd, st_ in s.used()}
            assert sorted(s.records()) == sorted(model.codes.values())
            assert s.revision == model.revision
            for code in POOL:
                assert s.lookup(memoryview(code.encode()), now) == model.lookup(code, now)
    finally:
        shutil.rmtree(d, ignore_errors=True)
