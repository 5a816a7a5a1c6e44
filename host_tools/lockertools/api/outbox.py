"""Webhook events: one per state change of a delivery, written in the transaction that makes the change
(ingest, fleet.codes, fleet.deliveries call `queue_delivery_event`), so each change is sent once and
none is lost, whatever the service does meanwhile. The body is fixed here; the sender
(webhooks.WebhookSender) signs it anew on every attempt.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from lockertools.service import db
from lockertools.service.fleet.common import KIND_DELIVERY, KIND_MASK

# The event a change is, and the delivery's state after it (docs/api.md, "Webhooks").
EVENT_STATES = {
    "loaded": "loaded",
    "picked_up": "picked_up",
    "reminder_sent": "loaded",
    "expired": "expired",
    "taken_back": "taken_back",
    "cancelled": "cancelled",
}
EVENTS = tuple(EVENT_STATES)
# A `loaded` event can arrive after the delivery moved on (events arrive in any order): its state then
# is the row's, not "loaded".
_ROW_STATES = {"issued": "loaded", "used": "picked_up", "expired": "expired", "revoked": "cancelled",
               "taken_back": "taken_back"}  # fmt: skip


def iso_time(epoch: float) -> str:
    """Epoch seconds as RFC 3339 UTC: 2026-12-07T17:44:47Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def queue_delivery_event(conn: db.Connection, event: str, code_id: int, when: float, door: str | None = None) -> bool:
    """Queue `event` of delivery `code_id` for every webhook registered now (inside the caller's
    transaction). A code that is not a delivery's, or no webhook registered: nothing. True when queued."""
    assert event in EVENT_STATES, event
    row = conn.execute(
        "SELECT c.kind, c.state, c.locker_id, c.door, x.case_ref FROM codes c"
        " LEFT JOIN delivery_details x ON x.code_id = c.id WHERE c.id = ?",
        (code_id,),
    ).fetchone()
    if row is None or row["kind"] & KIND_MASK != KIND_DELIVERY:
        return False
    if conn.execute("SELECT 1 FROM webhooks WHERE removed_at IS NULL").fetchone() is None:
        return False
    body: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "event": event,
        "delivery": code_id,
        "case_number": row["case_ref"],
        "state": _ROW_STATES.get(row["state"], "loaded") if event == "loaded" else EVENT_STATES[event],
        "time": iso_time(when),
        "locker": row["locker_id"],
        "door": door if door is not None else (None if row["door"] == "*" else row["door"]),
    }
    now = time.time()
    event_id = conn.execute(
        "INSERT INTO webhook_events(event, code_id, body, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        (event, code_id, json.dumps(body, separators=(",", ":")), now),
    ).scalar()
    conn.execute(
        "INSERT INTO webhook_deliveries(event_id, webhook_id, next_at)"
        " SELECT ?, id, ? FROM webhooks WHERE removed_at IS NULL",
        (event_id, now),
    )
    return True


def queue_expiries(conn: db.Connection, now: float) -> int:
    """Before expire_codes marks them (same transaction): an `expired` event for each delivery whose
    code expires now. Returns how many were queued."""
    due = conn.execute(
        "SELECT id FROM codes WHERE state = 'issued' AND expires > 0 AND expires <= ? AND (kind & 15) = ?",
        (now, KIND_DELIVERY),
    ).fetchall()
    return sum(queue_delivery_event(conn, "expired", int(r[0]), now) for r in due)
