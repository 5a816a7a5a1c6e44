"""Lockers: registration, door labels, the change log and host revision H, what the sync planner
needs, and connections that flap.

Appending a change raises H in the same transaction; the commit wakes the service, which syncs the
locker (db.Connection.changed).
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import sqlalchemy as sa

from lockertools.service import db, schema
from lockertools.service.fleet.common import ANY_DOOR, DOOR_FREE, ITEMS, KIND_DELIVERY, KIND_MASK, FleetError
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


_RAISE_HOST_REV = db.Query(
    lambda _: (
        sa.update(schema.lockers)
        .where(schema.lockers.c.id == sa.bindparam("lid"))
        .values(host_rev=schema.lockers.c.host_rev + 1)
        .returning(schema.lockers.c.host_rev)
    )
)
_INSERT_CHANGE = db.Query(
    lambda _: sa.insert(schema.changes).values(
        locker_id=sa.bindparam("lid"), rev=sa.bindparam("rev"), op=sa.bindparam("op"), code_id=sa.bindparam("code_id")
    )
)


def log_change(conn: db.Connection, locker_id: str, op: Literal["add", "del"], code_id: int) -> int:
    """Append one change and raise H; inside a transaction. Returns the new revision. H is raised in
    one statement (UPDATE .. RETURNING): on PostgreSQL it takes the locker's row lock, so two
    transactions logging changes at once get consecutive revisions."""
    rev = int(conn.run(_RAISE_HOST_REV, {"lid": locker_id}).fetchone()[0])
    conn.send(_INSERT_CHANGE, {"lid": locker_id, "rev": rev, "op": op, "code_id": code_id})
    conn.changed()
    return rev


def locker_ids(conn: db.Connection) -> list[str]:
    """Every registered locker's id, in order."""
    return [str(r[0]) for r in conn.execute("SELECT id FROM lockers ORDER BY id")]


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


def reads_items(status_json: str | None) -> bool:
    """Whether the locker's last status said it reads a code row's item (firmware before items
    refuses a row with six elements)."""
    try:
        status = json.loads(status_json) if status_json else None
    except ValueError:
        return False
    return isinstance(status, dict) and status.get("items") is True


def item_number(item: str | None) -> int:
    """A code's item as the locker's number: its index in ITEMS (0, a parcel, for none)."""
    return ITEMS.index(item) if item in ITEMS else 0


_lockers, _changes, _codes = schema.lockers, schema.changes, schema.codes


def _locker_value(dialect: str, column: str) -> Any:
    """A column of the locker's row (:lid), as a scalar subquery: the queries below read it on the
    server, in the same round trip as the row itself."""
    if column == "after":  # the log is read from min(R, H)
        value: Any = db.least_of(dialect)(_lockers.c.locker_rev, _lockers.c.host_rev)
    else:
        value = _lockers.c[column]
    return sa.select(value).where(_lockers.c.id == sa.bindparam("lid")).scalar_subquery()


_SYNC_STATE = db.Query(
    lambda _: sa.select(
        _lockers.c.host_rev, _lockers.c.log_floor, _lockers.c.locker_rev, _lockers.c.snap, _lockers.c.status_json
    ).where(_lockers.c.id == sa.bindparam("lid"))
)
# The changes after min(R, H), each with whether it may repeat an add the locker has: a delivery's row
# goes again on `loaded` (its new expiry, start_pickup_window), so any `add` of a delivery the locker
# reported at a door may repeat one the locker already has.
_SYNC_CHANGES = db.Query(
    lambda dialect: (
        sa.select(
            _changes.c.rev,
            _changes.c.op,
            _changes.c.code_id,
            sa.and_(
                _codes.c.kind.op("&")(KIND_MASK) == KIND_DELIVERY,
                sa.or_(_codes.c.loaded_at.is_not(None), _codes.c.door_seq.is_not(None)),
            ),
        )
        .join(_codes, _codes.c.id == _changes.c.code_id)
        .where(_changes.c.locker_id == sa.bindparam("lid"), _changes.c.rev > _locker_value(dialect, "after"))
        .order_by(_changes.c.rev)
    )
)
# The host's set (issued codes) and every code a change after the locker's revision names.
_SYNC_CODES = db.Query(
    lambda dialect: (
        sa.select(
            _codes.c.id, _codes.c.tag_hex, _codes.c.door, _codes.c.kind, _codes.c.expires, _codes.c.state, _codes.c.item
        )
        .where(_codes.c.locker_id == sa.bindparam("lid"))
        .where(
            sa.or_(
                _codes.c.state == "issued",
                _codes.c.id.in_(
                    sa.select(_changes.c.code_id).where(
                        _changes.c.locker_id == sa.bindparam("lid"),
                        _changes.c.rev > _locker_value(dialect, "locker_rev"),
                    )
                ),
            )
        )
    )
)


def sync_input(conn: db.Connection, locker_id: str, now: float | None = None) -> SyncInput | None:
    """What the planner needs for one locker, or None when the locker never reported a revision.
    One round trip on PostgreSQL: the locker's row, its changes and codes together (the last two
    read R and H from the row on the server; in one transaction, all three see the same row)."""
    ask = [{"lid": locker_id}]
    [state], [change_rows], [code_rows] = conn.run_many([(_SYNC_STATE, ask), (_SYNC_CHANGES, ask), (_SYNC_CODES, ask)])
    row = state.fetchone()
    if row is None or row["locker_rev"] is None:
        return None
    items = reads_items(row["status_json"])
    now = time.time() if now is None else now
    locker_rev = int(row["locker_rev"])
    changes = [Change(int(r[0]), r[1], int(r[2]), r[1] == "add" and bool(r[3])) for r in change_rows]
    ids = {c.code_id for c in changes if c.op == "add"}
    codes = {}
    active = []
    for r in code_rows:
        # A door-free code travels as "*" even once the host knows its door (a loaded delivery, a used
        # return): the locker keeps that in its own journal, and its rows must stay door-free.
        door = ANY_DOOR if int(r["kind"]) & KIND_MASK in DOOR_FREE else r["door"]
        item = item_number(r["item"]) if items else 0
        code = CodeRow(r["tag_hex"], door, int(r["kind"]), int(r["expires"]), int(r["id"]), item)
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
