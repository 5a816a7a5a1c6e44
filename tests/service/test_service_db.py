"""The service database: migrations, file mode, sequence numbers, codes and the change log."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from lockertools.service import db, fleet_db
from lockertools.service.migrations.legacy import LEGACY_STEPS, LEGACY_VERSION

KEY = bytes(range(32))


@pytest.mark.sqlite_only
def test_migrates_from_empty_and_reopens_idempotently(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    conn = db.connect(path, create=True)
    assert db.schema_revision(conn) == db.schema_head()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"lockers", "codes", "changes", "events", "doors", "commands", "settings"} <= tables
    fleet_db.add_locker(conn, "hall-1", KEY, ["A1", "A2"])
    conn.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # it holds the keys
    again = db.connect(f"sqlite:///{path}")  # a URL names the same file
    assert db.schema_revision(again) == db.schema_head()
    assert again.execute("SELECT count(*) FROM lockers").fetchone()[0] == 1
    assert db.migrate(again) == db.schema_head()


def _legacy_database(path: Path, version: int) -> sqlite3.Connection:
    """A SQLite database as the service before Alembic wrote it, at `PRAGMA user_version` `version`."""
    old = sqlite3.connect(path, isolation_level=None)
    for number in range(version):
        for statement in LEGACY_STEPS[number]:
            old.execute(statement)
        old.execute(f"PRAGMA user_version = {number + 1}")
    return old


@pytest.mark.sqlite_only
@pytest.mark.parametrize("version", range(1, LEGACY_VERSION + 1))
def test_a_database_from_before_alembic_is_upgraded_and_keeps_every_row(tmp_path: Path, version: int) -> None:
    path = tmp_path / "fleet.db"
    old = _legacy_database(path, version)
    old.execute("INSERT INTO lockers(id, key_hex, doors_json, host_rev, created_at) VALUES ('hall-1', ?, ?, 1, 1.0)",
                (KEY.hex(), '["A1"]'))  # fmt: skip
    old.execute("INSERT INTO doors(locker_id, label, state) VALUES ('hall-1', 'A1', 'closed')")
    old.execute(
        "INSERT INTO codes(id, locker_id, door, kind, tag_hex, created_at) VALUES (7, 'hall-1', 'A1', 0, 'ab', 1.0)"
    )
    old.execute("INSERT INTO changes(locker_id, rev, op, code_id) VALUES ('hall-1', 1, 'add', 7)")
    old.execute("INSERT INTO events(locker_id, seq, kind, json, received_at) VALUES ('hall-1', 5, 'pickup', '{}', 2.0)")
    old.execute("INSERT INTO commands(locker_id, tx, seq, op, state, created_at, updated_at)"
                " VALUES ('hall-1', 'tx1', 9, 'codes.add', 'ok', 1.0, 2.0)")  # fmt: skip
    old.execute("INSERT INTO settings(name, value) VALUES ('notify_url', 'http://example.org')")
    if version >= 2:
        old.execute("INSERT INTO staff(id, name, created_at) VALUES (3, 'ann', 1.0)")
        old.execute("INSERT INTO held_codes(code_id, code) VALUES (7, '12345678')")
        old.execute(
            "INSERT INTO notifications(locker_id, code_id, kind, next_at, created_at)"
            " VALUES ('hall-1', 7, 'loaded', 1, 1)"
        )
        old.execute("INSERT INTO requests(locker_id, op, args_json, \"by\", tx, created_at)"
                    " VALUES ('hall-1', 'door.open', '{}', 'bob', 'r1', 1.0)")  # fmt: skip
    if version >= 3:
        old.execute("INSERT INTO connection_flaps(locker_id, started_at, last_at, changes) VALUES ('hall-1', 1, 2, 10)")
    tables = [r[0] for r in old.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    before = {t: sorted(old.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    old.close()

    conn = db.connect(path)
    assert db.schema_revision(conn) == db.schema_head()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LEGACY_VERSION
    for table, rows in before.items():
        after = [tuple(r) for r in conn.execute(f"SELECT * FROM {table}")]
        # the columns later steps added come after the old ones: the old ones keep their values
        assert sorted((r[: len(rows[0])] for r in after), key=repr) == rows if rows else not after, table
        assert len(after) == len(rows), table
    fleet_db.issue_code(conn, "hall-1", "A1")  # and the upgraded database works
    conn.close()
    assert db.migrate(db.connect(path)) == db.schema_head()  # once


@pytest.mark.sqlite_only
def test_a_database_newer_than_the_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    old = _legacy_database(path, LEGACY_VERSION)
    old.execute(f"PRAGMA user_version = {LEGACY_VERSION + 1}")
    old.close()
    with pytest.raises(RuntimeError, match="newer than this program"):
        db.connect(path)


@pytest.mark.sqlite_only
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


def test_changes_logged_by_two_transactions_at_once_get_consecutive_revisions(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    first = db.connect(path, create=True)
    fleet_db.add_locker(first, "hall-1", KEY, ["A1", "A2"])
    code = fleet_db.issue_code(first, "hall-1", "A1")
    second = db.connect(path)
    start = int(first.execute("SELECT host_rev FROM lockers WHERE id = 'hall-1'").fetchone()[0])
    logged: list[int] = []
    with db.transaction(first):
        logged.append(fleet_db.log_change(first, "hall-1", "del", code.code_id))

        def other() -> None:  # waits for the first transaction's lock, then logs on top of it
            with db.transaction(second):
                logged.append(fleet_db.log_change(second, "hall-1", "add", code.code_id))

        worker = threading.Thread(target=other)
        worker.start()
    worker.join()
    assert sorted(logged) == [start + 1, start + 2]
    revs = [int(r[0]) for r in first.execute("SELECT rev FROM changes WHERE locker_id = 'hall-1' ORDER BY rev")]
    assert revs[-2:] == [start + 1, start + 2]
