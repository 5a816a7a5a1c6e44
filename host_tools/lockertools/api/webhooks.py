"""Webhooks: URLs an admin registers, told of every state change of a delivery (outbox.py queues
them), each request signed, retried with a growing delay, and listed with its last error once it
failed (docs/api.md, "Webhooks").

Each request is a POST of the event's JSON body with the header
`Locker-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of f"{t}.{body}" under the webhook's secret>`.
A webhook gets its events in the order they happened: the sender attempts only the oldest one not
yet sent to it (the next waits until that one is sent or given up).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lockertools.service import db
from lockertools.service.fleet.common import FleetError

log = logging.getLogger("lockertools.api.webhooks")

SIGNATURE_HEADER = "Locker-Signature"
SECRET_PREFIX = "whsec_"
KEEP_SENT_S = 30 * 86400.0  # sent deliveries (and events left with none) are pruned after this


@dataclass(frozen=True)
class Webhook:
    id: int
    url: str
    description: str | None
    created_at: float
    created_by: str | None
    removed_at: float | None


@dataclass(frozen=True)
class NewWebhook:
    """A webhook just added: `secret` (its signing key) is shown to the admin once."""

    webhook: Webhook
    secret: str

    def __repr__(self) -> str:
        return f"NewWebhook(webhook={self.webhook!r})"


@dataclass(frozen=True)
class FailedDelivery:
    """An event a webhook did not take: `state` 'failed' (given up) or 'pending' (retried at `next_at`)."""

    event_id: int
    webhook_id: int
    url: str
    event: str
    delivery: int
    state: str
    attempts: int
    last_error: str | None
    last_attempt_at: float | None
    next_at: float


def sign(secret: str, body: bytes, t: int) -> str:
    """The signature header's value for `body` sent at `t`."""
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _webhook(row: db.Row) -> Webhook:
    return Webhook(
        int(row["id"]), str(row["url"]), row["description"], float(row["created_at"]), row["created_by"],
        row["removed_at"],
    )  # fmt: skip


def add_webhook(
    conn: db.Connection, url: str, description: str | None = None, created_by: str | None = None
) -> NewWebhook:
    """Register `url` (http:// or https://) for every delivery event from now on."""
    if not url.startswith(("http://", "https://")) or len(url) > 2000 or any(ch.isspace() for ch in url):
        raise FleetError("url: an http:// or https:// URL without spaces")
    if description is not None and (len(description) > 200 or any(ord(ch) < 32 for ch in description)):
        raise FleetError("description: at most 200 characters, on one line")
    secret = SECRET_PREFIX + secrets.token_hex(24)
    with db.transaction(conn):
        webhook_id = conn.execute(
            "INSERT INTO webhooks(url, secret, description, created_by, created_at) VALUES (?, ?, ?, ?, ?)"
            " RETURNING id",
            (url, secret, description, created_by, time.time()),
        ).scalar()
        row = conn.execute("SELECT * FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
    return NewWebhook(_webhook(row), secret)


def list_webhooks(conn: db.Connection, include_removed: bool = False) -> list[Webhook]:
    sql = "SELECT * FROM webhooks" + ("" if include_removed else " WHERE removed_at IS NULL")
    return [_webhook(r) for r in conn.execute(sql + " ORDER BY id")]


def remove_webhook(conn: db.Connection, webhook_id: int) -> Webhook:
    """Stop sending to a webhook; what it had not been sent yet is dropped."""
    with db.transaction(conn):
        row = conn.execute("SELECT * FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
        if row is None or row["removed_at"] is not None:
            raise FleetError(f"no webhook {webhook_id}")
        conn.execute("UPDATE webhooks SET removed_at = ? WHERE id = ?", (time.time(), webhook_id))
        conn.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ? AND state = 'pending'", (webhook_id,))
        row = conn.execute("SELECT * FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
    return _webhook(row)


def webhook_failures(conn: db.Connection, webhook_id: int | None = None) -> list[FailedDelivery]:
    """Events not taken by a live webhook: given up ('failed'), or failed at least once and waiting
    for their next attempt; oldest first."""
    sql = (
        "SELECT d.*, w.url, e.event, e.code_id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
        " JOIN webhook_events e ON e.id = d.event_id WHERE w.removed_at IS NULL"
        " AND (d.state = 'failed' OR (d.state = 'pending' AND d.attempts > 0))"
    )
    params: tuple[Any, ...] = ()
    if webhook_id is not None:
        sql += " AND d.webhook_id = ?"
        params = (webhook_id,)
    return [
        FailedDelivery(
            int(r["event_id"]),
            int(r["webhook_id"]),
            str(r["url"]),
            str(r["event"]),
            int(r["code_id"]),
            str(r["state"]),
            int(r["attempts"]),
            r["last_error"],
            r["last_attempt_at"],
            float(r["next_at"]),
        )  # fmt: skip
        for r in conn.execute(sql + " ORDER BY d.event_id", params)
    ]


def retry_failed(conn: db.Connection, webhook_id: int | None = None) -> int:
    """Send the given-up events again (of one webhook, or all), at once; returns how many."""
    sql = "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_at = ? WHERE state = 'failed'"
    params: tuple[Any, ...] = (time.time(),)
    if webhook_id is not None:
        sql += " AND webhook_id = ?"
        params += (webhook_id,)
    with db.transaction(conn):
        return conn.execute(sql, params).rowcount


def failure_count(conn: db.Connection) -> int:
    """How many events `webhook_failures` lists (the desk's navigation shows it)."""
    return int(
        conn.execute(
            "SELECT count(*) FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
            " WHERE w.removed_at IS NULL AND (d.state = 'failed' OR (d.state = 'pending' AND d.attempts > 0))"
        ).scalar()
    )


def retry_now(conn: db.Connection, event_id: int, webhook_id: int) -> FailedDelivery:
    """Attempt one listed event at the sender's next round: a given-up one from its first attempt
    again (as `retry_failed`), one waiting for its next attempt without waiting. Returns it as it was."""
    with db.transaction(conn):
        found = [f for f in webhook_failures(conn, webhook_id) if f.event_id == event_id]
        if not found:
            raise FleetError(f"webhook {webhook_id} has no failed event {event_id}")
        conn.execute(
            "UPDATE webhook_deliveries SET attempts = CASE WHEN state = 'failed' THEN 0 ELSE attempts END,"
            " state = 'pending', next_at = ? WHERE event_id = ? AND webhook_id = ?",
            (time.time(), event_id, webhook_id),
        )
    return found[0]


@dataclass(frozen=True)
class SenderOptions:
    poll_s: float = 1.0  # how often due events are looked for
    timeout_s: float = 10.0  # one request, connecting included
    retry_min_s: float = 30.0  # the first retry; doubling up to retry_max_s
    retry_max_s: float = 3600.0
    attempts: int = 12  # then the event is given up ('failed': listed, retried by an admin)


@dataclass
class SenderStats:
    sent: int = 0
    failures: int = 0
    given_up: int = 0


# Per live webhook, its oldest event not sent yet, if due.
_DUE = (
    "SELECT d.event_id, d.webhook_id, d.attempts, w.url, w.secret, e.body, e.event FROM webhook_deliveries d"
    " JOIN webhooks w ON w.id = d.webhook_id JOIN webhook_events e ON e.id = d.event_id"
    " WHERE d.state = 'pending' AND w.removed_at IS NULL AND d.next_at <= ? AND d.event_id ="
    " (SELECT min(p.event_id) FROM webhook_deliveries p WHERE p.webhook_id = d.webhook_id AND p.state = 'pending')"
)


class WebhookSender:
    """The service's task that sends queued events (`run`): one request in flight per webhook."""

    def __init__(self, options: SenderOptions | None = None) -> None:
        self.options = options or SenderOptions()
        self.stats = SenderStats()
        self._next_prune = 0.0

    async def run(self, conn: db.Connection, beat: Callable[[], None] = lambda: None) -> None:
        """Forever (until cancelled), on the service's connection: database work happens between
        requests, in transactions of its own, never across an await."""
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.options.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await asyncio.sleep(self.options.poll_s)
                beat()
                try:
                    await self.send_due(session, conn)
                except db.Error:
                    log.exception("database error while sending webhooks")

    async def send_due(self, session: Any, conn: db.Connection) -> int:
        """Attempt every due event once (one per webhook); returns how many went."""
        now = time.time()
        if now >= self._next_prune:
            self._next_prune = now + 3600.0
            prune(conn, now - KEEP_SENT_S)
        due = conn.execute(_DUE, (now,)).fetchall()
        if not due:
            return 0
        results = await asyncio.gather(*(self._post(session, row) for row in due))
        sent = 0
        with db.transaction(conn):
            for row, error in zip(due, results, strict=True):
                sent += self._record(conn, row, error)
        return sent

    async def _post(self, session: Any, row: db.Row) -> str | None:
        """The error of one attempt, or None when the webhook answered 2xx."""
        import aiohttp

        body = str(row["body"]).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(str(row["secret"]), body, int(time.time())),
            "User-Agent": "lockertools-webhooks/1",
        }
        try:
            async with session.post(str(row["url"]), data=body, headers=headers, allow_redirects=False) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except TimeoutError:
            return f"no answer within {self.options.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"[:300]

    def _record(self, conn: db.Connection, row: db.Row, error: str | None) -> int:
        now = time.time()
        attempts = int(row["attempts"]) + 1
        key = (row["event_id"], row["webhook_id"])
        if error is None:
            self.stats.sent += 1
            conn.execute(
                "UPDATE webhook_deliveries SET state = 'sent', attempts = ?, last_attempt_at = ?, sent_at = ?,"
                " last_error = NULL WHERE event_id = ? AND webhook_id = ?",
                (attempts, now, now, *key),
            )
            return 1
        self.stats.failures += 1
        options = self.options
        if attempts >= options.attempts:
            self.stats.given_up += 1
            state, next_at = "failed", now
            log.error("webhook %d: event %d (%s) given up after %d attempts: %s", row["webhook_id"],
                      row["event_id"], row["event"], attempts, error)  # fmt: skip
        else:
            state = "pending"
            next_at = now + min(options.retry_max_s, options.retry_min_s * 2 ** (attempts - 1))
            log.warning("webhook %d: event %d (%s) failed: %s; retry in %.0f s", row["webhook_id"],
                        row["event_id"], row["event"], error, next_at - now)  # fmt: skip
        conn.execute(
            "UPDATE webhook_deliveries SET state = ?, attempts = ?, last_attempt_at = ?, last_error = ?, next_at = ?"
            " WHERE event_id = ? AND webhook_id = ?",
            (state, attempts, now, error, next_at, *key),
        )
        return 0


def prune(conn: db.Connection, before: float) -> None:
    """Forget deliveries sent before `before`, and the events no delivery refers to any more."""
    with db.transaction(conn):
        conn.execute("DELETE FROM webhook_deliveries WHERE state = 'sent' AND sent_at < ?", (before,))
        conn.execute(
            "DELETE FROM webhook_events WHERE created_at < ? AND NOT EXISTS"
            " (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
            (before,),
        )
