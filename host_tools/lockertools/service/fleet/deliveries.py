"""Deliveries, returns and take-backs, and the notifications queued for the hook."""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from lockertools.api import outbox
from lockertools.service import db
from lockertools.service.fleet.codes import IssuedCode, new_code, revoke_code
from lockertools.service.fleet.common import (
    ANY_DOOR,
    ITEMS,
    KIND_DELIVERY,
    KIND_MASK,
    KIND_RETURN,
    LANGUAGES,
    LOAD_DAYS,
    LOAD_DAYS_SETTING,
    MAX_WINDOW_S,
    PICKUP_DAYS,
    REMINDER_S,
    U32_MAX,
    FleetError,
    kind_byte,
)
from lockertools.service.fleet.lockers import locker_labels, log_change
from lockertools.service.fleet.staff import staff_name

# --- deliveries, returns, staff ---------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedDelivery:
    number: int  # what staff type at the locker; also the code's id
    code: str  # the resident's plain code: held (held_codes) until the resident is notified
    code_id: int
    expires: int
    locker_id: str

    def __repr__(self) -> str:
        return f"IssuedDelivery(number={self.number}, locker_id={self.locker_id!r})"


_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>.]+")
_PHONE_SEPARATORS = re.compile(r"[\s./()-]")
_PHONE = re.compile(r"\+?[0-9]{8,15}")


@dataclass(frozen=True)
class Resident:
    """Whom a delivery is for and how to reach them: all optional but the language. `checked()`
    normalizes and validates (FleetError naming the field)."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    language: str = LANGUAGES[0]
    case_ref: str | None = None  # the town's case number

    def checked(self) -> Resident:
        def text(value: str | None, field: str, limit: int) -> str | None:
            value = (value or "").strip() or None
            if value is not None and (len(value) > limit or any(ord(ch) < 32 for ch in value)):
                raise FleetError(f"{field}: at most {limit} characters, on one line")
            return value

        name = text(self.name, "name", 200)
        case_ref = text(self.case_ref, "case number", 64)
        email = text(self.email, "e-mail", 254)
        if email is not None and not _EMAIL.fullmatch(email):
            raise FleetError(f"e-mail: {email!r} is not an e-mail address")
        phone = text(self.phone, "phone", 32)
        if phone is not None:
            phone = _PHONE_SEPARATORS.sub("", phone)
            if not _PHONE.fullmatch(phone):
                raise FleetError("phone: 8 to 15 digits, optionally starting with +")
        if self.language not in LANGUAGES:
            raise FleetError(f"language is one of: {', '.join(LANGUAGES)}")
        return Resident(name, email, phone, self.language, case_ref)


def new_delivery_number(conn: db.Connection) -> int:
    """A random 6-digit delivery number, unused by any code the host holds (it is the code's id)."""
    for _ in range(10000):
        number = 100000 + secrets.randbelow(900000)
        if conn.execute("SELECT 1 FROM codes WHERE id = ?", (number,)).fetchone() is None:
            return number
    raise FleetError("no free delivery number")


def _window(days: float) -> int:
    if not days > 0:
        raise FleetError("the pickup window is a positive number of days")
    return int(time.time() + days * 86400)


def prepare_delivery(
    conn: db.Connection,
    locker_id: str,
    size: str | None = None,
    low: bool = False,
    days: float = PICKUP_DAYS,
    item: str = "parcel",
    contact: str | None = None,
    resident: Resident | None = None,
    source: str = "cli",
    created_by: str | None = None,
) -> IssuedDelivery:
    """A delivery staff will load at the locker: a DELIVERY code (door-free, the size and low-door
    wish in its kind byte, its id the delivery number) that the service syncs to the locker. The
    resident's plain code is held until the resident has been told after `loaded`, then deleted.

    `days` is the resident's pickup window, counted from the load: the row expires at the loading
    allowance (load_allowance_s) + `days` from now, and `loaded` moves that to the load + `days`
    (start_pickup_window). `expires` is the prepared row's.

    `resident` (name, e-mail, phone, language, the town's case number) goes to delivery_details,
    with `source` (cli, desk, api) and `created_by` (a staff account or an API token's name)."""
    locker_labels(conn, locker_id)
    resident = (resident or Resident()).checked()
    if item not in ITEMS:
        raise FleetError(f"item is one of: {', '.join(ITEMS)}")
    kind = kind_byte(KIND_DELIVERY, size, low)
    _window(days)
    window_s = int(days * 86400)
    if window_s > MAX_WINDOW_S:
        raise FleetError(f"the pickup window is at most {MAX_WINDOW_S // 86400} days")
    with db.transaction(conn):
        now = time.time()
        expires = min(int(now) + load_allowance_s(conn) + window_s, U32_MAX)
        number = new_delivery_number(conn)
        code, _ = new_code(conn, locker_id, ANY_DOOR, kind, expires, contact, code_id=number, item=item, created_at=now)
        conn.execute("INSERT INTO held_codes(code_id, code) VALUES (?, ?)", (number, code))
        conn.execute(
            "INSERT INTO delivery_details(code_id, case_ref, resident_name, email, phone, language, source,"
            " created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                number,
                resident.case_ref,
                resident.name,
                resident.email,
                resident.phone,
                resident.language,
                source,
                created_by,
            ),
        )
    return IssuedDelivery(number, code, number, expires, locker_id)


def delivery_resident(conn: db.Connection, number: int) -> Resident | None:
    """The resident of a delivery (None: a delivery prepared before residents were recorded, or no
    such delivery); contact fields are None once purged."""
    row = conn.execute(
        "SELECT resident_name, email, phone, language, case_ref FROM delivery_details WHERE code_id = ?", (number,)
    ).fetchone()
    if row is None:
        return None
    return Resident(row["resident_name"], row["email"], row["phone"], row["language"], row["case_ref"])


def load_allowance_s(conn: db.Connection) -> int:
    """How long staff have to load a prepared delivery, in seconds: the fleet setting
    `delivery_load_days`, else LOAD_DAYS."""
    value = db.get_setting(conn, LOAD_DAYS_SETTING)
    try:
        days = LOAD_DAYS if value is None else float(value)
    except ValueError:
        days = LOAD_DAYS
    return int(days * 86400) if 0 <= days <= 366 else int(LOAD_DAYS * 86400)


def set_load_days(conn: db.Connection, days: float | None) -> None:
    """Set the loading allowance for deliveries prepared from now on (None: back to LOAD_DAYS).
    Deliveries waiting to be loaded keep their row's expiry; their pickup window after the load is
    worked out with the allowance in force then (pickup_window_s), so change it rarely."""
    if days is not None and not 0 <= days <= 366:
        raise FleetError("the loading allowance is 0-366 days")
    with db.transaction(conn):
        db.set_setting(conn, LOAD_DAYS_SETTING, None if days is None else repr(float(days)))


def pickup_window_s(conn: db.Connection, row: db.Row) -> int:
    """A delivery's pickup window in seconds, from its row: before a load its expiry is
    int(created_at) + allowance + window (prepare_delivery); after one, start + window, where start
    is int(loaded_at), or int(created_at) when the locker's clock said earlier (start_pickup_window).
    A result that is not a sane window (a row prepared before the allowance existed, an allowance
    changed meanwhile, odd data) gives PICKUP_DAYS."""
    expires = int(row["expires"])
    if row["loaded_at"] is not None:
        window = expires - max(int(row["loaded_at"]), int(row["created_at"]))
    else:
        window = expires - int(row["created_at"]) - load_allowance_s(conn)
    return window if 0 < window <= MAX_WINDOW_S else int(PICKUP_DAYS * 86400)


def start_pickup_window(conn: db.Connection, locker_id: str, row: db.Row, when: float, seq: int) -> None:
    """A delivery was loaded (event `seq` at `when`; `row` as it was before the event's other
    effects; inside the caller's transaction): its code expires at `when` + its pickup window, `when`
    no earlier than the delivery was prepared (a locker clock behind the host's must not cut the
    window short). The expiry follows the earliest `loaded` event by seq, whatever the order they
    arrive in.

    Each such event logs exactly one change, so the log does not depend on that order either: an
    `add` while the code is issued (its row again: same tag, id and door "*", the new expiry; the
    locker displaces the record by id and keeps its journal, so the code stays bound to its door),
    else a `del` (picked up, taken back or revoked: the locker has it no longer, or must not).
    A delivery the host already expired (the event came after its row's expiry: the held code is
    gone, nobody can be told) is left as it is: staff take the item back."""
    if row["state"] == "expired":
        return
    if row["door_seq"] is None or int(row["door_seq"]) > seq:  # whatever the state: order-free
        start = max(int(when), int(row["created_at"]))
        expires = min(start + pickup_window_s(conn, row), U32_MAX)
        conn.execute("UPDATE codes SET expires = ? WHERE id = ?", (expires, row["id"]))
    log_change(conn, locker_id, "add" if row["state"] == "issued" else "del", int(row["id"]))


def cancel_delivery(conn: db.Connection, number: int) -> str:
    """Cancel a delivery not loaded yet; returns its locker."""
    row = conn.execute("SELECT kind, door, state FROM codes WHERE id = ?", (number,)).fetchone()
    if row is None or row["kind"] & KIND_MASK != KIND_DELIVERY:
        raise FleetError(f"no delivery {number}")
    if row["door"] != ANY_DOOR and row["state"] == "issued":
        raise FleetError(
            f"delivery {number} is loaded at door {row['door']}: revoke code {number} and take the item back"
        )
    return revoke_code(conn, number)


def delivery_table(conn: db.Connection, locker_id: str | None = None) -> list[dict[str, Any]]:
    """Deliveries (and size-only loads), newest last, with a state for people."""
    sql = (
        "SELECT c.*, d.full AS door_full, h.code_id IS NOT NULL AS held, x.case_ref, x.resident_name,"
        " x.email, x.phone, x.language, x.source FROM codes c"
        " LEFT JOIN doors d ON d.locker_id = c.locker_id AND d.label = c.door"
        " LEFT JOIN held_codes h ON h.code_id = c.id"
        " LEFT JOIN delivery_details x ON x.code_id = c.id"
        " WHERE ((c.kind & 15) = 3 OR c.loaded_at IS NOT NULL)"
    )
    params: list[Any] = []
    if locker_id:
        sql += " AND c.locker_id = ?"
        params.append(locker_id)
    out = []
    for r in conn.execute(sql + " ORDER BY c.created_at", params):
        row = dict(r)
        row["status"] = delivery_status(row)
        out.append(row)
    return out


def delivery_status(row: dict[str, Any]) -> str:
    state, door = row["state"], row["door"]
    if state == "issued":
        return "to load" if door == ANY_DOOR else f"in door {door}"
    if state == "used":
        return "picked up"
    if state == "expired":
        return "expired, not loaded" if door == ANY_DOOR else f"TAKE BACK from {door}"
    if state == "taken_back":
        return "taken back"
    return "cancelled" if state == "revoked" else str(state)


def issue_return_code(
    conn: db.Connection,
    locker_id: str,
    size: str | None = None,
    low: bool = False,
    days: float = PICKUP_DAYS,
    item: str = "borrowed material",
    recipient: str | None = None,
) -> IssuedCode:
    """A resident's return code: door-free; the locker gives an empty door of the size wanted."""
    locker_labels(conn, locker_id)
    if item not in ITEMS:
        raise FleetError(f"item is one of: {', '.join(ITEMS)}")
    kind = kind_byte(KIND_RETURN, size, low)
    expires = _window(days)
    with db.transaction(conn):
        code, code_id = new_code(conn, locker_id, ANY_DOOR, kind, expires, recipient, item=item)
    return IssuedCode(code, code_id, locker_id, ANY_DOOR, kind, expires, recipient)


def take_back_table(conn: db.Connection, locker_id: str | None = None) -> list[dict[str, Any]]:
    """Items whose pickup window ended and that are still in their door: staff take them back."""
    sql = (
        "SELECT c.id, c.locker_id, c.door, c.kind, c.expires, c.item, c.recipient FROM codes c"
        " LEFT JOIN doors d ON d.locker_id = c.locker_id AND d.label = c.door"
        " WHERE c.state = 'expired' AND c.door != '*' AND (c.kind & 15) IN (0, 3)"
        " AND coalesce(d.full, 1) != 0"
    )
    params: list[Any] = []
    if locker_id:
        sql += " AND c.locker_id = ?"
        params.append(locker_id)
    return [dict(r) for r in conn.execute(sql + " ORDER BY c.locker_id, c.door", params)]


# --- notifications ---------------------------------------------------------------------------------

NOTIFY_KINDS = ("code", "loaded", "reminder", "returned", "taken_back")


def enqueue_notification(
    conn: db.Connection,
    locker_id: str,
    code_id: int | None,
    kind: str,
    door: str | None,
    detail: dict[str, Any] | None = None,
    now: float | None = None,
) -> None:
    """Queue one notification for the service to hand to the hook (inside a transaction). `detail`
    never holds a code: a `loaded` notification takes its code from held_codes when it goes."""
    assert kind in NOTIFY_KINDS
    now = time.time() if now is None else now
    conn.execute(
        "INSERT INTO notifications(locker_id, code_id, kind, door, detail_json, next_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (locker_id, code_id, kind, door, json.dumps(detail or {}), now, now),
    )
    if code_id is not None and kind == "loaded":
        conn.execute("UPDATE codes SET notify_state = 'pending' WHERE id = ?", (code_id,))


def queue_reminders(conn: db.Connection, now: float) -> int:
    """Once per code, a day before its pickup window ends: remind the resident (inside a
    transaction). Only for codes active for at least a day (a door-bound pickup or a loaded
    delivery); returns how many were queued."""
    due = conn.execute(
        "SELECT id, locker_id, door FROM codes WHERE state = 'issued' AND (kind & 15) IN (0, 3)"
        " AND door != '*' AND expires > ? AND expires - ? <= ? AND reminded_at IS NULL"
        " AND coalesce(loaded_at, created_at) <= ?",
        (now, REMINDER_S, now, now - REMINDER_S),
    ).fetchall()
    for code_id, lid, door in due:
        conn.execute("UPDATE codes SET reminded_at = ? WHERE id = ?", (now, code_id))
        enqueue_notification(conn, lid, code_id, "reminder", door, now=now)
        outbox.queue_delivery_event(conn, "reminder_sent", code_id, now, door)
    return len(due)


# --- the staff desk's lists: deliveries by state, one delivery's history -----------------------------

# What the desk's filters mean, as conditions on codes c (and doors d); the deliveries are
# DELIVERY codes and size-only loads (pickup codes with a load), as in delivery_table.
_DELIVERIES = "((c.kind & 15) = 3 OR c.loaded_at IS NOT NULL)"
DELIVERY_FILTERS: dict[str, str] = {
    "all": "1 = 1",
    "to_load": "c.state = 'issued' AND c.door = '*'",
    "loaded": "c.state = 'issued' AND c.door != '*'",
    "picked_up": "c.state = 'used'",
    # the take-back list: a window that ended; those still in a door say which (delivery_status)
    "expired": "c.state = 'expired'",
    "taken_back": "c.state = 'taken_back'",
    "cancelled": "c.state = 'revoked'",
}


def delivery_page(
    conn: db.Connection,
    state: str = "all",
    *,
    locker_id: str | None = None,
    search: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """One page of deliveries (newest first) in DELIVERY_FILTERS[state], at `locker_id`, matching
    `search` (a delivery number, the town's case number, or part of the resident's name), and how
    many match in all. Filtered, counted and paged in SQL: a list of 10,000 costs one page's rows."""
    if state not in DELIVERY_FILTERS:
        raise FleetError(f"a delivery filter is one of: {', '.join(DELIVERY_FILTERS)}")
    where = [_DELIVERIES, DELIVERY_FILTERS[state]]
    params: list[Any] = []
    if locker_id:
        where.append("c.locker_id = ?")
        params.append(locker_id)
    search = (search or "").strip()
    if search:
        pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        match = "x.case_ref = ? OR lower(x.resident_name) LIKE ? ESCAPE '\\'"
        match_params: list[Any] = [search, pattern]
        if search.isdigit() and len(search) <= 10:
            match += " OR c.id = ?"
            match_params.append(int(search))
        where.append(f"({match})")
        params.extend(match_params)
    # the resident's table only where the search needs it; the page's ids first, then their columns
    # (sorting every matching row with all its columns cost three times as much on 10,000 deliveries)
    joins = " FROM codes c" + (" LEFT JOIN delivery_details x ON x.code_id = c.id" if search else "")
    condition = " WHERE " + " AND ".join(where)
    total = int(conn.execute("SELECT count(*)" + joins + condition, params).fetchone()[0])
    order = " ORDER BY c.created_at DESC, c.id DESC"
    rows = conn.execute(
        "SELECT c.id, c.locker_id, c.door, c.kind, c.state, c.item, c.expires, c.created_at, c.loaded_at,"
        " c.used_at, c.revoked_at, c.taken_back_at, x.case_ref, x.resident_name, x.language, x.source"
        " FROM codes c LEFT JOIN delivery_details x ON x.code_id = c.id"
        f" WHERE c.id IN (SELECT c.id{joins}{condition}{order} LIMIT ? OFFSET ?){order}",
        [*params, max(1, limit), max(0, offset)],
    ).fetchall()
    out = []
    for r in rows:
        row = dict(zip(r.keys(), r, strict=True))
        row["status"] = delivery_status(row)
        out.append(row)
    return out, total


_PHASES = {
    "prepared": 0, "cancelled": 1, "loaded": 2, "reminder": 3, "notification": 3,
    "picked_up": 4, "expired": 4, "taken_back": 5,
}  # fmt: skip


def delivery_history(conn: db.Connection, number: int) -> dict[str, Any] | None:
    """A delivery (its codes and delivery_details columns, `status`, `loaded_by_name`) and
    `history`: what happened to it, oldest first, as {at, what, door, by, detail} with `what` one of
    prepared, loaded, reminder, notification, picked_up, expired, taken_back, cancelled. None: no
    such delivery. Never the resident's code."""
    row = conn.execute(
        "SELECT c.id, c.locker_id, c.door, c.kind, c.state, c.item, c.expires, c.created_at, c.loaded_at,"
        " c.loaded_by, c.used_at, c.revoked_at, c.taken_back_at, c.reminded_at, c.recipient, c.notify_state,"
        " x.case_ref, x.resident_name, x.email, x.phone, x.language, x.source, x.created_by, x.contact_purged_at"
        " FROM codes c LEFT JOIN delivery_details x ON x.code_id = c.id"
        " WHERE c.id = ? AND " + _DELIVERIES,
        (number,),
    ).fetchone()
    if row is None:
        return None
    delivery = dict(zip(row.keys(), row, strict=True))
    delivery["status"] = delivery_status(delivery)
    loaded_by = staff_name(conn, delivery["locker_id"], delivery["loaded_by"])
    delivery["loaded_by_name"] = loaded_by
    door = None if delivery["door"] == ANY_DOOR else delivery["door"]

    def step(at: float | None, what: str, by: str | None = None, detail: str | None = None) -> dict[str, Any]:
        return {"at": at, "what": what, "door": door, "by": by, "detail": detail}

    history = [step(delivery["created_at"], "prepared", delivery["created_by"], delivery["source"])]
    if delivery["loaded_at"] is not None:
        history.append(step(delivery["loaded_at"], "loaded", loaded_by))
    if delivery["reminded_at"] is not None:
        history.append(step(delivery["reminded_at"], "reminder"))
    for n in conn.execute(
        "SELECT kind, state, created_at, sent_at, error FROM notifications WHERE code_id = ? ORDER BY id", (number,)
    ):
        detail = f"{n['kind']}: {n['state']}" + (f" ({n['error']})" if n["error"] else "")
        history.append(step(n["sent_at"] or n["created_at"], "notification", detail=detail))
    if delivery["used_at"] is not None:
        history.append(step(delivery["used_at"], "picked_up"))
    if delivery["state"] in ("expired", "taken_back"):
        history.append(step(float(delivery["expires"]), "expired"))
    if delivery["taken_back_at"] is not None:
        history.append(step(delivery["taken_back_at"], "taken_back"))
    if delivery["revoked_at"] is not None:
        history.append(step(delivery["revoked_at"], "cancelled"))
    # in the order things happen to a delivery, by time within each phase: a locker's clock may be
    # behind the host's, and a load must not show before the delivery was prepared
    history.sort(key=lambda s: (_PHASES[s["what"]], s["at"] or 0.0))
    delivery["history"] = history
    return delivery
