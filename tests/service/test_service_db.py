"""The service database: migrations, file mode, sequence numbers, codes and the change log."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lockertools.service import db, fleet_db

KEY = bytes(range(32))


def test_migrates_from_empty_and_reopens_idempotently(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    conn = db.connect(path, create=True)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"lockers", "codes", "changes", "events", "doors", "commands", "settings"} <= tables
    fleet_db.add_locker(conn, "hall-1", KEY, ["A1", "A2"])
    conn.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # it holds the keys
    again = db.connect(path)
    assert again.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    assert again.execute("SELECT count(*) FROM lockers").fetchone()[0] == 1
    assert db.migrate(again) == db.SCHEMA_VERSION


def test_a_later_migration_step_is_applied_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fleet.db"
    db.connect(path, create=True).close()
    steps = [*db.MIGRATIONS, ["CREATE TABLE extra (x INTEGER)"]]
    monkeypatch.setattr(db, "MIGRATIONS", steps)
    monkeypatch.setattr(db, "SCHEMA_VERSION", len(steps))
    conn = db.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(steps)
    conn.close()
    db.connect(path).close()  # would fail on "table extra already exists" if re-run


def test_a_failed_step_leaves_the_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fleet.db"
    db.connect(path, create=True).close()
    steps = [*db.MIGRATIONS, ["CREATE TABLE half (x INTEGER)", "THIS IS NOT SQL"]]
    monkeypatch.setattr(db, "MIGRATIONS", steps)
    monkeypatch.setattr(db, "SCHEMA_VERSION", len(steps))
    with pytest.raises(Exception, match="syntax"):
        db.connect(path)
    monkeypatch.undo()
    conn = db.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0


def test_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(db.DatabaseMissing, match="no database"):
        db.connect(tmp_path / "nope.db")


def test_command_seq_strictly_increases(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "fleet.db", create=True)
    fleet_db.add_locker(conn, "hall-1", KEY, ["A1"])
    conn.execute("UPDATE lockers SET last_cmd_seq = ?", (10**16,))  # a clock that went back
    with db.transaction(conn):
        seqs = [db.next_command_seq(conn, "hall-1") for _ in range(5)]
    assert seqs == list(range(10**16 + 1, 10**16 + 6))


def test_reserved_command_seqs_write_once_per_reservation_and_survive_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1_800_000_000.0]
    monkeypatch.setattr(db.time, "time", lambda: clock[0])
    path = tmp_path / "fleet.db"
    conn = db.connect(path, create=True)
    fleet_db.add_locker(conn, "hall-1", KEY, ["A1"])
    fleet_db.add_locker(conn, "hall-2", KEY, ["A1"])
    seqs = db.CommandSeqs(reserve_ms=60_000)
    taken = []
    for _ in range(500):  # 500 commands within 50 s: the reservation covers them all
        taken.append(seqs.take(conn, "hall-1"))  # outside a transaction: its write commits on its own
        clock[0] += 0.1
    assert taken == sorted(set(taken)) and seqs.writes == 1
    stored = int(conn.execute("SELECT last_cmd_seq FROM lockers WHERE id = 'hall-1'").fetchone()[0])
    assert stored == taken[0] + 60_000 > taken[-1]
    clock[0] += 20  # past the reservation: a new one
    more = [seqs.take(conn, "hall-1") for _ in range(3)]
    assert seqs.writes == 2 and more[0] > taken[-1] and more == sorted(set(more))
    seqs.take(conn, "hall-2")
    assert seqs.writes == 3  # per locker

    # A restart (the clock went back, too): the new numbers start above everything handed out before.
    conn.close()
    clock[0] -= 3600
    conn = db.connect(path)
    after = db.CommandSeqs(reserve_ms=60_000)
    assert after.take(conn, "hall-1") > more[-1]

    # A rolled-back reservation is made again, never reused.
    with pytest.raises(RuntimeError), db.transaction(conn):
        clock[0] += 7200
        rolled = after.take(conn, "hall-1")
        raise RuntimeError("the batch failed")
    after.forget()
    again = after.take(conn, "hall-1")
    assert again > rolled
    top = int(conn.execute("SELECT last_cmd_seq FROM lockers WHERE id = 'hall-1'").fetchone()[0])
    assert top >= again
    conn.close()


def test_issue_and_revoke_log_changes_and_store_only_tags(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "fleet.db", create=True)
    fleet_db.add_locker(conn, "hall-1", KEY, ["A1", "A2"])
    issued = fleet_db.issue_code(conn, "hall-1", "A2", expires=0, recipient="ann@example.org")
    assert len(issued.code) == 8 and issued.code.isdigit()
    assert issued.code not in repr(issued)
    row = conn.execute("SELECT * FROM codes WHERE id = ?", (issued.code_id,)).fetchone()
    assert row["tag_hex"] == fleet_db.tag_hex(KEY, "A2", issued.code)
    dump = "\n".join(str(tuple(r)) for r in conn.execute("SELECT * FROM codes"))
    assert issued.code not in dump
    assert fleet_db.revoke_code(conn, issued.code_id) == "hall-1"
    changes = [tuple(r) for r in conn.execute("SELECT rev, op, code_id FROM changes ORDER BY rev")]
    assert changes == [(1, "add", issued.code_id), (2, "del", issued.code_id)]
    assert conn.execute("SELECT host_rev FROM lockers").fetchone()[0] == 2
    with pytest.raises(fleet_db.FleetError, match="revoked"):
        fleet_db.revoke_code(conn, issued.code_id)


def test_unknown_locker_and_door_are_clear_errors(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "fleet.db", create=True)
    fleet_db.add_locker(conn, "hall-1", KEY, ["A1"])
    with pytest.raises(fleet_db.FleetError, match="unknown locker 'hall-9'.*hall-1"):
        fleet_db.issue_code(conn, "hall-9", "A1")
    with pytest.raises(fleet_db.FleetError, match="no door 'B7'.*A1"):
        fleet_db.issue_code(conn, "hall-1", "B7")
    with pytest.raises(fleet_db.FleetError, match="no code"):
        fleet_db.revoke_code(conn, 12345)


def test_sync_input_leaves_expired_codes_out_of_the_active_set(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "fleet.db", create=True)
    fleet_db.add_locker(conn, "hall-1", KEY, ["A1"])
    old = fleet_db.issue_code(conn, "hall-1", "A1", expires=1000)
    new = fleet_db.issue_code(conn, "hall-1", "A1", expires=0)
    conn.execute("UPDATE lockers SET locker_rev = 0")
    inputs = fleet_db.sync_input(conn, "hall-1", now=2000)
    assert inputs is not None
    assert [c.id for c in inputs.active] == [new.code_id]
    assert set(inputs.codes) == {old.code_id, new.code_id}


def test_pruned_log_forces_a_snapshot(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "fleet.db", create=True)
    fleet_db.add_locker(conn, "hall-1", KEY, ["A1"])
    for _ in range(5):
        fleet_db.issue_code(conn, "hall-1", "A1")
    fleet_db.prune_log(conn, "hall-1", keep=2)
    conn.execute("UPDATE lockers SET locker_rev = 1")
    inputs = fleet_db.sync_input(conn, "hall-1")
    assert inputs is not None and inputs.log_floor == 3
    from lockertools.service.sync import plan

    assert [p.op for p in plan(inputs)] == ["codes.snapshot"]
