"""Door sizes (from the locker's board, recorded at `lockerctl locker add`) and the free doors per
size the API lists.

A door is free when it is in service, closed (or not reported yet), known not to hold an item or
not known to (no parcel sensor), and no code holds it: no issued code bound to it, and no expired
one whose item may still be in it (a door whose sensor says empty is free again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lockertools.boards import Door
from lockertools.service import db
from lockertools.service.fleet.common import FleetError
from lockertools.service.fleet.lockers import locker_labels

DOOR_SIZES = ("S", "M", "L")


def record_door_sizes(conn: db.Connection, locker_id: str, doors: Sequence[Door]) -> None:
    """Record (or replace) the size and low flag of a registered locker's doors."""
    labels = set(locker_labels(conn, locker_id))
    unknown = [d.label for d in doors if d.label not in labels]
    if unknown:
        raise FleetError(f"locker {locker_id!r} has no door {unknown[0]!r}")
    with db.transaction(conn):
        conn.execute("DELETE FROM door_sizes WHERE locker_id = ?", (locker_id,))
        conn.executemany(
            "INSERT INTO door_sizes(locker_id, label, size, low) VALUES (?, ?, ?, ?)",
            [(locker_id, d.label, d.size, int(d.low)) for d in doors],
        )


@dataclass
class LockerAvailability:
    """One locker for the town's systems: its doors and the free ones by size (`free_low`: the low
    ones among them); `free_unsized`: free doors of a locker whose sizes were never recorded."""

    id: str
    online: bool
    last_seen: float | None
    doors: int
    free: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DOOR_SIZES, 0))
    free_low: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DOOR_SIZES, 0))
    free_unsized: int = 0


_FREE_DOORS = (
    "SELECT d.locker_id, s.size, s.low FROM doors d"
    " LEFT JOIN door_sizes s ON s.locker_id = d.locker_id AND s.label = d.label"
    " WHERE d.in_service = 1 AND coalesce(d.state, 'closed') = 'closed' AND coalesce(d.\"full\", 0) = 0"
    " AND NOT EXISTS (SELECT 1 FROM codes c WHERE c.locker_id = d.locker_id AND c.door = d.label"
    " AND (c.state = 'issued' OR (c.state = 'expired' AND d.\"full\" IS NULL)))"
)


def locker_availability(conn: db.Connection) -> list[LockerAvailability]:
    """Every locker, by id, with its free doors per size."""
    lockers: dict[str, LockerAvailability] = {}
    for row in conn.execute(
        "SELECT l.id, l.online, l.last_seen, count(d.label) AS doors FROM lockers l"
        " LEFT JOIN doors d ON d.locker_id = l.id GROUP BY l.id, l.online, l.last_seen ORDER BY l.id"
    ):
        lockers[row["id"]] = LockerAvailability(row["id"], bool(row["online"]), row["last_seen"], int(row["doors"]))
    for row in conn.execute(_FREE_DOORS):
        locker = lockers.get(row["locker_id"])
        if locker is None:
            continue
        if row["size"] is None:
            locker.free_unsized += 1
            continue
        locker.free[row["size"]] += 1
        if row["low"]:
            locker.free_low[row["size"]] += 1
    return list(lockers.values())
