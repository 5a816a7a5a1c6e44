"""Messages from lockers: checked (signature, size, shape), then recorded in the database.

`open_message()` turns a topic and payload into an `Incoming` or raises `Rejected` with a reason the
service counts; nothing a locker (or a forger) sends can do more than that. The `apply_*` functions
run inside the caller's transaction; `apply_event()` inserts the event and applies its effect in that
same transaction, keyed on (locker, seq), so a duplicate delivery changes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lockertools.service import db, fleet_db, incidents

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
    # staff loading, returns, take-back, remote opening
    "loaded": ("closed", True),
    "load_empty": ("closed", False),
    "returned": ("closed", True),
    "return_empty": ("closed", False),
    "taken_back": ("closed", False),
    "remote_open": ("unlocking", None),
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
        from locker import protocol  # type: ignore[import-not-found]
        from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

        self.protocol: Any = protocol
        self._hmac_key: Any = HmacKey
        self._keys: dict[str, Any] = {}

    def reload(self, conn: db.Connection) -> None:
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


def apply_event(conn: db.Connection, locker_id: str, msg: dict[str, Any], received_at: float) -> bool:
    """Record one event and its effect, once per (locker, seq). True when it was new."""
    seq: int = msg["seq"]
    ev: dict[str, Any] = msg["ev"]
    kind: str = ev["k"]
    door: str | None = ev.get("d")
    cur = conn.execute(
        "INSERT INTO events(locker_id, seq, kind, door, json, received_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (locker_id, seq) DO NOTHING",
        (locker_id, seq, kind, door, json.dumps(ev, separators=(",", ":")), received_at),
    )
    if cur.rowcount == 0:
        return False
    when: float = ev["t"] if _is_int(ev.get("t")) and 0 <= ev["t"] < 1 << 32 else received_at
    if kind == "pickup" and _code(conn, locker_id, ev.get("id")) is not None:
        row = conn.execute("SELECT state FROM codes WHERE id = ? AND locker_id = ?", (ev["id"], locker_id)).fetchone()
        if row is not None and row[0] == "used":
            # The earliest pickup wins, whatever order the deliveries arrive in.
            conn.execute(
                f"UPDATE codes SET used_at = {db.least(conn)}(coalesce(used_at, ?), ?) WHERE id = ?",
                (when, when, ev["id"]),
            )
        elif row is not None:
            conn.execute("UPDATE codes SET state = 'used', used_at = ? WHERE id = ?", (when, ev["id"]))
            if row[0] in ("issued", "expired"):
                # Used codes leave the locker's store (its capacity is finite); revoked ones already do.
                fleet_db.log_change(conn, locker_id, "del", ev["id"])
    handler = _CODE_EVENTS.get(kind)
    if handler is not None and door is not None:
        handler(conn, locker_id, door, ev, when, seq)
    if door is not None:
        conn.doors_changed(locker_id)  # a door's state, contents or alarm: the desk's live wall
    if kind == "door_service" and door is not None and isinstance(ev.get("on"), bool):
        conn.execute(
            "UPDATE doors SET in_service = ?, service_seq = ? WHERE locker_id = ? AND label = ? AND service_seq < ?",
            (int(ev["on"]), seq, locker_id, door, seq),
        )
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
                'UPDATE doors SET "full" = ?, full_seq = ?, updated_at = ?' + where + " AND full_seq < ?",
                (int(full), seq, when, locker_id, door, seq),
            )
    incidents.on_event(conn, locker_id, seq, ev, when)  # what needs a person opens (or clears) an incident
    return True


# --- the effects of the staff flows' events on codes (each runs once: its event row was new) ---------


def _code(conn: db.Connection, locker_id: str, code_id: Any) -> db.Row | None:
    if not _is_int(code_id) or not 0 < code_id < 1 << 32:
        return None
    row: db.Row | None = conn.execute(
        "SELECT * FROM codes WHERE id = ? AND locker_id = ?", (code_id, locker_id)
    ).fetchone()
    return row


def _bind_door(conn: db.Connection, code_id: int, door: str, seq: int, extra: str = "", *args: Any) -> None:
    """The door a door-free code ended up in: the earliest event's (by seq), whatever the order the
    events arrive in."""
    conn.execute(
        f"UPDATE codes SET door = ?, door_seq = ?{extra} WHERE id = ? AND (door_seq IS NULL OR door_seq > ?)",
        (door, seq, *args, code_id, seq),
    )


def _finish(conn: db.Connection, locker_id: str, row: db.Row, state: str, when: float) -> None:
    """A code done with (used, taken back): out of the locker's store, its held plain code deleted.
    Times keep the earliest event's; `used` wins over `taken_back` (as a pickup does in apply_event)."""
    column = "taken_back_at" if state == "taken_back" else "used_at"
    least = db.least(conn)
    conn.execute(f"UPDATE codes SET {column} = {least}(coalesce({column}, ?), ?) WHERE id = ?", (when, when, row["id"]))
    if row["state"] in ("issued", "expired", "revoked") or (state == "used" and row["state"] == "taken_back"):
        conn.execute("UPDATE codes SET state = ? WHERE id = ?", (state, row["id"]))
    conn.execute("DELETE FROM held_codes WHERE code_id = ?", (row["id"],))
    if row["state"] in ("issued", "expired"):
        fleet_db.log_change(conn, locker_id, "del", row["id"])


def _on_loaded(conn: db.Connection, locker_id: str, door: str, ev: dict[str, Any], when: float, seq: int) -> None:
    staff = ev.get("staff") if _is_int(ev.get("staff")) and 0 < ev["staff"] < 1 << 32 else None
    detail = {"staff": fleet_db.staff_name(conn, locker_id, staff), "low": ev.get("low")}
    row = _code(conn, locker_id, ev.get("id"))
    if row is not None:
        # A prepared delivery: the locker bound the resident's code to door d. The host's row follows
        # (a later snapshot carries the door; the tag stays over "*"). The resident's pickup window
        # starts now: the row's new expiry goes to the locker in the next codes.apply.
        if row["kind"] & fleet_db.KIND_MASK == fleet_db.KIND_DELIVERY:
            fleet_db.start_pickup_window(conn, locker_id, row, when, seq)
        _bind_door(conn, row["id"], door, seq, ", loaded_at = ?, loaded_by = ?", when, staff)
        # Queued whatever the code's state, so the outcome does not depend on delivery order; the
        # service skips it if the item was picked up meanwhile (its held code is gone then).
        fleet_db.enqueue_notification(conn, locker_id, row["id"], "loaded", door, detail | {"item": row["item"]})
        return
    if ev.get("id") == 0 and door in fleet_db.locker_labels(conn, locker_id):
        # Loaded by size only: the host issues the pickup code for that door now and notifies.
        expires = int(when + fleet_db.PICKUP_DAYS * 86400)
        code, code_id = fleet_db.new_code(conn, locker_id, door, fleet_db.KIND_PICKUP, expires)
        conn.execute(
            "UPDATE codes SET loaded_at = ?, loaded_by = ?, door_seq = ? WHERE id = ?", (when, staff, seq, code_id)
        )
        conn.execute("INSERT INTO held_codes(code_id, code) VALUES (?, ?)", (code_id, code))
        fleet_db.enqueue_notification(conn, locker_id, code_id, "loaded", door, detail | {"item": None})


def _on_returned(conn: db.Connection, locker_id: str, door: str, ev: dict[str, Any], when: float, seq: int) -> None:
    row = _code(conn, locker_id, ev.get("id"))
    if row is None:
        return
    _bind_door(conn, row["id"], door, seq)
    _finish(conn, locker_id, row, "used", when)
    fleet_db.enqueue_notification(conn, locker_id, row["id"], "returned", door, {"item": row["item"]})


def _on_taken_back(conn: db.Connection, locker_id: str, door: str, ev: dict[str, Any], when: float, seq: int) -> None:
    row = _code(conn, locker_id, ev.get("id"))
    staff = fleet_db.staff_name(conn, locker_id, ev.get("staff"))
    if row is not None:
        _finish(conn, locker_id, row, "taken_back", when)
    fleet_db.enqueue_notification(
        conn, locker_id, None if row is None else row["id"], "taken_back", door,
        {"staff": staff, "item": None if row is None else row["item"]},
    )  # fmt: skip


def _on_pickup_of_held(
    conn: db.Connection, locker_id: str, door: str, ev: dict[str, Any], when: float, seq: int
) -> None:
    if _code(conn, locker_id, ev.get("id")) is not None:
        conn.execute("DELETE FROM held_codes WHERE code_id = ?", (ev["id"],))


_CODE_EVENTS: dict[str, Callable[[db.Connection, str, str, dict[str, Any], float, int], None]] = {
    "loaded": _on_loaded,
    "returned": _on_returned,
    "taken_back": _on_taken_back,
    "pickup": _on_pickup_of_held,
}


def apply_status(conn: db.Connection, locker_id: str, msg: dict[str, Any], received_at: float) -> None:
    if msg["online"]:
        conn.execute(
            "UPDATE lockers SET online = 1, locker_rev = ?, snap = ?, status_json = ?, last_seen = ? WHERE id = ?",
            (msg["rev"], int(bool(msg.get("snap"))), json.dumps(msg), received_at, locker_id),
        )
        cseq = msg.get("cseq")
        if isinstance(cseq, int) and _is_int(cseq) and 0 < cseq < _MAX_SEQ:
            # The locker admits only seqs above the last one it admitted: numbers at or below it (a
            # database restored from a backup, a tool that numbered past ours) would be refused as
            # replays. The stored top moves past it, and CommandSeqs.take() goes on from there.
            conn.execute(
                f"UPDATE lockers SET last_cmd_seq = {db.greatest(conn)}(last_cmd_seq, ?) WHERE id = ?",
                (cseq, locker_id),
            )
    else:  # the last will: the broker lost the locker
        conn.execute("UPDATE lockers SET online = 0 WHERE id = ?", (locker_id,))
    incidents.on_status(conn, locker_id, msg, received_at)  # safe mode; back online


def apply_doors(conn: db.Connection, locker_id: str, msg: dict[str, Any], received_at: float) -> None:
    for door in msg["doors"]:
        full = door.get("full")
        conn.execute(
            'UPDATE doors SET state = ?, "full" = ?, updated_at = ? WHERE locker_id = ? AND label = ?',
            (str(door.get("s")), None if full is None else int(bool(full)), received_at, locker_id, door["d"]),
        )
    conn.execute("UPDATE lockers SET last_seen = ? WHERE id = ?", (received_at, locker_id))
    conn.doors_changed(locker_id)
