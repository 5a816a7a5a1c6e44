"""Requests: one-off signed commands people ask for (door.open, door.service), with who asked."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from lockertools.service import db
from lockertools.service.fleet.common import FleetError
from lockertools.service.fleet.lockers import locker_labels

# --- requests: one-off signed commands people ask for ------------------------------------------------

REQUEST_OPS = ("door.open", "door.service")


def queue_request(conn: db.Connection, locker_id: str, op: str, args: dict[str, Any], by: str) -> tuple[int, str]:
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
        row = conn.execute(
            'INSERT INTO requests(locker_id, op, args_json, "by", tx, created_at)'
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (locker_id, op, json.dumps(args | {"by": by}), by, tx, time.time()),
        ).fetchone()
        conn.changed()  # the service sends it at once
    assert row is not None
    return int(row[0]), tx


def request_table(conn: db.Connection, locker_id: str | None = None, last: int = 50) -> list[dict[str, Any]]:
    sql = "SELECT * FROM requests"
    params: list[Any] = []
    if locker_id:
        sql += " WHERE locker_id = ?"
        params.append(locker_id)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*params, last]).fetchall()
    return [dict(r) for r in reversed(rows)]
