"""Messages from lockers: checked (signature, size, shape), then recorded in the database.

`open_message()` turns a topic and payload into an `Incoming` or raises `Rejected` with a reason the
service counts; nothing a locker (or a forger) sends can do more than that. The `apply_*` functions
run inside the caller's transaction; `apply_event()` inserts the event and applies its effect in that
same transaction, keyed on (locker, seq), so a duplicate delivery changes nothing;
`record_door_events()` does the same for a run of events whose only effects are on doors, in a few
statements (the service's batches).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from lockertools.api import outbox
from lockertools.service import db, fleet_db, incidents, schema

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
        self._hex: dict[str, str] = {}  # each key as stored, to tell a changed one

    def reload(self, conn: db.Connection) -> None:
        # Keys made again only where they changed: the service reloads on every change another
        # process commits (an issued code), and a fleet's worth of HMAC keys costs milliseconds.
        old, self._keys, self._hex = self._keys, {}, dict(self._hex)
        for lid, key_hex in conn.execute("SELECT id, key_hex FROM lockers"):
            same = self._hex.get(lid) == key_hex and lid in old
            self._keys[lid] = old[lid] if same else self._hmac_key(bytes.fromhex(key_hex))
            self._hex[lid] = key_hex

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


# --- the statements of recording an event (Core, compiled once per database: db.Query) ---------------

_bind = sa.bindparam
_events, _doors = schema.events, schema.doors


@db.query
def _INSERT_EVENT(dialect: str) -> sa.ClauseElement:
    values: dict[str, Any] = {
        "locker_id": _bind("lid"),
        "seq": _bind("seq"),
        "kind": _bind("kind"),
        "door": _bind("door"),
    }
    values |= {"json": _bind("json"), "received_at": _bind("at")}
    conflict = [_events.c.locker_id, _events.c.seq]
    return db.insert_ignoring(dialect, _events, conflict, **values).returning(_events.c.seq)


_EVENT_COLUMNS = ("locker_id", "seq", "kind", "door", "json", "received_at")
_EVENT_ARRAYS: tuple[tuple[str, Any], ...] = (("lids", sa.Text), ("seqs", sa.BigInteger), ("kinds", sa.Text))
_EVENT_ARRAYS += (("doors", sa.Text), ("jsons", sa.Text), ("ats", sa.Float(precision=53)))


@db.query
def _INSERT_EVENTS(dialect: str) -> sa.ClauseElement:
    """PostgreSQL: many events in one statement (one array per column, unnest), the new ones returned."""
    from sqlalchemy.dialects.postgresql import ARRAY, insert

    rows = sa.func.unnest(*(_bind(name, type_=ARRAY(kind)) for name, kind in _EVENT_ARRAYS))
    table = rows.table_valued(*_EVENT_COLUMNS).render_derived()
    return (
        insert(_events)
        .from_select(list(_EVENT_COLUMNS), sa.select(*(table.c[c] for c in _EVENT_COLUMNS)))
        .on_conflict_do_nothing(index_elements=[_events.c.locker_id, _events.c.seq])
        .returning(_events.c.locker_id, _events.c.seq)
    )


def _door_update(column: str, seq_column: str, **values: Any) -> sa.ClauseElement:
    """Set a door's `column` from an event, only if the event is newer than the one that set it last:
    the result does not depend on the order deliveries arrive in, nor on an event applied twice."""
    return (
        sa.update(_doors)
        .where(_doors.c.locker_id == _bind("lid"), _doors.c.label == _bind("door"))
        .where(_doors.c[seq_column] < _bind("seq"))
        .values({column: _bind("value"), seq_column: _bind("seq"), **values})
    )


_DOOR_STATE = db.Query(lambda _: _door_update("state", "state_seq", updated_at=_bind("when")))
_DOOR_FULL = db.Query(lambda _: _door_update("full", "full_seq", updated_at=_bind("when")))
_DOOR_SERVICE = db.Query(lambda _: _door_update("in_service", "service_seq"))


def _event_row(locker_id: str, msg: dict[str, Any], received_at: float) -> dict[str, Any]:
    ev: dict[str, Any] = msg["ev"]
    row = {"lid": locker_id, "seq": msg["seq"], "kind": ev["k"], "door": ev.get("d")}
    return row | {"json": json.dumps(ev, separators=(",", ":")), "at": received_at}


def _when(ev: dict[str, Any], received_at: float) -> float:
    """The event's time: the locker's clock when it gave one, else when the host received it."""
    when: float = ev["t"] if _is_int(ev.get("t")) and 0 <= ev["t"] < 1 << 32 else received_at
    return when


def _door_effects(
    locker_id: str, msg: dict[str, Any], received_at: float, into: dict[db.Query, list[dict[str, Any]]]
) -> None:
    """The seq-guarded door updates an event implies (state, parcel, in service), added to `into`."""
    seq: int = msg["seq"]
    ev: dict[str, Any] = msg["ev"]
    kind, door = ev["k"], ev.get("d")
    if door is None:
        return
    at = {"lid": locker_id, "door": door, "seq": seq}
    if kind == "door_service" and isinstance(ev.get("on"), bool):
        into[_DOOR_SERVICE].append(at | {"value": int(ev["on"])})
    effect = _DOOR_EFFECTS.get(kind)
    if effect is not None:
        state, full = effect
        when = _when(ev, received_at)
        if state is not None:
            into[_DOOR_STATE].append(at | {"value": state, "when": when})
        if full is not None:
            into[_DOOR_FULL].append(at | {"value": int(full), "when": when})


def _door_steps() -> dict[db.Query, list[dict[str, Any]]]:
    return {_DOOR_STATE: [], _DOOR_FULL: [], _DOOR_SERVICE: []}


def is_door_event(msg: dict[str, Any]) -> bool:
    """An event whose only effects are seq-guarded door updates (no code, change log or notification):
    recording it twice, or a run of them in any order, leaves the same database. record_door_events
    records a run of them at once."""
    return msg["ev"]["k"] not in _CODE_EVENTS


def record_door_events(
    conn: db.Connection, events: list[tuple[str, dict[str, Any]]], received_at: float, savepoint: str | None = None
) -> list[bool]:
    """Record a run of door events (is_door_event; (locker id, message) each) and their effects, each once
    per (locker, seq), in a few statements whatever the run's length: one round trip on PostgreSQL.
    The door updates run for duplicates too (their seq guard makes a second time change nothing), so
    nothing waits for the inserts' answers. Returns, per event, whether it was new. Inside a transaction;
    `savepoint`: all of it inside SAVEPOINT and RELEASE of that name, in the same round trip (after an
    error, the caller rolls back to it)."""
    rows = [_event_row(lid, msg, received_at) for lid, msg in events]
    doors = _door_steps()
    for lid, msg in events:
        _door_effects(lid, msg, received_at, doors)
    steps: list[tuple[db.Query | str, list[dict[str, Any]]]]
    if conn.sqlite:
        steps = [(_INSERT_EVENT, rows)]
    else:  # one statement for the run's events: the server parses and plans it once
        columns = zip(*(row.values() for row in rows), strict=True)
        steps = [(_INSERT_EVENTS, [{name: list(c) for (name, _), c in zip(_EVENT_ARRAYS, columns, strict=True)}])]
    steps += [(q, r) for q, r in doors.items() if r]
    steps.append((incidents.OPEN_LOCKERS, [{}]))  # in the same round trip: see below
    if savepoint is not None:
        steps = [(f"SAVEPOINT {savepoint}", [{}]), *steps, (f"RELEASE {savepoint}", [{}])]
    answers = conn.run_many(steps)
    inserted = answers[0 if savepoint is None else 1]
    open_lockers = {str(r[0]) for r in answers[-1 if savepoint is None else -2][0].fetchall()}
    if conn.sqlite:
        new = [result.fetchone() is not None for result in inserted]
    else:
        # The first delivery of an event in the run is the one recorded (a second one in the same
        # statement meets the first's row: ON CONFLICT DO NOTHING).
        fresh = {(r[0], int(r[1])) for r in inserted[0]}
        new = []
        for lid, msg in events:
            key = (lid, msg["seq"])
            new.append(key in fresh)
            fresh.discard(key)
    # What apply_event does after a door event's effects, for the new ones: incidents opened or
    # cleared (jammed, forced, left open, closed), and the desk's live wall told. Most door events
    # clear a cause, and most lockers have no open incident: those cost no statement.
    moved: set[str] = set()
    for (lid, msg), was_new in zip(events, new, strict=True):
        if was_new:
            ev = msg["ev"]
            if incidents.may_act(ev["k"], lid, open_lockers):
                incidents.on_event(conn, lid, msg["seq"], ev, _when(ev, received_at))
            if ev.get("d") is not None:
                moved.add(lid)
    for lid in sorted(moved):
        conn.doors_changed(lid)
    return new


def apply_event(conn: db.Connection, locker_id: str, msg: dict[str, Any], received_at: float) -> bool:
    """Record one event and its effect, once per (locker, seq). True when it was new."""
    seq: int = msg["seq"]
    ev: dict[str, Any] = msg["ev"]
    kind: str = ev["k"]
    door: str | None = ev.get("d")
    if conn.run(_INSERT_EVENT, _event_row(locker_id, msg, received_at)).fetchone() is None:
        return False
    when = _when(ev, received_at)
    code = _code(conn, locker_id, ev.get("id")) if kind in _CODE_EVENTS else None
    if kind == "pickup" and code is not None:
        row = code
        if row["state"] == "used":
            # The earliest pickup wins, whatever order the deliveries arrive in.
            conn.send(
                f"UPDATE codes SET used_at = {db.least(conn)}(coalesce(used_at, ?), ?) WHERE id = ?",
                (when, when, ev["id"]),
            )
        else:
            conn.send("UPDATE codes SET state = 'used', used_at = ? WHERE id = ?", (when, ev["id"]))
            outbox.queue_delivery_event(conn, "picked_up", ev["id"], when, door)
            if row["state"] in ("issued", "expired"):
                # Used codes leave the locker's store (its capacity is finite); revoked ones already do.
                fleet_db.log_change(conn, locker_id, "del", ev["id"])
    handler = _CODE_EVENTS.get(kind)
    if handler is not None and door is not None:
        handler(conn, locker_id, door, ev, when, seq, code)
    doors = _door_steps()
    _door_effects(locker_id, msg, received_at, doors)
    for statement, updates in doors.items():
        for update in updates:
            conn.send(statement, update)
    if door is not None:
        conn.doors_changed(locker_id)  # a door's state, contents or alarm: the desk's live wall
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
    conn.send(
        f"UPDATE codes SET door = ?, door_seq = ?{extra} WHERE id = ? AND (door_seq IS NULL OR door_seq > ?)",
        (door, seq, *args, code_id, seq),
    )


def _finish(conn: db.Connection, locker_id: str, row: db.Row, state: str, when: float) -> None:
    """A code done with (used, taken back): out of the locker's store, its held plain code deleted.
    Times keep the earliest event's; `used` wins over `taken_back` (as a pickup does in apply_event)."""
    column = "taken_back_at" if state == "taken_back" else "used_at"
    least = db.least(conn)
    conn.send(f"UPDATE codes SET {column} = {least}(coalesce({column}, ?), ?) WHERE id = ?", (when, when, row["id"]))
    if row["state"] in ("issued", "expired", "revoked") or (state == "used" and row["state"] == "taken_back"):
        conn.send("UPDATE codes SET state = ? WHERE id = ?", (state, row["id"]))
    conn.send("DELETE FROM held_codes WHERE code_id = ?", (row["id"],))
    if row["state"] in ("issued", "expired"):
        fleet_db.log_change(conn, locker_id, "del", row["id"])


def _on_loaded(
    conn: db.Connection, locker_id: str, door: str, ev: dict[str, Any], when: float, seq: int, row: db.Row | None
) -> None:
    staff = ev.get("staff") if _is_int(ev.get("staff")) and 0 < ev["staff"] < 1 << 32 else None
    detail = {"staff": fleet_db.staff_name(conn, locker_id, staff), "low": ev.get("low")}
    if row is not None:
        # A prepared delivery: the locker bound the resident's code to door d. The host's row follows
        # (a later snapshot carries the door; the tag stays over "*"). The resident's pickup window
        # starts now: the row's new expiry goes to the locker in the next codes.apply.
        if row["kind"] & fleet_db.KIND_MASK == fleet_db.KIND_DELIVERY:
            fleet_db.start_pickup_window(conn, locker_id, row, when, seq)
            if row["door_seq"] is None:  # its first load: the state change the town's webhooks hear of
                outbox.queue_delivery_event(conn, "loaded", row["id"], when, door)
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


def _on_returned(
    conn: db.Connection, locker_id: str, door: str, ev: dict[str, Any], when: float, seq: int, row: db.Row | None
) -> None:
    if row is None:
        return
    _bind_door(conn, row["id"], door, seq)
    _finish(conn, locker_id, row, "used", when)
    fleet_db.enqueue_notification(conn, locker_id, row["id"], "returned", door, {"item": row["item"]})


def _on_taken_back(
    conn: db.Connection, locker_id: str, door: str, ev: dict[str, Any], when: float, seq: int, row: db.Row | None
) -> None:
    staff = fleet_db.staff_name(conn, locker_id, ev.get("staff"))
    if row is not None:
        if row["state"] in ("issued", "expired", "revoked"):
            outbox.queue_delivery_event(conn, "taken_back", row["id"], when, door)
        _finish(conn, locker_id, row, "taken_back", when)
    fleet_db.enqueue_notification(
        conn, locker_id, None if row is None else row["id"], "taken_back", door,
        {"staff": staff, "item": None if row is None else row["item"]},
    )  # fmt: skip


def _on_pickup_of_held(
    conn: db.Connection, locker_id: str, door: str, ev: dict[str, Any], when: float, seq: int, row: db.Row | None
) -> None:
    if row is not None:
        conn.send("DELETE FROM held_codes WHERE code_id = ?", (ev["id"],))


# The events with effects on codes, each given the code row its `id` names (None: none of this locker's).
_CODE_EVENTS: dict[str, Callable[[db.Connection, str, str, dict[str, Any], float, int, db.Row | None], None]] = {
    "loaded": _on_loaded,
    "returned": _on_returned,
    "taken_back": _on_taken_back,
    "pickup": _on_pickup_of_held,
}


def apply_status(conn: db.Connection, locker_id: str, msg: dict[str, Any], received_at: float) -> None:
    if msg["online"]:
        conn.send(
            "UPDATE lockers SET online = 1, locker_rev = ?, snap = ?, status_json = ?, last_seen = ? WHERE id = ?",
            (msg["rev"], int(bool(msg.get("snap"))), json.dumps(msg), received_at, locker_id),
        )
        cseq = msg.get("cseq")
        if isinstance(cseq, int) and _is_int(cseq) and 0 < cseq < _MAX_SEQ:
            # The locker admits only seqs above the last one it admitted: numbers at or below it (a
            # database restored from a backup, a tool that numbered past ours) would be refused as
            # replays. The stored top moves past it, and CommandSeqs.take() goes on from there.
            conn.send(
                f"UPDATE lockers SET last_cmd_seq = {db.greatest(conn)}(last_cmd_seq, ?) WHERE id = ?",
                (cseq, locker_id),
            )
    else:  # the last will: the broker lost the locker
        conn.send("UPDATE lockers SET online = 0 WHERE id = ?", (locker_id,))
    incidents.on_status(conn, locker_id, msg, received_at)  # safe mode; back online


def apply_doors(conn: db.Connection, locker_id: str, msg: dict[str, Any], received_at: float) -> None:
    for door in msg["doors"]:
        full = door.get("full")
        conn.send(
            'UPDATE doors SET state = ?, "full" = ?, updated_at = ? WHERE locker_id = ? AND label = ?',
            (str(door.get("s")), None if full is None else int(bool(full)), received_at, locker_id, door["d"]),
        )
    conn.send("UPDATE lockers SET last_seen = ? WHERE id = ?", (received_at, locker_id))
    conn.doors_changed(locker_id)
