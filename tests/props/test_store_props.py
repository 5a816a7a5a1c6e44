"""Properties of the framed, atomic files under random payloads, damage and power cuts (CPython only)."""

import os
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from locker import store

HEADER_SIZE = 11  # a store record's header on flash


class PowerCut(Exception):
    pass


def _dir() -> str:
    return tempfile.mkdtemp(prefix="locker-store-props-")


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=600))
def test_round_trip(payload):
    d = _dir()
    store.save(d + "/f", payload)
    assert store.load(d + "/f") == payload
    assert os.listdir(d) == ["f"]


@settings(max_examples=400, deadline=None)
@given(
    payload=st.binary(max_size=200),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_damage_is_detected_never_misread(payload, flips, cut):
    d = _dir()
    p = d + "/f"
    store.save(p, payload)
    with open(p, "rb") as f:
        data = bytearray(f.read())
    for pos, x in flips:
        data[pos % len(data)] ^= x
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    with open(p, "wb") as f:
        f.write(data)
    try:
        got = store.load(p)
    except store.Corrupt:
        return
    assert got == payload  # only when the damage cancelled out or cut nothing


@settings(max_examples=200, deadline=None)
@given(old=st.binary(max_size=300), new=st.binary(max_size=300), chunks=st.integers(1, 5), k=st.integers(1, 50))
def test_power_cut_leaves_old_or_new(old, new, chunks, k):
    d = _dir()
    p = d + "/f"
    store.save(p, old)
    steps = []

    def hook(op, path):
        steps.append(op)
        if len(steps) >= k:
            raise PowerCut()

    size = len(new) // chunks + 1
    parts = [new[i : i + size] for i in range(0, len(new), size)]
    store.set_fault_hook(hook)
    try:
        store.write_atomic(p, parts)
        finished = True
    except PowerCut:
        finished = False
    finally:
        store.set_fault_hook(None)
    store.cleanup(d)
    with open(p, "rb") as f:
        got = f.read()
    framed_old = got[HEADER_SIZE:] == old and got[:2] == b"LK"
    assert got == new or framed_old
    if finished:
        assert got == new
    assert os.listdir(d) == ["f"]
