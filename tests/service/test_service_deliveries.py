"""Deliveries, returns, staff PINs and their events in the database (no broker): the rows the locker
gets, each new event applied once in any delivery order, the plain code held only until notified."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import delivery_batches

from lockertools.contract import check
from lockertools.service import db, fleet_db, ingest
from lockertools.service.migrations.legacy import LEGACY_STEPS, LEGACY_VERSION
from lockertools.service.sync import plan

KEY = bytes(range(32))
LABELS = ["A1", "A2", "A3"]
RECEIVED = 1_800_000_000.0


def _fleet(path: Path, lockers: tuple[str, ...] = ("hall-1",)) -> sqlite3.Connection:
    conn = db.connect(path, create=True)
    for n, lid in enumerate(lockers):
        fleet_db.add_locker(conn, lid, bytes([n]) * 32 if n else KEY, LABELS)
    return conn


def _tag(door: str, code: str, key: bytes = KEY) -> str:
    from locker import codes  # type: ignore[import-not-found]

    tag: bytes = codes.tag(key, door, code.encode())
    return tag.hex()


def _event(conn: sqlite3.Connection, seq: int, **ev: Any) -> bool:
    with db.transaction(conn):
        return ingest.apply_event(conn, "hall-1", {"v": 1, "lid": "hall-1", "seq": seq, "ev": ev}, RECEIVED)


def _held(conn: sqlite3.Connection, code_id: int) -> str | None:
    row = conn.execute("SELECT code FROM held_codes WHERE code_id = ?", (code_id,)).fetchone()
    return None if row is None else str(row[0])


def _notes(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute("SELECT kind, code_id, door FROM notifications ORDER BY id")]


# --- the migration ---------------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_a_version_1_database_migrates_keeping_its_codes_and_log(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    for statement in LEGACY_STEPS[0]:
        old.execute(statement)
    old.execute("PRAGMA user_version = 1")
    old.execute(
        "INSERT INTO lockers(id, key_hex, doors_json, created_at) VALUES ('hall-1', ?, '[\"A1\"]', 0)", (KEY.hex(),)
    )
    old.execute(
        "INSERT INTO codes(id, locker_id, door, kind, tag_hex, state, recipient, created_at)"
        " VALUES (77, 'hall-1', 'A1', 0, ?, 'used', 'ann', 5)",
        ("ab" * 16,),
    )
    old.execute("INSERT INTO changes(locker_id, rev, op, code_id) VALUES ('hall-1', 1, 'add', 77)")
    old.close()
    conn = db.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LEGACY_VERSION == 4
    assert db.schema_revision(conn) == db.schema_head()
    assert tuple(conn.execute("SELECT id, door, kind, state, recipient, created_at FROM codes").fetchone()) == (
        77, "A1", 0, "used", "ann", 5,
    )  # fmt: skip
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    # The rebuilt table takes the new kinds and the door-free label.
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO codes(id, locker_id, door, kind, tag_hex, created_at) VALUES (78, 'hall-1', '*', 115, 'x', 0)"
        )
    with pytest.raises(db.IntegrityError), db.transaction(conn):
        conn.execute(
            "INSERT INTO codes(id, locker_id, door, kind, tag_hex, created_at) VALUES (79, 'x', '*', 3, 'x', 0)"
        )


# --- preparing -------------------------------------------------------------------------------------


def test_a_prepared_delivery_is_a_door_free_row_with_its_number_as_id(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    before = time.time()
    issued = fleet_db.prepare_delivery(conn, "hall-1", size="M", low=True, item="permit", contact="ann@example.org")
    assert 100000 <= issued.number <= 999999 and issued.code_id == issued.number
    assert issued.code not in repr(issued)
    row = conn.execute("SELECT * FROM codes WHERE id = ?", (issued.number,)).fetchone()
    assert (row["door"], row["kind"], row["item"], row["recipient"]) == (
        "*",
        3 | 2 << 4 | 0x40,
        "permit",
        "ann@example.org",
    )
    assert row["tag_hex"] == _tag("*", issued.code)
    # Loading allowance (7 days) + the pickup window (5 days): the window restarts at `loaded`.
    assert before + 12 * 86400 - 1 <= row["expires"] <= time.time() + 12 * 86400
    assert _held(conn, issued.number) == issued.code  # until the resident is notified after `loaded`
    assert fleet_db.describe_kind(row["kind"]) == "delivery M low"
    # What the planner sends keeps the contract (door "*", kind byte).
    with db.transaction(conn):
        conn.execute("UPDATE lockers SET locker_rev = 0")
    inputs = fleet_db.sync_input(conn, "hall-1")
    assert inputs is not None
    (apply,) = plan(inputs)
    assert apply.args["add"] == [[row["tag_hex"], "*", 0x63, row["expires"], issued.number]]
    check(
        "command",
        {"v": 1, "lid": "hall-1", "seq": 1, "now": 1, "exp": 2, "tx": "t", "op": apply.op, "args": apply.args},
    )


def test_a_delivery_row_carries_its_item_to_a_locker_that_reads_items(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    bags = fleet_db.prepare_delivery(conn, "hall-1", item="waste bags")
    parcel = fleet_db.prepare_delivery(conn, "hall-1", item="parcel")
    status = {"v": 1, "lid": "hall-1", "online": True, "mode": "normal", "fw": "0.1.0", "rev": 0, "snap": False}
    for reads, bags_item in ((False, None), (True, 3)):
        msg = {**status, "items": True} if reads else status
        with db.transaction(conn):
            ingest.apply_status(conn, "hall-1", msg, RECEIVED)
        inputs = fleet_db.sync_input(conn, "hall-1")
        assert inputs is not None
        (apply,) = plan(inputs)
        rows = {row[4]: row for row in apply.args["add"]}
        # a locker from before items gets five fields (six would be refused); a parcel never needs a sixth
        assert (rows[bags.number][5:], rows[parcel.number][5:]) == ([bags_item] if bags_item else [], [])
        check(
            "command",
            {"v": 1, "lid": "hall-1", "seq": 1, "now": 1, "exp": 2, "tx": "t", "op": apply.op, "args": apply.args},
        )
        check("status", msg)


def test_prepare_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    with pytest.raises(fleet_db.FleetError, match="unknown locker"):
        fleet_db.prepare_delivery(conn, "hall-9")
    with pytest.raises(fleet_db.FleetError, match="size"):
        fleet_db.prepare_delivery(conn, "hall-1", size="XL")
    with pytest.raises(fleet_db.FleetError, match="item"):
        fleet_db.prepare_delivery(conn, "hall-1", item="pizza")
    with pytest.raises(fleet_db.FleetError, match="window"):
        fleet_db.prepare_delivery(conn, "hall-1", days=0)
    assert conn.execute("SELECT count(*) FROM codes").fetchone()[0] == 0


def test_no_two_active_codes_answer_to_the_same_digits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A drawn code that an active code already matches at any door or door-free is drawn again."""
    conn = _fleet(tmp_path / "f.db")
    draws = iter([1234, 1234, 1234, 5678])
    monkeypatch.setattr(fleet_db.secrets, "randbelow", lambda n: next(draws) if n == 10**8 else 4242)
    first = fleet_db.prepare_delivery(conn, "hall-1")
    pickup = fleet_db.issue_code(conn, "hall-1", "A2")
    assert (first.code, pickup.code) == ("00001234", "00005678")


def test_cancel_a_delivery_before_it_is_loaded_only(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    waiting = fleet_db.prepare_delivery(conn, "hall-1")
    loaded = fleet_db.prepare_delivery(conn, "hall-1")
    _event(conn, 1, k="loaded", t=5, d="A2", id=loaded.number, staff=9)
    assert fleet_db.cancel_delivery(conn, waiting.number) == "hall-1"
    assert _held(conn, waiting.number) is None
    last = conn.execute("SELECT op, code_id FROM changes ORDER BY rev DESC LIMIT 1").fetchone()
    assert tuple(last) == ("del", waiting.number)
    with pytest.raises(fleet_db.FleetError, match="loaded at door A2"):
        fleet_db.cancel_delivery(conn, loaded.number)
    with pytest.raises(fleet_db.FleetError, match="no delivery"):
        fleet_db.cancel_delivery(conn, 42)
    statuses = {d["id"]: d["status"] for d in fleet_db.delivery_table(conn)}
    assert statuses == {waiting.number: "cancelled", loaded.number: "in door A2"}


# --- the events ------------------------------------------------------------------------------------


def test_loaded_binds_the_delivery_to_its_door_and_queues_the_residents_notification(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    (staff_pin,) = fleet_db.add_staff(conn, "Bea", ["hall-1"])[1]
    staff_id = staff_pin.code_id  # the locker reports the PIN's code id
    issued = fleet_db.prepare_delivery(conn, "hall-1", size="S")
    assert _event(conn, 1, k="loaded", t=50, d="A3", id=issued.number, staff=staff_id)
    assert not _event(conn, 1, k="loaded", t=50, d="A3", id=issued.number, staff=staff_id)  # a duplicate
    row = conn.execute(
        "SELECT door, state, loaded_at, loaded_by, notify_state FROM codes WHERE id = ?", (issued.number,)
    )
    assert tuple(row.fetchone()) == ("A3", "issued", 50, staff_id, "pending")
    assert tuple(conn.execute("SELECT doors.full, state FROM doors WHERE label = 'A3'").fetchone()) == (1, "closed")
    note = conn.execute("SELECT kind, code_id, door, detail_json FROM notifications").fetchall()
    assert [tuple(n)[:3] for n in note] == [("loaded", issued.number, "A3")]
    assert json.loads(note[0]["detail_json"]) == {"staff": "Bea", "low": None, "item": "parcel"}
    assert issued.code not in note[0]["detail_json"]
    assert _held(conn, issued.number) == issued.code  # until the hook took it (the service deletes it)
    # A snapshot still carries the loaded delivery door-free (the locker's journal has its door).
    inputs = fleet_db.sync_input(conn, "hall-1") if _set_rev(conn, 0) else None
    assert inputs is not None
    rows = {c.id: c for c in inputs.active}
    assert (rows[issued.number].door, rows[issued.number].tag_hex) == ("*", _tag("*", issued.code))
    # The resident picks up: used, out of the locker's store, the held code gone.
    _event(conn, 2, k="pickup", t=60, d="A3", id=issued.number)
    assert conn.execute("SELECT state FROM codes WHERE id = ?", (issued.number,)).fetchone()[0] == "used"
    assert _held(conn, issued.number) is None
    assert [d["status"] for d in fleet_db.delivery_table(conn)] == ["picked up"]


def _set_rev(conn: sqlite3.Connection, rev: int) -> bool:
    with db.transaction(conn):
        conn.execute("UPDATE lockers SET locker_rev = ?", (rev,))
    return True


def test_loading_by_size_only_issues_a_pickup_code_for_that_door(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    rev = conn.execute("SELECT host_rev FROM lockers").fetchone()[0]
    _event(conn, 1, k="loaded", t=1_800_000_000, d="A1", id=0, staff=5)
    row = conn.execute("SELECT * FROM codes WHERE loaded_at IS NOT NULL").fetchone()
    assert (row["door"], row["kind"], row["state"], row["expires"]) == ("A1", 0, "issued", 1_800_000_000 + 5 * 86400)
    code = _held(conn, row["id"])
    assert code is not None and row["tag_hex"] == _tag("A1", code)  # bound to its door
    assert conn.execute("SELECT host_rev FROM lockers").fetchone()[0] == rev + 1  # the locker will get it
    assert _notes(conn) == [("loaded", row["id"], "A1")]
    assert [d["status"] for d in fleet_db.delivery_table(conn)] == ["in door A1"]


def test_returns_take_back_and_service_events(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    ret = fleet_db.issue_return_code(conn, "hall-1", size="L", recipient="bob")
    assert ret.code not in repr(ret)
    row = conn.execute("SELECT door, kind, tag_hex, item FROM codes WHERE id = ?", (ret.code_id,)).fetchone()
    assert tuple(row) == ("*", 2 | 3 << 4, _tag("*", ret.code), "borrowed material")
    _event(conn, 1, k="return_empty", t=5, d="A2", id=ret.code_id)
    assert conn.execute("SELECT state FROM codes WHERE id = ?", (ret.code_id,)).fetchone()[0] == "issued"
    assert _notes(conn) == []
    _event(conn, 2, k="returned", t=6, d="A2", id=ret.code_id)
    assert tuple(conn.execute("SELECT state, door FROM codes WHERE id = ?", (ret.code_id,)).fetchone()) == (
        "used",
        "A2",
    )
    assert _notes(conn) == [("returned", ret.code_id, "A2")]
    # An expired pickup still in its door is to take back; staff take it.
    old = fleet_db.issue_code(conn, "hall-1", "A1", expires=100)
    _event(conn, 3, k="closed_full", t=7, d="A1", id=old.code_id)
    with db.transaction(conn):
        fleet_db.expire_codes(conn, time.time())
    assert [r["id"] for r in fleet_db.take_back_table(conn)] == [old.code_id]
    (staff_pin,) = fleet_db.add_staff(conn, "Cem", ["hall-1"])[1]
    staff_id = staff_pin.code_id  # the locker reports the PIN's code id
    _event(conn, 4, k="taken_back", t=8, d="A1", id=old.code_id, staff=staff_id)
    assert conn.execute("SELECT state FROM codes WHERE id = ?", (old.code_id,)).fetchone()[0] == "taken_back"
    assert fleet_db.take_back_table(conn) == []
    assert _notes(conn)[-1] == ("taken_back", old.code_id, "A1")
    # door_service: the newest event wins whatever order they arrive in.
    _event(conn, 10, k="door_service", t=9, d="A3", on=False, by="ann")
    _event(conn, 9, k="door_service", t=9, d="A3", on=True, staff=staff_id)
    assert conn.execute("SELECT in_service FROM doors WHERE label = 'A3'").fetchone()[0] == 0


def test_staff_pins_one_member_many_lockers_names_stay_on_the_host(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db", ("hall-1", "hall-2"))
    staff_id, (one, two) = fleet_db.add_staff(conn, "Dana", ["hall-1", "hall-2"])
    assert len(one.pin) == len(two.pin) == fleet_db.STAFF_DIGITS
    rows = conn.execute("SELECT id, locker_id, door, kind, tag_hex, state FROM codes ORDER BY locker_id").fetchall()
    assert [(r["locker_id"], r["door"], r["kind"]) for r in rows] == [("hall-1", "*", 1), ("hall-2", "*", 1)]
    assert [r["id"] for r in rows] == [one.code_id, two.code_id] and one.staff_id == two.staff_id == staff_id
    assert rows[0]["tag_hex"] == _tag("*", one.pin)
    assert rows[1]["tag_hex"] == _tag("*", two.pin, bytes([1]) * 32)
    assert fleet_db.staff_name(conn, "hall-2", two.code_id) == "Dana"
    assert fleet_db.staff_name(conn, "hall-1", two.code_id) is None  # another locker's code
    assert fleet_db.staff_name(conn, "hall-1", True) is None
    assert [m["name"] for m in fleet_db.staff_table(conn)] == ["Dana"]
    assert fleet_db.remove_staff(conn, staff_id) == 2
    assert {r[0] for r in conn.execute("SELECT state FROM codes")} == {"revoked"}
    assert fleet_db.staff_table(conn) == []
    with pytest.raises(fleet_db.FleetError):
        fleet_db.remove_staff(conn, staff_id)
    with pytest.raises(fleet_db.FleetError, match="name"):
        fleet_db.add_staff(conn, " ", ["hall-1"])


def test_a_reminder_goes_once_a_day_before_the_window_ends(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    now = time.time()
    due = fleet_db.issue_code(conn, "hall-1", "A1", expires=int(now + 3600))
    fresh = fleet_db.issue_code(conn, "hall-1", "A2", expires=int(now + 3600))  # active for less than a day
    later = fleet_db.issue_code(conn, "hall-1", "A3", expires=int(now + 3 * 86400))
    unloaded = fleet_db.prepare_delivery(conn, "hall-1", days=0.5)  # not in a door: nobody to remind
    with db.transaction(conn):
        conn.execute(
            "UPDATE codes SET created_at = ? WHERE id IN (?, ?, ?)",
            (now - 4 * 86400, due.code_id, later.code_id, unloaded.number),
        )
        assert fleet_db.queue_reminders(conn, now) == 1
        assert fleet_db.queue_reminders(conn, now + 60) == 0
    assert _notes(conn) == [("reminder", due.code_id, "A1")]
    assert fresh.code_id not in [n[1] for n in _notes(conn)]


def test_requests_are_checked_and_logged_with_who_asked(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    request_id, tx = fleet_db.queue_request(conn, "hall-1", "door.open", {"door": "A2", "r": "phone"}, "desk-ann")
    row = fleet_db.request_table(conn)[0]
    assert (row["id"], row["tx"], row["by"], row["state"]) == (request_id, tx, "desk-ann", "queued")
    assert json.loads(row["args_json"]) == {"door": "A2", "r": "phone", "by": "desk-ann"}
    for args, by, match in [
        ({"door": "Z9"}, "ann", "no door"),
        ({"door": "A1"}, "", "who asked"),
        ({"door": "A1"}, "x" * 33, "who asked"),
        ({"door": "A1", "r": "x" * 65}, "ann", "reason"),
    ]:
        with pytest.raises(fleet_db.FleetError, match=match):
            fleet_db.queue_request(conn, "hall-1", "door.open", args, by)
    with pytest.raises(fleet_db.FleetError, match="unknown request"):
        fleet_db.queue_request(conn, "hall-1", "open_all", {"door": "A1"}, "ann")


# --- exactly once, in any delivery order ------------------------------------------------------------

NUMBERS = [200001, 200002]
RETURN_ID = 300001
STAFF = 400001


def _setup(path: Path) -> sqlite3.Connection:
    """Two deliveries, a return code and a staff PIN with fixed ids and tags."""
    conn = _fleet(path)
    with db.transaction(conn):
        conn.execute("INSERT INTO staff(id, name, created_at) VALUES (?, 'Eve', 0)", (STAFF,))
        for code_id, kind in [(NUMBERS[0], 3), (NUMBERS[1], 3 | 0x10), (RETURN_ID, 2), (STAFF, 1)]:
            conn.execute(
                "INSERT INTO codes(id, locker_id, door, kind, tag_hex, expires, created_at, staff_id)"
                " VALUES (?, 'hall-1', '*', ?, ?, 2000000000, 0, ?)",
                (code_id, kind, f"{code_id:032x}", STAFF if kind == 1 else None),
            )
            conn.execute("INSERT INTO held_codes(code_id, code) VALUES (?, ?)", (code_id, f"{code_id:08d}"))
            fleet_db.log_change(conn, "hall-1", "add", code_id)
    return conn


def _dump(conn: sqlite3.Connection) -> dict[str, Any]:
    """What the events mean, independent of delivery order (random size-only codes by door only)."""
    return {
        "events": [tuple(r) for r in conn.execute("SELECT seq, kind, door, json FROM events ORDER BY seq")],
        "codes": sorted(
            tuple(r)
            for r in conn.execute(
                "SELECT CASE WHEN loaded_at IS NOT NULL AND (kind & 15) = 0 THEN 0 ELSE id END,"
                " door, kind, state, loaded_at, loaded_by, used_at, taken_back_at, expires FROM codes"
            )
        ),
        "held": sorted(r[0] for r in conn.execute("SELECT c.door FROM held_codes h JOIN codes c ON c.id = h.code_id")),
        "doors": [
            tuple(r) for r in conn.execute("SELECT label, state, doors.full, in_service FROM doors ORDER BY label")
        ],
        "notes": sorted(
            tuple(r) for r in conn.execute("SELECT kind, door, detail_json, code_id IS NULL FROM notifications")
        ),
        "host_rev": conn.execute("SELECT host_rev FROM lockers").fetchone()[0],
    }


new_events = st.lists(
    st.one_of(
        st.builds(lambda d, n: {"k": "loaded", "d": d, "id": n, "staff": STAFF},
                  st.sampled_from(LABELS), st.sampled_from([*NUMBERS, 0])),
        st.builds(lambda d, n: {"k": "load_empty", "d": d, "id": n, "staff": STAFF},
                  st.sampled_from(LABELS), st.sampled_from(NUMBERS)),
        st.builds(lambda d, n: {"k": "pickup", "d": d, "id": n},
                  st.sampled_from(LABELS), st.sampled_from(NUMBERS)),
        st.builds(lambda d, k: {"k": k, "d": d, "id": RETURN_ID},
                  st.sampled_from(LABELS), st.sampled_from(["returned", "return_empty"])),
        st.builds(lambda d, n: {"k": "taken_back", "d": d, "id": n, "staff": STAFF},
                  st.sampled_from(LABELS), st.sampled_from(NUMBERS)),
        st.builds(lambda d, on: {"k": "door_service", "d": d, "on": on, "by": "ann"},
                  st.sampled_from(LABELS), st.booleans()),
        st.builds(lambda d: {"k": "remote_open", "d": d, "by": "ann"}, st.sampled_from(LABELS)),
        st.just({"k": "staff_in", "staff": STAFF}),
    ),
    min_size=1,
    max_size=10,
)  # fmt: skip


@st.composite
def deliveries(draw: Any) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Events (seq = index + 1, t = seq) delivered at least once each, some again, in any order,
    cut into transactions at random places."""
    evs = [ev | {"t": 1_700_000_000 + n} for n, ev in enumerate(draw(new_events))]
    return evs, delivery_batches(draw, len(evs), max_again=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_new_events_apply_once_in_any_order_and_duplication(case: Any) -> None:
    evs, batches = case
    with tempfile.TemporaryDirectory() as tmp:
        once = _setup(Path(tmp) / "once.db")
        for n, ev in enumerate(evs):
            assert _event(once, n + 1, **ev)
        messy = _setup(Path(tmp) / "messy.db")
        new = 0
        for batch in batches:
            with db.transaction(messy):
                for i in batch:
                    new += ingest.apply_event(
                        messy, "hall-1", {"v": 1, "lid": "hall-1", "seq": i + 1, "ev": evs[i]}, RECEIVED
                    )
        assert new == len(evs)
        assert _dump(messy) == _dump(once)
        # Every notification is one event's: as many as the events that make one.
        makes = sum(ev["k"] in ("loaded", "returned", "taken_back") for ev in evs)
        assert messy.execute("SELECT count(*) FROM notifications").fetchone()[0] == makes
        once.close()
        messy.close()


@pytest.mark.parametrize(
    "ev",
    [
        {"k": "loaded", "t": 1 << 70, "d": "A1", "id": 1 << 40, "staff": 1 << 70},
        {"k": "loaded", "t": 5, "d": "Z9", "id": 0, "staff": -1},
        {"k": "pickup", "t": 5, "d": "A1", "id": 1 << 64},
        {"k": "returned", "t": "x", "d": "A1", "id": -5},
        {"k": "taken_back", "t": 5, "d": "A1", "id": True, "staff": "Eve"},
        {"k": "door_service", "t": 5, "d": "A1", "on": "yes"},
    ],
)
def test_odd_events_are_recorded_and_change_nothing_else(tmp_path: Path, ev: dict[str, Any]) -> None:
    """A signed event with odd fields is recorded (and so acknowledged), never an endless error."""
    conn = _fleet(tmp_path / "f.db")
    rev = conn.execute("SELECT host_rev FROM lockers").fetchone()[0]
    assert _event(conn, 1, **ev)
    assert conn.execute("SELECT count(*) FROM codes").fetchone()[0] == 0
    assert conn.execute("SELECT host_rev FROM lockers").fetchone()[0] == rev


def test_a_delivery_that_expires_unloaded_drops_its_held_code(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    issued = fleet_db.prepare_delivery(conn, "hall-1", days=1)
    with db.transaction(conn):
        assert fleet_db.expire_codes(conn, issued.expires + 1) == 1
    assert _held(conn, issued.number) is None
    assert [d["status"] for d in fleet_db.delivery_table(conn)] == ["expired, not loaded"]
    assert fleet_db.take_back_table(conn) == []  # nothing in a door


# --- the resident and the town's case --------------------------------------------------------------


def test_a_delivery_records_its_resident_and_case(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "fleet.db")
    resident = fleet_db.Resident(" Anne Peeters ", "anne@example.be", "+32 470 12.34.56", "fr", "EL-2026-0042")
    issued = fleet_db.prepare_delivery(
        conn, "hall-1", item="document", resident=resident, source="desk", created_by="lea"
    )
    assert fleet_db.delivery_resident(conn, issued.number) == fleet_db.Resident(
        "Anne Peeters", "anne@example.be", "+32470123456", "fr", "EL-2026-0042"
    )
    (row,) = fleet_db.delivery_table(conn, "hall-1")
    assert (row["case_ref"], row["language"], row["source"]) == ("EL-2026-0042", "fr", "desk")
    plain = fleet_db.prepare_delivery(conn, "hall-1")  # no resident given: the default language only
    assert fleet_db.delivery_resident(conn, plain.number) == fleet_db.Resident()


@pytest.mark.parametrize(
    ("resident", "field"),
    [
        (fleet_db.Resident(email="anne.example.be"), "e-mail"),
        (fleet_db.Resident(phone="0470 12"), "phone"),
        (fleet_db.Resident(language="de"), "language"),
        (fleet_db.Resident(case_ref="x" * 65), "case number"),
        (fleet_db.Resident(name="Anne\nPeeters"), "name"),
    ],
)
def test_a_bad_resident_field_is_refused_by_name_and_nothing_is_written(
    tmp_path: Path, resident: fleet_db.Resident, field: str
) -> None:
    conn = _fleet(tmp_path / "fleet.db")
    with pytest.raises(fleet_db.FleetError, match=field):
        fleet_db.prepare_delivery(conn, "hall-1", resident=resident)
    assert conn.execute("SELECT count(*) FROM codes").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM delivery_details").fetchone()[0] == 0


def test_a_database_at_the_baseline_gets_delivery_details_and_keeps_its_deliveries(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "fleet.db")
    issued = fleet_db.prepare_delivery(conn, "hall-1", item="permit")
    with db.transaction(conn):  # as the program before this revision left it
        conn.execute("DELETE FROM delivery_details")
        conn.execute("UPDATE alembic_version SET version_num = '0001_baseline'")
    conn.execute("DROP TABLE resident_messages")  # a later revision's table (0006_notify)
    conn.execute("DROP TABLE delivery_details")
    conn.close()
    again = db.connect(tmp_path / "fleet.db")
    assert db.schema_revision(again) == db.schema_head()
    (row,) = fleet_db.delivery_table(again, "hall-1")
    assert (row["id"], row["item"], row["case_ref"]) == (issued.number, "permit", None)
    assert fleet_db.delivery_resident(again, issued.number) is None
    later = fleet_db.prepare_delivery(again, "hall-1", resident=fleet_db.Resident(case_ref="EL-7"))
    assert fleet_db.delivery_resident(again, later.number) == fleet_db.Resident(case_ref="EL-7")
