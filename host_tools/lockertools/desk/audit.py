"""The audit trail of the staff desk: every staff action, who did it, when, from which address.

`record()` appends one row (inside the caller's transaction when it has one, so an action and its
record commit together); nothing here or anywhere in the desk updates or deletes a row, and the
database refuses to (schema.DESK_AUDIT_GUARDS).
"""

from __future__ import annotations

import json
from typing import Any

from lockertools.service import db


def record(
    conn: db.Connection,
    *,
    at: float,
    who: str,
    address: str,
    action: str,
    target: str | None = None,
    account_id: int | None = None,
    role: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one action. `action` is a short dotted name (`account.add`, `login.failed`, ...),
    `target` what it was done to, `detail` anything else (never a password or a code)."""
    sql = (
        "INSERT INTO desk_audit(at, account_id, account_name, role, address, action, target, detail_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    args = (at, account_id, who, role, address, action, target, json.dumps(detail or {}, sort_keys=True))
    if conn.in_transaction:
        conn.execute(sql, args)
    else:
        with db.transaction(conn):
            conn.execute(sql, args)


def trail(conn: db.Connection, limit: int = 200, before_id: int | None = None) -> list[dict[str, Any]]:
    """The newest actions first (older pages: `before_id`)."""
    sql = "SELECT * FROM desk_audit"
    params: list[Any] = []
    if before_id is not None:
        sql += " WHERE id < ?"
        params.append(before_id)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*params, limit]).fetchall()
    out = []
    for r in rows:
        row = dict(zip(r.keys(), r, strict=True))
        row["detail"] = json.loads(row.pop("detail_json"))
        out.append(row)
    return out
