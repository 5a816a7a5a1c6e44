"""Fleet records in the database: lockers, codes and the change log. Used by the CLI and the service.

Issuing or revoking a code appends one change to the locker's log and raises its host revision H in
the same transaction; the service notices the commit and syncs the locker.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from lockertools.service import db
from lockertools.service.sync import Change, CodeRow, SyncInput

# The kind byte of a code (docs/protocol.md, "Code rows"): bits 0-3 the kind, bits 4-5 the size
# wanted (0 any, 1 S, 2 M, 3 L), bit 6 a low door wanted.
KINDS = {"pickup": 0, "staff": 1, "return": 2, "delivery": 3}
KIND_NAMES = {v: k for k, v in KINDS.items()}
KIND_PICKUP, KIND_STAFF, KIND_RETURN, KIND_DELIVERY = 0, 1, 2, 3
KIND_MASK = 0x0F
DOOR_FREE = (KIND_STAFF, KIND_RETURN, KIND_DELIVERY)  # tag over "*", door byte 0xFF on the locker
ANY_DOOR = "*"
SIZES = {"any": 0, "S": 1, "M": 2, "L": 3}
SIZE_NAMES = {v: k for k, v in SIZES.items()}
LOW_BIT = 0x40
ITEMS = ("parcel", "document", "permit", "waste bags", "borrowed material")
CODE_DIGITS = 8
PICKUP_DAYS = 5.0  # the default pickup window
# A prepared delivery's row expires LOAD_DAYS + its pickup window after it is prepared: staff have
# LOAD_DAYS to bring it, and a locker the host cannot reach after the load still gives the resident
# the whole window. On `loaded` the host moves the expiry to the load time + the window (docs/protocol.md,
# "Deliveries, returns and staff on the host"). The fleet setting `delivery_load_days` overrides it.
LOAD_DAYS = 7.0
LOAD_DAYS_SETTING = "delivery_load_days"
MAX_WINDOW_S = 366 * 86400  # a pickup window found longer (or not positive): PICKUP_DAYS instead
U32_MAX = (1 << 32) - 1
REMINDER_S = 86400  # a reminder this long before a pickup window ends


def kind_byte(kind: int, size: str | None = None, low: bool = False) -> int:
    if size is not None and size not in SIZES:
        raise FleetError(f"size is one of {', '.join(SIZES)}")
    return kind | (SIZES[size or "any"] << 4) | (LOW_BIT if low else 0)


def describe_kind(byte: int) -> str:
    """'delivery', 'delivery M low', ... for people."""
    words = [KIND_NAMES.get(byte & KIND_MASK, str(byte & KIND_MASK))]
    if (byte >> 4) & 3:
        words.append(SIZE_NAMES[(byte >> 4) & 3])
    if byte & LOW_BIT:
        words.append("low")
    return " ".join(words)


class FleetError(Exception):
    """A request that names something unknown or breaks a rule; the text is for people."""


@dataclass(frozen=True)
class IssuedCode:
    code: str  # the plain code: shown once, handed to the hook, never stored
    code_id: int
    locker_id: str
    door: str
    kind: int
    expires: int
    recipient: str | None

    def __repr__(self) -> str:  # keep the code out of logs and tracebacks
        return f"IssuedCode(code_id={self.code_id}, locker_id={self.locker_id!r}, door={self.door!r})"


def tag_hex(key: bytes, door: str, code: str) -> str:
    from locker import codes as fw_codes  # type: ignore[import-not-found]

    tag: bytes = fw_codes.tag(key, door, code.encode())
    return tag.hex()


def add_locker(conn: sqlite3.Connection, locker_id: str, key: bytes, labels: list[str]) -> None:
    if len(key) != 32:
        raise FleetError("a locker key is 32 bytes")
    if len(set(labels)) != len(labels) or not labels:
        raise FleetError("door labels must be unique and non-empty")
    now = time.time()
    with db.transaction(conn):
        if conn.execute("SELECT 1 FROM lockers WHERE id = ?", (locker_id,)).fetchone():
            raise FleetError(f"locker {locker_id!r} is already registered")
        conn.execute(
            "INSERT INTO lockers(id, key_hex, doors_json, created_at) VALUES (?, ?, ?, ?)",
            (locker_id, key.hex(), json.dumps(labels), now),
        )
        conn.executemany("INSERT INTO doors(locker_id, label) VALUES (?, ?)", [(locker_id, label) for label in labels])


def locker_labels(conn: sqlite3.Connection, locker_id: str) -> list[str]:
    row = conn.execute("SELECT doors_json FROM lockers WHERE id = ?", (locker_id,)).fetchone()
    if row is None:
        known = ", ".join(r[0] for r in conn.execute("SELECT id FROM lockers ORDER BY id")) or "none"
        raise FleetError(f"unknown locker {locker_id!r} (registered: {known})")
    labels: list[str] = json.loads(row[0])
    return labels


def log_change(conn: sqlite3.Connection, locker_id: str, op: Literal["add", "del"], code_id: int) -> int:
    """Append one change and raise H; inside a transaction. Returns the new revision."""
    row = conn.execute("SELECT host_rev FROM lockers WHERE id = ?", (locker_id,)).fetchone()
    rev = int(row[0]) + 1
    conn.execute("INSERT INTO changes(locker_id, rev, op, code_id) VALUES (?, ?, ?, ?)", (locker_id, rev, op, code_id))
    conn.execute("UPDATE lockers SET host_rev = ? WHERE id = ?", (rev, locker_id))
    return rev


def issue_code(
    conn: sqlite3.Connection,
    locker_id: str,
    door: str,
    kind: int = 0,
    expires: int = 0,
    recipient: str | None = None,
) -> IssuedCode:
    """A new random code for one door (a door-free kind: door '*'). Stores its tag only; the caller
    shows the code once."""
    labels = locker_labels(conn, locker_id)
    if kind & KIND_MASK in DOOR_FREE:
        door = ANY_DOOR
    elif door not in labels:
        raise FleetError(f"locker {locker_id!r} has no door {door!r} (doors: {', '.join(labels)})")
    if kind & KIND_MASK not in KIND_NAMES or not 0 <= kind <= 127:
        raise FleetError(f"unknown kind {kind}")
    if kind & KIND_MASK == KIND_STAFF:
        raise FleetError("a staff PIN belongs to a member of staff and expires: issue_staff_pin")
    with db.transaction(conn):
        code, code_id = new_code(conn, locker_id, door, kind, expires, recipient)
    return IssuedCode(code, code_id, locker_id, door, kind, expires, recipient)


def _active_tags(conn: sqlite3.Connection, locker_id: str) -> set[str]:
    return {
        r[0] for r in conn.execute("SELECT tag_hex FROM codes WHERE locker_id = ? AND state = 'issued'", (locker_id,))
    }


def _locker_key(conn: sqlite3.Connection, locker_id: str) -> bytes:
    return bytes.fromhex(conn.execute("SELECT key_hex FROM lockers WHERE id = ?", (locker_id,)).fetchone()[0])


def draw_code(conn: sqlite3.Connection, locker_ids: list[str], digits: int = CODE_DIGITS) -> str:
    """Random digits that no active code of these lockers answers to, at any door or door-free (a
    typed code that two records match would be ambiguous). Inside a transaction."""
    keys = {lid: (_locker_key(conn, lid), [*locker_labels(conn, lid), ANY_DOOR]) for lid in locker_ids}
    active = {lid: _active_tags(conn, lid) for lid in locker_ids}
    while True:
        code = f"{secrets.randbelow(10**digits):0{digits}d}"
        if not any(tag_hex(key, label, code) in active[lid] for lid, (key, labels) in keys.items() for label in labels):
            return code


def new_code(
    conn: sqlite3.Connection,
    locker_id: str,
    door: str,
    kind: int,
    expires: int,
    recipient: str | None = None,
    *,
    code: str | None = None,
    code_id: int | None = None,
    item: str | None = None,
    staff_id: int | None = None,
    created_at: float | None = None,
) -> tuple[str, int]:
    """Insert one code (its tag only) and log its `add`; inside a transaction. door '*' (ANY_DOOR):
    a door-free code, its tag over '*'. Returns (plain code, code id)."""
    if code is None:
        code = draw_code(conn, [locker_id])
    if code_id is None:
        code_id = db.new_code_id(conn)
    key = _locker_key(conn, locker_id)
    conn.execute(
        "INSERT INTO codes(id, locker_id, door, kind, tag_hex, expires, recipient, created_at, item, staff_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            code_id, locker_id, door, kind, tag_hex(key, door, code), expires, recipient,
            time.time() if created_at is None else created_at, item, staff_id,
        ),
    )  # fmt: skip
    log_change(conn, locker_id, "add", code_id)
    return code, code_id


def revoke_code(conn: sqlite3.Connection, code_id: int) -> str:
    """Revoke an issued (or expired) code; returns its locker."""
    with db.transaction(conn):
        row = conn.execute("SELECT locker_id, state FROM codes WHERE id = ?", (code_id,)).fetchone()
        if row is None:
            raise FleetError(f"no code with id {code_id}")
        if row["state"] not in ("issued", "expired"):
            raise FleetError(f"code {code_id} is {row['state']}: nothing to revoke")
        conn.execute("UPDATE codes SET state = 'revoked', revoked_at = ? WHERE id = ?", (time.time(), code_id))
        conn.execute("DELETE FROM held_codes WHERE code_id = ?", (code_id,))
        log_change(conn, row["locker_id"], "del", code_id)
        return str(row["locker_id"])


def record_notification(conn: sqlite3.Connection, code_id: int, error: str | None) -> None:
    with db.transaction(conn):
        conn.execute(
            "UPDATE codes SET notify_state = ?, notify_error = ? WHERE id = ?",
            ("failed" if error else "sent", error, code_id),
        )


def expire_codes(conn: sqlite3.Connection, now: float) -> int:
    """Mark issued codes past their expiry as expired. The locker refuses them by itself, and the
    next snapshot leaves them out; a staff PIN is also deleted from the locker (one change each), so
    an expired PIN is gone from its flash, and from the guessing odds, even if its clock is wrong.
    Inside a transaction. Returns how many."""
    pins = conn.execute(
        "SELECT id, locker_id FROM codes WHERE state = 'issued' AND expires > 0 AND expires <= ? AND (kind & 15) = ?",
        (now, KIND_STAFF),
    ).fetchall()
    cur = conn.execute(
        "UPDATE codes SET state = 'expired' WHERE state = 'issued' AND expires > 0 AND expires <= ?", (now,)
    )
    for code_id, lid in pins:
        log_change(conn, lid, "del", code_id)
    if cur.rowcount:  # a delivery never loaded: its code will never be sent
        conn.execute("DELETE FROM held_codes WHERE code_id IN (SELECT id FROM codes WHERE state = 'expired')")
    return cur.rowcount


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


def new_delivery_number(conn: sqlite3.Connection) -> int:
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
    conn: sqlite3.Connection,
    locker_id: str,
    size: str | None = None,
    low: bool = False,
    days: float = PICKUP_DAYS,
    item: str = "parcel",
    contact: str | None = None,
) -> IssuedDelivery:
    """A delivery staff will load at the locker: a DELIVERY code (door-free, the size and low-door
    wish in its kind byte, its id the delivery number) that the service syncs to the locker. The
    resident's plain code is held until the resident has been told after `loaded`, then deleted.

    `days` is the resident's pickup window, counted from the load: the row expires at the loading
    allowance (load_allowance_s) + `days` from now, and `loaded` moves that to the load + `days`
    (start_pickup_window). `expires` is the prepared row's."""
    locker_labels(conn, locker_id)
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
    return IssuedDelivery(number, code, number, expires, locker_id)


def load_allowance_s(conn: sqlite3.Connection) -> int:
    """How long staff have to load a prepared delivery, in seconds: the fleet setting
    `delivery_load_days`, else LOAD_DAYS."""
    value = db.get_setting(conn, LOAD_DAYS_SETTING)
    try:
        days = LOAD_DAYS if value is None else float(value)
    except ValueError:
        days = LOAD_DAYS
    return int(days * 86400) if 0 <= days <= 366 else int(LOAD_DAYS * 86400)


def set_load_days(conn: sqlite3.Connection, days: float | None) -> None:
    """Set the loading allowance for deliveries prepared from now on (None: back to LOAD_DAYS).
    Deliveries waiting to be loaded keep their row's expiry; their pickup window after the load is
    worked out with the allowance in force then (pickup_window_s), so change it rarely."""
    if days is not None and not 0 <= days <= 366:
        raise FleetError("the loading allowance is 0-366 days")
    with db.transaction(conn):
        db.set_setting(conn, LOAD_DAYS_SETTING, None if days is None else repr(float(days)))


def pickup_window_s(conn: sqlite3.Connection, row: sqlite3.Row) -> int:
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


def start_pickup_window(conn: sqlite3.Connection, locker_id: str, row: sqlite3.Row, when: float, seq: int) -> None:
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


def cancel_delivery(conn: sqlite3.Connection, number: int) -> str:
    """Cancel a delivery not loaded yet; returns its locker."""
    row = conn.execute("SELECT kind, door, state FROM codes WHERE id = ?", (number,)).fetchone()
    if row is None or row["kind"] & KIND_MASK != KIND_DELIVERY:
        raise FleetError(f"no delivery {number}")
    if row["door"] != ANY_DOOR and row["state"] == "issued":
        raise FleetError(
            f"delivery {number} is loaded at door {row['door']}: revoke code {number} and take the item back"
        )
    return revoke_code(conn, number)


def delivery_table(conn: sqlite3.Connection, locker_id: str | None = None) -> list[dict[str, Any]]:
    """Deliveries (and size-only loads), newest last, with a state for people."""
    sql = (
        "SELECT c.*, d.full AS door_full, h.code_id IS NOT NULL AS held FROM codes c"
        " LEFT JOIN doors d ON d.locker_id = c.locker_id AND d.label = c.door"
        " LEFT JOIN held_codes h ON h.code_id = c.id"
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
    conn: sqlite3.Connection,
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


STAFF_DIGITS = 10  # a PIN is not consumed by use: more digits than a pickup code (docs/security.md)
# A staff PIN is valid at one locker only and expires (docs/security.md, "Staff PINs"): by default at
# the end of the working day and at most DAY_PIN_MAX_S from now; a long-lived one (technicians) only
# when asked for, and at most LONG_PIN_MAX_DAYS.
WORKDAY_END = (18, 0)  # local time, hours and minutes
DAY_PIN_MAX_S = 12 * 3600
WORKDAY_LAST_S = 3600  # a PIN asked for later than this before the day's end: DAY_PIN_MAX_S
LONG_PIN_MAX_DAYS = 90


@dataclass(frozen=True)
class StaffPin:
    pin: str  # shown once, never stored
    code_id: int  # what the locker reports as `staff`
    staff_id: int
    name: str
    locker_id: str
    expires: int

    def __repr__(self) -> str:  # keep the PIN out of logs and tracebacks
        return f"StaffPin(code_id={self.code_id}, staff_id={self.staff_id}, locker_id={self.locker_id!r})"


def workday_end(now: float, end: tuple[int, int] = WORKDAY_END) -> int:
    """When a PIN issued at `now` stops working by default: today's `end` (local time), no later than
    DAY_PIN_MAX_S from now; within the working day's last hour or after it (someone working late),
    DAY_PIN_MAX_S from now, so a PIN never lasts only minutes."""
    local = datetime.fromtimestamp(now).astimezone()
    cut = local.replace(hour=end[0], minute=end[1], second=0, microsecond=0).timestamp()
    if cut - now < WORKDAY_LAST_S:
        return int(now) + DAY_PIN_MAX_S
    return min(int(cut), int(now) + DAY_PIN_MAX_S)


def pin_expiry(
    now: float, *, hours: float | None = None, days: float | None = None, until: tuple[int, int] | None = None
) -> tuple[int, bool]:
    """(expiry, long-lived) of a PIN issued at `now`: `hours` (at most 12), `days` (a long-lived PIN,
    at most LONG_PIN_MAX_DAYS), `until` a local time of day within 12 hours, else the working day's end."""
    if sum(x is not None for x in (hours, days, until)) > 1:
        raise FleetError("give one of: hours, days, a time of day")
    if days is not None:
        if not 0 < days <= LONG_PIN_MAX_DAYS:
            raise FleetError(f"a long-lived staff PIN lasts more than 0 and at most {LONG_PIN_MAX_DAYS} days")
        return int(now + days * 86400), True
    if hours is not None:
        if not 0 < hours <= DAY_PIN_MAX_S / 3600:
            raise FleetError(f"a day's staff PIN lasts more than 0 and at most {DAY_PIN_MAX_S // 3600} hours")
        return int(now + hours * 3600), False
    if until is not None:
        if not (0 <= until[0] <= 23 and 0 <= until[1] <= 59):
            raise FleetError("a time of day is HH:MM, 00:00-23:59")
        local = datetime.fromtimestamp(now).astimezone()
        cut = local.replace(hour=until[0], minute=until[1], second=0, microsecond=0)
        if cut <= local:
            cut += timedelta(days=1)
        if cut.timestamp() > now + DAY_PIN_MAX_S:
            raise FleetError(
                f"{until[0]:02d}:{until[1]:02d} is more than {DAY_PIN_MAX_S // 3600} hours away:"
                " a longer PIN is a long-lived one (days)"
            )
        return int(cut.timestamp()), False
    return workday_end(now), False


def find_staff(conn: sqlite3.Connection, who: int | str) -> dict[str, Any]:
    """A member of staff (not removed) by id, or by name when the name is unique."""
    if isinstance(who, int) or who.strip().isdigit():
        rows = conn.execute("SELECT * FROM staff WHERE id = ? AND removed_at IS NULL", (int(who),)).fetchall()
        if rows or isinstance(who, int):
            if not rows:
                raise FleetError(f"no staff member {who}")
            return dict(rows[0])
    rows = conn.execute("SELECT * FROM staff WHERE name = ? AND removed_at IS NULL", (who.strip(),)).fetchall()
    if not rows:
        raise FleetError(f"no staff member {who!r} (lockerctl staff list; add one with lockerctl staff add)")
    if len(rows) > 1:
        ids = ", ".join(str(r["id"]) for r in rows)
        raise FleetError(f"{len(rows)} members are called {who!r}: give the id ({ids})")
    return dict(rows[0])


def add_staff(
    conn: sqlite3.Connection, name: str, lockers: Sequence[str] = (), *, now: float | None = None
) -> tuple[int, list[StaffPin]]:
    """A member of staff (a person on the host: a name and an id), with a PIN for each locker in
    `lockers` valid until the end of the working day (issue_staff_pin). Returns (staff id, PINs)."""
    name = name.strip()
    if not 1 <= len(name) <= 64:
        raise FleetError("a staff name is 1-64 characters")
    for lid in lockers:
        locker_labels(conn, lid)
    with db.transaction(conn):
        staff_id = db.new_code_id(conn)  # random, like code ids
        conn.execute("INSERT INTO staff(id, name, created_at) VALUES (?, ?, ?)", (staff_id, name, time.time()))
    return staff_id, [issue_staff_pin(conn, staff_id, lid, now=now) for lid in lockers]


def issue_staff_pin(
    conn: sqlite3.Connection,
    staff: int | str,
    locker_id: str,
    expires: int | None = None,
    *,
    long_lived: bool = False,
    now: float | None = None,
) -> StaffPin:
    """A fresh PIN for one member of staff at one locker: what a staff desk hands out each morning.
    `expires` None: the end of the working day (workday_end); later than DAY_PIN_MAX_S from now only
    with long_lived (technicians), and never later than LONG_PIN_MAX_DAYS. The member's earlier PIN
    at that locker is revoked in the same transaction (one live PIN per member and locker).
    The PIN is returned once and never stored."""
    now = time.time() if now is None else now
    member = find_staff(conn, staff)
    locker_labels(conn, locker_id)
    if expires is None:
        expires = workday_end(now)
    if expires <= now:
        raise FleetError("a staff PIN's expiry is in the future")
    if expires > now + LONG_PIN_MAX_DAYS * 86400:
        raise FleetError(f"a staff PIN lasts at most {LONG_PIN_MAX_DAYS} days")
    if expires > now + DAY_PIN_MAX_S and not long_lived:
        raise FleetError(f"a PIN for more than {DAY_PIN_MAX_S // 3600} hours is a long-lived one: ask for it as such")
    with db.transaction(conn):
        for (old,) in conn.execute(
            "SELECT id FROM codes WHERE staff_id = ? AND locker_id = ? AND state = 'issued' AND (kind & 15) = ?",
            (member["id"], locker_id, KIND_STAFF),
        ).fetchall():
            conn.execute("UPDATE codes SET state = 'revoked', revoked_at = ? WHERE id = ?", (now, old))
            log_change(conn, locker_id, "del", old)
        pin, code_id = new_code(
            conn,
            locker_id,
            ANY_DOOR,
            KIND_STAFF,
            expires,
            code=draw_code(conn, [locker_id], STAFF_DIGITS),
            staff_id=member["id"],
            created_at=now,
        )
    return StaffPin(pin, code_id, int(member["id"]), str(member["name"]), locker_id, expires)


def remove_staff(conn: sqlite3.Connection, staff_id: int) -> int:
    """Remove a member and revoke their PINs; returns how many lockers drop one."""
    with db.transaction(conn):
        row = conn.execute("SELECT removed_at FROM staff WHERE id = ?", (staff_id,)).fetchone()
        if row is None or row[0] is not None:
            raise FleetError(f"no staff member {staff_id}")
        ids = conn.execute(
            "SELECT id, locker_id FROM codes WHERE staff_id = ? AND state IN ('issued', 'expired')", (staff_id,)
        ).fetchall()
        now = time.time()
        for code_id, lid in ids:
            conn.execute("UPDATE codes SET state = 'revoked', revoked_at = ? WHERE id = ?", (now, code_id))
            log_change(conn, lid, "del", code_id)
        conn.execute("UPDATE staff SET removed_at = ? WHERE id = ?", (now, staff_id))
    return len({lid for _, lid in ids})


def staff_table(
    conn: sqlite3.Connection, include_removed: bool = False, now: float | None = None
) -> list[dict[str, Any]]:
    """Members of staff, each with `pins`: their live PINs ({code_id, locker_id, expires}), by locker,
    and `pins_withdrawn_at`: when the upgrade to per-locker expiring PINs withdrew an old one."""
    now = time.time() if now is None else now
    sql = "SELECT id, name, created_at, removed_at, pins_withdrawn_at FROM staff"
    if not include_removed:
        sql += " WHERE removed_at IS NULL"
    out = []
    for r in conn.execute(sql + " ORDER BY name, id").fetchall():
        member = dict(r)
        member["pins"] = [
            dict(p)
            for p in conn.execute(
                "SELECT id AS code_id, locker_id, expires FROM codes WHERE staff_id = ? AND state = 'issued'"
                " AND (kind & 15) = ? AND expires > ? ORDER BY locker_id",
                (r["id"], KIND_STAFF, now),
            )
        ]
        out.append(member)
    return out


def staff_name(conn: sqlite3.Connection, locker_id: str, code_id: Any) -> str | None:
    """The name behind the `staff` id a locker reported (the id of that member's staff code)."""
    if not isinstance(code_id, int) or isinstance(code_id, bool) or not 0 < code_id < 1 << 32:
        return None
    row = conn.execute(
        "SELECT s.name FROM codes c JOIN staff s ON s.id = c.staff_id WHERE c.id = ? AND c.locker_id = ?",
        (code_id, locker_id),
    ).fetchone()
    return None if row is None else str(row[0])


def take_back_table(conn: sqlite3.Connection, locker_id: str | None = None) -> list[dict[str, Any]]:
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
    conn: sqlite3.Connection,
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


def queue_reminders(conn: sqlite3.Connection, now: float) -> int:
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
    return len(due)


# --- requests: one-off signed commands people ask for ------------------------------------------------

REQUEST_OPS = ("door.open", "door.service")


def queue_request(conn: sqlite3.Connection, locker_id: str, op: str, args: dict[str, Any], by: str) -> tuple[int, str]:
    """Queue a signed command for the service to send (door.open, door.service), logged with who
    asked. Returns (request id, tx)."""
    labels = locker_labels(conn, locker_id)
    if op not in REQUEST_OPS:
        raise FleetError(f"unknown request {op!r}")
    if args.get("door") not in labels:
        raise FleetError(f"locker {locker_id!r} has no door {args.get('door')!r} (doors: {', '.join(labels)})")
    if not 1 <= len(by) <= 32:
        raise FleetError("--by is who asked: 1-32 characters")
    if len(str(args.get("r", ""))) > 64:
        raise FleetError("a reason is at most 64 characters")
    tx = secrets.token_hex(6)
    with db.transaction(conn):
        cur = conn.execute(
            "INSERT INTO requests(locker_id, op, args_json, by, tx, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (locker_id, op, json.dumps(args | {"by": by}), by, tx, time.time()),
        )
    return int(cur.lastrowid or 0), tx


def request_table(conn: sqlite3.Connection, locker_id: str | None = None, last: int = 50) -> list[dict[str, Any]]:
    sql = "SELECT * FROM requests"
    params: list[Any] = []
    if locker_id:
        sql += " WHERE locker_id = ?"
        params.append(locker_id)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*params, last]).fetchall()
    return [dict(r) for r in reversed(rows)]


def prune_log(conn: sqlite3.Connection, locker_id: str, keep: int) -> None:
    """Keep the last `keep` changes of a locker; a locker further behind gets a snapshot."""
    with db.transaction(conn):
        host_rev = int(conn.execute("SELECT host_rev FROM lockers WHERE id = ?", (locker_id,)).fetchone()[0])
        floor = max(0, host_rev - keep)
        conn.execute("DELETE FROM changes WHERE locker_id = ? AND rev <= ?", (locker_id, floor))
        conn.execute("UPDATE lockers SET log_floor = max(log_floor, ?) WHERE id = ?", (floor, locker_id))


def sync_input(conn: sqlite3.Connection, locker_id: str, now: float | None = None) -> SyncInput | None:
    """What the planner needs for one locker, or None when the locker never reported a revision."""
    row = conn.execute(
        "SELECT host_rev, log_floor, locker_rev, snap FROM lockers WHERE id = ?", (locker_id,)
    ).fetchone()
    if row is None or row["locker_rev"] is None:
        return None
    now = time.time() if now is None else now
    locker_rev = int(row["locker_rev"])
    # A delivery's row goes again on `loaded` (its new expiry, start_pickup_window): any `add` of a
    # delivery the locker reported at a door may repeat one the locker already has.
    changes = [
        Change(int(r[0]), r[1], int(r[2]), r[1] == "add" and bool(r[3]))
        for r in conn.execute(
            "SELECT g.rev, g.op, g.code_id, (c.kind & 15) = 3 AND (c.loaded_at IS NOT NULL OR c.door_seq IS NOT NULL)"
            " FROM changes g JOIN codes c ON c.id = g.code_id WHERE g.locker_id = ? AND g.rev > ? ORDER BY g.rev",
            (locker_id, min(locker_rev, int(row["host_rev"]))),
        )
    ]
    ids = {c.code_id for c in changes if c.op == "add"}
    codes = {}
    active = []
    for r in conn.execute(
        "SELECT id, tag_hex, door, kind, expires, state FROM codes WHERE locker_id = ?"
        " AND (state = 'issued' OR id IN (SELECT code_id FROM changes WHERE locker_id = ? AND rev > ?))",
        (locker_id, locker_id, locker_rev),
    ):
        # A door-free code travels as "*" even once the host knows its door (a loaded delivery, a used
        # return): the locker keeps that in its own journal, and its rows must stay door-free.
        door = ANY_DOOR if int(r["kind"]) & KIND_MASK in DOOR_FREE else r["door"]
        code = CodeRow(r["tag_hex"], door, int(r["kind"]), int(r["expires"]), int(r["id"]))
        if code.id in ids:
            codes[code.id] = code
        if r["state"] == "issued" and not (code.exp and code.exp <= now):
            active.append(code)
    return SyncInput(
        host_rev=int(row["host_rev"]),
        log_floor=int(row["log_floor"]),
        changes=changes,
        codes=codes,
        active=active,
        locker_rev=locker_rev,
        snap=bool(row["snap"]),
    )


def code_table(
    conn: sqlite3.Connection, locker_id: str | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    sql = "SELECT id, locker_id, door, kind, state, expires, recipient, notify_state, created_at, used_at FROM codes"
    where, params = [], []
    if locker_id:
        where.append("locker_id = ?")
        params.append(locker_id)
    if state:
        where.append("state = ?")
        params.append(state)
    if where:
        sql += " WHERE " + " AND ".join(where)
    return [dict(r) for r in conn.execute(sql + " ORDER BY created_at", params)]


# --- connections that flap (the service raises them; `lockerctl lockers` shows them) ----------------


def flap_begin(conn: sqlite3.Connection, locker_id: str, started_at: float, now: float, changes: int) -> None:
    """Record that `locker_id`'s connection went online/offline `changes` times since `started_at`."""
    conn.execute(
        "INSERT INTO connection_flaps(locker_id, started_at, last_at, changes) VALUES (?, ?, ?, ?)",
        (locker_id, started_at, now, changes),
    )


def flap_seen(conn: sqlite3.Connection, locker_id: str, now: float) -> None:
    """One more change of a locker already flapping."""
    conn.execute(
        "UPDATE connection_flaps SET last_at = ?, changes = changes + 1 WHERE locker_id = ? AND ended_at IS NULL",
        (now, locker_id),
    )


def flaps_end(conn: sqlite3.Connection, quiet_since: float, now: float) -> list[str]:
    """End the flaps with no change since `quiet_since`; returns their lockers."""
    rows = conn.execute(
        "UPDATE connection_flaps SET ended_at = ? WHERE ended_at IS NULL AND last_at < ? RETURNING locker_id",
        (now, quiet_since),
    ).fetchall()
    return sorted({str(r[0]) for r in rows})


def flapping(conn: sqlite3.Connection) -> dict[str, sqlite3.Row]:
    """The lockers flapping now, with their open record (started_at, last_at, changes)."""
    rows = conn.execute("SELECT * FROM connection_flaps WHERE ended_at IS NULL ORDER BY id").fetchall()
    return {str(r["locker_id"]): r for r in rows}
