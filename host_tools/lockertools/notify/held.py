"""The database side of residents' messages that needs neither templates nor PDF (so the service
imports it whether or not residents' messages are on): where a locker is, when a held plain code may
go, and deleting contact details once their retention ended (docs/privacy.md)."""

from __future__ import annotations

from lockertools.service import db

_ACCEPTED = ("sent", "printed", "skipped")


# --- where the locker is ----------------------------------------------------------------------------


def set_locker_place(conn: db.Connection, locker_id: str, address: str | None, hours: str | None = None) -> None:
    """Where a locker stands and when it can be reached, as residents are told (None: unset; hours
    unset: open day and night)."""
    with db.transaction(conn):
        db.set_setting(conn, f"locker_address:{locker_id}", address)
        db.set_setting(conn, f"locker_hours:{locker_id}", hours)


def locker_place(conn: db.Connection, locker_id: str) -> tuple[str | None, str | None]:
    return db.get_setting(conn, f"locker_address:{locker_id}"), db.get_setting(conn, f"locker_hours:{locker_id}")


def release_held_code(conn: db.Connection, code_id: int, *, hook: bool, outbox: bool) -> bool:
    """Delete a delivery's plain code once nobody needs it (inside a transaction): every channel
    accepted its `loaded` message (with the outbox on, once they are planned) and the hook, if any,
    took it. True when it was deleted."""
    if outbox:
        has_details = conn.execute("SELECT 1 FROM delivery_details WHERE code_id = ?", (code_id,)).fetchone()
        planned = conn.execute(
            "SELECT state FROM resident_messages WHERE code_id = ? AND kind = 'loaded'", (code_id,)
        ).fetchall()
        if has_details is not None and (not planned or any(r[0] not in _ACCEPTED for r in planned)):
            return False
    if (
        hook
        and conn.execute(
            "SELECT 1 FROM notifications WHERE code_id = ? AND kind = 'loaded' AND state IN ('pending', 'failed')",
            (code_id,),
        ).fetchone()
    ):
        return False
    conn.execute("DELETE FROM held_codes WHERE code_id = ?", (code_id,))
    conn.execute("UPDATE codes SET notify_state = 'sent', notify_error = NULL WHERE id = ?", (code_id,))
    return True


# --- privacy ------------------------------------------------------------------------------------------------


def purge_contacts(conn: db.Connection, now: float, days: float) -> int:
    """Delete the contact details (name, e-mail, phone) of deliveries that ended `days` ago or more:
    picked up, taken back, cancelled, or expired before the load. Returns how many deliveries."""
    cutoff = now - days * 86400
    ended = (
        "SELECT id FROM codes WHERE (state = 'used' AND used_at <= ?) OR (state = 'taken_back' AND taken_back_at <= ?)"
        " OR (state = 'revoked' AND revoked_at <= ?) OR (state = 'expired' AND door = '*' AND expires <= ?)"
    )
    args = (cutoff, cutoff, cutoff, cutoff)
    with db.transaction(conn):
        count = conn.execute(
            "UPDATE delivery_details SET resident_name = NULL, email = NULL, phone = NULL, contact_purged_at = ?"
            f" WHERE contact_purged_at IS NULL AND code_id IN ({ended})",
            (now, *args),
        ).rowcount
        conn.execute(
            f"UPDATE resident_messages SET address = NULL WHERE address IS NOT NULL AND code_id IN ({ended})", args
        )
        conn.execute(f"UPDATE codes SET recipient = NULL WHERE recipient IS NOT NULL AND id IN ({ended})", args)
    return int(count)
