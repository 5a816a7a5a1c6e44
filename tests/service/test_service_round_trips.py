"""The processor's work per batch of locker messages in round trips to PostgreSQL (tests/support/pgtrace.py),
and that it stays exactly-once: a run of door events is recorded in one round trip whatever its length
(ingest.record_door_events), the other messages' writes go with the next statement that is answered
(db.Connection.send), and an ack's command seq costs no round trip (db.CommandSeqs with an `outside`
count). Driven through the service's own `_process` with signed messages, no broker."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import delivery_batches

from lockertools.service import db, fleet_db, ingest
from lockertools.service.runner import Service, ServiceConfig
from tests.support.mosquitto import wait_until
from tests.support.pgtrace import round_trips

LABELS = ["A1", "A2", "A3"]
RECEIVED = 1_800_000_000


def _key(lid: str) -> bytes:
    return lid.encode().ljust(32, b"k")


def _service(path: Path, lockers: list[str]) -> Service:
    conn = db.connect(path, create=True)
    for lid in lockers:
        fleet_db.add_locker(conn, lid, _key(lid), LABELS)
    conn.close()
    service = Service(ServiceConfig(db_path=path))
    service._conn = db.connect(path)
    service._keys.reload(service._conn)
    return service


def _message(lid: str, kind: str, payload: dict[str, Any]) -> Any:
    from locker import protocol  # type: ignore[import-not-found]
    from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

    body = json.dumps({"v": 1, "lid": lid, **payload}).encode()
    return SimpleNamespace(topic=f"lockers/{lid}/{kind}", payload=protocol.sign(HmacKey(_key(lid)), body))


def _event(lid: str, seq: int, ev: dict[str, Any]) -> Any:
    return _message(lid, "events", {"seq": seq, "ev": ev})


def _postgresql_only(database: str) -> None:
    if database != "postgresql":
        pytest.skip("round trips to a server: SQLite runs in the service's process")


def test_a_run_of_door_events_is_one_round_trip_whatever_its_length(tmp_path: Path, database: str) -> None:
    _postgresql_only(database)
    lockers = [f"hall-{n}" for n in range(20)]
    service = _service(tmp_path / "fleet.db", lockers)
    kinds = ["unlock", "opened", "closed", "denied"]
    batch = [
        _event(lid, seq, {"k": kinds[seq % 4], "d": "A2", "t": RECEIVED + seq}) for lid in lockers for seq in (1, 2, 3)
    ]
    with round_trips(service.conn) as first:
        service._process(batch)
    with round_trips(service.conn) as again:
        service._process(batch)  # delivered twice: recorded once, acknowledged again
    assert (first.count, again.count) == (2, 2)  # BEGIN with the run, COMMIT
    assert (service.counters.events, service.counters.duplicates, service.counters.errors) == (60, 60, 0)
    rows = service.conn.execute("SELECT locker_id, seq, kind FROM events ORDER BY locker_id, seq").fetchall()
    assert [tuple(r) for r in rows] == [(lid, seq, kinds[seq % 4]) for lid in sorted(lockers) for seq in (1, 2, 3)]
    doors = service.conn.execute("SELECT state, state_seq, updated_at FROM doors WHERE label = 'A2'").fetchall()
    assert {tuple(r) for r in doors} == {("closed", 2, RECEIVED + 2)}  # seq 2 closed it; denied (3) moves nothing
    service.conn.close()


def test_a_pickup_and_the_sync_it_starts_take_few_round_trips(tmp_path: Path, database: str) -> None:
    _postgresql_only(database)
    service = _service(tmp_path / "fleet.db", ["hall-1"])
    conn = service.conn
    issued = fleet_db.issue_code(conn, "hall-1", "A1")
    fleet_db.issue_code(conn, "hall-1", "A2")  # stays: the sync is a delta (`del`), not a snapshot
    with db.transaction(conn):
        conn.execute("UPDATE lockers SET locker_rev = host_rev")  # the locker holds the code
    service.sync_state("hall-1").online = True
    events = [(1, "unlock"), (2, "opened"), (3, "pickup")]
    batch = [_event("hall-1", seq, {"k": k, "d": "A1", "id": issued.code_id, "t": RECEIVED + seq}) for seq, k in events]
    with round_trips(conn) as trips:
        service._process(batch)
    # BEGIN with the door run; the pickup: its event, its code, H raised, the webhook outbox's read of
    # the delivery (its case number), the incidents it may clear (an item left in A1), RELEASE with its
    # writes; the sync: the locker's row with its changes and codes, the command seq's stored top;
    # COMMIT with the command's record.
    assert trips.count <= 10, trips.trace
    assert conn.execute("SELECT state FROM codes WHERE id = ?", (issued.code_id,)).scalar() == "used"
    assert conn.execute("SELECT op FROM changes ORDER BY rev DESC").scalar() == "del"
    assert [tuple(r) for r in conn.execute("SELECT op, state FROM commands")] == [("codes.apply", "sent")]
    assert service.counters.events == 3 and service.sync_state("hall-1").outstanding is not None
    conn.close()


def test_a_message_that_raises_costs_only_itself_and_its_writes_waiting_to_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(tmp_path / "fleet.db", ["hall-1", "hall-2"])

    def broken(conn: db.Connection, lid: str, msg: dict[str, Any], at: float) -> None:
        conn.send("UPDATE lockers SET online = 1, last_seen = ? WHERE id = ?", (at, lid))  # waits to go
        raise RuntimeError("a bug in applying a status")

    monkeypatch.setattr(ingest, "apply_status", broken)
    service._process(
        [
            _event("hall-1", 1, {"k": "opened", "d": "A1"}),
            _message("hall-2", "status", {"online": True, "rev": 0}),
            _event("hall-2", 1, {"k": "opened", "d": "A3"}),
        ]
    )
    assert (service.counters.events, service.counters.errors) == (2, 1)
    lockers = service.conn.execute("SELECT id, online, last_seen FROM lockers ORDER BY id").fetchall()
    assert [tuple(r) for r in lockers] == [("hall-1", 0, None), ("hall-2", 0, None)]
    opened = service.conn.execute("SELECT locker_id, label FROM doors WHERE state = 'open' ORDER BY locker_id")
    assert [tuple(r) for r in opened] == [("hall-1", "A1"), ("hall-2", "A3")]
    service.conn.close()


def test_acks_read_the_seq_top_again_only_after_another_process_moved_it(tmp_path: Path, database: str) -> None:
    _postgresql_only(database)
    path = tmp_path / "fleet.db"
    conn = db.connect(path, create=True)
    fleet_db.add_locker(conn, "hall-1", _key("hall-1"), LABELS)
    listener = db.ChangeListener(conn.url, conn.backend_pid())
    seqs = db.CommandSeqs(outside=lambda: (listener.drain(), listener.count)[1])
    last = seqs.take(conn, "hall-1")
    with round_trips(conn) as trips:
        taken = [seqs.take(conn, "hall-1") for _ in range(20)]
    assert trips.count == 0 and taken == sorted(set(taken)) and taken[0] > last
    tool = db.connect(path)
    block = db.reserve_seq_block(tool, "hall-1")  # a technician's tool, another process
    wait_until(lambda: (listener.drain(), listener.count)[1] > 0, 10, "the tool's NOTIFY")
    assert seqs.take(conn, "hall-1") > block + db.SEQ_BLOCK - 1
    tool.close()
    listener.close()
    conn.close()


# --- exactly once through the processor, in any delivery order ----------------------------------------

CODE_IDS = [11, 12, 13]
events = st.lists(
    st.fixed_dictionaries(
        {
            "k": st.sampled_from(["pickup", "closed_full", "unlock", "opened", "closed", "jammed", "denied", "loaded"]),
            "t": st.integers(RECEIVED, RECEIVED + 100),
            "d": st.sampled_from(LABELS),
            "id": st.sampled_from(CODE_IDS),
        }
    ),
    min_size=1,
    max_size=12,
)


@st.composite
def deliveries(draw: Any) -> tuple[list[dict[str, Any]], list[list[int]]]:
    evs = draw(events)
    return evs, delivery_batches(draw, len(evs), max_again=10)


def _with_codes(path: Path) -> Service:
    service = _service(path, ["hall-1"])
    with db.transaction(service.conn):
        for n, code_id in enumerate(CODE_IDS):
            fleet_db.new_code(service.conn, "hall-1", LABELS[n], 0, 0, code=f"{n:08d}", code_id=code_id)
    return service


def _dump(conn: db.Connection) -> dict[str, Any]:
    """The database's meaning, independent of the order changes were appended in."""
    return {
        "events": [tuple(r) for r in conn.execute("SELECT seq, kind, door, json FROM events ORDER BY seq")],
        "codes": [tuple(r) for r in conn.execute("SELECT id, state, used_at, door_seq FROM codes ORDER BY id")],
        "doors": [
            tuple(r) for r in conn.execute('SELECT label, state, "full", state_seq, full_seq FROM doors ORDER BY label')
        ],
        "host_rev": conn.execute("SELECT host_rev FROM lockers").scalar(),
        "changes": sorted(tuple(r) for r in conn.execute("SELECT op, code_id FROM changes")),
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_the_processor_records_each_event_once_whatever_the_delivery_order(case: Any) -> None:
    """Batches mixing runs of door events (recorded together) with pickups and loads (one by one), each
    event delivered once or more, in any order: the database the events make in order, once each."""
    evs, batches = case
    with tempfile.TemporaryDirectory() as tmp:
        once = _with_codes(Path(tmp) / "once.db")
        with db.transaction(once.conn):  # the reference: each event applied alone, in order
            for n, ev in enumerate(evs):
                assert ingest.apply_event(once.conn, "hall-1", {"v": 1, "lid": "hall-1", "seq": n + 1, "ev": ev}, 0)
        messy = _with_codes(Path(tmp) / "messy.db")
        for batch in batches:
            messy._process([_event("hall-1", i + 1, evs[i]) for i in batch])
        assert messy.counters.events == len(evs) and messy.counters.errors == 0
        assert messy.counters.duplicates == sum(map(len, batches)) - len(evs)
        assert _dump(messy.conn) == _dump(once.conn)
        once.conn.close()
        messy.conn.close()
