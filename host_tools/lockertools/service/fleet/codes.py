"""Codes: issuing (the tag only is stored), revoking, expiring, listing."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from lockertools.api import outbox
from lockertools.service import db
from lockertools.service.fleet.common import (
    ANY_DOOR,
    CODE_DIGITS,
    DOOR_FREE,
    KIND_MASK,
    KIND_NAMES,
    KIND_STAFF,
    FleetError,
)
from lockertools.service.fleet.lockers import locker_key, locker_labels, log_change


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


def issue_code(
    conn: db.Connection,
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


def _active_tags(conn: db.Connection, locker_id: str) -> set[str]:
    return {
        r[0] for r in conn.execute("SELECT tag_hex FROM codes WHERE locker_id = ? AND state = 'issued'", (locker_id,))
    }


def draw_code(conn: db.Connection, locker_ids: list[str], digits: int = CODE_DIGITS) -> str:
    """Random digits that no active code of these lockers answers to, at any door or door-free (a
    typed code that two records match would be ambiguous). Inside a transaction."""
    keys = {lid: (locker_key(conn, lid), [*locker_labels(conn, lid), ANY_DOOR]) for lid in locker_ids}
    active = {lid: _active_tags(conn, lid) for lid in locker_ids}
    while True:
        code = f"{secrets.randbelow(10**digits):0{digits}d}"
        if not any(tag_hex(key, label, code) in active[lid] for lid, (key, labels) in keys.items() for label in labels):
            return code


def new_code(
    conn: db.Connection,
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
    key = locker_key(conn, locker_id)
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


def revoke_code(conn: db.Connection, code_id: int) -> str:
    """Revoke an issued (or expired) code; returns its locker."""
    with db.transaction(conn):
        row = conn.execute("SELECT locker_id, state FROM codes WHERE id = ?", (code_id,)).fetchone()
        if row is None:
            raise FleetError(f"no code with id {code_id}")
        if row["state"] not in ("issued", "expired"):
            raise FleetError(f"code {code_id} is {row['state']}: nothing to revoke")
        now = time.time()
        conn.execute("UPDATE codes SET state = 'revoked', revoked_at = ? WHERE id = ?", (now, code_id))
        outbox.queue_delivery_event(conn, "cancelled", code_id, now)
        conn.execute("DELETE FROM held_codes WHERE code_id = ?", (code_id,))
        log_change(conn, row["locker_id"], "del", code_id)
        return str(row["locker_id"])


def record_notification(conn: db.Connection, code_id: int, error: str | None) -> None:
    with db.transaction(conn):
        conn.execute(
            "UPDATE codes SET notify_state = ?, notify_error = ? WHERE id = ?",
            ("failed" if error else "sent", error, code_id),
        )


def expire_codes(conn: db.Connection, now: float) -> int:
    """Mark issued codes past their expiry as expired. The locker refuses them by itself, and the
    next snapshot leaves them out; a staff PIN is also deleted from the locker (one change each), so
    an expired PIN is gone from its flash, and from the guessing odds, even if its clock is wrong.
    Inside a transaction. Returns how many."""
    pins = conn.execute(
        "SELECT id, locker_id FROM codes WHERE state = 'issued' AND expires > 0 AND expires <= ? AND (kind & 15) = ?",
        (now, KIND_STAFF),
    ).fetchall()
    outbox.queue_expiries(conn, now)
    cur = conn.execute(
        "UPDATE codes SET state = 'expired' WHERE state = 'issued' AND expires > 0 AND expires <= ?", (now,)
    )
    for code_id, lid in pins:
        log_change(conn, lid, "del", code_id)
    if cur.rowcount:  # a delivery never loaded: its code will never be sent
        conn.execute("DELETE FROM held_codes WHERE code_id IN (SELECT id FROM codes WHERE state = 'expired')")
    return cur.rowcount


def code_table(conn: db.Connection, locker_id: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
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
