"""Staff alerts of incidents (docs/notifications.md, "Staff alerts").

Each locker has its staff contacts (e-mail addresses, SMS numbers; `lockerctl incidents alerts set`),
or, without any, the configuration's `[alerts]` defaults. The service's alert sender:

- follows the incident log (service/incidents.py) with a cursor kept in the database (alert_seen):
  each `opened` and `resolved` entry becomes an item for every contact of its locker, in the
  transaction that records the entry as seen, so no entry is missed or taken twice across a restart;
  entries a little below the cursor are looked at again, since on PostgreSQL a lower id can commit
  after a higher one;
- gathers a contact's items for `[alerts] window_min` from the first one, then makes them ONE message
  (staff_alerts) listing each locker, door and cause with how often it happened and whether it is
  still open: a flapping door sends one message, not a hundred; a resolution is gathered the same way;
- sends the messages as the residents' outbox does: the attempt committed as `sending` before it goes,
  `sent` or `failed` after, retried with a doubling delay while the channel is down, and, after a
  crash mid-send, sent again with the same Message-ID or reference.

A message says where, what and when, in the desk's language ([desk] language), with a link to the
incident on the desk when `[alerts] desk_url` is set. Never a code, a resident's data, an incident's
detail (a locker's own text) or a staff note: a resolution by staff names who resolved it only.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lockertools.config import Settings
from lockertools.desk.i18n import translator
from lockertools.service import db, incidents
from lockertools.service.fleet_db import FleetError, Resident, locker_labels

if TYPE_CHECKING:
    from lockertools.notify.channels import EmailChannel, SmsChannel

ALERTED = ("opened", "resolved")  # the incident log's actions staff are alerted of
_LOOK_BACK = 200  # log ids below the cursor looked at again (a late commit on PostgreSQL)
_PLAN_BATCH = 500  # log entries taken per round
_ITEMS_PER_MESSAGE = 1000  # a contact's items in one message (more: the next message)
_SEND_BATCH = 50
_SMS_MAX = 600
KEEP_S = 30 * 86400.0  # a sent alert (and what it carried) is kept this long, for the record
_PRUNE_EVERY_S = 3600.0


class AlertError(Exception):
    """Bad contacts or an unknown locker; the text says which."""


@dataclass(frozen=True)
class Contact:
    channel: str  # email, sms
    address: str


# --- contacts ----------------------------------------------------------------------------------------


def checked_contacts(emails: Sequence[str], phones: Sequence[str]) -> list[Contact]:
    """Validated and normalized contacts (the deliveries' rules for e-mail addresses and phone
    numbers), each once; AlertError names the first bad one."""
    out: list[Contact] = []
    for email in emails:
        try:
            checked = Resident(email=email).checked().email
        except FleetError as exc:
            raise AlertError(str(exc)) from None
        if checked is None:
            raise AlertError("e-mail: an empty address")
        out.append(Contact("email", checked))
    for phone in phones:
        try:
            number = Resident(phone=phone).checked().phone
        except FleetError as exc:
            raise AlertError(str(exc)) from None
        if number is None:
            raise AlertError("phone: an empty number")
        out.append(Contact("sms", number))
    return list(dict.fromkeys(out))


def set_contacts(conn: db.Connection, locker_id: str, emails: Sequence[str], phones: Sequence[str]) -> list[Contact]:
    """Replace a locker's contacts (none: it goes back to the configuration's defaults). AlertError:
    a bad address or number, or an unknown locker; nothing changes then."""
    contacts = checked_contacts(emails, phones)
    try:
        locker_labels(conn, locker_id)
    except FleetError as exc:
        raise AlertError(str(exc)) from None
    now = time.time()
    with db.transaction(conn):
        conn.execute("DELETE FROM alert_contacts WHERE locker_id = ?", (locker_id,))
        for contact in contacts:
            conn.execute(
                "INSERT INTO alert_contacts(locker_id, channel, address, created_at) VALUES (?, ?, ?, ?)",
                (locker_id, contact.channel, contact.address, now),
            )
    return contacts_of(conn, locker_id)


def contacts_of(conn: db.Connection, locker_id: str) -> list[Contact]:
    """A locker's own contacts, e-mail first."""
    return all_contacts(conn).get(locker_id, [])


def all_contacts(conn: db.Connection) -> dict[str, list[Contact]]:
    """Every locker's own contacts (lockers without any are not in it)."""
    out: dict[str, list[Contact]] = {}
    for row in conn.execute("SELECT locker_id, channel, address FROM alert_contacts ORDER BY locker_id, channel, id"):
        out.setdefault(str(row[0]), []).append(Contact(str(row[1]), str(row[2])))
    return out


# --- what an alert says ------------------------------------------------------------------------------------

_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "incident": "Incident",
        "incidents": "{n} incidents",
        "resolved": "Resolved",
        "n_resolved": "{n} resolved",
        "door": "door {door}",
        "whole": "the whole locker",
        "intro": "What happened at the lockers you are the contact for:",
        "once": "happened at {at}",
        "times": "happened {n} times, from {first} to {last}",
        "several": "({n} incidents)",
        "open": "still open",
        "in_progress": "still open, being handled",
        "resolved_auto": "resolved at {at}: {why}",
        "resolved_by": "resolved at {at} by {who}",
        "sms_open": "open",
        "sms_resolved": "resolved",
        "desk": "On the desk: {url}",
    },
    "nl": {
        "incident": "Incident",
        "incidents": "{n} incidenten",
        "resolved": "Opgelost",
        "n_resolved": "{n} opgelost",
        "door": "deur {door}",
        "whole": "de hele kluis",
        "intro": "Wat er gebeurde bij de kluizen waarvoor u contactpersoon bent:",
        "once": "gebeurd om {at}",
        "times": "{n} keer gebeurd, van {first} tot {last}",
        "several": "({n} incidenten)",
        "open": "nog open",
        "in_progress": "nog open, in behandeling",
        "resolved_auto": "opgelost om {at}: {why}",
        "resolved_by": "opgelost om {at} door {who}",
        "sms_open": "open",
        "sms_resolved": "opgelost",
        "desk": "Op de balie: {url}",
    },
    "fr": {
        "incident": "Incident",
        "incidents": "{n} incidents",
        "resolved": "Résolu",
        "n_resolved": "{n} résolus",
        "door": "porte {door}",
        "whole": "tout le casier",
        "intro": "Ce qui s'est passé aux casiers dont vous êtes le contact :",
        "once": "survenu à {at}",
        "times": "survenu {n} fois, de {first} à {last}",
        "several": "({n} incidents)",
        "open": "toujours ouvert",
        "in_progress": "toujours ouvert, en cours de traitement",
        "resolved_auto": "résolu à {at} : {why}",
        "resolved_by": "résolu à {at} par {who}",
        "sms_open": "ouvert",
        "sms_resolved": "résolu",
        "desk": "Au guichet : {url}",
    },
}


@dataclass(frozen=True)
class AlertText:
    subject: str
    body: str  # paragraphs separated by blank lines
    sms: str


def _clock(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def _where(incident: incidents.Incident, words: dict[str, str]) -> str:
    if incident.door:
        return words["door"].format(door=incident.door)
    return incident.subject or words["whole"]


def alert_text(
    conn: db.Connection, items: Sequence[tuple[int, str]], language: str, town: str, desk_url: str | None
) -> AlertText | None:
    """The message for a batch of (incident id, action) items: one paragraph per locker, subject and
    cause, in the order they first came, with how often it happened, whether it is still open, and
    the link to its latest incident on the desk. None: none of the incidents is there any more."""
    words = _TEXTS.get(language, _TEXTS["en"])
    translate = translator(language)
    actions: dict[int, set[str]] = {}
    for incident_id, action in items:
        actions.setdefault(incident_id, set()).add(action)
    groups: dict[tuple[str, str, str], list[incidents.Incident]] = {}
    for incident_id in actions:
        try:
            incident = incidents.get_incident(conn, incident_id)
        except incidents.IncidentError:
            continue  # deleted by hand: nothing to tell of it
        groups.setdefault((incident.locker_id, incident.subject, incident.cause), []).append(incident)
    if not groups:
        return None
    paragraphs, sms_parts = [], []
    opened_groups = 0
    for group in groups.values():
        latest = max(group, key=lambda i: i.id)
        opened = [i for i in group if "opened" in actions[i.id]]
        opened_groups += bool(opened)
        head = f"{latest.locker_id}, {_where(latest, words)}: {translate(latest.what)}"
        lines = [head]
        times = sum(i.count for i in opened)
        if opened:
            first, last = min(i.opened_at for i in opened), max(i.last_at for i in opened)
            happened = (
                words["once"].format(at=_clock(first))
                if times == 1
                else words["times"].format(n=times, first=_clock(first), last=_clock(last))
            )
            if len(opened) > 1:
                happened += " " + words["several"].format(n=len(opened))
            lines.append(happened)
        if latest.is_open:
            lines.append(words["open" if latest.state == "new" else "in_progress"])
        else:
            at = _clock(latest.resolved_at or latest.last_at)
            if latest.resolved_by == incidents.AUTO:
                lines.append(words["resolved_auto"].format(at=at, why=translate(latest.resolution or "")))
            else:  # a staff member's note may name a resident: who resolved it, not what they wrote
                lines.append(words["resolved_by"].format(at=at, who=latest.resolved_by))
        link = f"{desk_url.rstrip('/')}/incidents/{latest.id}" if desk_url else None
        if link is not None:
            lines.append(words["desk"].format(url=link))
        paragraphs.append("\n".join(lines))
        state = words["sms_open" if latest.is_open else "sms_resolved"]
        sms_parts.append(head + (f" x{times}" if times > 1 else "") + f", {state}" + (f" {link}" if link else ""))
    lockers = ", ".join(dict.fromkeys(key[0] for key in groups))
    if len(groups) == 1:
        kind = words["incident" if opened_groups else "resolved"]
        subject = f"[{town}] {kind}: {paragraphs[0].splitlines()[0]}"
    else:
        kind = words["incidents" if opened_groups else "n_resolved"].format(n=len(groups))
        subject = f"[{town}] {kind}: {lockers}"
    sms = f"[{town}] " + "; ".join(sms_parts)
    if len(sms) > _SMS_MAX:
        sms = sms[: _SMS_MAX - 1] + "…"
    body = "\n\n".join([words["intro"], *paragraphs])
    return AlertText(subject=subject, body=body, sms=sms)


# --- the sender ----------------------------------------------------------------------------------------------


@dataclass
class AlertStats:
    items: int = 0  # an incident change for a contact
    messages: int = 0  # batches closed
    sent: int = 0
    failures: int = 0


@dataclass(frozen=True)
class StaffAlert:
    """One message to one contact, as recorded."""

    id: int
    channel: str
    address: str
    subject: str
    state: str  # pending, sending, sent, failed
    attempts: int
    error: str | None
    created_at: float
    sent_at: float | None


def staff_alerts(conn: db.Connection, state: str | None = None) -> list[StaffAlert]:
    sql, params = "SELECT * FROM staff_alerts", []
    if state is not None:
        sql, params = sql + " WHERE state = ?", [state]
    return [
        StaffAlert(
            id=int(r["id"]),
            channel=r["channel"],
            address=r["address"],
            subject=r["subject"],
            state=r["state"],
            attempts=int(r["attempts"]),
            error=r["error"],
            created_at=float(r["created_at"]),
            sent_at=None if r["sent_at"] is None else float(r["sent_at"]),
        )
        for r in conn.execute(sql + " ORDER BY id", params).fetchall()
    ]


class AlertSender:
    """Follows incidents, batches them per contact and sends the messages (the service's `alerts`
    task; `run_once` is one round). ValueError or AlertError: the settings cannot work."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        alerts = settings.alerts
        self.defaults = checked_contacts(alerts.default_email, alerts.default_sms)
        self.window_s = alerts.window_min * 60
        self.language = settings.desk.language
        self.email: EmailChannel | None = None
        self.sms: SmsChannel | None = None
        # The channels (and Jinja2 with them) only when configured: the simulator's service has neither.
        if settings.email.host is not None and settings.email.sender is not None:
            from lockertools.notify.channels import EmailChannel

            self.email = EmailChannel(settings.email)
        if settings.sms.url:
            from lockertools.notify.channels import SmsChannel

            self.sms = SmsChannel(settings.sms)
        sender = settings.email.sender or ""
        self._domain = sender.rpartition("@")[2] or "lockertools.invalid"
        self.stats = AlertStats()
        self._pruned_at: float | None = None

    def start(self, conn: db.Connection, now: float) -> None:
        """At the service's start: a send interrupted by a crash is due again (with its own ref); the
        first start ever begins after the incidents recorded so far (they are not alerted)."""
        with db.transaction(conn):
            conn.execute("UPDATE staff_alerts SET state = 'pending', next_at = ? WHERE state = 'sending'", (now,))
            if conn.execute("SELECT 1 FROM alert_seen LIMIT 1").fetchone() is None:
                newest = int(conn.execute("SELECT coalesce(max(id), 0) FROM incident_log").fetchone()[0])
                # log id 0 is no entry's: it keeps the cursor begun when the log is still empty
                conn.execute("INSERT INTO alert_seen(log_id, seen_at) VALUES (0, ?)", (now,))
                conn.execute(
                    "INSERT INTO alert_seen(log_id, seen_at) SELECT id, ? FROM incident_log WHERE id > ?",
                    (now, max(0, newest - _LOOK_BACK)),
                )

    # following the incidents

    def plan(self, conn: db.Connection, now: float) -> int:
        """New incident log entries become items of their locker's contacts (one transaction, which
        also records them as seen). Returns how many items."""
        cursor = int(conn.execute("SELECT coalesce(max(log_id), 0) FROM alert_seen").fetchone()[0])
        rows = conn.execute(
            "SELECT l.id, l.incident_id, l.action, i.locker_id FROM incident_log l"
            " JOIN incidents i ON i.id = l.incident_id"
            " WHERE l.id > ? AND NOT EXISTS (SELECT 1 FROM alert_seen s WHERE s.log_id = l.id)"
            " ORDER BY l.id LIMIT ?",
            (cursor - _LOOK_BACK, _PLAN_BATCH),
        ).fetchall()
        if not rows:
            return 0
        contacts = all_contacts(conn)
        count = 0
        with db.transaction(conn):
            for log_id, incident_id, action, locker_id in rows:
                conn.execute("INSERT INTO alert_seen(log_id, seen_at) VALUES (?, ?)", (log_id, now))
                if action not in ALERTED:
                    continue
                for contact in contacts.get(str(locker_id)) or self.defaults:
                    conn.execute(
                        "INSERT INTO alert_items(log_id, incident_id, action, channel, address, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (log_id, incident_id, action, contact.channel, contact.address, now),
                    )
                    count += 1
            newest = max(int(r[0]) for r in rows)
            conn.execute("DELETE FROM alert_seen WHERE log_id < ?", (max(cursor, newest) - _LOOK_BACK,))
        self.stats.items += count
        return count

    def close_batches(self, conn: db.Connection, now: float) -> int:
        """Each contact whose first waiting item is `window_min` old gets one message of all its
        waiting items (one transaction). Returns how many messages."""
        due = conn.execute(
            "SELECT channel, address FROM alert_items WHERE alert_id IS NULL"
            " GROUP BY channel, address HAVING min(created_at) <= ? ORDER BY min(id)",
            (now - self.window_s,),
        ).fetchall()
        if not due:
            return 0
        town = self.settings.town.name
        desk_url = self.settings.alerts.desk_url
        made = 0
        with db.transaction(conn):
            for channel, address in due:
                items = conn.execute(
                    "SELECT id, incident_id, action FROM alert_items WHERE alert_id IS NULL AND channel = ?"
                    " AND address = ? ORDER BY id LIMIT ?",
                    (channel, address, _ITEMS_PER_MESSAGE),
                ).fetchall()
                text = alert_text(conn, [(int(r[1]), str(r[2])) for r in items], self.language, town, desk_url)
                last = int(items[-1][0])
                if text is None:
                    conn.execute(
                        "DELETE FROM alert_items WHERE alert_id IS NULL AND channel = ? AND address = ? AND id <= ?",
                        (channel, address, last),
                    )
                    continue
                alert_id = conn.execute(
                    "INSERT INTO staff_alerts(channel, address, language, ref, subject, body, sms, state, next_at,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING id",
                    (channel, address, self.language, self._ref(), text.subject, text.body, text.sms, now, now),
                ).fetchone()[0]
                conn.execute(
                    "UPDATE alert_items SET alert_id = ? WHERE alert_id IS NULL AND channel = ? AND address = ?"
                    " AND id <= ?",
                    (alert_id, channel, address, last),
                )
                made += 1
        self.stats.messages += made
        return made

    def prune(self, conn: db.Connection, now: float) -> int:
        """Delete the alerts sent more than KEEP_S ago, with their items (alert_seen, not the items,
        keeps an entry from being taken twice). Returns how many alerts."""
        before = now - KEEP_S
        with db.transaction(conn):
            conn.execute(
                "DELETE FROM alert_items WHERE alert_id IN"
                " (SELECT id FROM staff_alerts WHERE state = 'sent' AND sent_at < ?)",
                (before,),
            )
            count: int = conn.execute(
                "DELETE FROM staff_alerts WHERE state = 'sent' AND sent_at < ?", (before,)
            ).rowcount
        return count

    def _ref(self) -> str:
        return f"<alert.{secrets.token_hex(12)}@{self._domain}>"

    # sending

    async def run_once(
        self, conn: db.Connection, now: float | None = None, beat: Callable[[], None] | None = None
    ) -> int:
        """Follow, batch, then send what is due; returns how many were sent."""
        now = time.time() if now is None else now
        if self._pruned_at is None or now - self._pruned_at >= _PRUNE_EVERY_S:
            self._pruned_at = now
            self.prune(conn, now)
        self.plan(conn, now)
        self.close_batches(conn, now)
        due = conn.execute(
            "SELECT * FROM staff_alerts WHERE state IN ('pending', 'failed') AND next_at <= ?"
            " ORDER BY next_at, id LIMIT ?",
            (now, _SEND_BATCH),
        ).fetchall()
        sent = 0
        email_rows = [r for r in due if r["channel"] == "email"] if self.email is not None else []
        sms_rows = [r for r in due if r["channel"] == "sms"] if self.sms is not None else []
        if email_rows:  # rows of a channel not configured wait for it
            sent += await self._send_email(conn, email_rows, now)
            if beat is not None:
                beat()
        if sms_rows:
            sent += await self._send_sms(conn, sms_rows, now, beat)
        return sent

    def _sending(self, conn: db.Connection, rows: list[db.Row]) -> None:
        with db.transaction(conn):
            for row in rows:
                conn.execute("UPDATE staff_alerts SET state = 'sending', attempts = attempts + 1 WHERE id = ?",
                             (row["id"],))  # fmt: skip

    def _record(self, conn: db.Connection, row: db.Row, error: str | None, now: float) -> None:
        if error is None:
            self.stats.sent += 1
            conn.execute("UPDATE staff_alerts SET state = 'sent', sent_at = ?, error = NULL WHERE id = ?",
                         (now, row["id"]))  # fmt: skip
            return
        self.stats.failures += 1
        alerts = self.settings.alerts
        delay = min(alerts.retry_max_s, alerts.retry_min_s * 2 ** int(row["attempts"]))
        conn.execute(
            "UPDATE staff_alerts SET state = 'failed', error = ?, next_at = ? WHERE id = ?",
            (error, now + delay, row["id"]),
        )

    async def _send_email(self, conn: db.Connection, rows: list[db.Row], now: float) -> int:
        from lockertools.notify.channels import compose_email
        from lockertools.notify.outbox import to_the_end
        from lockertools.notify.templates import Rendered

        channel = self.email
        assert channel is not None
        self._sending(conn, rows)
        town, reply_to = self.settings.town.name, self.settings.email.reply_to
        mails: list[tuple[Any, str | None]] = [
            (
                compose_email(
                    Rendered(row["language"], row["subject"], row["body"], row["sms"], None),
                    row["address"],
                    row["ref"],
                    channel.sender,
                    town,
                    reply_to,
                ),
                None,
            )
            for row in rows
        ]
        results, stopped = await to_the_end(channel.send_many, mails)
        with db.transaction(conn):
            for row, error in zip(rows, results, strict=True):
                self._record(conn, row, error, now)
        if stopped:
            raise asyncio.CancelledError
        return sum(1 for e in results if e is None)

    async def _send_sms(
        self, conn: db.Connection, rows: list[db.Row], now: float, beat: Callable[[], None] | None
    ) -> int:
        from lockertools.notify.outbox import sms_error, to_the_end

        channel = self.sms
        assert channel is not None
        self._sending(conn, rows)
        sent = 0
        for row in rows:
            error, stopped = await to_the_end(sms_error, channel, row["address"], row["sms"], row["ref"], None)
            with db.transaction(conn):
                self._record(conn, row, error, now)
            if stopped:
                raise asyncio.CancelledError
            sent += error is None
            if beat is not None:
                beat()
        return sent
