"""The outbox of residents' messages (docs/notifications.md, "Delivery of messages").

A delivery's `loaded` and `reminder` notifications (and its pickup, with messages.thank_you) become
one resident_messages row per channel that reaches the resident: e-mail when the delivery has an
address and the town uses e-mail, a text message likewise, and the printed letter when neither does
(a `loaded` message only: the desk prints it). The service sends the due rows:

- each attempt is committed as `sending` (attempts + 1) before the send, and as `sent` or `failed`
  (its error, without the code, and the next try after a doubling delay) after it;
- a row found `sending` when the service starts was interrupted mid-send: it is sent again with the
  same `ref` (the e-mail's Message-ID, the gateway's reference), so a server that did accept it just
  before the interruption sees the same message twice, recognisably;
- the plain code (held_codes) is read at send time and deleted once every channel of the delivery
  accepted its `loaded` message (and the hook, when there is one, took it); a message whose code is no
  longer held (picked up, cancelled, expired) is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, TypeVar

from lockertools.config import Settings
from lockertools.notify import words
from lockertools.notify.channels import ChannelError, EmailChannel, SmsChannel, compose_email, scrubbed
from lockertools.notify.held import locker_place, release_held_code
from lockertools.notify.letter import Letter, letters_pdf
from lockertools.notify.templates import Rendered, Templates
from lockertools.service import db
from lockertools.service.fleet.common import MAX_WINDOW_S

RESIDENT_KINDS = ("loaded", "reminder")
THANK_YOU_S = 86400  # a pickup is thanked for within a day, not later (a service that was down long)
_BATCH = 50
_LOOK_BACK = 1000  # notification ids looked at again by each plan()
_T = TypeVar("_T")


class OutboxError(Exception):
    """A desk action the outbox refuses (the text says why)."""


@contextlib.contextmanager
def _joined(conn: db.Connection) -> Iterator[None]:
    """The caller's transaction when it has one (the desk writes its audit row in it), else one."""
    if conn.in_transaction:
        yield
    else:
        with db.transaction(conn):
            yield


# --- which channels reach a resident -----------------------------------------------------------------


def reach(settings: Settings, email: str | None, phone: str | None) -> list[str]:
    """The channels a resident's messages go by: e-mail and/or SMS where the town uses them and the
    resident has an address or number; none of them: the letter ("hand over the letter")."""
    channels = settings.messages.channels
    out = [c for c, have in (("email", email), ("sms", phone)) if c in channels and have]
    return out or ["letter"]


def delivery_reach(conn: db.Connection, settings: Settings, number: int) -> list[str]:
    """The channels of a delivery: those its messages went by, else those they will go by."""
    rows = conn.execute(
        "SELECT DISTINCT channel FROM resident_messages WHERE code_id = ? AND kind = 'loaded' ORDER BY channel",
        (number,),
    ).fetchall()
    if rows:
        return [str(r[0]) for r in rows]
    row = conn.execute("SELECT email, phone FROM delivery_details WHERE code_id = ?", (number,)).fetchone()
    return reach(settings, row["email"], row["phone"]) if row is not None else []


# --- what the desk sees -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageView:
    """One message on one channel, for the desk: never the code, never the address."""

    id: int
    delivery: int
    locker_id: str
    kind: str  # loaded, reminder, picked_up
    channel: str  # email, sms, letter, none
    language: str
    state: str  # pending, sending, sent, failed, to_print, printed, skipped
    attempts: int
    error: str | None
    created_at: float
    sent_at: float | None
    next_at: float | None  # a failed message's next try

    @property
    def hand_over_letter(self) -> bool:
        return self.channel == "letter" and self.state == "to_print"


def _view(row: db.Row, channel: str | None = None) -> MessageView:
    """A resident_messages row, or with `channel` "hook" a `notifications` row (no language of its own;
    code_id NULL, shown as delivery 0: a staff notification of no delivery)."""
    return MessageView(
        id=int(row["id"]),
        delivery=int(row["code_id"] or 0),
        locker_id=row["locker_id"],
        kind=row["kind"],
        channel=channel or row["channel"],
        language="" if channel else row["language"],
        state=row["state"],
        attempts=int(row["attempts"]),
        error=row["error"],
        created_at=float(row["created_at"]),
        sent_at=None if row["sent_at"] is None else float(row["sent_at"]),
        next_at=float(row["next_at"]) if row["state"] == "failed" else None,
    )


def messages_of_delivery(conn: db.Connection, number: int) -> list[MessageView]:
    rows = conn.execute("SELECT * FROM resident_messages WHERE code_id = ? ORDER BY id", (number,)).fetchall()
    return [_view(r) for r in rows]


def failed_messages(conn: db.Connection, locker_id: str | None = None) -> list[MessageView]:
    sql, params = "SELECT * FROM resident_messages WHERE state = 'failed'", []
    if locker_id is not None:
        sql, params = sql + " AND locker_id = ?", [locker_id]
    return [_view(r) for r in conn.execute(sql + " ORDER BY next_at", params).fetchall()]


# a letter whose delivery ended (its code gone) before the service dropped it cannot be printed
_PRINTABLE = "state = 'to_print' AND EXISTS (SELECT 1 FROM held_codes h WHERE h.code_id = resident_messages.code_id)"


def letters_to_print(conn: db.Connection, locker_id: str | None = None) -> list[MessageView]:
    """The letters waiting to be printed (those that still can be: their code is held)."""
    sql, params = f"SELECT * FROM resident_messages WHERE {_PRINTABLE}", []
    if locker_id is not None:
        sql, params = sql + " AND locker_id = ?", [locker_id]
    return [_view(r) for r in conn.execute(sql + " ORDER BY id", params).fetchall()]


def hook_messages_of_delivery(conn: db.Connection, number: int) -> list[MessageView]:
    """The notification hook's messages of a delivery (the `notifications` queue), channel `hook`."""
    rows = conn.execute("SELECT * FROM notifications WHERE code_id = ? ORDER BY id", (number,)).fetchall()
    return [_view(r, "hook") for r in rows]


def failed_hook_messages(conn: db.Connection, locker_id: str | None = None) -> list[MessageView]:
    """The hook's notifications whose last try failed (what a `notify_failed` incident counts)."""
    sql, params = "SELECT * FROM notifications WHERE state = 'failed'", []
    if locker_id is not None:
        sql, params = sql + " AND locker_id = ?", [locker_id]
    return [_view(r, "hook") for r in conn.execute(sql + " ORDER BY next_at", params).fetchall()]


def failed_count(conn: db.Connection) -> int:
    """Messages and hook notifications whose last try failed."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM resident_messages WHERE state = 'failed')"
        " + (SELECT count(*) FROM notifications WHERE state = 'failed')"
    ).fetchone()
    return int(row[0])


def letters_count(conn: db.Connection) -> int:
    return int(conn.execute(f"SELECT count(*) FROM resident_messages WHERE {_PRINTABLE}").fetchone()[0])


def retry_now(conn: db.Connection, channel: str, message_id: int, now: float) -> MessageView | None:
    """A failed message (channel `hook`: a hook notification) is due again at once instead of after
    its back-off: the service's next round sends it. Its state, tries and error stay until that try.
    None: no such failed message (sent meanwhile, or never failed). Joins a transaction in progress."""
    table = "notifications" if channel == "hook" else "resident_messages"
    with _joined(conn):
        row = conn.execute(f"SELECT * FROM {table} WHERE id = ? AND state = 'failed'", (message_id,)).fetchone()
        if row is None or (channel != "hook" and row["channel"] != channel):
            return None
        conn.execute(f"UPDATE {table} SET next_at = ? WHERE id = ?", (now, message_id))
    return _view(row, "hook" if channel == "hook" else None)


# --- what a message says --------------------------------------------------------------------------------


def message_context(
    conn: db.Connection, settings: Settings, code_id: int, language: str, code: str | None
) -> dict[str, Any] | None:
    """The template's fields for a delivery's message (None: no such delivery)."""
    row = conn.execute(
        "SELECT c.locker_id, c.expires, c.item, d.resident_name FROM codes c"
        " LEFT JOIN delivery_details d ON d.code_id = c.id WHERE c.id = ?",
        (code_id,),
    ).fetchone()
    if row is None:
        return None
    town = settings.town
    address, hours = locker_place(conn, row["locker_id"])
    name = row["resident_name"]
    context: dict[str, Any] = {
        "town": town.name,
        "help_phone": town.help_phone,
        "help_hours": town.help_hours,
        "address": address or f"{town.name} ({row['locker_id']})",
        "hours": hours or words.OPEN_ALWAYS[language],
        "item": words.item_words(row["item"], language),
        "name": name,
        "greeting": f"{words.DEAR[language]} {name or words.RESIDENT[language]},",
        "deadline": words.date_words(int(row["expires"]), language),
        "deadline_time": words.time_words(int(row["expires"])),
    }
    if code is not None:
        context["code"] = words.grouped(code)
    return context


def _held_code(conn: db.Connection, code_id: int) -> str | None:
    row = conn.execute("SELECT code FROM held_codes WHERE code_id = ?", (code_id,)).fetchone()
    return None if row is None else str(row[0])


# --- the outbox ----------------------------------------------------------------------------------------


@dataclass
class OutboxStats:
    planned: int = 0
    sent: int = 0
    failures: int = 0
    skipped: int = 0


class Outbox:
    """Plans and sends residents' messages. `hook`: a notification hook runs beside it (the plain code
    waits for it too)."""

    def __init__(self, settings: Settings, templates: Templates | None = None, hook: bool = False) -> None:
        self.settings = settings
        self.templates = templates if templates is not None else Templates.load(settings.messages.templates)
        self.hook = hook
        channels = settings.messages.channels
        self.email = EmailChannel(settings.email) if "email" in channels else None
        self.sms = SmsChannel(settings.sms) if "sms" in channels else None
        sender = settings.email.sender or ""
        self._domain = sender.rpartition("@")[2] or "lockertools.invalid"
        self.stats = OutboxStats()
        self._looked_at = 0  # notifications up to this id were planned (plan)

    def _ref(self) -> str:
        return f"<{secrets.token_hex(12)}@{self._domain}>"

    # planning

    def recover(self, conn: db.Connection) -> int:
        """At start: sends interrupted by a stop are due again, with their own ref."""
        with db.transaction(conn):
            return conn.execute(
                "UPDATE resident_messages SET state = 'pending', next_at = ? WHERE state = 'sending'", (time.time(),)
            ).rowcount

    def plan(self, conn: db.Connection, now: float) -> int:
        """New notifications of deliveries become messages, a row per channel (one transaction)."""
        rows: list[tuple[int, str, str, str | None, str | None, str]] = []
        # Notifications newer than those looked at already (by id: the primary key), with a margin
        # for one committed after a later one; NOT EXISTS keeps each message once.
        newest = int(conn.execute("SELECT coalesce(max(id), 0) FROM notifications").fetchone()[0])
        for r in conn.execute(
            "SELECT n.code_id, n.locker_id, n.kind, d.email, d.phone, d.language FROM notifications n"
            " JOIN delivery_details d ON d.code_id = n.code_id"
            " WHERE n.id > ? AND n.kind IN ('loaded', 'reminder') AND n.created_at >= ? AND NOT EXISTS"
            " (SELECT 1 FROM resident_messages m WHERE m.code_id = n.code_id AND m.kind = n.kind)",
            (self._looked_at, now - MAX_WINDOW_S),
        ).fetchall():
            rows.append((int(r[0]), r[1], r[2], r[3], r[4], r[5]))
        self._looked_at = max(self._looked_at, newest - _LOOK_BACK)
        if self.settings.messages.thank_you:
            for r in conn.execute(
                "SELECT c.id, c.locker_id, d.email, d.phone, d.language FROM codes c"
                " JOIN delivery_details d ON d.code_id = c.id"
                " WHERE c.state = 'used' AND c.used_at >= ? AND NOT EXISTS"
                " (SELECT 1 FROM resident_messages m WHERE m.code_id = c.id AND m.kind = 'picked_up')",
                (now - THANK_YOU_S,),
            ).fetchall():
                rows.append((int(r[0]), r[1], "picked_up", r[2], r[3], r[4]))
        if not rows:
            return 0
        count = 0
        with db.transaction(conn):
            for code_id, locker_id, kind, email, phone, language in rows:
                for channel in reach(self.settings, email, phone):
                    state, error, address = "pending", None, {"email": email, "sms": phone}.get(channel)
                    if channel == "letter":
                        if kind == "loaded":
                            state = "to_print"
                        else:
                            channel, state = "none", "skipped"
                            error = "no e-mail or phone: only a letter reaches this resident"
                    conn.execute(
                        "INSERT INTO resident_messages(code_id, locker_id, kind, channel, address, language, ref,"
                        " state, next_at, error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (code_id, locker_id, kind, channel, address, language, self._ref(), state, now, error, now),
                    )
                    count += 1
        self.stats.planned += count
        return count

    # sending

    def _render(self, conn: db.Connection, row: db.Row) -> tuple[Rendered | None, str | None, str | None]:
        """(what the message says, its plain code, why it is skipped instead)."""
        code_id, kind = int(row["code_id"]), row["kind"]
        code = None
        if kind == "loaded":
            code = _held_code(conn, code_id)
            if code is None:
                return None, None, "the code is no longer held: picked up, cancelled or expired"
        elif kind == "reminder":
            state = conn.execute("SELECT state FROM codes WHERE id = ?", (code_id,)).fetchone()
            if state is None or state[0] != "issued":
                return None, None, "the delivery ended before the reminder went"
        if row["address"] is None and row["channel"] in ("email", "sms"):
            return None, None, "the contact details were deleted"
        context = message_context(conn, self.settings, code_id, row["language"], code)
        if context is None:
            return None, None, "no such delivery"
        return self.templates.render(kind, row["language"], context), code, None

    def _record(self, conn: db.Connection, row: db.Row, error: str | None, now: float) -> None:
        m = self.settings.messages
        attempts = int(row["attempts"]) + 1
        if error is None:
            self.stats.sent += 1
            conn.execute(
                "UPDATE resident_messages SET state = 'sent', sent_at = ?, error = NULL WHERE id = ?", (now, row["id"])
            )
            if row["kind"] == "loaded":
                release_held_code(conn, int(row["code_id"]), hook=self.hook, outbox=True)
            return
        self.stats.failures += 1
        delay = min(m.retry_max_s, m.retry_min_s * 2 ** (attempts - 1))
        conn.execute(
            "UPDATE resident_messages SET state = 'failed', error = ?, next_at = ? WHERE id = ?",
            (error, now + delay, row["id"]),
        )

    def _skip(self, conn: db.Connection, row: db.Row, why: str) -> None:
        self.stats.skipped += 1
        conn.execute("UPDATE resident_messages SET state = 'skipped', error = ? WHERE id = ?", (why, row["id"]))
        if row["kind"] == "loaded":
            release_held_code(conn, int(row["code_id"]), hook=self.hook, outbox=True)

    async def run_once(self, conn: db.Connection, beat: Callable[[], None] | None = None) -> int:
        """Plan, then send what is due (a batch per channel); returns how many were sent."""
        now = time.time()
        self.plan(conn, now)
        self._drop_moot_letters(conn)
        due = conn.execute(
            "SELECT * FROM resident_messages WHERE state IN ('pending', 'failed') AND next_at <= ?"
            " ORDER BY next_at, id LIMIT ?",
            (now, _BATCH),
        ).fetchall()
        sent = 0
        for channel, send in (("email", self._send_email), ("sms", self._send_sms)):
            rows = [r for r in due if r["channel"] == channel]
            if rows:
                sent += await send(conn, rows, beat)
        return sent

    def _drop_moot_letters(self, conn: db.Connection) -> None:
        """A letter not printed before its delivery ended (picked up with a code from the desk,
        cancelled, expired) is no longer one to print."""
        moot = (
            "state = 'to_print' AND NOT EXISTS (SELECT 1 FROM held_codes h WHERE h.code_id = resident_messages.code_id)"
        )
        if conn.execute(f"SELECT 1 FROM resident_messages WHERE {moot} LIMIT 1").fetchone() is None:
            return
        with db.transaction(conn):
            conn.execute(
                f"UPDATE resident_messages SET state = 'skipped', error = ? WHERE {moot}",
                ("the delivery ended before the letter was printed",),
            )

    def _prepare(self, conn: db.Connection, rows: list[db.Row]) -> list[tuple[db.Row, Rendered, str | None]]:
        """Render each row and commit the attempt (`sending`) before anything goes out."""
        ready: list[tuple[db.Row, Rendered, str | None]] = []
        with db.transaction(conn):
            for row in rows:
                rendered, code, skip = self._render(conn, row)
                if rendered is None:
                    self._skip(conn, row, skip or "skipped")
                    continue
                conn.execute(
                    "UPDATE resident_messages SET state = 'sending', attempts = attempts + 1 WHERE id = ?", (row["id"],)
                )
                ready.append((row, rendered, code))
        return ready

    async def _send_email(self, conn: db.Connection, rows: list[db.Row], beat: Callable[[], None] | None) -> int:
        channel = self.email
        if channel is None:
            return 0  # rows of a channel the town no longer uses wait for it
        ready = self._prepare(conn, rows)
        if not ready:
            return 0
        town = self.settings.town.name
        mails: list[tuple[EmailMessage, str | None]] = [
            (compose_email(r, row["address"], row["ref"], channel.sender, town, self.settings.email.reply_to), code)
            for row, r, code in ready
        ]
        results, stopped = await to_the_end(channel.send_many, mails)
        with db.transaction(conn):
            for (row, _, _), error in zip(ready, results, strict=True):
                self._record(conn, row, error, time.time())
        if stopped:
            raise asyncio.CancelledError
        if beat is not None:
            beat()
        return sum(1 for e in results if e is None)

    async def _send_sms(self, conn: db.Connection, rows: list[db.Row], beat: Callable[[], None] | None) -> int:
        channel = self.sms
        if channel is None:
            return 0
        ready = self._prepare(conn, rows)
        sent = 0
        for row, rendered, code in ready:
            error, stopped = await to_the_end(sms_error, channel, row["address"], rendered.sms, row["ref"], code)
            with db.transaction(conn):
                self._record(conn, row, error, time.time())
            if stopped:
                raise asyncio.CancelledError
            sent += error is None
            if beat is not None:
                beat()
        return sent


def sms_error(channel: SmsChannel, to: str, text: str, ref: str, code: str | None) -> str | None:
    try:
        channel.send(to, text, ref.strip("<>"), code)
    except ChannelError as exc:
        return scrubbed(str(exc), code)
    return None


async def to_the_end(func: Callable[..., _T], *args: Any) -> tuple[_T, bool]:
    """Run a send in a thread to its end, even when the service stops meanwhile (the task is
    cancelled): its outcome is then recorded before the stop goes on, so a stopped service never
    sends a message the server accepted again. Returns (the result, whether a stop came)."""
    future = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(future), False
    except asyncio.CancelledError:
        return await future, True


# --- letters ----------------------------------------------------------------------------------------------


def _letters(conn: db.Connection, settings: Settings, templates: Templates, ids: list[int]) -> list[Letter]:
    out: list[Letter] = []
    for message_id in ids:
        row = conn.execute(
            "SELECT m.*, d.resident_name, d.case_ref FROM resident_messages m"
            " LEFT JOIN delivery_details d ON d.code_id = m.code_id WHERE m.id = ?",
            (message_id,),
        ).fetchone()
        if row is None or row["channel"] != "letter":
            raise OutboxError(f"no letter {message_id}")
        code = _held_code(conn, int(row["code_id"]))
        if code is None:
            raise OutboxError(f"letter {message_id}: the code is no longer held (picked up, cancelled or expired)")
        language = row["language"]
        context = message_context(conn, settings, int(row["code_id"]), language, code)
        assert context is not None
        reference = f"{row['code_id']}" + (f" / {row['case_ref']}" if row["case_ref"] else "")
        out.append(
            Letter(
                rendered=templates.render(row["kind"], language, context),
                town=settings.town.name,
                recipient=row["resident_name"],
                reference=reference,
                dated=words.date_words(time.time(), language),
            )
        )
    return out


def letter_pdf(
    conn: db.Connection, settings: Settings, message_ids: list[int], templates: Templates | None = None
) -> bytes:
    """The letters (resident_messages ids, channel `letter`) as one A4 PDF, a page each, in each
    resident's language; nothing changes in the database (mark_letters_printed, once they are out)."""
    if not message_ids:
        raise OutboxError("no letters to print")
    templates = templates if templates is not None else Templates.load(settings.messages.templates)
    return letters_pdf(_letters(conn, settings, templates, message_ids))


def mark_letters_printed(conn: db.Connection, message_ids: list[int], hook: bool = False) -> int:
    """The desk printed (or handed over) these letters: accepted, so the code is let go when every
    other channel accepted too. Returns how many were marked. Joins a transaction in progress."""
    count = 0
    now = time.time()
    with _joined(conn):
        for message_id in message_ids:
            row = conn.execute(
                "SELECT code_id, state FROM resident_messages WHERE id = ? AND channel = 'letter'", (message_id,)
            ).fetchone()
            if row is None or row["state"] != "to_print":
                continue
            conn.execute("UPDATE resident_messages SET state = 'printed', sent_at = ? WHERE id = ?", (now, message_id))
            release_held_code(conn, int(row["code_id"]), hook=hook, outbox=True)
            count += 1
    return count
