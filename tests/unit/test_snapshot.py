# The host's full snapshot, staged part by part into codes.bin.tmp: the old store stays until the
# last part is in, and anything odd (order, gap, count, a power cut) leaves the old store untouched.
import os
from binascii import hexlify

import fakes
from locker import codes, hmac256, store
from locker.snapshot import Snapshot

GAP_MS = 60_000  # the longest wait for the next part (locker.snapshot)

KEY = b"snapshot unit test key, 32 bytes"
DOORS = ("A1", "A2", "B1")
HKEY = hmac256.HmacKey(KEY)


class PowerCut(Exception):
    pass


def _rec(i, door=None, expiry=0, kind=0):
    door = i % len(DOORS) if door is None else door
    return (codes.tag(HKEY, DOORS[door], "%08d" % (i * 7919 + 1000)), door, kind, expiry, 1000 + i)


def _rows(recs):
    out = []
    for t, door, kind, expiry, cid in sorted(recs):
        out.append([hexlify(t).decode(), DOORS[door], kind, expiry, cid])
    return out


def _parts(rows, sizes, rev=7):
    out = []
    p = 0
    for k in range(len(sizes)):
        chunk = rows[p : p + sizes[k]]
        p += sizes[k]
        out.append({"rev": rev, "part": k + 1, "parts": len(sizes), "total": len(rows), "codes": chunk})
    return out


def _store(d, capacity=32):
    return codes.CodeStore(KEY, DOORS, path=d + "/codes.bin", used_path=d + "/used.bin", capacity=capacity)


def _setup(name):
    d = fakes.scratch_dir(name)
    s = _store(d)
    s.replace(3, [_rec(i) for i in range(6)])  # ids 1000..1005
    s.consume(1001, 1)
    s.complete(1001)  # a recorded pickup whose code the snapshot drops: pruned
    s.consume(1002, 2)  # pending: stays
    return d, s


def _state(s):
    return (s.revision, sorted(s.records()))


def _reboot(d, capacity=32):
    store.cleanup(d)
    s = _store(d, capacity)
    return s, s.load()


def _tmp(d):
    return [n for n in os.listdir(d) if n.endswith(".tmp")]


NEW = [_rec(i) for i in range(3, 15)]  # 12 codes: 1003..1014 (keeps 1003..1005)


def test_parts_are_staged_and_the_store_switches_at_the_last():
    d, s = _setup("snap-ok")
    before = _state(s)
    snap = Snapshot(s)
    parts = _parts(_rows(NEW), [5, 5, 2])
    assert snap.part(parts[0], DOORS, 0) == {"ok": True, "part": 1}
    assert snap.part(parts[1], DOORS, 1000) == {"ok": True, "part": 2}
    assert snap.staging and _tmp(d) == ["codes.bin.tmp"]
    assert _state(s) == before  # nothing switched yet
    assert snap.part(parts[2], DOORS, 2000) == {"ok": True, "rev": 7, "count": 12}
    assert not snap.staging and _tmp(d) == []
    assert _state(s) == (7, sorted(NEW))
    assert s.used() == [(1002, 2, codes.STATE_CONSUMED)]  # pruned as replace() does
    assert s.lookup(b"%08d" % (14 * 7919 + 1000), None)[0] == codes.OK
    s2, problems = _reboot(d)
    assert problems == [] and _state(s2) == _state(s) and s2.used() == s.used()


def test_a_single_part_and_an_empty_snapshot():
    d, s = _setup("snap-one")
    snap = Snapshot(s)
    assert snap.part(_parts(_rows(NEW[:4]), [4], rev=9)[0], DOORS, 0) == {"ok": True, "rev": 9, "count": 4}
    empty = {"rev": 10, "part": 1, "parts": 1, "total": 0, "codes": []}
    assert snap.part(empty, DOORS, 0) == {"ok": True, "rev": 10, "count": 0}
    s2, problems = _reboot(d)
    assert problems == [] and _state(s2) == (10, [])


def test_a_snapshot_clears_the_damaged_flag():
    d, s = _setup("snap-damaged")
    with open(d + "/codes.bin", "r+b") as f:
        f.seek(16 + 30 + 3)
        f.write(b"\xff\xff")
    s, problems = _reboot(d)
    assert problems and s.damaged and s.revision == 0
    snap = Snapshot(s)
    for p in _parts(_rows(NEW), [6, 6]):
        r = snap.part(p, DOORS, 0)
    assert r == {"ok": True, "rev": 7, "count": 12} and not s.damaged
    assert not _reboot(d)[0].damaged


def _abandoned(name, steps, error, capacity=32):
    """Feed (args, now_ms) steps; the last must be answered `error`, abandon, and leave the old store."""
    d, s = _setup(name)
    s.capacity = capacity
    before = _state(s)
    journal = s.used()
    snap = Snapshot(s)
    for args, now in steps[:-1]:
        assert snap.part(args, DOORS, now)["ok"], args
    args, now = steps[-1]
    r = snap.part(args, DOORS, now)
    assert not r["ok"] and r["error"] == error, r
    assert not snap.staging and _tmp(d) == []
    assert _state(s) == before and s.used() == journal
    s2, problems = _reboot(d)
    assert problems == [] and _state(s2) == before
    # and the next snapshot goes through
    s.capacity = 32
    for p in _parts(_rows(NEW), [12]):
        assert snap.part(p, DOORS, now + 1)["ok"]
    assert _state(s) == (7, sorted(NEW))


def test_every_abandonment_keeps_the_old_store():
    rows = _rows(NEW)
    p = _parts(rows, [4, 4, 4])
    order = "snapshot_order"

    def bump(args, **kw):
        a = dict(args)
        a.update(kw)
        return a

    _abandoned("snap-skip", [(p[0], 0), (p[2], 1)], order)  # a part skipped
    _abandoned("snap-again", [(p[0], 0), (p[1], 1), (p[1], 2)], order)  # a part twice
    _abandoned("snap-nofirst", [(p[1], 0)], order)  # no part 1
    _abandoned("snap-rev", [(p[0], 0), (bump(p[1], rev=8), 1)], order)  # another snapshot's part
    _abandoned("snap-parts", [(p[0], 0), (bump(p[1], parts=4), 1)], order)
    _abandoned("snap-total", [(p[0], 0), (bump(p[1], total=13), 1)], order)
    _abandoned("snap-gap", [(p[0], 0), (p[1], GAP_MS)], order)  # 60 s without a part
    _abandoned("snap-short", [(p[0], 0), (p[1], 1), (bump(p[2], codes=rows[8:11]), 2)], order)
    q = _parts(rows, [5, 5, 2])
    for a in q:
        a["total"] = 11  # the parts bring 12
    _abandoned("snap-long", [(q[0], 0), (q[1], 1), (q[2], 2)], order)
    _abandoned("snap-tagorder", [(bump(p[0], codes=rows[4:8]), 0), (bump(p[1], codes=rows[0:4]), 1)], order)
    unsorted = [rows[1], rows[0], rows[2], rows[3]]
    _abandoned("snap-unsorted", [(bump(p[0], codes=unsorted), 0)], order)
    dup = [rows[0], rows[0], rows[2], rows[3]]
    _abandoned("snap-duptag", [(bump(p[0], codes=dup), 0)], order)
    _abandoned("snap-capacity", [(p[0], 0)], "capacity", capacity=11)
    bad_door = [rows[8], rows[9], [rows[10][0], "Z9", 0, 0, 5], rows[11]]
    _abandoned("snap-door", [(p[0], 0), (p[1], 1), (bump(p[2], codes=bad_door), 2)], "bad_args")
    bad_tag = [rows[0][:], rows[1], rows[2], rows[3]]
    bad_tag[0][0] = "abcd"
    _abandoned("snap-tag", [(bump(p[0], codes=bad_tag), 0)], "bad_args")
    no_id = [rows[0], rows[1], rows[2], rows[3][:4] + [0]]
    _abandoned("snap-id", [(bump(p[0], codes=no_id), 0)], "bad_args")
    big = {"rev": 1, "part": 1, "parts": 1, "total": 65, "codes": [rows[0]] * 65}
    _abandoned("snap-rows", [(big, 0)], "bad_args", capacity=100)
    _abandoned("snap-args", [(p[0], 0), ({"rev": 7, "part": 2}, 1)], "bad_args")
    _abandoned("snap-partnum", [(bump(p[0], part=0), 0)], "bad_args")


def test_a_new_part_one_starts_over():
    d, s = _setup("snap-restart")
    snap = Snapshot(s)
    other = _parts(_rows(NEW[:6]), [3, 3], rev=5)
    assert snap.part(other[0], DOORS, 0)["ok"]
    for p in _parts(_rows(NEW), [6, 6]):
        r = snap.part(p, DOORS, 10)
    assert r == {"ok": True, "rev": 7, "count": 12} and _tmp(d) == []


def test_tick_abandons_a_stalled_snapshot():
    d, s = _setup("snap-tick")
    before = _state(s)
    snap = Snapshot(s)
    p = _parts(_rows(NEW), [6, 6])
    snap.part(p[0], DOORS, 1000)
    assert not snap.tick(1000 + GAP_MS - 1) and snap.staging
    assert snap.tick(1000 + GAP_MS) and not snap.staging and _tmp(d) == []
    assert snap.part(p[1], DOORS, 1000 + GAP_MS)["error"] == "snapshot_order"
    assert _state(s) == before


class CutAfter:
    def __init__(self, k=None):
        self.k = k
        self.ops = []

    def __call__(self, op, path):
        self.ops.append((op, path))
        if self.k is not None and len(self.ops) >= self.k:
            raise PowerCut()


def _run_all(snap, parts):
    for i in range(len(parts)):
        snap.part(parts[i], DOORS, i)


def test_a_power_cut_at_every_step_leaves_the_old_store_or_the_new_one():
    parts = _parts(_rows(NEW), [5, 5, 2])
    d, s = _setup("snap-cut")
    before = _state(s)
    hook = CutAfter()
    store.set_fault_hook(hook)
    try:
        _run_all(Snapshot(s), parts)
    finally:
        store.set_fault_hook(None)
    after = _state(s)
    ops = hook.ops
    switch = ops.index(("rename", d + "/codes.bin")) + 1
    assert switch >= 6 and after == (7, sorted(NEW))  # open, header, 3 parts, close, rename
    for k in range(1, len(ops) + 1):
        d, s = _setup("snap-cut")
        cut = CutAfter(k)
        store.set_fault_hook(cut)
        snap = Snapshot(s)
        try:
            _run_all(snap, parts)
            raise AssertionError("no cut")
        except PowerCut:
            pass
        finally:
            store.set_fault_hook(None)
        s2, problems = _reboot(d)
        if snap._f is not None:  # the cut process's handle (the file is gone)
            store.abandon(snap._f)
        assert problems == [], (k, problems)
        assert _state(s2) == (after if k >= switch else before), k
        assert _tmp(d) == [], k
        assert (1002, 2, codes.STATE_CONSUMED) in s2.used()  # the pending pickup survives, always
