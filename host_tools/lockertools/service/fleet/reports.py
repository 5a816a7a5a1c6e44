"""How the lockers are used, for the staff desk's reports: deliveries per week (prepared, loaded,
picked up, expired, cancelled; the time from loading to pickup; the share expired) and each locker's
door occupancy over a period. Aggregated in SQL (one GROUP BY per table), never a Python loop over
the deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lockertools.service import db

WEEK_S = 7 * 86400
MONDAY_S = 4 * 86400  # the epoch was a Thursday: the first Monday 00:00 UTC is 4 days in
# deliveries as the desk lists them (DELIVERY codes and size-only loads)
_DELIVERIES = "((c.kind & 15) = 3 OR c.loaded_at IS NOT NULL)"
# loaded, and its pickup window ended before anyone collected it
_EXPIRED = "c.loaded_at IS NOT NULL AND c.state IN ('expired', 'taken_back')"
# a door holds an item: its parcel sensor says so, or (no sensor) a code bound to it is not done with
_HOLDS_ITEM = (
    'doors."full" = 1 OR (doors."full" IS NULL AND EXISTS (SELECT 1 FROM codes k WHERE k.locker_id = doors.locker_id'
    " AND k.door = doors.label AND k.state IN ('issued', 'expired') AND (k.kind & 15) IN (0, 3)))"
)


@dataclass(frozen=True)
class WeekRow:
    week: int  # the week's Monday 00:00 (in the report's time zone), epoch seconds
    prepared: int
    loaded: int
    picked_up: int
    expired: int  # loaded and not collected in time (expired or taken back)
    cancelled: int
    avg_pickup_s: float | None  # loading to pickup, over the picked-up ones that were loaded
    max_pickup_s: float | None

    @property
    def share_expired(self) -> float | None:
        """Expired over the loaded deliveries whose outcome is known (picked up or expired)."""
        done = self.picked_up + self.expired
        return self.expired / done if done else None


@dataclass(frozen=True)
class OccupancyRow:
    locker_id: str
    doors: int
    occupied_s: float  # door-seconds an item was inside during the period
    full_now: int  # doors holding an item now (the parcel sensor, or a loaded delivery)

    def occupancy(self, period_s: float) -> float | None:
        return self.occupied_s / (self.doors * period_s) if self.doors and period_s > 0 else None


def _week_start(conn: db.Connection, column: str) -> str:
    # floor to the week; SQLite's CAST truncates (times are positive), PostgreSQL's rounds
    shifted = f"({column} + ? - {MONDAY_S})"
    weeks = f"CAST({shifted} / {WEEK_S} AS INTEGER)" if conn.sqlite else f"CAST(floor({shifted} / {WEEK_S}) AS BIGINT)"
    return f"({weeks} * {WEEK_S} + {MONDAY_S})"


def delivery_weeks(conn: db.Connection, since: float, until: float, utc_offset_s: int = 0) -> list[WeekRow]:
    """Deliveries prepared in [since, until), per week of preparation (weeks start on Monday
    00:00 at `utc_offset_s` from UTC), oldest week first; weeks with none are left out."""
    week = _week_start(conn, "c.created_at")
    sql = (
        f"SELECT {week} AS week, count(*) AS prepared,"
        " sum(CASE WHEN c.loaded_at IS NOT NULL THEN 1 ELSE 0 END) AS loaded,"
        " sum(CASE WHEN c.state = 'used' THEN 1 ELSE 0 END) AS picked_up,"
        f" sum(CASE WHEN {_EXPIRED} THEN 1 ELSE 0 END) AS expired,"
        " sum(CASE WHEN c.state = 'revoked' THEN 1 ELSE 0 END) AS cancelled,"
        " avg(CASE WHEN c.state = 'used' AND c.loaded_at IS NOT NULL THEN c.used_at - c.loaded_at END) AS avg_s,"
        " max(CASE WHEN c.state = 'used' AND c.loaded_at IS NOT NULL THEN c.used_at - c.loaded_at END) AS max_s"
        f" FROM codes c WHERE {_DELIVERIES} AND c.created_at >= ? AND c.created_at < ?"
        " GROUP BY 1 ORDER BY 1"
    )
    rows = conn.execute(sql, (utc_offset_s, since, until)).fetchall()
    return [
        WeekRow(
            int(r["week"]) - utc_offset_s,
            int(r["prepared"]),
            int(r["loaded"] or 0),
            int(r["picked_up"] or 0),
            int(r["expired"] or 0),
            int(r["cancelled"] or 0),
            None if r["avg_s"] is None else float(r["avg_s"]),
            None if r["max_s"] is None else float(r["max_s"]),
        )  # fmt: skip
        for r in rows
    ]


def door_occupancy(conn: db.Connection, since: float, until: float, now: float) -> list[OccupancyRow]:
    """Each locker's doors, the door-seconds an item was inside them during [since, until) (from
    its load to its pickup, take-back or cancel; still inside: to `now`), and its doors full now."""
    least, greatest = db.least(conn), db.greatest(conn)
    end = f"{least}(coalesce(c.used_at, c.taken_back_at, c.revoked_at, ?), ?)"
    sql = (
        "SELECT l.id AS locker_id, coalesce(d.doors, 0) AS doors, coalesce(d.full_now, 0) AS full_now,"
        " coalesce(o.occupied, 0) AS occupied FROM lockers l"
        " LEFT JOIN (SELECT locker_id, count(*) AS doors,"
        f" sum(CASE WHEN {_HOLDS_ITEM} THEN 1 ELSE 0 END) AS full_now FROM doors GROUP BY locker_id) d"
        " ON d.locker_id = l.id"
        f" LEFT JOIN (SELECT c.locker_id, sum({end} - {greatest}(c.loaded_at, ?)) AS occupied FROM codes c"
        f" WHERE c.loaded_at IS NOT NULL AND c.loaded_at < ? AND {end} > {greatest}(c.loaded_at, ?)"
        " GROUP BY c.locker_id) o"
        " ON o.locker_id = l.id ORDER BY l.id"
    )
    stop = min(until, now)
    params: list[Any] = [now, stop, since, stop, now, stop, since]
    return [
        OccupancyRow(str(r["locker_id"]), int(r["doors"]), float(r["occupied"]), int(r["full_now"]))
        for r in conn.execute(sql, params).fetchall()
    ]
