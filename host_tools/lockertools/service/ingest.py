"""Messages from lockers: checked (signature, size, shape), then recorded in the database.

`open_message()` turns a topic and payload into an `Incoming` or raises `Rejected` with a reason the
service counts; nothing a locker (or a forger) sends can do more than that. The `apply_*` functions
run inside the caller's transaction; `apply_event()` inserts the event and applies its effect in that
same transaction, keyed on (locker, seq), so a duplicate delivery changes nothing.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from lockertools import use_firmware_modules
from lockertools.service import fleet_db

MAX_PAYLOAD = 4096  # a locker's messages are at most 4 KB (docs/protocol.md)
KINDS = ("status", "doors", "events", "reply")
_TOPIC = re.compile(r"^lockers/([A-Za-z0-9_-]{1,32})/(status|doors|events|reply)$")
_MAX_SEQ = 1 << 63

# Door state an event implies, and whether the door holds a parcel afterwards (None: unchanged).
_DOOR_EFFECTS: dict[str, tuple[str | None, bool | None]] = {
    "unlock": ("unlocking", None),
    "opened": ("open", None),
    "closed": ("closed", None),
    "pickup": ("closed", False),
    "closed_full": ("closed", True),
    "jammed": ("jammed", None),
    "forced": ("forced", None),
    "left_open": ("open", None),
}


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Incoming:
    locker_id: str
    kind: str  # status, doors, events, reply
    msg: dict[str, Any]


class KeyRing:
    """Each locker's key, from the database; reload() after another process added a locker."""

    def __init__(self) -> None:
        use_firmware_modules()
        from locker import protocol  # type: ignore[import-not-found]
        from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

        self.protocol: Any = protocol
        self._hmac_key: Any = HmacKey
        self._keys: dict[str, Any] = {}

    def reload(self, conn: sqlite3.Connection) -> None:
        self._keys = {
            r[0]: self._hmac_key(bytes.fromhex(r[1])) for r in conn.execute("SELECT id, key_hex FROM lockers")
        }

    def get(self, locker_id: str) -> Any:
        return self._keys.get(locker_id)

    def sign(self, locker_id: str, payload: dict[str, Any]) -> bytes:
        wire: bytes = self.protocol.sign(self._keys[locker_id], self.protocol.encode(payload))
        return wire


def open_message(keys: KeyRing, topic: str, wire: bytes) -> Incoming:
    """Check one message from a locker; raises Rejected(reason)."""
    match = _TOPIC.match(topic)
    if match is None:
        raise Rejected("malformed", "topic")
    locker_id, kind = match.group(1), match.group(2)
    if len(wire) > MAX_PAYLOAD:
        raise Rejected("oversized", f"{len(wire)} bytes")
    hkey = keys.get(locker_id)
    if hkey is None:
        raise Rejected("unknown_locker", locker_id)
    try:
        payload = keys.protocol.open_signed(hkey, wire)
    except keys.protocol.Refused as exc:
        raise Rejected(exc.reason, exc.detail) from None
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise Rejected("malformed", "not JSON") from None
    if not isinstance(msg, dict) or msg.get("v") != 1 or msg.get("lid") != locker_id:
        raise Rejected("malformed", "not a version-1 message of this locker")
    _check_shape(kind, msg)
    return Incoming(locker_id, kind, msg)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_shape(kind: str, msg: dict[str, Any]) -> None:
    """Just enough to apply the message safely; the schemas hold the full contract."""
    ok = True
    if kind == "events":
        seq, ev = msg.get("seq"), msg.get("ev")
        ok = isinstance(seq, int) and _is_int(seq) and 0 <= seq < _MAX_SEQ
        ok = ok and isinstance(ev, dict) and isinstance(ev.get("k"), str)
        if ok and isinstance(ev, dict):
            ok = ev.get("d") is None or isinstance(ev.get("d"), str)
            ok = ok and (ev.get("id") is None or _is_int(ev.get("id")))
    elif kind == "status":
        online = msg.get("online")
        ok = isinstance(online, bool) and (not online or (_is_int(msg.get("rev")) and msg["rev"] >= 0))
    elif kind == "doors":
        doors = msg.get("doors")
        ok = isinstance(doors, list) and all(isinstance(d, dict) and isinstance(d.get("d"), str) for d in doors)
    elif kind == "reply":
        ok = isinstance(msg.get("tx"), str) and isinstance(msg.get("ok"), bool)
        ok = ok and all(msg.get(f) is None or _is_int(msg.get(f)) for f in ("rev", "part", "count"))
    if not ok:
        raise Rejected("malformed", f"bad {kind} message")


def apply_event(conn: sqlite3.Connection, locker_id: str, msg: dict[str, Any], received_at: float) -> bool:
    """Record one event and its effect, once per (locker, seq). True when it was new."""
    seq: int = msg["seq"]
    ev: dict[str, Any] = msg["ev"]
    kind: str = ev["k"]
    door: str | None = ev.get("d")
    cur = conn.execute(
        "INSERT OR IGNORE INTO events(locker_id, seq, kind, door, json, received_at) VALUES (?, ?, ?, ?, ?, ?)",
        (locker_id, seq, kind, door, json.dumps(ev, separators=(",", ":")), received_at),
    )
    if cur.rowcount == 0:
        return False
    when = ev.get("t") if _is_int(ev.get("t")) else received_at
    if kind == "pickup" and _is_int(ev.get("id")):
        row = conn.execute("SELECT state FROM codes WHERE id = ? AND locker_id = ?", (ev["id"], locker_id)).fetchone()
        if row is not None and row[0] == "used":
            # The earliest pickup wins, whatever order the deliveries arrive in.
            conn.execute("UPDATE codes SET used_at = min(coalesce(used_at, ?), ?) WHERE id = ?", (when, when, ev["id"]))
        elif row is not None:
            conn.execute("UPDATE codes SET state = 'used', used_at = ? WHERE id = ?", (when, ev["id"]))
            if row[0] in ("issued", "expired"):
                # Used codes leave the locker's store (its capacity is finite); revoked ones already do.
                fleet_db.log_change(conn, locker_id, "del", ev["id"])
    effect = _DOOR_EFFECTS.get(kind)
    if effect is not None and door is not None:
        state, full = effect
        # Only an event newer than the last one applied to this door moves it: the result does not
        # depend on the order deliveries arrive in.
        where = " WHERE locker_id = ? AND label = ?"
        if state is not None:
            conn.execute(
                "UPDATE doors SET state = ?, state_seq = ?, updated_at = ?" + where + " AND state_seq < ?",
                (state, seq, when, locker_id, door, seq),
            )
        if full is not None:
            conn.execute(
                "UPDATE doors SET full = ?, full_seq = ?, updated_at = ?" + where + " AND full_seq < ?",
                (int(full), seq, when, locker_id, door, seq),
            )
    return True


def apply_status(conn: sqlite3.Connection, locker_id: str, msg: dict[str, Any], received_at: float) -> None:
    if msg["online"]:
        conn.execute(
            "UPDATE lockers SET online = 1, locker_rev = ?, snap = ?, status_json = ?, last_seen = ? WHERE id = ?",
            (msg["rev"], int(bool(msg.get("snap"))), json.dumps(msg), received_at, locker_id),
        )
    else:  # the last will: the broker lost the locker
        conn.execute("UPDATE lockers SET online = 0 WHERE id = ?", (locker_id,))


def apply_doors(conn: sqlite3.Connection, locker_id: str, msg: dict[str, Any], received_at: float) -> None:
    for door in msg["doors"]:
        full = door.get("full")
        conn.execute(
            "UPDATE doors SET state = ?, full = ?, updated_at = ? WHERE locker_id = ? AND label = ?",
            (str(door.get("s")), None if full is None else int(bool(full)), received_at, locker_id, door["d"]),
        )
    conn.execute("UPDATE lockers SET last_seen = ? WHERE id = ?", (received_at, locker_id))
