"""Fleet records in the database: lockers, codes and the change log. Used by the CLI and the service.

Issuing or revoking a code appends one change to the locker's log and raises its host revision H in
the same transaction; the service notices the commit and syncs the locker.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Literal

from lockertools import use_firmware_modules
from lockertools.service import db
from lockertools.service.sync import Change, CodeRow, SyncInput

KINDS = {"pickup": 0, "staff": 1, "return": 2}
KIND_NAMES = {v: k for k, v in KINDS.items()}
CODE_DIGITS = 8


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
    use_firmware_modules()
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
    """A new random code for one door. Stores its tag only; the caller shows the code once."""
    labels = locker_labels(conn, locker_id)
    if door not in labels:
        raise FleetError(f"locker {locker_id!r} has no door {door!r} (doors: {', '.join(labels)})")
    if kind not in KIND_NAMES:
        raise FleetError(f"unknown kind {kind}")
    with db.transaction(conn):
        key = bytes.fromhex(conn.execute("SELECT key_hex FROM lockers WHERE id = ?", (locker_id,)).fetchone()[0])
        active = {
            r[0]
            for r in conn.execute("SELECT tag_hex FROM codes WHERE locker_id = ? AND state = 'issued'", (locker_id,))
        }
        # A code that any door of this locker already answers to would be ambiguous: draw again.
        while True:
            code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
            if not any(tag_hex(key, label, code) in active for label in labels):
                break
        code_id = db.new_code_id(conn)
        conn.execute(
            "INSERT INTO codes(id, locker_id, door, kind, tag_hex, expires, recipient, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (code_id, locker_id, door, kind, tag_hex(key, door, code), expires, recipient, time.time()),
        )
        log_change(conn, locker_id, "add", code_id)
    return IssuedCode(code, code_id, locker_id, door, kind, expires, recipient)


def revoke_code(conn: sqlite3.Connection, code_id: int) -> str:
    """Revoke an issued (or expired) code; returns its locker."""
    with db.transaction(conn):
        row = conn.execute("SELECT locker_id, state FROM codes WHERE id = ?", (code_id,)).fetchone()
        if row is None:
            raise FleetError(f"no code with id {code_id}")
        if row["state"] not in ("issued", "expired"):
            raise FleetError(f"code {code_id} is {row['state']}: nothing to revoke")
        conn.execute("UPDATE codes SET state = 'revoked', revoked_at = ? WHERE id = ?", (time.time(), code_id))
        log_change(conn, row["locker_id"], "del", code_id)
        return str(row["locker_id"])


def record_notification(conn: sqlite3.Connection, code_id: int, error: str | None) -> None:
    with db.transaction(conn):
        conn.execute(
            "UPDATE codes SET notify_state = ?, notify_error = ? WHERE id = ?",
            ("failed" if error else "sent", error, code_id),
        )


def expire_codes(conn: sqlite3.Connection, now: float) -> int:
    """Mark issued codes past their expiry as expired (no change: the locker refuses them itself,
    and the next snapshot leaves them out). Inside a transaction. Returns how many."""
    cur = conn.execute(
        "UPDATE codes SET state = 'expired' WHERE state = 'issued' AND expires > 0 AND expires <= ?", (now,)
    )
    return cur.rowcount


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
    changes = [
        Change(int(r[0]), r[1], int(r[2]))
        for r in conn.execute(
            "SELECT rev, op, code_id FROM changes WHERE locker_id = ? AND rev > ? ORDER BY rev",
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
        code = CodeRow(r["tag_hex"], r["door"], int(r["kind"]), int(r["expires"]), int(r["id"]))
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
