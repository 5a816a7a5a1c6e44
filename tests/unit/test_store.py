# Atomic checksummed files: round trips, damage detection, and a power cut after every step.
import os

import fakes
from locker import store

HEADER_SIZE = 11  # a store record's header on flash


class PowerCut(Exception):
    pass


class CutAfter:
    """A fault hook that records every step and raises PowerCut right after step number k (1-based)."""

    def __init__(self, k=None):
        self.k = k
        self.steps = []

    def __call__(self, op, path):
        self.steps.append((op, path))
        if self.k is not None and len(self.steps) >= self.k:
            raise PowerCut()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write_raw(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_save_load_round_trip():
    d = fakes.scratch_dir("store")
    p = d + "/a.bin"
    for payload in (b"", b"x", bytes(range(256)) * 3, bytearray(b"ba"), memoryview(b"mv")):
        store.save(p, payload)
        assert store.load(p) == bytes(payload)
    assert HEADER_SIZE == 11
    assert len(_read(p)) == HEADER_SIZE + 2
    assert _read(p)[:2] == b"LK"
    assert sorted(os.listdir(d)) == ["a.bin"]


def test_missing_file_is_none():
    d = fakes.scratch_dir("store")
    assert store.load(d + "/nothing.bin") is None


def _corrupt_reason(path):
    try:
        store.load(path)
    except store.Corrupt as exc:
        assert exc.path == path
        assert path in str(exc)
        return exc.reason
    return None


def test_empty_truncated_and_damaged_files_raise_corrupt():
    d = fakes.scratch_dir("store")
    p = d + "/a.bin"
    store.save(p, b"hello world")
    good = _read(p)
    _write_raw(p, b"")
    assert _corrupt_reason(p) == "empty"
    for n in (1, 5, HEADER_SIZE, len(good) - 1):
        _write_raw(p, good[:n])
        assert _corrupt_reason(p) == "truncated", n
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x40
        _write_raw(p, bad)
        assert _corrupt_reason(p) is not None, i
    _write_raw(p, good + b"x")
    assert _corrupt_reason(p) == "bad length"
    _write_raw(p, good)
    assert store.load(p) == b"hello world"


def test_write_atomic_is_raw_and_takes_chunks():
    d = fakes.scratch_dir("store")
    p = d + "/raw.bin"
    store.write_atomic(p, b"abc")
    assert _read(p) == b"abc"
    store.write_atomic(p, (b"12", bytearray(b"34"), memoryview(b"56")))
    assert _read(p) == b"123456"
    store.write_atomic(p, iter([]))
    assert _read(p) == b""
    assert os.listdir(d) == ["raw.bin"]


def test_byte_counter_counts_every_byte():
    d = fakes.scratch_dir("store")
    store.reset_counter()
    assert store.bytes_written() == 0
    store.save(d + "/a.bin", b"12345")
    assert store.bytes_written() == HEADER_SIZE + 5
    store.write_atomic(d + "/b.bin", (b"12", b"345"))
    store.append(d + "/c.log", b"xy")
    assert store.bytes_written() == HEADER_SIZE + 5 + 5 + 2
    store.reset_counter()
    assert store.bytes_written() == 0


def test_save_never_removes_the_target_and_renames_last():
    d = fakes.scratch_dir("store")
    p = d + "/a.bin"
    store.save(p, b"old")
    hook = CutAfter()
    store.set_fault_hook(hook)
    try:
        store.save(p, b"new")
    finally:
        store.set_fault_hook(None)
    ops = [op for op, _ in hook.steps]
    assert "remove" not in ops
    assert ops[0] == "open" and ops[-2:] == ["close", "rename"], ops
    assert hook.steps[-1] == ("rename", p)
    assert all(path == p + ".tmp" for _, path in hook.steps[:-1])


def test_power_cut_after_every_step_of_save_leaves_old_or_new():
    d = fakes.scratch_dir("store")
    p = d + "/a.bin"
    store.save(p, b"old contents")
    hook = CutAfter()
    store.set_fault_hook(hook)
    try:
        store.save(p, b"new contents, longer")
    finally:
        store.set_fault_hook(None)
    total = len(hook.steps)
    assert total >= 5
    for k in range(1, total + 1):
        store.save(p, b"old contents")
        store.set_fault_hook(CutAfter(k))
        cut = False
        try:
            store.save(p, b"new contents, longer")
        except PowerCut:
            cut = True
        finally:
            store.set_fault_hook(None)
        assert cut, k
        # Reboot: clean up, then the file is exactly the old or the new one.
        store.cleanup(d)
        got = store.load(p)
        if k < total:
            assert got == b"old contents", k
        else:
            assert got == b"new contents, longer", k
        assert os.listdir(d) == ["a.bin"], k


def test_first_save_cut_leaves_nothing_or_new():
    d = fakes.scratch_dir("store")
    p = d + "/first.bin"
    for k in range(1, 6):
        store.set_fault_hook(CutAfter(k))
        try:
            store.save(p, b"v1")
        except PowerCut:
            pass
        finally:
            store.set_fault_hook(None)
        store.cleanup(d)
        assert store.load(p) in (None, b"v1")
        store.remove(p)


def test_cleanup_removes_only_tmp_files():
    d = fakes.scratch_dir("store")
    _write_raw(d + "/a.bin.tmp", b"")
    _write_raw(d + "/b.tmp", b"partial")
    _write_raw(d + "/keep.bin", b"k")
    removed = store.cleanup(d)
    assert sorted(removed) == ["a.bin.tmp", "b.tmp"]
    assert os.listdir(d) == ["keep.bin"]
    assert store.cleanup(d) == []
    assert store.cleanup(d + "/missing") == []


def test_oserror_during_write_keeps_the_old_file():
    d = fakes.scratch_dir("store")
    p = d + "/a.bin"
    store.save(p, b"old")

    def full(op, path):
        if op == "write":
            raise OSError(28)

    store.set_fault_hook(full)
    try:
        store.save(p, b"new")
        raised = False
    except OSError:
        raised = True
    finally:
        store.set_fault_hook(None)
    assert raised
    assert store.load(p) == b"old"
    assert os.listdir(d) == ["a.bin"]  # the tmp is removed on an error (not on a cut)


def test_append_remove_size_join():
    d = fakes.scratch_dir("store")
    p = store.join(d, "log")
    assert p == d + "/log"
    assert store.join(".", "x") == "x"
    assert store.size(p) == -1
    store.append(p, b"ab")
    store.append(p, b"cd")
    assert _read(p) == b"abcd"
    assert store.size(p) == 4
    assert store.remove(p)
    assert not store.remove(p)
