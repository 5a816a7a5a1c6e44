"""The host service against a real mosquitto (the `broker` fixture) and simulated lockers."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import Rig

from lockertools.service import fleet_db
from tests.support.fixtures import Broker


@pytest.fixture
def rig(broker: Broker, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(broker, tmp_path)
    try:
        yield r
    finally:
        r.close()


def _host_rev(rig: Rig, lid: str = "hall-1") -> int:
    return int(rig.query("SELECT host_rev FROM lockers WHERE id = ?", lid)[0][0])


def _status_rev(rig: Rig, lid: str = "hall-1") -> int | None:
    row = rig.query("SELECT status_json FROM lockers WHERE id = ?", lid)[0]
    return None if row[0] is None else int(json.loads(row[0])["rev"])


def test_the_services_broker_socket_sends_small_writes_at_once(rig: Rig) -> None:
    """TCP_NODELAY: a command written right after a PUBACK would otherwise wait for the broker's
    delayed ACK of the first write (Nagle; tens of ms on Linux), on the way issue -> locker."""
    service = rig.start_service()
    client = service.mqtt
    assert client is not None
    sock = client._client.socket()
    assert isinstance(sock, socket.socket)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_issued_code_reaches_the_locker_and_its_status_shows_h(rig: Rig) -> None:
    rig.start_service()
    sim = rig.start_locker()
    rig.wait(lambda: rig.query("SELECT online FROM lockers")[0][0] == 1, "the locker online")
    issued = fleet_db.issue_code(rig.conn, "hall-1", "A2")
    rig.wait(lambda: sim.lookup("A2", issued.code) == issued.code_id, "the code on the locker")
    assert sim.ops["codes.apply"] == 1
    rig.wait(lambda: _status_rev(rig) == _host_rev(rig) == 1, "the locker's status at H")
    # A revoked code leaves it again; a code issued and revoked while it is away never travels.
    fleet_db.revoke_code(rig.conn, issued.code_id)
    rig.wait(lambda: sim.lookup("A2", issued.code) is None and sim.rev == 2, "the code removed")
    rig.stop_locker(crash=True)
    rig.wait(lambda: rig.query("SELECT online FROM lockers")[0][0] == 0, "the last will")
    kept = fleet_db.issue_code(rig.conn, "hall-1", "A1")
    gone = fleet_db.issue_code(rig.conn, "hall-1", "A3")
    fleet_db.revoke_code(rig.conn, gone.code_id)
    rig.start_locker()
    rig.wait(lambda: sim.rev == 5 and sim.lookup("A1", kept.code) == kept.code_id, "catch-up")
    assert set(sim.store) == {kept.code_id}
    assert gone.code_id not in sim.received_ids  # issued and revoked while away: never travelled
    assert rig.service is not None and rig.service.counters.rejected == {}


def test_a_lost_reply_makes_the_host_resend_with_the_same_tx(broker: Broker, tmp_path: Path) -> None:
    rig = Rig(broker, tmp_path, resend_s=0.3)
    try:
        service = rig.start_service()
        sim = rig.start_locker()
        rig.wait(lambda: rig.query("SELECT online FROM lockers")[0][0] == 1, "the locker online")
        sim.mute_replies = 1
        issued = fleet_db.issue_code(rig.conn, "hall-1", "A1")
        rig.wait(lambda: _status_rev(rig) == 1 and service.counters.resends >= 1, "a resend")
        rig.wait(lambda: rig.query("SELECT state FROM commands WHERE op = 'codes.apply'")[0][0] == "ok", "the reply")
        assert sim.ops["codes.apply"] == 1  # ran once: the resend was answered `dup`
        assert any(r.get("dup") for r in sim.replies)
        assert sim.lookup("A1", issued.code) == issued.code_id
    finally:
        rig.close()


def test_a_damaged_store_gets_a_snapshot_in_sorted_parts(rig: Rig) -> None:
    for n in range(40):
        fleet_db.issue_code(rig.conn, "hall-1", ["A1", "A2", "A3"][n % 3])
    sim = rig.sims["hall-1"]
    sim.rev, sim.snap = 0, True  # as after a damaged codes.bin
    rig.start_service()
    rig.start_locker()
    rig.wait(lambda: sim.rev == 40 and len(sim.store) == 40 and not sim.snap, "the snapshot")
    assert sim.ops["codes.snapshot"] == 2 and sim.ops["codes.apply"] == 0


def test_duplicate_pickup_is_recorded_once_and_acknowledged_twice(rig: Rig) -> None:
    service = rig.start_service()
    sim = rig.start_locker()
    issued = fleet_db.issue_code(rig.conn, "hall-1", "A2")
    rig.wait(lambda: sim.lookup("A2", issued.code) == issued.code_id, "the code on the locker")
    seq = rig.call(sim.event("pickup", repeat=2, d="A2", id=issued.code_id))  # delivered twice
    rig.wait(lambda: service.counters.duplicates == 1 and seq in sim.acked and not sim.outbox, "the ack")
    # A delivery after the ack (the locker missed it, say) is acknowledged again, and changes nothing.
    acked = service.counters.acked_seqs
    wire = next(w for topic, w in sim.traffic if topic.endswith("/events"))
    rig.call(sim.publish("events", wire))
    rig.wait(lambda: service.counters.duplicates == 2 and service.counters.acked_seqs == acked + 1, "re-ack")
    assert len(rig.query("SELECT * FROM events WHERE kind = 'pickup'")) == 1
    assert rig.query("SELECT state FROM codes WHERE id = ?", issued.code_id)[0][0] == "used"
    assert rig.query("SELECT doors.full FROM doors WHERE label = 'A2'")[0][0] == 0
    # The used code leaves the locker's store.
    rig.wait(lambda: issued.code_id not in sim.store and sim.rev == _host_rev(rig) == 2, "used code removed")


def test_events_published_while_the_service_is_down_are_not_lost(rig: Rig) -> None:
    rig.start_service()  # creates the persistent session and its subscriptions
    sim = rig.start_locker()
    rig.stop_service()
    seqs = [rig.call(sim.event("denied", r="wrong", n=k)) for k in range(5)]
    service = rig.start_service()
    rig.wait(lambda: service.counters.events == 5, "the queued events")
    rig.wait(lambda: sim.acked >= set(seqs) and not sim.outbox, "every event acknowledged")
    assert [r[0] for r in rig.query("SELECT seq FROM events ORDER BY seq")] == seqs


def test_the_service_reconnects_after_a_broker_restart(rig: Rig) -> None:
    service = rig.start_service()
    sim = rig.start_locker()
    rig.broker.server.restart()
    rig.wait(lambda: service.counters.connects >= 2 and service.connected.is_set(), "the service to reconnect")
    rig.wait(sim.connected.is_set, "the locker to reconnect")
    assert rig.service_alive()
    issued = fleet_db.issue_code(rig.conn, "hall-1", "A3")
    rig.wait(lambda: sim.lookup("A3", issued.code) == issued.code_id, "a code after the restart")
    seq = rig.call(sim.event("boot", cause="power", v="sim"))
    rig.wait(lambda: seq in sim.acked, "an event after the restart")


def _sign(key: bytes, body: bytes) -> bytes:
    from locker import protocol  # type: ignore[import-not-found]
    from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

    wire: bytes = protocol.sign(HmacKey(key), body)
    return wire


def test_a_forged_event_is_counted_and_ignored(rig: Rig) -> None:
    service = rig.start_service()
    forger = rig.broker.connected(rig.broker.locker_client("hall-1"))
    event = {"v": 1, "lid": "hall-1", "seq": 1, "ev": {"k": "pickup", "d": "A1", "id": 5}}
    forger.publish("lockers/hall-1/events", _sign(bytes(32), json.dumps(event).encode()))
    rig.wait(lambda: service.counters.bad_signatures == 1, "the forged event counted")
    assert rig.query("SELECT count(*) FROM events")[0][0] == 0
    assert service.counters.acks_sent == 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 2, "1", None]),
        "lid": st.sampled_from(["hall-1", "hall-2", 7]),
        "seq": st.integers(-5, 2**64) | _json,
        "ev": st.fixed_dictionaries({}, optional={"k": _json | st.text(), "d": _json, "id": _json, "t": _json}),
        "online": _json,
        "rev": _json,
        "snap": _json,
        "tx": _json,
        "ok": _json,
        "doors": st.lists(st.fixed_dictionaries({}, optional={"d": _json, "s": _json, "full": _json}), max_size=3),
        "error": _json,
        "part": _json,
        "dup": _json,
    },
)


@st.composite
def _payloads(draw: Any, key: bytes) -> bytes:
    kind = draw(st.sampled_from(["raw", "signed-raw", "signed-json", "long"]))
    if kind == "raw":
        return bytes(draw(st.binary(max_size=300)))
    if kind == "long":
        return b"0" * draw(st.integers(4000, 6000))
    if kind == "signed-raw":
        return _sign(key, draw(st.binary(max_size=300)))
    return _sign(key, json.dumps(draw(_fields)).encode())


@pytest.fixture
def fuzz_rig(broker: Broker, tmp_path: Path) -> Iterator[tuple[Rig, Any]]:
    r = Rig(broker, tmp_path)
    r.start_service()
    client = broker.connected(broker.locker_client("hall-1"))
    try:
        yield r, client
    finally:
        r.close()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_garbage_never_crashes_the_service(fuzz_rig: tuple[Rig, Any], data: st.DataObject) -> None:
    rig, client = fuzz_rig
    service = rig.service
    assert service is not None
    key = rig.keys["hall-1"]
    batch = data.draw(st.lists(st.tuples(st.sampled_from(["events", "status", "reply", "doors"]), _payloads(key))))
    before = service.counters.messages
    for leaf, payload in batch:
        client.publish(f"lockers/hall-1/{leaf}", payload)
    rig.wait(lambda: service.counters.messages == before + len(batch), "every message processed")
    assert rig.service_alive()
    assert service.counters.errors == 0, "a message raised while being applied"


def test_every_message_both_ways_keeps_the_contract(rig: Rig) -> None:
    """protocol/schemas: the service's commands (apply, snapshot, ack) and the SimLocker's messages."""
    from lockertools.contract import check_wire

    for n in range(40):
        fleet_db.issue_code(rig.conn, "hall-1", ["A1", "A2", "A3"][n % 3], expires=2_000_000_000)
    sim = rig.sims["hall-1"]
    sim.snap = True
    rig.start_service()
    rig.start_locker()
    rig.wait(lambda: sim.rev == 40, "the snapshot")
    issued = fleet_db.issue_code(rig.conn, "hall-1", "A2", kind=0x50)  # a pickup with a size and low bit
    rig.wait(lambda: sim.rev == 41, "a delta")
    seq = rig.call(sim.event("pickup", d="A2", id=issued.code_id))
    rig.wait(lambda: seq in sim.acked and sim.rev == 42, "the ack and the clean-up")
    leaves = {topic.rsplit("/", 1)[1] for topic, _ in sim.traffic}
    assert leaves == {"status", "doors", "events", "reply", "cmd"}
    for topic, wire in sim.traffic:
        check_wire(topic, wire, rig.keys["hall-1"])
