"""Locker messages into the database: checks, and events applied exactly once in any delivery order."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import delivery_batches

from lockertools.service import db, fleet_db, ingest

KEY = bytes(range(32))
LABELS = ["A1", "A2", "A3"]
CODE_IDS = [11, 12, 13, 14]
RECEIVED = 1_800_000_000.0


def _setup(path: Path) -> Any:
    conn = db.connect(path, create=True)
    fleet_db.add_locker(conn, "hall-1", KEY, LABELS)
    with db.transaction(conn):
        for n, code_id in enumerate(CODE_IDS):
            conn.execute(
                "INSERT INTO codes(id, locker_id, door, kind, tag_hex, created_at) VALUES (?, 'hall-1', ?, 0, ?, 0)",
                (code_id, LABELS[n % 3], f"{code_id:032x}"),
            )
            fleet_db.log_change(conn, "hall-1", "add", code_id)
    return conn


def _dump(conn: Any) -> dict[str, Any]:
    """The database's meaning, independent of the order changes were appended in."""
    return {
        "events": [tuple(r) for r in conn.execute("SELECT locker_id, seq, kind, door, json FROM events ORDER BY seq")],
        "codes": [tuple(r) for r in conn.execute("SELECT id, state, used_at FROM codes ORDER BY id")],
        "doors": [
            tuple(r)
            for r in conn.execute("SELECT label, state, doors.full, state_seq, full_seq FROM doors ORDER BY label")
        ],
        "host_rev": conn.execute("SELECT host_rev FROM lockers").fetchone()[0],
        "changes": sorted(tuple(r) for r in conn.execute("SELECT op, code_id FROM changes")),
    }


events = st.lists(
    st.fixed_dictionaries(
        {
            "k": st.sampled_from(["pickup", "closed_full", "unlock", "opened", "closed", "jammed", "denied", "boot"]),
            "t": st.integers(1_700_000_000, 1_700_000_100),
            "d": st.sampled_from(LABELS),
            "id": st.sampled_from(CODE_IDS),
        }
    ),
    min_size=1,
    max_size=12,
)


@st.composite
def deliveries(draw: Any) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Events (seq = index + 1) and their deliveries: each at least once, some again, any order,
    cut into transactions at random places."""
    evs = draw(events)
    return evs, delivery_batches(draw, len(evs), max_again=10)


def _message(seq: int, ev: dict[str, Any]) -> dict[str, Any]:
    return {"v": 1, "lid": "hall-1", "seq": seq, "ev": ev}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_any_interleaving_and_duplication_applies_each_event_once(case: Any) -> None:
    evs, batches = case
    with tempfile.TemporaryDirectory() as tmp:
        once = _setup(Path(tmp) / "once.db")
        with db.transaction(once):
            for n, ev in enumerate(evs):
                assert ingest.apply_event(once, "hall-1", _message(n + 1, ev), RECEIVED)
        messy = _setup(Path(tmp) / "messy.db")
        new = 0
        for batch in batches:
            with db.transaction(messy):
                new += sum(ingest.apply_event(messy, "hall-1", _message(i + 1, evs[i]), RECEIVED) for i in batch)
        assert new == len(evs)
        assert _dump(messy) == _dump(once)
        once.close()
        messy.close()


def test_pickup_marks_the_code_used_empties_the_door_and_removes_it_from_the_locker(tmp_path: Path) -> None:
    conn = _setup(tmp_path / "f.db")
    with db.transaction(conn):
        ingest.apply_event(conn, "hall-1", _message(1, {"k": "closed_full", "d": "A2", "id": 12, "t": 5}), RECEIVED)
        ingest.apply_event(conn, "hall-1", _message(2, {"k": "pickup", "d": "A2", "id": 12, "t": 9}), RECEIVED)
    assert tuple(conn.execute("SELECT state, used_at FROM codes WHERE id = 12").fetchone()) == ("used", 9)
    assert tuple(conn.execute("SELECT doors.full, state FROM doors WHERE label = 'A2'").fetchone()) == (0, "closed")
    assert tuple(conn.execute("SELECT op, code_id FROM changes ORDER BY rev DESC").fetchone()) == ("del", 12)


# --- checking messages ---------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> ingest.KeyRing:
    conn = _setup(tmp_path / "k.db")
    ring = ingest.KeyRing()
    ring.reload(conn)
    return ring


def _signed(payload: Any, key: bytes = KEY) -> bytes:
    from locker import protocol  # type: ignore[import-not-found]
    from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    wire: bytes = protocol.sign(HmacKey(key), body)
    return wire


def test_a_good_event_opens(keys: ingest.KeyRing) -> None:
    got = ingest.open_message(keys, "lockers/hall-1/events", _signed(_message(3, {"k": "boot"})))
    assert (got.locker_id, got.kind, got.msg["seq"]) == ("hall-1", "events", 3)


@pytest.mark.parametrize(
    ("topic", "wire", "reason"),
    [
        ("lockers/hall-1/events", _signed(_message(1, {"k": "boot"}), key=bytes(32)), "bad_signature"),
        ("lockers/hall-9/events", _signed(_message(1, {"k": "boot"})), "unknown_locker"),
        ("lockers/hall-1/events", b"x" * 5000, "oversized"),
        ("lockers/hall-1/events", b"garbage", "malformed"),
        ("lockers/hall-1/events", _signed(b"\xff\xfe not json"), "malformed"),
        ("lockers/hall-1/events", _signed({"v": 2, "lid": "hall-1", "seq": 1, "ev": {"k": "boot"}}), "malformed"),
        ("lockers/hall-1/events", _signed({"v": 1, "lid": "hall-2", "seq": 1, "ev": {"k": "boot"}}), "malformed"),
        ("lockers/hall-1/events", _signed({"v": 1, "lid": "hall-1", "seq": "1", "ev": {"k": "boot"}}), "malformed"),
        ("lockers/hall-1/events", _signed({"v": 1, "lid": "hall-1", "seq": True, "ev": {"k": "boot"}}), "malformed"),
        ("lockers/hall-1/status", _signed({"v": 1, "lid": "hall-1", "online": True}), "malformed"),
        ("lockers/hall-1/reply", _signed({"v": 1, "lid": "hall-1", "tx": 5, "ok": True}), "malformed"),
        ("lockers/hall-1/doors", _signed({"v": 1, "lid": "hall-1", "doors": [{"s": "open"}]}), "malformed"),
        ("lockers/hall-1/cmd", _signed({"v": 1, "lid": "hall-1"}), "malformed"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(keys: ingest.KeyRing, topic: str, wire: bytes, reason: str) -> None:
    with pytest.raises(ingest.Rejected) as err:
        ingest.open_message(keys, topic, wire)
    assert err.value.reason == reason
