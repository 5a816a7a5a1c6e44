"""Staff members and their PINs (one per member and locker, expiring)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lockertools.service import db
from lockertools.service.fleet.codes import draw_code, new_code
from lockertools.service.fleet.common import ANY_DOOR, KIND_STAFF, FleetError
from lockertools.service.fleet.lockers import locker_labels, log_change

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


def find_staff(conn: db.Connection, who: int | str) -> dict[str, Any]:
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
    conn: db.Connection, name: str, lockers: Sequence[str] = (), *, now: float | None = None
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
    conn: db.Connection,
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


def remove_staff(conn: db.Connection, staff_id: int) -> int:
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


def staff_table(conn: db.Connection, include_removed: bool = False, now: float | None = None) -> list[dict[str, Any]]:
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


def staff_name(conn: db.Connection, locker_id: str, code_id: Any) -> str | None:
    """The name behind the `staff` id a locker reported (the id of that member's staff code)."""
    if not isinstance(code_id, int) or isinstance(code_id, bool) or not 0 < code_id < 1 << 32:
        return None
    row = conn.execute(
        "SELECT s.name FROM codes c JOIN staff s ON s.id = c.staff_id WHERE c.id = ? AND c.locker_id = ?",
        (code_id, locker_id),
    ).fetchone()
    return None if row is None else str(row[0])
