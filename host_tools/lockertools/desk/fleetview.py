"""What the lockers pages show, read from the fleet database in a few grouped queries (the overview
of 50 lockers reads every door and every active code once, not per locker).

A door is *occupied* when its parcel sensor says full or an active code is bound to it (a pickup
code, a loaded delivery, a used return waiting to be taken back); *free* when it is in service,
not occupied and not in alarm. A door is *in alarm* when its state is jammed or forced, or the
event that set its state says it was left open (until an event moves it on: closed, ...).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from lockertools.service import db, schema
from lockertools.service.fleet.common import ANY_DOOR, KIND_DELIVERY, KIND_MASK

SIZES = ("S", "M", "L")
ALARM_STATES = ("jammed", "forced")
# The town's case number of a delivery: delivery_details.case_ref, where the fleet's schema has
# that table (the deliveries' details, kept beside their code rows).
CASE_TABLE, CASE_COLUMN = "delivery_details", "case_ref"


@dataclass
class DoorView:
    label: str
    state: str | None
    full: bool | None
    in_service: bool
    size: str | None = None
    low: bool = False
    alarm: str | None = None  # jammed, forced, left_open
    updated_at: float | None = None
    contents: list[dict[str, Any]] = field(default_factory=list)

    @property
    def occupied(self) -> bool:
        return bool(self.full) or bool(self.contents)

    @property
    def free(self) -> bool:
        return self.in_service and not self.occupied and self.alarm is None

    def live(self) -> dict[str, Any]:
        """What the wall's live updates carry for the door."""
        return {
            "d": self.label,
            "state": self.state,
            "full": self.full,
            "in_service": self.in_service,
            "alarm": self.alarm,
        }


@dataclass
class LockerView:
    id: str
    online: bool
    safe_mode: bool
    in_sync: bool
    host_rev: int
    locker_rev: int | None
    last_seen: float | None
    doors: list[DoorView]

    def free_by_size(self) -> dict[str, int]:
        out = {size: 0 for size in (*SIZES, "?")}
        for d in self.doors:
            if d.free:
                out[d.size if d.size in SIZES else "?"] += 1
        return out

    @property
    def full(self) -> int:
        return sum(d.occupied for d in self.doors)

    @property
    def out_of_service(self) -> int:
        return sum(not d.in_service for d in self.doors)

    @property
    def in_alarm(self) -> int:
        return sum(d.alarm is not None for d in self.doors)


def _left_open(conn: db.Connection, locker_id: str | None) -> set[tuple[str, str]]:
    """The doors whose state came last from a `left_open` event (the state's event, found by the
    door's state_seq through the events' (locker_id, seq) key: no scan of the events)."""
    sql = (
        "SELECT d.locker_id, d.label FROM doors d JOIN events e ON e.locker_id = d.locker_id AND e.seq = d.state_seq"
        " WHERE e.kind = 'left_open'"
    )
    rows = conn.execute(sql + " AND d.locker_id = ?", (locker_id,)) if locker_id else conn.execute(sql)
    return {(r[0], r[1]) for r in rows}


def _doors(conn: db.Connection, locker_id: str | None, with_contents: bool) -> dict[str, list[DoorView]]:
    left_open = _left_open(conn, locker_id)
    where = " WHERE d.locker_id = ?" if locker_id else ""
    args = (locker_id,) if locker_id else ()
    out: dict[str, list[DoorView]] = defaultdict(list)
    by_door: dict[tuple[str, str], DoorView] = {}
    sql = (
        'SELECT d.locker_id, d.label, d.state, d."full", d.in_service, d.updated_at, z.size, z.low FROM doors d'
        " LEFT JOIN door_sizes z ON z.locker_id = d.locker_id AND z.label = d.label"
    )
    for lid, label, state, full, in_service, updated_at, size, low in conn.execute(sql + where, args):
        alarm = state if state in ALARM_STATES else ("left_open" if (lid, label) in left_open else None)
        view = DoorView(label, state, None if full is None else bool(full), bool(in_service), size, bool(low), alarm)
        view.updated_at = updated_at
        out[lid].append(view)
        by_door[(lid, label)] = view
    if with_contents and CASE_TABLE in schema.metadata.tables:
        source = f"codes c LEFT JOIN {CASE_TABLE} x ON x.code_id = c.id"
        columns = f"c.*, x.{CASE_COLUMN} AS case_ref"
    else:
        source = "codes c"
        columns = "c.*, NULL AS case_ref" if with_contents else "c.locker_id, c.door"
    sql = f"SELECT {columns} FROM {source} WHERE c.state = 'issued' AND c.door != ?" + (
        " AND c.locker_id = ?" if locker_id else ""
    )
    if not with_contents:
        for lid, label in conn.execute(sql, (ANY_DOOR, *args)):
            found = by_door.get((lid, label))
            if found is not None:
                found.contents.append({})
        return out
    for r in conn.execute(sql, (ANY_DOOR, *args)):
        holder = by_door.get((r["locker_id"], r["door"]))
        if holder is None:
            continue
        kind = int(r["kind"])
        holder.contents.append(
            {
                "code_id": int(r["id"]),
                "kind": kind,  # the byte: the page words it in the reader's language
                "delivery": int(r["id"]) if kind & KIND_MASK == KIND_DELIVERY else None,
                "item": r["item"],
                "since": r["loaded_at"] or r["created_at"],
                "deadline": int(r["expires"]) or None,
                "case": r["case_ref"],
            }
        )
    return out


def _order(labels_json: str, doors: list[DoorView]) -> list[DoorView]:
    order = {label: i for i, label in enumerate(json.loads(labels_json))}
    return sorted(doors, key=lambda d: order.get(d.label, len(order)))


def _locker(r: db.Row, doors: list[DoorView]) -> LockerView:
    status = json.loads(r["status_json"]) if r["status_json"] else {}
    locker_rev = None if r["locker_rev"] is None else int(r["locker_rev"])
    return LockerView(
        id=str(r["id"]),
        online=bool(r["online"]),
        safe_mode=bool(r["online"]) and status.get("mode") == "safe",
        in_sync=locker_rev == int(r["host_rev"]) and not r["snap"],
        host_rev=int(r["host_rev"]),
        locker_rev=locker_rev,
        last_seen=r["last_seen"],
        doors=_order(r["doors_json"], doors),
    )


_LOCKER_COLUMNS = "id, online, status_json, host_rev, locker_rev, snap, last_seen, doors_json"


def overview(conn: db.Connection) -> list[LockerView]:
    """Every locker, by id, with its doors (without what is inside them)."""
    doors = _doors(conn, None, with_contents=False)
    rows = conn.execute(f"SELECT {_LOCKER_COLUMNS} FROM lockers ORDER BY id").fetchall()
    return [_locker(r, doors.get(str(r["id"]), [])) for r in rows]


def wall(conn: db.Connection, locker_id: str) -> LockerView | None:
    """One locker with every door's contents; None when there is no such locker."""
    row = conn.execute(f"SELECT {_LOCKER_COLUMNS} FROM lockers WHERE id = ?", (locker_id,)).fetchone()
    if row is None:
        return None
    return _locker(row, _doors(conn, locker_id, with_contents=True).get(locker_id, []))


def door_states(conn: db.Connection, locker_id: str) -> dict[str, dict[str, Any]]:
    """The live part of each door of a locker (what the wall's server-sent events carry)."""
    doors = _doors(conn, locker_id, with_contents=False).get(locker_id, [])
    return {d.label: {**d.live(), "occupied": d.occupied} for d in doors}
