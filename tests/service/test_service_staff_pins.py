"""Staff PINs: one per member and locker, expiring (by default at the end of the working day, at
most 12 hours; a long-lived one only when asked for, at most 90 days), removed from the locker once
expired; the fleet-wide, never-expiring PINs of a database written before are withdrawn by the
migration and deleted from the lockers at the next sync. The database alone, the CLI, and the
running service against a real mosquitto with protocol-level lockers."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from service_helpers import DeliverySim, Rig

from lockertools.cli import main
from lockertools.service import db, fleet_db, schema
from lockertools.service.migrations.legacy import LEGACY_STEPS, LEGACY_VERSION
from lockertools.service.sync import plan
from tests.support.fixtures import Broker

LABELS = ["A1", "A2", "A3"]
HOUR = 3600
DAY = 86400


def _fleet(path: Path, lockers: tuple[str, ...] = ("hall-1", "hall-2")) -> sqlite3.Connection:
    conn = db.connect(path, create=True)
    for n, lid in enumerate(lockers):
        fleet_db.add_locker(conn, lid, bytes([n + 1]) * 32, LABELS)
    return conn


def _local(hour: int, minute: int = 0) -> float:
    """Epoch seconds of 2026-03-10 at this local time (time.mktime: the host's time zone)."""
    return time.mktime((2026, 3, 10, hour, minute, 0, 0, 0, -1))


def _old_add_staff(
    conn: sqlite3.Connection, name: str, locker_id: str | None, expires: int = 0
) -> tuple[int, list[int]]:
    """What `lockerctl staff add` wrote before PINs were per locker: a staff row (locker_id NULL:
    every locker) and the same PIN at each of its lockers, without an expiry by default."""
    lockers = [r[0] for r in conn.execute("SELECT id FROM lockers ORDER BY id")] if locker_id is None else [locker_id]
    with db.transaction(conn):
        pin = fleet_db.draw_code(conn, lockers, fleet_db.STAFF_DIGITS)
        staff_id = db.new_code_id(conn)
        conn.execute(
            "INSERT INTO staff(id, name, locker_id, created_at) VALUES (?, ?, ?, ?)",
            (staff_id, name, locker_id, time.time()),
        )
        ids = []
        for n, lid in enumerate(lockers):
            _, code_id = fleet_db.new_code(
                conn, lid, "*", fleet_db.KIND_STAFF, expires, code=pin,
                code_id=staff_id if n == 0 else None, staff_id=staff_id,
            )  # fmt: skip
            ids.append(code_id)
    return staff_id, ids


def _v3_database(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, db.connect writes the schema of version 3 (the one before staff PINs expired)."""
    monkeypatch.setattr(db, "migrate", lambda conn: db.legacy_upgrade(conn, LEGACY_STEPS[:3], stamp=False))


# --- the database ----------------------------------------------------------------------------------


def test_a_pin_is_valid_at_one_locker_until_the_end_of_the_working_day(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    staff_id, _ = fleet_db.add_staff(conn, "Bea")
    morning = fleet_db.issue_staff_pin(conn, staff_id, "hall-1", now=_local(9))
    assert morning.expires == _local(18) and morning.locker_id == "hall-1"
    assert len(morning.pin) == fleet_db.STAFF_DIGITS and morning.pin not in repr(morning)
    rows = conn.execute("SELECT locker_id, door, kind, expires, staff_id, state FROM codes").fetchall()
    assert [tuple(r) for r in rows] == [("hall-1", "*", 1, int(_local(18)), staff_id, "issued")]
    # No more than 12 hours: early in the morning; and 12 hours late in the day or after it (a PIN
    # never lasts only minutes).
    assert fleet_db.workday_end(_local(5)) == _local(17)
    assert fleet_db.workday_end(_local(7)) == _local(18)
    assert fleet_db.workday_end(_local(16, 59)) == _local(18)
    assert fleet_db.workday_end(_local(17, 30)) == _local(17, 30) + 12 * HOUR
    assert fleet_db.workday_end(_local(20)) == _local(20) + 12 * HOUR
    assert fleet_db.pin_expiry(_local(9), until=(13, 30)) == (int(_local(13, 30)), False)
    assert fleet_db.pin_expiry(_local(9), hours=2) == (int(_local(11)), False)
    # A member who loads three lockers gets three PINs, each valid at its own locker only.
    fleet_db.add_locker(conn, "hall-3", bytes([9]) * 32, LABELS)
    pins = [fleet_db.issue_staff_pin(conn, "Bea", lid, now=_local(9)) for lid in ("hall-1", "hall-2", "hall-3")]
    assert [p.locker_id for p in pins] == ["hall-1", "hall-2", "hall-3"]
    for p in pins:
        for lid in ("hall-1", "hall-2", "hall-3"):
            key = bytes.fromhex(conn.execute("SELECT key_hex FROM lockers WHERE id = ?", (lid,)).fetchone()[0])
            tags = {
                r[0] for r in conn.execute("SELECT tag_hex FROM codes WHERE locker_id = ? AND state = 'issued'", (lid,))
            }
            assert (fleet_db.tag_hex(key, "*", p.pin) in tags) == (lid == p.locker_id), (p.locker_id, lid)
    # The morning's PIN at hall-1 was replaced (one live PIN per member and locker), and deleted there.
    state = conn.execute("SELECT state FROM codes WHERE id = ?", (morning.code_id,)).fetchone()[0]
    dels = conn.execute("SELECT code_id FROM changes WHERE locker_id = 'hall-1' AND op = 'del'").fetchall()
    assert state == "revoked" and [r[0] for r in dels] == [morning.code_id]
    (member,) = fleet_db.staff_table(conn, now=_local(10))
    assert [(p["locker_id"], p["expires"]) for p in member["pins"]] == [
        (lid, int(_local(18))) for lid in ("hall-1", "hall-2", "hall-3")
    ]
    assert fleet_db.staff_table(conn, now=_local(18))[0]["pins"] == []  # expired: not live any more


def test_a_long_lived_pin_only_when_asked_for_and_at_most_90_days(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    staff_id, _ = fleet_db.add_staff(conn, "Tom the technician")
    now = _local(9)
    with pytest.raises(fleet_db.FleetError, match="long-lived"):
        fleet_db.issue_staff_pin(conn, staff_id, "hall-1", int(now + 30 * DAY), now=now)
    with pytest.raises(fleet_db.FleetError, match="at most 90 days"):
        fleet_db.issue_staff_pin(conn, staff_id, "hall-1", int(now + 91 * DAY), long_lived=True, now=now)
    with pytest.raises(fleet_db.FleetError, match="in the future"):
        fleet_db.issue_staff_pin(conn, staff_id, "hall-1", int(now - 1), now=now)
    for bad in ({"hours": 13}, {"days": 91}, {"days": 0}, {"hours": 2, "days": 2}, {"until": (23, 0)}):
        with pytest.raises(fleet_db.FleetError):
            fleet_db.pin_expiry(now, **bad)
    expires, long_lived = fleet_db.pin_expiry(now, days=30)
    assert (expires, long_lived) == (int(now + 30 * DAY), True)
    pin = fleet_db.issue_staff_pin(conn, staff_id, "hall-1", expires, long_lived=long_lived, now=now)
    assert conn.execute("SELECT expires FROM codes WHERE id = ?", (pin.code_id,)).fetchone()[0] == expires
    # Nothing else makes a staff PIN: not a plain code of kind staff, not for an unknown member or locker.
    with pytest.raises(fleet_db.FleetError, match="issue_staff_pin"):
        fleet_db.issue_code(conn, "hall-1", "*", kind=fleet_db.KIND_STAFF, expires=int(now + HOUR))
    with pytest.raises(fleet_db.FleetError, match="unknown locker"):
        fleet_db.issue_staff_pin(conn, staff_id, "hall-9", now=now)
    with pytest.raises(fleet_db.FleetError, match="no staff member"):
        fleet_db.issue_staff_pin(conn, "Nobody", "hall-1", now=now)
    fleet_db.add_staff(conn, "Tom the technician")
    with pytest.raises(fleet_db.FleetError, match="give the id"):
        fleet_db.issue_staff_pin(conn, "Tom the technician", "hall-1", now=now)
    assert conn.execute("SELECT count(*) FROM codes").fetchone()[0] == 1  # the refusals wrote nothing


def test_an_expired_pin_is_deleted_from_its_locker_other_codes_are_not(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    _, (pin,) = fleet_db.add_staff(conn, "Bea", ["hall-1"], now=_local(9))
    pickup = fleet_db.issue_code(conn, "hall-1", "A1", expires=int(_local(12)))
    rev = int(conn.execute("SELECT host_rev FROM lockers WHERE id = 'hall-1'").fetchone()[0])
    with db.transaction(conn):
        assert fleet_db.expire_codes(conn, _local(18)) == 2
    changes = conn.execute("SELECT rev, op, code_id FROM changes WHERE rev > ? ORDER BY rev", (rev,)).fetchall()
    assert [tuple(r) for r in changes] == [(rev + 1, "del", pin.code_id)]  # the pickup stays (to take back)
    states = dict(conn.execute("SELECT id, state FROM codes").fetchall())
    assert states == {pin.code_id: "expired", pickup.code_id: "expired"}


@pytest.mark.sqlite_only
def test_the_migration_withdraws_the_pins_of_the_old_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fleet.db"
    _v3_database(path, monkeypatch)
    conn = _fleet(path)
    ann, ann_ids = _old_add_staff(conn, "Ann", None)  # every locker, never expires
    bob, bob_ids = _old_add_staff(conn, "Bob", "hall-1")  # one locker, never expires
    cy, cy_ids = _old_add_staff(conn, "Cy", "hall-1", int(time.time() + 5 * DAY))  # meets the new rules
    dee, dee_ids = _old_add_staff(conn, "Dee", None, int(time.time() + 5 * DAY))  # the same PIN everywhere
    eve, eve_ids = _old_add_staff(conn, "Eve", "hall-2", 1000)
    pickup = fleet_db.issue_code(conn, "hall-2", "A1", expires=0)
    with db.transaction(conn):
        fleet_db.expire_codes(conn, time.time())  # today's: Eve's PIN expired, nothing deleted
    revs = dict(conn.execute("SELECT id, host_rev FROM lockers").fetchall())
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    conn.close()
    monkeypatch.undo()

    conn = db.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LEGACY_VERSION == 4
    assert db.schema_revision(conn) == db.schema_head()
    states = dict(conn.execute("SELECT id, state FROM codes").fetchall())
    gone = {*ann_ids, *bob_ids, *dee_ids}
    assert states == {
        **dict.fromkeys(gone, "revoked"), cy_ids[0]: "issued", eve_ids[0]: "expired", pickup.code_id: "issued"
    }  # fmt: skip
    # One `del` per PIN the locker holds, numbered on from each locker's revision.
    for lid in ("hall-1", "hall-2"):
        dels = conn.execute(
            "SELECT rev, code_id FROM changes WHERE locker_id = ? AND rev > ? ORDER BY rev", (lid, revs[lid])
        ).fetchall()
        on_it = {r[0] for r in conn.execute("SELECT id FROM codes WHERE locker_id = ?", (lid,))}
        want = sorted((gone | {eve_ids[0]}) & on_it)
        assert [tuple(r) for r in dels] == [(revs[lid] + 1 + n, cid) for n, cid in enumerate(want)], lid
        host_rev = conn.execute("SELECT host_rev FROM lockers WHERE id = ?", (lid,)).fetchone()[0]
        assert host_rev == revs[lid] + len(want)
    # The planner takes a locker that had everything to one without them.
    with db.transaction(conn):
        conn.execute("UPDATE lockers SET locker_rev = ? WHERE id = 'hall-1'", (revs["hall-1"],))
    inputs = fleet_db.sync_input(conn, "hall-1")
    assert inputs is not None
    held = {ann_ids[0], bob_ids[0], cy_ids[0], dee_ids[0]}  # what hall-1 had (ids sort by locker)
    for cmd in plan(inputs):
        if cmd.op == "codes.snapshot":
            held = {row[4] for row in cmd.args["codes"]}
        else:
            held = (held - set(cmd.args["del"])) | {row[4] for row in cmd.args["add"]}
    assert held == {cy_ids[0]}
    withdrawn = {m["id"]: m["pins_withdrawn_at"] is not None for m in fleet_db.staff_table(conn)}
    assert withdrawn == {ann: True, bob: True, cy: False, dee: True, eve: False}
    # `lockerctl staff list` says what happened and what to do.
    monkeypatch.setenv("LOCKER_DB", str(path))
    result = CliRunner().invoke(main, ["staff", "list"])
    assert result.exit_code == 0, result.output
    line = {m.group(1): m.group(0) for m in re.finditer(r"^(\d+)\s.*$", result.output, re.M)}
    for member in (ann, bob, dee):
        assert (
            "old PIN withdrawn" in line[str(member)] and f"lockerctl staff pin {member} --locker" in line[str(member)]
        )
    assert "hall-1 until" in line[str(cy)] and "withdrawn" not in line[str(cy)]


# --- through the service, a real mosquitto and protocol-level lockers --------------------------------


@pytest.fixture
def make_rig(broker: Broker, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**config: Any) -> Rig:
        rig = Rig(broker, tmp_path, lockers=("hall-1", "hall-2"), sim_class=DeliverySim, resend_s=0.5, **config)
        made.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in made:
            rig.close()


def _synced(rig: Rig, lid: str) -> bool:
    row = rig.query("SELECT host_rev, locker_rev FROM lockers WHERE id = ?", lid)[0]
    return row[1] == row[0] and rig.sims[lid].rev == row[0]


def test_the_service_gives_a_pin_to_its_locker_only_and_removes_it_once_expired(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.start_service()
    rig.start_lockers()
    one, two = rig.sims["hall-1"], rig.sims["hall-2"]
    staff_id, (pin,) = fleet_db.add_staff(rig.conn, "Bea", ["hall-1"])
    rig.wait(lambda: pin.code_id in one.store and _synced(rig, "hall-1"), "the PIN on hall-1")
    assert isinstance(one, DeliverySim) and one.lookup_any(pin.pin) == (pin.code_id, "*")
    assert one.store[pin.code_id][3] == pin.expires > time.time()  # the locker keeps the expiry
    rig.wait(lambda: _synced(rig, "hall-2"), "hall-2 in sync")
    assert isinstance(two, DeliverySim) and two.lookup_any(pin.pin) is None and two.store == {}

    # The day ends while the service is down; when it runs again, it deletes the PIN from the locker.
    rig.stop_service()
    with db.transaction(rig.conn):
        rig.conn.execute("UPDATE codes SET expires = ? WHERE id = ?", (int(time.time()) - 1, pin.code_id))
    rig.start_service()
    rig.wait(lambda: pin.code_id not in one.store and _synced(rig, "hall-1"), "the expired PIN gone from hall-1")
    assert rig.query("SELECT state FROM codes WHERE id = ?", pin.code_id)[0][0] == "expired"
    assert fleet_db.staff_table(rig.conn)[0]["pins"] == []


@pytest.mark.sqlite_only
def test_old_fleet_wide_pins_leave_every_locker_after_the_upgrade(
    make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The program of version 3 is played by today's service on a version-3 database, with the tables
    # of the later revisions that today's service reads as it runs (incidents, webhooks, ...), empty;
    # their revisions create a table only where it is missing.
    def v3_and_later_tables(conn: db.Connection) -> None:
        db.legacy_upgrade(conn, LEGACY_STEPS[:3], stamp=False)
        schema.metadata.create_all(conn.sa_connection)  # checkfirst: only the tables version 3 lacks

    monkeypatch.setattr(db, "migrate", v3_and_later_tables)
    rig = make_rig()
    ann, ids = _old_add_staff(rig.conn, "Ann", None)  # today's `lockerctl staff add Ann`
    rig.start_service()
    rig.start_lockers()
    for lid, code_id in zip(("hall-1", "hall-2"), ids, strict=True):
        rig.wait(lambda c=code_id, lid=lid: c in rig.sims[lid].store and _synced(rig, lid), f"the old PIN on {lid}")
    rig.stop_service()

    monkeypatch.undo()  # the new program: its service migrates the database when it opens it
    rig.start_service()
    for lid, code_id in zip(("hall-1", "hall-2"), ids, strict=True):
        gone = f"the old PIN gone from {lid}"
        rig.wait(lambda c=code_id, lid=lid: c not in rig.sims[lid].store and _synced(rig, lid), gone)
    assert {r[0] for r in rig.query("SELECT state FROM codes")} == {"revoked"}
    (member,) = fleet_db.staff_table(rig.conn)
    assert member["id"] == ann and member["pins"] == [] and member["pins_withdrawn_at"] is not None
