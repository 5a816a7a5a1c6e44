"""The webhook outbox, on SQLite and PostgreSQL: each state change of a delivery queues exactly one
event, in the change's own transaction (an event delivered twice by the locker, a second expiry run,
a cancellation refused: none), for each webhook registered then; codes that are not deliveries
queue nothing. And the sender: a failure retried with a growing delay, given up after the attempts,
listed with its last error, sent again on an admin's retry."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lockertools.api import webhooks
from lockertools.service import db, fleet_db, ingest
from tests.service.service_helpers import free_port

LABELS = ["A1", "A2"]


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[db.Connection]:
    c = db.connect(tmp_path / "fleet.db", create=True)
    fleet_db.add_locker(c, "hall-1", secrets.token_bytes(32), LABELS)
    try:
        yield c
    finally:
        c.close()


_seq = iter(range(1, 10**6))


def _event(conn: db.Connection, kind: str, seq: int | None = None, **ev: Any) -> int:
    seq = next(_seq) if seq is None else seq
    with db.transaction(conn):
        ingest.apply_event(conn, "hall-1", {"seq": seq, "ev": {"k": kind, "t": int(time.time())} | ev}, time.time())
    return seq


def _queued(conn: db.Connection) -> list[tuple[str, int, int]]:
    """(event, delivery, how many webhooks it is for), in order."""
    rows = conn.execute(
        "SELECT e.event, e.code_id, count(d.webhook_id) FROM webhook_events e"
        " LEFT JOIN webhook_deliveries d ON d.event_id = e.id GROUP BY e.id, e.event, e.code_id ORDER BY e.id"
    ).fetchall()
    return [(r[0], int(r[1]), int(r[2])) for r in rows]


def test_each_state_change_queues_one_event(conn: db.Connection) -> None:
    assert fleet_db.prepare_delivery(conn, "hall-1").number  # before any webhook: nothing queued for it
    webhooks.add_webhook(conn, "http://127.0.0.1:9/a")
    webhooks.add_webhook(conn, "http://127.0.0.1:9/b")
    resident = fleet_db.Resident(case_ref="EL-1")
    picked = fleet_db.prepare_delivery(conn, "hall-1", resident=resident).number
    seq = _event(conn, "loaded", d="A1", id=picked)
    _event(conn, "loaded", seq=seq, d="A1", id=picked)  # the same event again: recorded once
    pickup = _event(conn, "pickup", d="A1", id=picked)
    _event(conn, "pickup", seq=pickup, d="A1", id=picked)
    taken = fleet_db.prepare_delivery(conn, "hall-1").number
    _event(conn, "loaded", d="A2", id=taken)
    with db.transaction(conn):  # a day before its window ends: the reminder
        conn.execute("UPDATE codes SET expires = ?, loaded_at = ? WHERE id = ?", (time.time() + 3600, 0, taken))
        assert fleet_db.queue_reminders(conn, time.time()) == 1
        assert fleet_db.queue_reminders(conn, time.time()) == 0
        conn.execute("UPDATE codes SET expires = ? WHERE id = ?", (int(time.time()) - 1, taken))
        assert fleet_db.expire_codes(conn, time.time()) == 1
        assert fleet_db.expire_codes(conn, time.time()) == 0
    _event(conn, "taken_back", d="A2", id=taken, staff=0)
    cancelled = fleet_db.prepare_delivery(conn, "hall-1").number
    fleet_db.cancel_delivery(conn, cancelled)
    with pytest.raises(fleet_db.FleetError):
        fleet_db.cancel_delivery(conn, cancelled)
    fleet_db.issue_code(conn, "hall-1", "A1")  # a plain pickup code: not a delivery
    fleet_db.revoke_code(conn, fleet_db.code_table(conn, state="issued")[-1]["id"])
    assert _queued(conn) == [
        ("loaded", picked, 2),
        ("picked_up", picked, 2),
        ("loaded", taken, 2),
        ("reminder_sent", taken, 2),
        ("expired", taken, 2),
        ("taken_back", taken, 2),
        ("cancelled", cancelled, 2),
    ]
    first = json.loads(conn.execute("SELECT body FROM webhook_events ORDER BY id").scalar())
    assert {k: first[k] for k in ("event", "delivery", "case_number", "state", "locker", "door")} == {
        "event": "loaded", "delivery": picked, "case_number": "EL-1", "state": "loaded", "locker": "hall-1",
        "door": "A1",
    }  # fmt: skip


def test_a_change_rolled_back_queues_nothing(conn: db.Connection) -> None:
    webhooks.add_webhook(conn, "http://127.0.0.1:9/a")
    number = fleet_db.prepare_delivery(conn, "hall-1").number
    with pytest.raises(RuntimeError), db.transaction(conn):
        ingest.apply_event(conn, "hall-1", {"seq": 1, "ev": {"k": "loaded", "d": "A1", "id": number}}, time.time())
        raise RuntimeError("the batch failed")
    assert _queued(conn) == []


def _send(conn: db.Connection, sender: webhooks.WebhookSender) -> int:
    async def go() -> int:
        async with aiohttp.ClientSession() as session:
            return await sender.send_due(session, conn)

    return asyncio.run(go())


def test_a_failing_webhook_is_retried_then_given_up_and_listed(conn: db.Connection) -> None:
    hook = webhooks.add_webhook(conn, f"http://127.0.0.1:{free_port()}/down")
    number = fleet_db.prepare_delivery(conn, "hall-1").number
    fleet_db.cancel_delivery(conn, number)
    sender = webhooks.WebhookSender(webhooks.SenderOptions(retry_min_s=100, retry_max_s=150, attempts=3, timeout_s=5))
    assert _send(conn, sender) == 0
    (failure,) = webhooks.webhook_failures(conn)
    assert (failure.event, failure.delivery, failure.state, failure.attempts) == ("cancelled", number, "pending", 1)
    assert failure.last_error and failure.next_at >= time.time() + 99  # the first retry after retry_min_s
    assert _send(conn, sender) == 0 and webhooks.webhook_failures(conn)[0].attempts == 1  # not due yet
    for attempt, delay in ((2, 150), (3, 0)):
        with db.transaction(conn):
            conn.execute("UPDATE webhook_deliveries SET next_at = 0")
        _send(conn, sender)
        (failure,) = webhooks.webhook_failures(conn)
        assert failure.attempts == attempt
        if delay:  # doubled, up to retry_max_s
            assert time.time() + delay - 5 <= failure.next_at <= time.time() + delay
    assert failure.state == "failed" and sender.stats.given_up == 1
    assert _send(conn, sender) == 0  # given up: not attempted again
    assert webhooks.retry_failed(conn, hook.webhook.id) == 1
    assert webhooks.webhook_failures(conn) == []  # pending again, from its first attempt
    assert _send(conn, sender) == 0  # due at once
    assert [(f.state, f.attempts) for f in webhooks.webhook_failures(conn)] == [("pending", 1)]
    webhooks.remove_webhook(conn, hook.webhook.id)
    assert webhooks.webhook_failures(conn) == []


def test_a_database_at_delivery_details_gets_the_apis_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = db.connect(path, create=True)
    fleet_db.add_locker(conn, "hall-1", secrets.token_bytes(32), LABELS)
    number = fleet_db.prepare_delivery(conn, "hall-1").number
    with db.transaction(conn):  # as the program before revision 0005 left it
        conn.execute("UPDATE alembic_version SET version_num = '0002_delivery_details'")
    for table in ("webhook_deliveries", "webhook_events", "webhooks", "door_sizes", "api_idempotency", "api_tokens"):
        conn.execute(f"DROP TABLE {table}")
    conn.close()
    again = db.connect(path)
    try:
        assert db.schema_revision(again) == db.schema_head()
        webhooks.add_webhook(again, "http://127.0.0.1:9/a")
        fleet_db.cancel_delivery(again, number)
        assert _queued(again) == [("cancelled", number, 1)]
    finally:
        again.close()


def test_a_load_reported_after_the_pickup_says_picked_up(conn: db.Connection) -> None:
    """Events arrive in any order: a `loaded` that comes after the `pickup` is still one event, with the
    state the delivery is in."""
    webhooks.add_webhook(conn, "http://127.0.0.1:9/a")
    number = fleet_db.prepare_delivery(conn, "hall-1").number
    _event(conn, "pickup", seq=20, d="A1", id=number)
    _event(conn, "loaded", seq=10, d="A1", id=number)
    assert _queued(conn) == [("picked_up", number, 1), ("loaded", number, 1)]
    states = [json.loads(r[0])["state"] for r in conn.execute("SELECT body FROM webhook_events ORDER BY id")]
    assert states == ["picked_up", "picked_up"]
