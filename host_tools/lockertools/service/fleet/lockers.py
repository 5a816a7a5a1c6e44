"""Lockers: registration, door labels, the change log and host revision H, what the sync planner
needs, and connections that flap.

Appending a change raises H in the same transaction; the commit wakes the service, which syncs the
locker (db.Connection.changed).
"""

from __future__ import annotations

import json
import time
from typing import Literal

from lockertools.service import db
from lockertools.service.fleet.common import ANY_DOOR, DOOR_FREE, KIND_MASK, FleetError
from lockertools.service.sync import Change, CodeRow, SyncInput


def add_locker(
    conn: db.Connection, locker_id: str, key: bytes, labels: list[str], sizes: dict[str, tuple[str, bool]] | None = None
) -> None:
    """Register a locker with its doors; `sizes`: each door's size class and whether it is low (the
    board's, `lockertools.boards.doors`), for the staff desk's free doors per size."""
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
        conn.executemany(
            "INSERT INTO door_sizes(locker_id, label, size, low) VALUES (?, ?, ?, ?)",
            [(locker_id, label, size, int(low)) for label, (size, low) in (sizes or {}).items() if label in labels],
        )
        conn.changed()  # a new key for the service


def locker_labels(conn: db.Connection, locker_id: str) -> list[str]:
    row = conn.execute("SELECT doors_json FROM lockers WHERE id = ?", (locker_id,)).fetchone()
    if row is None:
        known = ", ".join(r[0] for r in conn.execute("SELECT id FROM lockers ORDER BY id")) or "none"
        raise FleetError(f"unknown locker {locker_id!r} (registered: {known})")
    labels: list[str] = json.loads(row[0])
    return labels


def log_change(conn: db.Connection, locker_id: str, op: Literal["add", "del"], code_id: int) -> int:
    """Append one change and raise H; inside a transaction. Returns the new revision.

    H is raised first, in one statement: on PostgreSQL the UPDATE takes the locker's row lock, so
    two transactions logging changes at once get consecutive revisions (a SELECT then UPDATE read
    the same H in both and the second INSERT hit the changes table's key)."""
    row = conn.execute(
        "UPDATE lockers SET host_rev = host_rev + 1 WHERE id = ? RETURNING host_rev", (locker_id,)
    ).fetchone()
    rev = int(row[0])
    conn.execute("INSERT INTO changes(locker_id, rev, op, code_id) VALUES (?, ?, ?, ?)", (locker_id, rev, op, code_id))
    conn.changed()
    return rev


def locker_key(conn: db.Connection, locker_id: str) -> bytes:
    return bytes.fromhex(conn.execute("SELECT key_hex FROM lockers WHERE id = ?", (locker_id,)).fetchone()[0])


def prune_log(conn: db.Connection, locker_id: str, keep: int) -> None:
    """Keep the last `keep` changes of a locker; a locker further behind gets a snapshot."""
    with db.transaction(conn):
        host_rev = int(conn.execute("SELECT host_rev FROM lockers WHERE id = ?", (locker_id,)).fetchone()[0])
        floor = max(0, host_rev - keep)
        conn.execute("DELETE FROM changes WHERE locker_id = ? AND rev <= ?", (locker_id, floor))
        conn.execute(
            f"UPDATE lockers SET log_floor = {db.greatest(conn)}(log_floor, ?) WHERE id = ?", (floor, locker_id)
        )


def sync_input(conn: db.Connection, locker_id: str, now: float | None = None) -> SyncInput | None:
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


# --- connections that flap (the service raises them; `lockerctl lockers` shows them) ----------------


def flap_begin(conn: db.Connection, locker_id: str, started_at: float, now: float, changes: int) -> None:
    """Record that `locker_id`'s connection went online/offline `changes` times since `started_at`."""
    conn.execute(
        "INSERT INTO connection_flaps(locker_id, started_at, last_at, changes) VALUES (?, ?, ?, ?)",
        (locker_id, started_at, now, changes),
    )


def flap_seen(conn: db.Connection, locker_id: str, now: float) -> None:
    """One more change of a locker already flapping."""
    conn.execute(
        "UPDATE connection_flaps SET last_at = ?, changes = changes + 1 WHERE locker_id = ? AND ended_at IS NULL",
        (now, locker_id),
    )


def flaps_end(conn: db.Connection, quiet_since: float, now: float) -> list[str]:
    """End the flaps with no change since `quiet_since`; returns their lockers."""
    rows = conn.execute(
        "UPDATE connection_flaps SET ended_at = ? WHERE ended_at IS NULL AND last_at < ? RETURNING locker_id",
        (now, quiet_since),
    ).fetchall()
    return sorted({str(r[0]) for r in rows})


def flapping(conn: db.Connection) -> dict[str, db.Row]:
    """The lockers flapping now, with their open record (started_at, last_at, changes)."""
    rows = conn.execute("SELECT * FROM connection_flaps WHERE ended_at IS NULL ORDER BY id").fetchall()
    return {str(r["locker_id"]): r for r in rows}
