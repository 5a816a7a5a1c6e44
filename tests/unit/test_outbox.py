# Events on flash, one file each, oldest first; sequence numbers that only grow.
import os

import fakes
from locker import outbox, store

HEADER_SIZE = 11  # a store record's header on flash


class PowerCut(Exception):
    pass


def _new(d, capacity=500):
    o = outbox.Outbox(directory=d + "/outbox", capacity=capacity)
    return o


def test_put_peek_ack_in_order():
    d = fakes.scratch_dir("outbox")
    o = _new(d)
    assert o.load() == []
    assert len(o) == 0 and o.peek() is None
    s1 = o.put(b'{"k":"boot"}')
    s2 = o.put(b'{"k":"pickup"}')
    assert s2 > s1 >= 1
    assert len(o) == 2
    assert o.peek() == (s1, b'{"k":"boot"}')
    assert o.peek() == (s1, b'{"k":"boot"}')
    o.ack(s1)
    assert o.peek() == (s2, b'{"k":"pickup"}')
    o.ack(12345)  # unknown: ignored
    o.ack(s2)
    assert o.peek() is None and len(o) == 0


def test_events_and_numbers_survive_a_reboot():
    d = fakes.scratch_dir("outbox")
    o = _new(d)
    o.load()
    seqs = [o.put(b"e%d" % i) for i in range(5)]
    o.ack(seqs[0])
    o2 = _new(d)
    assert o2.load() == []
    assert len(o2) == 4
    assert o2.peek() == (seqs[1], b"e1")
    assert o2.put(b"new") > seqs[-1]


def test_numbers_grow_across_an_emptied_outbox_and_many_reboots():
    d = fakes.scratch_dir("outbox")
    last = 0
    for _ in range(5):
        o = _new(d)
        o.load()
        for _ in range(3):
            seq = o.put(b"x")
            assert seq > last
            last = seq
        while o.peek() is not None:
            o.ack(o.peek()[0])
        assert len(o) == 0
    assert not [n for n in os.listdir(d + "/outbox") if n.endswith(".ev")]


def test_high_water_mark_is_written_rarely():
    d = fakes.scratch_dir("outbox")
    o = _new(d)
    o.load()
    o.put(b"first")
    store.reset_counter()
    for _ in range(20):
        o.put(b"0123456789")
    assert store.bytes_written() == 20 * (HEADER_SIZE + 10)


def test_full_outbox_drops_the_oldest_and_counts():
    d = fakes.scratch_dir("outbox")
    o = _new(d, capacity=3)
    o.load()
    seqs = [o.put(b"%d" % i) for i in range(5)]
    assert len(o) == 3
    assert o.dropped == 2
    assert o.peek() == (seqs[2], b"2")
    o2 = _new(d, capacity=2)
    o2.load()
    assert len(o2) == 2 and o2.dropped == 1
    assert o2.peek()[0] == seqs[3]


def test_damaged_empty_and_stray_files_are_removed_and_reported():
    d = fakes.scratch_dir("outbox")
    o = _new(d)
    o.load()
    seqs = [o.put(b"event %d" % i) for i in range(4)]
    names = sorted(n for n in os.listdir(d + "/outbox") if n.endswith(".ev"))
    with open(d + "/outbox/" + names[1], "wb") as f:
        f.write(b"")
    with open(d + "/outbox/" + names[2], "r+b") as f:
        f.seek(HEADER_SIZE)
        f.write(b"X")
    with open(d + "/outbox/" + names[3] + ".tmp", "wb") as f:
        f.write(b"half")
    with open(d + "/outbox/junk", "wb") as f:
        f.write(b"?")
    o2 = _new(d)
    problems = o2.load()
    assert len(problems) == 4, problems
    assert len(o2) == 2
    assert o2.peek() == (seqs[0], b"event 0")
    o2.ack(seqs[0])
    assert o2.peek() == (seqs[3], b"event 3")
    assert sorted(os.listdir(d + "/outbox")) == sorted(["hwm.bin", names[3]])


def test_event_damaged_after_load_is_skipped_by_peek():
    d = fakes.scratch_dir("outbox")
    o = _new(d)
    o.load()
    a = o.put(b"aaaa")
    b = o.put(b"bbbb")
    name = [n for n in os.listdir(d + "/outbox") if n.endswith(".ev")]
    name.sort()
    with open(d + "/outbox/" + name[0], "wb") as f:
        f.write(b"LK")
    assert o.peek() == (b, b"bbbb")
    assert len(o) == 1 and len(o.problems) == 1
    assert a < b


def test_power_cut_during_put_never_reuses_a_number():
    d = fakes.scratch_dir("outbox")
    o = _new(d)
    o.load()
    seen = [o.put(b"x") for _ in range(3)]
    k = 1
    while True:
        steps = [0]

        def hook(op, path):
            steps[0] += 1
            if steps[0] >= k:
                raise PowerCut()

        o = _new(d)
        o.load()
        store.set_fault_hook(hook)
        try:
            seen.append(o.put(b"y"))
            done = True
        except PowerCut:
            done = False
        finally:
            store.set_fault_hook(None)
        o = _new(d)
        for problem in o.load():
            assert problem.endswith(".tmp"), problem  # a cut leaves at most a stray tmp
        seen.append(o.put(b"z"))
        assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
        if done:
            break
        k += 1
    assert k > 3


def test_ack_out_of_order_keeps_the_rest_in_order_and_on_flash():
    d = fakes.scratch_dir("outbox")
    o = _new(d, capacity=5)
    o.load()
    seqs = [o.put(b"e%d" % i) for i in range(5)]
    o.ack(seqs[2])  # the uplink may confirm a later event first
    assert len(o) == 4
    again = _new(d, capacity=5)
    again.load()
    got = []
    item = again.peek()
    while item is not None:
        got.append(item)
        again.ack(item[0])
        item = again.peek()
    assert got == [(seqs[0], b"e0"), (seqs[1], b"e1"), (seqs[3], b"e3"), (seqs[4], b"e4")]


def test_a_long_outage_does_not_grow_the_index():
    # The sequence index is preallocated: a host away for days does not grow a list per event.
    d = fakes.scratch_dir("outbox")
    o = _new(d, capacity=40)
    o.load()
    for i in range(100):
        o.put(b"x")
    assert len(o) == 40 and o.dropped == 60
    assert len(o._seqs) == 41  # still the array made at construction


def test_after_walks_the_events_above_a_number():
    d = fakes.scratch_dir("outbox")
    o = _new(d)
    o.load()
    seqs = [o.put(b"e%d" % i) for i in range(6)]
    assert o.after(0) == (seqs[0], b"e0")
    assert o.after(seqs[0]) == (seqs[1], b"e1")
    o.ack(seqs[2])
    assert o.after(seqs[1]) == (seqs[3], b"e3")  # a gap is stepped over
    assert o.after(seqs[1] + 1) == (seqs[3], b"e3")
    assert o.after(seqs[5]) is None
    got = []
    item = o.after(0)
    while item is not None:  # the uplink sends in order without acknowledging first
        got.append(item[0])
        item = o.after(item[0])
    assert got == [seqs[0], seqs[1], seqs[3], seqs[4], seqs[5]]
    assert len(o) == 5  # after() forgets nothing


def test_after_removes_and_skips_a_damaged_event():
    d = fakes.scratch_dir("outbox")
    o = _new(d)
    o.load()
    seqs = [o.put(b"e%d" % i) for i in range(3)]
    with open(d + "/outbox/%010d.ev" % seqs[1], "wb") as f:
        f.write(b"LK")
    assert o.after(seqs[0]) == (seqs[2], b"e2")
    assert len(o) == 2 and len(o.problems) == 1
    assert not _exists(d + "/outbox/%010d.ev" % seqs[1])


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def test_load_orders_events_whatever_order_the_directory_lists_them_in():
    # Files written out of order (as names come from the directory in any order) load sorted, and
    # only the newest `capacity` stay.
    d = fakes.scratch_dir("outbox")
    os.mkdir(d + "/outbox")
    order = [17, 3, 44, 8, 29, 1, 36, 12, 40, 5]
    for seq in order:
        store.save(d + "/outbox/%010d.ev" % seq, b"%d" % seq)
    o = _new(d, capacity=6)
    assert o.load() == []
    assert o.dropped == 4
    want = sorted(order)[-6:]
    got = []
    item = o.peek()
    while item is not None:
        got.append(item)
        o.ack(item[0])
        item = o.peek()
    assert got == [(s, b"%d" % s) for s in want]
    assert sorted(n for n in os.listdir(d + "/outbox") if n.endswith(".ev")) == []
    assert o.put(b"next") == 45


def _reserve(d, seq):
    # As after many boots: the reservation in hwm.bin says where the numbers go on.
    import struct

    store.save(d + "/outbox/hwm.bin", struct.pack("<I", seq))


def test_the_index_takes_two_bytes_an_event():
    d = fakes.scratch_dir("outbox")
    o = _new(d, capacity=500)
    o.load()
    assert len(bytes(o._seqs)) == 2 * 501


def test_numbers_far_apart_stay_in_order_and_in_reach():
    d = fakes.scratch_dir("outbox")
    o = _new(d)
    o.load()
    first = [o.put(b"a"), o.put(b"b")]
    _reserve(d, 60_000)
    o = _new(d)
    assert o.load() == []
    late = o.put(b"c")
    assert late >= 60_000 and len(o) == 3 and o.dropped == 0
    assert o.peek() == (first[0], b"a")
    assert o.after(first[1]) == (late, b"c")
    o.ack(first[0])
    # 70,000 numbers on: the oldest left (2) goes past the index's span; the event at 60,000 stays.
    _reserve(d, late + 10_000)
    o.put(b"d")  # before the reboot: the numbers go on in this run
    o = _new(d)
    o.load()
    newest = o.put(b"e")
    assert newest - first[1] > 0xFFFF
    assert o.dropped == 1 and len(o) == 3, (o.dropped, len(o))
    assert o.peek() == (late, b"c")
    seen = []
    at = o.peek()
    while at is not None:
        seen.append(at[1])
        at = o.after(at[0])
    assert seen == [b"c", b"d", b"e"]


def test_a_reboot_finds_only_the_newest_span_of_numbers():
    d = fakes.scratch_dir("outbox")
    o = _new(d)
    o.load()
    old = o.put(b"old")
    _reserve(d, old + 0x10000 + 5)
    o = _new(d)
    o.load()
    new = o.put(b"new")
    assert o.dropped == 1 and len(o) == 1 and o.peek() == (new, b"new")
    o = _new(d)  # the old file went: a reboot finds the new one alone
    assert o.load() == [] and len(o) == 1 and o.dropped == 0 and o.peek() == (new, b"new")
