"""Incidents: what a locker reported (or the service noticed) that needs a person.

An incident has a cause (CAUSES), a locker, a door (None: the whole locker) and a state: `new`,
`in_progress` (someone took it) or `resolved`. The same cause on the same door (or lock board, or
locker) never has two open incidents: a repeat bumps the open one's `count`. Every state change is a
row of `incident_log` (who, when, note); its id only grows, so `changes_since()` is a cursor for
whoever alerts staff (on PostgreSQL two transactions can commit their ids out of order for the
moment they overlap: a reader that must miss none re-reads from a few entries back, by id).

Incidents come from three places, each inside the caller's transaction:
- `on_event()`: ingest, once per new event (jammed, forced, left_open, ...). A clearing event (the
  door closed, the latch opened, the board answers again) resolves the open incident of its cause
  with resolved_by 'auto' and the reason; it resolves only what an earlier event (by seq) opened, and
  an event that arrives after its own clearing event opens an incident already resolved, so the
  outcome does not depend on the order deliveries arrive in.
- `on_status()`: ingest, per status: safe mode opens one, normal mode and being online clear theirs.
- `check()`: the service's poller, periodically: offline longer than a set time, a flapping
  connection, a notification that could not be delivered; each resolves itself once it is over.

Staff act through `take()`, `resolve()` (a note is required) and `add_note()`, which open their own
transaction unless the caller is in one. A bad request raises IncidentError, and changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lockertools.service import db

STATES = ("new", "in_progress", "resolved")
OPEN_STATES = ("new", "in_progress")

# cause -> what it means, for people (the desk and `lockerctl incidents` show it)
CAUSES: dict[str, str] = {
    "jammed": "the latch did not open",
    "forced": "the door was forced open",
    "left_open": "the door was left open",
    "item_left": "the door was shut with the item still inside",
    "sensor_suspect": "the door sensor looks faulty",
    "lockboard_down": "a lock board does not answer",
    "throttled": "the keypad is throttled after many wrong codes",
    "storage": "the locker found a damaged file or a bad setting",
    "update_rollback": "an application update was rolled back",
    "safe_mode": "the locker is in safe mode: no door opens",
    "offline": "the locker has been offline too long",
    "flapping": "the locker's connection keeps dropping",
    "notify_failed": "a notification could not be delivered",
}

AUTO = "auto"  # resolved_by (and a log row's `by`) of what the service did by itself
MAX_NAME = 64
MAX_NOTE = 1000
DEFAULT_OFFLINE_S = 1800.0  # the [incidents] offline_after_min default, in seconds

# An event kind that opens an incident -> its cause (on the event's door; lockboard: on the board).
_OPENS: dict[str, str] = {
    "jammed": "jammed",
    "forced": "forced",
    "left_open": "left_open",
    "closed_full": "item_left",
    "sensor_suspect": "sensor_suspect",
    "throttled": "throttled",
    "wait_refused": "throttled",
    "problem": "storage",
    "app_rollback": "update_rollback",
}

_CLOSED = "the door was closed"
_EMPTIED = "the door was found empty"
# An event kind -> the causes it clears (on the same door, or the whole locker for a door-less
# cause) and why. Each of these events means the door is shut (or, for `opened`, the latch works).
_CLEARS: dict[str, tuple[tuple[str, str], ...]] = {
    "opened": (("jammed", "the door opened"),),
    "closed": (("left_open", _CLOSED), ("forced", _CLOSED)),
    "closed_full": (("left_open", _CLOSED), ("forced", _CLOSED)),
    "pickup": (("left_open", _CLOSED), ("forced", _CLOSED), ("item_left", "the item was picked up")),
    "loaded": (("left_open", _CLOSED), ("forced", _CLOSED)),
    "load_empty": (("left_open", _CLOSED), ("forced", _CLOSED), ("item_left", _EMPTIED)),
    "returned": (("left_open", _CLOSED), ("forced", _CLOSED)),
    "return_empty": (("left_open", _CLOSED), ("forced", _CLOSED), ("item_left", _EMPTIED)),
    "taken_back": (("left_open", _CLOSED), ("forced", _CLOSED), ("item_left", "staff took the item back")),
    "app_ok": (("update_rollback", "a later update was kept"),),
}
# The clearing event kinds of each cause (the reverse of _CLEARS; lockboard's is `lockboard` up).
_CLEARED_BY: dict[str, tuple[str, ...]] = {}
for _kind, _pairs in _CLEARS.items():
    for _cause, _ in _pairs:
        _CLEARED_BY[_cause] = (*_CLEARED_BY.get(_cause, ()), _kind)
_CLEARED_BY["lockboard_down"] = ("lockboard",)
_DOOR_CAUSES = frozenset(("jammed", "forced", "left_open", "item_left", "sensor_suspect"))


class IncidentError(Exception):
    """A request that names an unknown incident or breaks a rule; the text is for people."""


@dataclass(frozen=True)
class Incident:
    id: int
    locker_id: str
    door: str | None  # None: the whole locker (or a lock board: see `subject`)
    subject: str  # what it is about within the locker: the door label, "board 3", or ""
    cause: str
    state: str  # new, in_progress, resolved
    opened_at: float
    event_seq: int | None  # the event that opened it (None: the service noticed it)
    last_seq: int | None  # the latest event that opened or repeated it
    last_at: float  # when it last happened
    count: int  # how many times it happened while open
    detail: str | None  # what the locker or the service said (a problem's text, since when offline)
    handled_by: str | None
    note: str | None  # the latest staff note
    resolved_at: float | None
    resolved_by: str | None  # 'auto' or a staff account name
    resolution: str | None  # why it was resolved: the automatic reason, or the staff member's note

    @property
    def is_open(self) -> bool:
        return self.state != "resolved"

    @property
    def what(self) -> str:
        return CAUSES.get(self.cause, self.cause)


@dataclass(frozen=True)
class LogEntry:
    id: int  # only grows: a cursor for changes_since()
    incident_id: int
    at: float
    action: str  # opened, taken, note, resolved
    state: str  # the incident's state after it
    by: str  # 'auto' or a staff account name
    note: str | None


@dataclass(frozen=True)
class IncidentDetail:
    incident: Incident
    log: list[LogEntry]


@dataclass(frozen=True)
class Change:
    """One state change (changes_since) and the incident as it is now."""

    entry: LogEntry
    incident: Incident


def _incident(row: db.Row) -> Incident:
    return Incident(
        id=int(row["id"]),
        locker_id=str(row["locker_id"]),
        door=row["door"],
        subject=str(row["subject"]),
        cause=str(row["cause"]),
        state=str(row["state"]),
        opened_at=float(row["opened_at"]),
        event_seq=None if row["event_seq"] is None else int(row["event_seq"]),
        last_seq=None if row["last_seq"] is None else int(row["last_seq"]),
        last_at=float(row["last_at"]),
        count=int(row["count"]),
        detail=row["detail"],
        handled_by=row["handled_by"],
        note=row["note"],
        resolved_at=None if row["resolved_at"] is None else float(row["resolved_at"]),
        resolved_by=row["resolved_by"],
        resolution=row["resolution"],
    )


def _entry(row: db.Row) -> LogEntry:
    return LogEntry(
        id=int(row["id"]),
        incident_id=int(row["incident_id"]),
        at=float(row["at"]),
        action=str(row["action"]),
        state=str(row["state"]),
        by=str(row["by"]),
        note=row["note"],
    )


@contextmanager
def _writing(conn: db.Connection) -> Iterator[None]:
    """The caller's transaction if it has one, else one of its own."""
    if conn.in_transaction:
        yield
        return
    with db.transaction(conn):
        yield


def _log(conn: db.Connection, incident_id: int, at: float, action: str, state: str, by: str, note: str | None) -> None:
    conn.execute(
        'INSERT INTO incident_log(incident_id, at, action, state, "by", note) VALUES (?, ?, ?, ?, ?, ?)',
        (incident_id, at, action, state, by, note),
    )


def _open_row(conn: db.Connection, locker_id: str, cause: str, subject: str) -> db.Row | None:
    row: db.Row | None = conn.execute(
        "SELECT * FROM incidents WHERE locker_id = ? AND cause = ? AND subject = ? AND state != 'resolved'",
        (locker_id, cause, subject),
    ).fetchone()
    return row


def _subject(door: str | None, subject: str | None) -> str:
    return subject if subject is not None else (door or "")


# --- opening and resolving ------------------------------------------------------------------------


def open_or_bump(
    conn: db.Connection,
    locker_id: str,
    cause: str,
    when: float,
    *,
    door: str | None = None,
    subject: str | None = None,
    seq: int | None = None,
    detail: str | None = None,
    repeat: bool = True,
    since: float | None = None,
) -> Incident:
    """Open an incident of `cause` on `door` (or `subject`: what it is about within the locker; by
    default the door label, "" for the whole locker), or, when one is open already, count one more
    occurrence of it (repeat=False: leave the open one as it is: a periodic check seeing it again).
    since: when the condition a check sees began; an incident of it opened at or after then and
    resolved since (by staff: the condition lasts) is returned as it is, not opened again.
    Inside a transaction (the caller's, or one of its own)."""
    if cause not in CAUSES:
        raise IncidentError(f"unknown cause {cause!r} (known: {', '.join(CAUSES)})")
    key = _subject(door, subject)
    with _writing(conn):
        row = _open_row(conn, locker_id, cause, key)
        if row is not None:
            if repeat:
                conn.execute(
                    f"UPDATE incidents SET count = count + 1, last_at = {db.greatest(conn)}(last_at, ?),"
                    f" last_seq = CASE WHEN last_seq IS NULL OR last_seq < ? THEN ? ELSE last_seq END WHERE id = ?",
                    (when, seq, seq, row["id"]),
                )
            return get_incident(conn, int(row["id"]))
        if since is not None:
            seen = conn.execute(
                "SELECT max(id) FROM incidents WHERE locker_id = ? AND cause = ? AND subject = ? AND opened_at >= ?",
                (locker_id, cause, key, since),
            ).scalar()
            if seen is not None:
                return get_incident(conn, int(seen))
        new = conn.execute(
            "INSERT INTO incidents(locker_id, door, subject, cause, state, opened_at, event_seq, last_seq, last_at,"
            " count, detail) VALUES (?, ?, ?, ?, 'new', ?, ?, ?, ?, 1, ?) RETURNING id",
            (locker_id, door, key, cause, when, seq, seq, when, detail),
        ).fetchone()
        incident_id = int(new[0])
        _log(conn, incident_id, when, "opened", "new", AUTO, detail)
        return get_incident(conn, incident_id)


def _resolve_row(conn: db.Connection, row: db.Row, when: float, by: str, reason: str) -> None:
    conn.execute(
        "UPDATE incidents SET state = 'resolved', resolved_at = ?, resolved_by = ?, resolution = ? WHERE id = ?",
        (when, by, reason, row["id"]),
    )
    _log(conn, int(row["id"]), when, "resolved", "resolved", by, reason)


def auto_resolve(
    conn: db.Connection,
    locker_id: str,
    causes: Sequence[str],
    reason: str,
    when: float,
    *,
    subject: str | None = None,
    after_seq: int | None = None,
) -> list[int]:
    """Resolve the open incidents of `causes` on the locker (only `subject`'s, when given) because
    their cause is gone: resolved_by 'auto', `reason` as the resolution. after_seq: the clearing
    event's seq, which resolves only what earlier events opened. Returns the incidents resolved."""
    sql = "SELECT * FROM incidents WHERE locker_id = ? AND state != 'resolved'"
    params: list[Any] = [locker_id]
    sql += " AND cause IN (" + ", ".join("?" * len(causes)) + ")"
    params.extend(causes)
    if subject is not None:
        sql += " AND subject = ?"
        params.append(subject)
    if after_seq is not None:
        sql += " AND (last_seq IS NULL OR last_seq < ?)"
        params.append(after_seq)
    done = []
    with _writing(conn):
        for row in conn.execute(sql, params).fetchall():
            _resolve_row(conn, row, when, AUTO, reason)
            done.append(int(row["id"]))
    return done


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _event_detail(kind: str, ev: dict[str, Any]) -> str | None:
    if kind == "problem":
        return str(ev.get("m", ""))[:200] or None
    if kind == "app_rollback":
        return f"update {ev.get('from')} was not healthy within {ev.get('n')} trial boots: {ev.get('to')} put back"
    if kind in ("throttled", "wait_refused") and _is_int(ev.get("n")):
        return f"{ev['n']} wrong codes in a row"
    return None


def _board(ev: dict[str, Any]) -> str | None:
    return f"board {ev['a']}" if _is_int(ev.get("a")) else None


def _cleared_later(conn: db.Connection, locker_id: str, cause: str, subject: str, seq: int) -> tuple[str, float] | None:
    """A clearing event of `cause` on `subject` with a seq above `seq`, recorded already (it arrived
    first): (its reason, its time), or None."""
    kinds = _CLEARED_BY.get(cause)
    if not kinds:
        return None
    sql = "SELECT kind, door, json, received_at FROM events WHERE locker_id = ? AND seq > ? AND kind IN ("
    sql += ", ".join("?" * len(kinds)) + ") ORDER BY seq"
    for row in conn.execute(sql, (locker_id, seq, *kinds)).fetchall():
        ev = json.loads(row["json"])
        if cause == "lockboard_down":
            if ev.get("r") != "up" or _board(ev) != subject:
                continue
            reason = "the board answers again"
        else:
            if cause in _DOOR_CAUSES and (row["door"] or "") != subject:
                continue
            reason = dict(_CLEARS[row["kind"]])[cause]
        t = ev.get("t")
        return reason, float(t) if _is_int(t) and 0 <= t < 1 << 32 else float(row["received_at"])
    return None


# The lockers with an open incident, read with a run of door events in the same round trip
# (ingest.record_door_events): a clearing event on a locker without one has nothing to clear.
OPEN_LOCKERS = "SELECT DISTINCT locker_id FROM incidents WHERE state IN ('new', 'in_progress')"


def may_act(kind: Any, locker_id: str, open_lockers: set[str]) -> bool:
    """Whether on_event can change anything for an event of `kind`: it may open an incident, or it
    clears a cause and the locker has an open incident (`open_lockers`: OPEN_LOCKERS' answer)."""
    return kind == "lockboard" or kind in _OPENS or (kind in _CLEARS and locker_id in open_lockers)


def on_event(conn: db.Connection, locker_id: str, seq: int, ev: dict[str, Any], when: float) -> None:
    """A new event from a locker (ingest.apply_event, in its transaction): open, bump or resolve."""
    kind = ev.get("k")
    if not isinstance(kind, str):
        return
    door = ev.get("d") if isinstance(ev.get("d"), str) else None
    if kind == "lockboard":
        board = _board(ev)
        if board is None:
            return
        if ev.get("r") == "up":
            auto_resolve(conn, locker_id, ("lockboard_down",), "the board answers again", when,
                         subject=board, after_seq=seq)  # fmt: skip
        elif ev.get("r") == "down":
            _open_from_event(conn, locker_id, "lockboard_down", None, board, seq, when, f"lock board {ev['a']}")
        return
    if kind in _CLEARS:
        _clear(conn, locker_id, kind, door, seq, when)
    cause = _OPENS.get(kind)
    if cause is None:
        return
    if cause in _DOOR_CAUSES:
        if door is None:
            return  # a door alarm names its door (the schema requires it): nothing to point staff at
        _open_from_event(conn, locker_id, cause, door, door, seq, when, None)
    else:
        _open_from_event(conn, locker_id, cause, None, "", seq, when, _event_detail(kind, ev))


def _clearing_query(kind: str) -> tuple[str, bool]:
    """The query that finds what an event of `kind` clears, and whether its causes are on the event's
    door (every clearing kind's causes are all door causes, or all the locker's)."""
    causes = [cause for cause, _ in _CLEARS[kind]]
    on_door = causes[0] in _DOOR_CAUSES
    assert all((c in _DOOR_CAUSES) == on_door for c in causes), kind
    sql = "SELECT id, cause FROM incidents WHERE locker_id = ? AND state != 'resolved' AND subject = ?"
    sql += " AND cause IN (" + ", ".join(f"'{c}'" for c in causes) + ") AND (last_seq IS NULL OR last_seq < ?)"
    return sql, on_door


_CLEARING_QUERIES = {kind: _clearing_query(kind) for kind in _CLEARS}


def _clear(conn: db.Connection, locker_id: str, kind: str, door: str | None, seq: int, when: float) -> None:
    """One indexed query per clearing event (most events are one: every door shut): the open incidents
    of its causes on its door (or the locker) that an earlier event opened."""
    sql, on_door = _CLEARING_QUERIES[kind]
    if on_door and door is None:
        return
    reasons = _CLEARS[kind]
    for row in conn.execute(sql, (locker_id, door if on_door else "", seq)).fetchall():
        reason = next(r for c, r in reasons if c == row["cause"])
        _resolve_row(conn, row, when, AUTO, reason)


def _open_from_event(
    conn: db.Connection,
    locker_id: str,
    cause: str,
    door: str | None,
    subject: str,
    seq: int,
    when: float,
    detail: str | None,
) -> None:
    if _open_row(conn, locker_id, cause, subject) is None:
        cleared = _cleared_later(conn, locker_id, cause, subject, seq)
        if cleared is not None:
            # Its clearing event came first (deliveries arrive in any order): on record, resolved.
            incident = open_or_bump(conn, locker_id, cause, when, door=door, subject=subject, seq=seq, detail=detail)
            reason, at = cleared
            row = conn.execute("SELECT * FROM incidents WHERE id = ?", (incident.id,)).fetchone()
            _resolve_row(conn, row, max(at, when), AUTO, reason)
            return
    open_or_bump(conn, locker_id, cause, when, door=door, subject=subject, seq=seq, detail=detail)


def on_status(conn: db.Connection, locker_id: str, msg: dict[str, Any], received_at: float) -> None:
    """A status from a locker (ingest.apply_status, in its transaction): online clears `offline`;
    safe mode opens `safe_mode`, normal mode clears it. The last will (offline) changes nothing: the
    periodic check opens `offline` once it lasted."""
    if not msg.get("online"):
        return
    auto_resolve(conn, locker_id, ("offline",), "the locker is online again", received_at)
    if msg.get("mode") == "safe":
        up = msg.get("up")  # seconds since boot: safe mode lasts until the next boot at least
        booted = received_at - up if isinstance(up, int) and not isinstance(up, bool) and up >= 0 else None
        open_or_bump(conn, locker_id, "safe_mode", received_at, repeat=False, since=booted)
    else:
        auto_resolve(conn, locker_id, ("safe_mode",), "the locker left safe mode", received_at)


def check(conn: db.Connection, now: float, offline_after_s: float = DEFAULT_OFFLINE_S) -> None:
    """The periodic checks (the service's poller, in its transaction): a locker offline for longer
    than `offline_after_s` since it was last seen, a flapping connection (connection_flaps, which the
    service keeps), notifications that failed; each resolves itself once it is over."""
    for row in conn.execute(
        "SELECT id, last_seen FROM lockers WHERE online = 0 AND last_seen IS NOT NULL AND last_seen < ?",
        (now - offline_after_s,),
    ).fetchall():
        since = float(row["last_seen"])
        detail = f"offline for more than {offline_after_s / 60:.0f} min (last seen at {_clock(since)})"
        open_or_bump(conn, str(row["id"]), "offline", now, detail=detail, repeat=False, since=since)
    flapping: set[str] = set()
    for row in conn.execute(
        "SELECT locker_id, changes, started_at FROM connection_flaps WHERE ended_at IS NULL"
    ).fetchall():
        flapping.add(str(row["locker_id"]))
        detail = f"{row['changes']} online/offline changes"
        open_or_bump(conn, str(row["locker_id"]), "flapping", now, detail=detail, repeat=False,
                     since=float(row["started_at"]))  # fmt: skip
    for row in conn.execute("SELECT locker_id FROM incidents WHERE cause = 'flapping' AND state != 'resolved'"):
        if str(row["locker_id"]) not in flapping:
            auto_resolve(conn, str(row["locker_id"]), ("flapping",), "the connection is steady again", now)
    failed: set[tuple[str, str]] = set()
    for row in conn.execute(
        "SELECT locker_id, door, count(*) AS n, max(error) AS error, max(created_at) AS newest FROM notifications"
        " WHERE state = 'failed' GROUP BY locker_id, door"
    ).fetchall():
        key = (str(row["locker_id"]), row["door"] or "")
        failed.add(key)
        detail = f"{row['n']} notification(s) not delivered: {row['error']}"[:300]
        # since the newest: a notification that failed after staff resolved the incident opens another
        open_or_bump(conn, key[0], "notify_failed", now, door=row["door"], detail=detail, repeat=False,
                     since=float(row["newest"]))  # fmt: skip
    for row in conn.execute(
        "SELECT locker_id, subject FROM incidents WHERE cause = 'notify_failed' AND state != 'resolved'"
    ):
        if (str(row["locker_id"]), str(row["subject"])) not in failed:
            auto_resolve(conn, str(row["locker_id"]), ("notify_failed",), "delivered on a retry", now,
                         subject=str(row["subject"]))  # fmt: skip


def _clock(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


# --- staff ----------------------------------------------------------------------------------------


def _staff_name(by: str) -> str:
    name = by.strip() if isinstance(by, str) else ""
    if not name or len(name) > MAX_NAME:
        raise IncidentError(f"who: a staff account name of 1-{MAX_NAME} characters")
    if name == AUTO:
        raise IncidentError(f"who: {AUTO!r} is the service's own name, not a staff account")
    return name


def _note(note: str | None, required: bool) -> str | None:
    text = note.strip() if isinstance(note, str) else ""
    if not text:
        if required:
            raise IncidentError("a note is required: say what was done")
        return None
    if len(text) > MAX_NOTE:
        raise IncidentError(f"the note is {len(text)} characters: at most {MAX_NOTE}")
    return text


def _open_for_staff(conn: db.Connection, incident_id: int) -> db.Row:
    row: db.Row | None = conn.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    if row is None:
        raise IncidentError(f"no incident {incident_id}")
    if row["state"] == "resolved":
        raise IncidentError(f"incident {incident_id} is resolved already (by {row['resolved_by']})")
    return row


def take(conn: db.Connection, incident_id: int, by: str, now: float, note: str | None = None) -> Incident:
    """`by` handles the incident: in progress (taking it over from someone else is allowed, and logged)."""
    name, text = _staff_name(by), _note(note, required=False)
    with _writing(conn):
        _open_for_staff(conn, incident_id)
        conn.execute(
            "UPDATE incidents SET state = 'in_progress', handled_by = ?, note = coalesce(?, note) WHERE id = ?",
            (name, text, incident_id),
        )
        _log(conn, incident_id, now, "taken", "in_progress", name, text)
    return get_incident(conn, incident_id)


def add_note(conn: db.Connection, incident_id: int, by: str, note: str, now: float) -> Incident:
    """A note on an open incident, its state unchanged."""
    name, text = _staff_name(by), _note(note, required=True)
    with _writing(conn):
        row = _open_for_staff(conn, incident_id)
        conn.execute("UPDATE incidents SET note = ? WHERE id = ?", (text, incident_id))
        _log(conn, incident_id, now, "note", str(row["state"]), name, text)
    return get_incident(conn, incident_id)


def resolve(conn: db.Connection, incident_id: int, by: str, note: str, now: float) -> Incident:
    """`by` resolved the incident, saying what was done (`note`, required)."""
    name, text = _staff_name(by), _note(note, required=True)
    assert text is not None
    with _writing(conn):
        row = _open_for_staff(conn, incident_id)
        conn.execute(
            "UPDATE incidents SET handled_by = coalesce(handled_by, ?), note = ? WHERE id = ?",
            (name, text, incident_id),
        )
        _resolve_row(conn, row, now, name, text)
    return get_incident(conn, incident_id)


# --- reading --------------------------------------------------------------------------------------


def get_incident(conn: db.Connection, incident_id: int) -> Incident:
    row = conn.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    if row is None:
        raise IncidentError(f"no incident {incident_id}")
    return _incident(row)


def get(conn: db.Connection, incident_id: int) -> IncidentDetail:
    """The incident and its history, oldest first. IncidentError: no such incident."""
    incident = get_incident(conn, incident_id)
    rows = conn.execute("SELECT * FROM incident_log WHERE incident_id = ? ORDER BY id", (incident_id,)).fetchall()
    return IncidentDetail(incident, [_entry(r) for r in rows])


def list_incidents(
    conn: db.Connection,
    *,
    state: str | Sequence[str] | None = None,
    locker: str | None = None,
    cause: str | None = None,
    limit: int | None = None,
) -> list[Incident]:
    """Incidents, newest first. state: one of STATES, a list of them, "open" (new or in progress), or
    None (all); locker, cause: only those. IncidentError: an unknown state or cause."""
    states: Sequence[str] | None
    if state == "open":
        states = OPEN_STATES
    elif isinstance(state, str):
        states = (state,)
    else:
        states = state
    for s in states or ():
        if s not in STATES:
            raise IncidentError(f"unknown state {s!r} (known: open, {', '.join(STATES)})")
    if cause is not None and cause not in CAUSES:
        raise IncidentError(f"unknown cause {cause!r} (known: {', '.join(CAUSES)})")
    sql = "SELECT * FROM incidents WHERE 1 = 1"
    params: list[Any] = []
    if states:
        sql += " AND state IN (" + ", ".join("?" * len(states)) + ")"
        params.extend(states)
    if locker is not None:
        sql += " AND locker_id = ?"
        params.append(locker)
    if cause is not None:
        sql += " AND cause = ?"
        params.append(cause)
    sql += " ORDER BY opened_at DESC, id DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [_incident(r) for r in conn.execute(sql, params).fetchall()]


def changes_since(conn: db.Connection, after: int = 0, limit: int = 100) -> list[Change]:
    """State changes (opened, taken, note, resolved) with a log id above `after`, oldest first: keep
    the last one's `entry.id` and ask again from there (alerting staff of new and resolved incidents)."""
    rows = conn.execute(
        "SELECT * FROM incident_log WHERE id > ? ORDER BY id LIMIT ?", (after, max(1, int(limit)))
    ).fetchall()
    out = []
    for r in rows:
        entry = _entry(r)
        out.append(Change(entry, get_incident(conn, entry.incident_id)))
    return out
