"""`lockerctl db backup` / `db restore`: an encrypted, consistent copy taken while the service ingests
events, restored into a fresh host whose lockers then sync; refusals that lose nothing; PostgreSQL
through pg_dump/pg_restore (at the SQL level: the database layer on this branch is SQLite only)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest
from click.testing import CliRunner
from service_helpers import Rig

from lockertools.cli import main
from lockertools.service import db, fleet_db, ingest
from lockertools.service.backup import SQLITE_MAGIC
from tests.support.fixtures import Broker
from tests.support.postgres import PostgresServer


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, Path]:
    """The operator's age key pair: the public key (for the host), the identity file (kept elsewhere)."""
    identity = pyrage.x25519.Identity.generate()
    path = tmp_path / "operator-identity.txt"
    path.write_text(f"# the operator's; never on the host\n{identity}\n")
    return str(identity.to_public()), path


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _events(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        return [(r[0], int(r[1])) for r in conn.execute("SELECT locker_id, seq FROM events ORDER BY locker_id, seq")]
    finally:
        conn.close()


@pytest.fixture
def rig(broker: Broker, tmp_path: Path) -> Iterator[Rig]:
    made = Rig(broker, tmp_path, lockers=("hall-1", "hall-2"))
    try:
        yield made
    finally:
        made.close()


@pytest.mark.sqlite_only  # a SQLite file's online backup (PostgreSQL: the pg_dump test below)
def test_backup_under_load_restores_into_a_fresh_host_whose_lockers_sync(
    rig: Rig, tmp_path: Path, keys: tuple[str, Path]
) -> None:
    recipient, identity = keys
    service = rig.start_service()
    rig.start_lockers()
    issued = {lid: fleet_db.issue_code(rig.conn, lid, "A1") for lid in rig.sims}
    rig.wait(lambda: all(rig.sims[lid].lookup("A1", c.code) for lid, c in issued.items()), "the codes on the lockers")
    stop = asyncio.Event()

    async def load(lid: str) -> None:  # events as fast as the locker sends them, until told to stop
        sim = rig.sims[lid]
        for n in range(5000):
            if stop.is_set():
                return
            await sim.event("denied", d="A2", r="wrong", n=n % 100)
            await asyncio.sleep(0)

    async def start_load() -> list[asyncio.Task[None]]:
        return [asyncio.create_task(load(lid)) for lid in rig.sims]

    tasks = rig.call(start_load())
    rig.wait(lambda: service.counters.events >= 100, "the load under way")
    before = service.counters.events
    out = tmp_path / "backups" / "fleet.db.age"
    code, output = _cli("db", "backup", "--db", str(rig.db_path), "--recipient", recipient, "--out", str(out))
    assert code == 0, output
    after = service.counters.events
    rig.wait(lambda: service.counters.events > after + 50, "events still coming in after the backup")

    async def stop_load() -> None:
        stop.set()
        await asyncio.gather(*tasks)

    rig.call(stop_load())
    rig.wait(lambda: not any(sim.outbox for sim in rig.sims.values()), "every event acknowledged")
    # The file is encrypted: no database header, no locker key in it.
    data = out.read_bytes()
    assert data.startswith(b"age-encryption.org/v1") and SQLITE_MAGIC not in data
    assert all(key.hex().encode() not in data for key in rig.keys.values())
    assert out.stat().st_mode & 0o777 == 0o600
    rig.stop_service()
    for lid in list(rig.sims):
        rig.stop_locker(lid)

    # A fresh host: an empty state directory, the backup and the operator's identity.
    fresh = tmp_path / "fresh-host" / "fleet.db"
    code, output = _cli("db", "restore", str(out), "--db", str(fresh), "--identity", str(identity))
    assert code == 0, output
    restored = _events(fresh)
    # A consistent snapshot: for each locker, every event up to some seq and none after it (no hole).
    for lid in rig.sims:
        seqs = [seq for locker, seq in restored if locker == lid]
        assert seqs == list(range(1, len(seqs) + 1)), lid
    assert before <= len(restored) <= after
    rig.conn.close()
    rig.db_path, rig.conn = fresh, db.connect(fresh)
    assert [r["id"] for r in rig.query("SELECT id FROM codes ORDER BY id")] == sorted(
        c.code_id for c in issued.values()
    )
    # The fresh host serves the same lockers: their new events are recorded, new codes reach them.
    service = rig.start_service()
    rig.start_lockers()
    seq = rig.call(rig.sims["hall-1"].event("pickup", d="A1", id=issued["hall-1"].code_id))
    rig.wait(lambda: ("hall-1", seq) in _events(fresh), "a new event on the restored host")
    assert rig.query("SELECT state FROM codes WHERE id = ?", issued["hall-1"].code_id)[0][0] == "used"
    again = {lid: fleet_db.issue_code(rig.conn, lid, "A3") for lid in rig.sims}
    rig.wait(
        lambda: all(rig.sims[lid].lookup("A3", c.code) == c.code_id for lid, c in again.items()),
        "codes issued on the restored host on the lockers",
        30,
    )
    assert rig.sims["hall-2"].lookup("A1", issued["hall-2"].code) == issued["hall-2"].code_id


@pytest.mark.sqlite_only  # a SQLite file's online backup (PostgreSQL: the pg_dump test below)
def test_restore_refuses_what_would_lose_something(broker: Broker, tmp_path: Path, keys: tuple[str, Path]) -> None:
    recipient, identity = keys
    rig = Rig(broker, tmp_path)
    try:
        fleet_db.issue_code(rig.conn, "hall-1", "A1")
    finally:
        rig.close()
    out = tmp_path / "fleet.db.age"
    assert _cli("db", "backup", "--db", str(rig.db_path), "--recipient", recipient, "-o", str(out))[0] == 0
    original = rig.db_path.read_bytes()
    # A database holding a fleet is not overwritten unless told.
    code, output = _cli("db", "restore", str(out), "--db", str(rig.db_path), "--identity", str(identity))
    assert code != 0 and "--force" in output and rig.db_path.read_bytes() == original
    # Another operator's identity cannot decrypt it: the target stays as it was.
    other = tmp_path / "other-identity.txt"
    other.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    fresh = tmp_path / "fresh" / "fleet.db"
    code, output = _cli("db", "restore", str(out), "--db", str(fresh), "--identity", str(other))
    assert code != 0 and "cannot decrypt" in output and not fresh.exists()
    # A damaged backup (cut short in transit) is refused too.
    cut = tmp_path / "cut.age"
    cut.write_bytes(out.read_bytes()[:-100])
    code, output = _cli("db", "restore", str(cut), "--db", str(fresh), "--identity", str(identity))
    assert code != 0 and not fresh.exists()
    # The keys the wrong way round get a clear word, not a traceback.
    code, output = _cli("db", "backup", "--db", str(rig.db_path), "--recipient", str(identity), "-o", str(cut))
    assert code != 0 and "public key" in output
    public = tmp_path / "public.txt"
    public.write_text(recipient + "\n")
    code, output = _cli("db", "restore", str(out), "--db", str(fresh), "--identity", str(public))
    assert code != 0 and "AGE-SECRET-KEY" in output
    # With --force, the backup replaces it (and a directory as --out names the file by the time).
    assert _cli("db", "backup", "--db", str(rig.db_path), "--recipient", recipient, "-o", f"{tmp_path}/")[0] == 0
    (dated,) = tmp_path.glob("fleet-*.db.age")
    conn = db.connect(rig.db_path)
    fleet_db.issue_code(conn, "hall-1", "A2")  # a change after the backup, which --force undoes
    conn.close()
    code, output = _cli("db", "restore", str(dated), "--db", str(rig.db_path), "--identity", str(identity), "--force")
    assert code == 0, output
    conn = db.connect(rig.db_path)
    assert conn.execute("SELECT count(*) FROM codes").fetchone()[0] == 1
    conn.close()


def test_postgresql_backup_and_restore_through_pg_dump(
    postgres_url: str, postgres_server: PostgresServer, tmp_path: Path, keys: tuple[str, Path]
) -> None:
    """SQL level: this branch's service runs on SQLite only, so a table of the fleet's shape stands in."""
    recipient, identity = keys
    source = postgres_url.rsplit("/", 1)[1]
    postgres_server.psql(
        "CREATE TABLE lockers (id TEXT PRIMARY KEY, key_hex TEXT NOT NULL);"
        "INSERT INTO lockers SELECT 'hall-' || n, md5(n::text) FROM generate_series(1, 50) n",
        source,
    )
    out = tmp_path / "pg.age"
    code, output = _cli("db", "backup", "--db", postgres_url, "--recipient", recipient, "-o", str(out))
    assert code == 0, output
    assert b"hall-1" not in out.read_bytes() and out.read_bytes().startswith(b"age-encryption.org/v1")
    target_url = postgres_server.create_database(source[:40] + "_restored")
    code, output = _cli("db", "restore", str(out), "--db", target_url, "--identity", str(identity))
    assert code == 0, output
    query = "SELECT count(*), string_agg(key_hex, '' ORDER BY id) FROM lockers"
    assert postgres_server.psql(query, target_url.rsplit("/", 1)[1]) == postgres_server.psql(query, source)
    # The restored database holds tables now: another restore needs --force.
    code, output = _cli("db", "restore", str(out), "--db", target_url, "--identity", str(identity))
    assert code != 0 and "--force" in output
    assert _cli("db", "restore", str(out), "--db", target_url, "--identity", str(identity), "--force")[0] == 0


def test_a_postgresql_fleet_backed_up_and_restored_through_lockerctl_keeps_its_codes_and_events(
    postgres_url: str, postgres_server: PostgresServer, tmp_path: Path, keys: tuple[str, Path], database: str
) -> None:
    """The whole way through lockerctl on a real fleet database: lockers and codes from the CLI, events
    recorded as the service records them, `db backup`, `db restore` into an empty database; the
    restored fleet answers the CLI as the original does, and the service's layer opens it at its schema."""
    if database != "postgresql":
        pytest.skip("PostgreSQL's backup (SQLite's: the test above)")
    recipient, identity = keys
    key = tmp_path / "hall-1.key"
    key.write_text(bytes(range(32)).hex())
    board = Path(__file__).resolve().parents[2] / "boards" / "esp32-4door.json"
    assert _cli("locker", "add", "hall-1", "--db", postgres_url, "--board", str(board), "--key-file", str(key))[0] == 0
    for door in ("1", "2"):
        code, output = _cli("codes", "issue", "--db", postgres_url, "--locker", "hall-1", "--door", door)
        assert code == 0, output
    conn = db.connect(postgres_url)
    picked = int(conn.execute("SELECT id FROM codes WHERE door = '1'").scalar())
    with db.transaction(conn):
        for seq, ev in enumerate(
            [{"k": "unlock", "d": "1"}, {"k": "opened", "d": "1"}, {"k": "pickup", "d": "1", "id": picked}]
        ):
            assert ingest.apply_event(
                conn, "hall-1", {"v": 1, "lid": "hall-1", "seq": seq + 1, "ev": ev}, 1_800_000_000.0
            )
    conn.close()

    out = tmp_path / "fleet.db.age"
    code, output = _cli("db", "backup", "--db", postgres_url, "--recipient", recipient, "-o", str(out))
    assert code == 0, output
    target = postgres_server.create_database("fleet_restored")
    code, output = _cli("db", "restore", str(out), "--db", target, "--identity", str(identity))
    assert code == 0, output

    for listing in (["codes", "list"], ["events", "-n", "10"], ["lockers"]):
        original, restored = _cli(*listing, "--db", postgres_url), _cli(*listing, "--db", target)
        assert restored == original and original[0] == 0, (listing, restored, original)
    restored_conn = db.connect(target)
    assert db.schema_revision(restored_conn) == db.schema_head()
    codes = restored_conn.execute("SELECT door, state FROM codes ORDER BY door").fetchall()
    assert [tuple(r) for r in codes] == [("1", "used"), ("2", "issued")]
    events = restored_conn.execute("SELECT seq, kind FROM events ORDER BY seq").fetchall()
    assert [tuple(r) for r in events] == [(1, "unlock"), (2, "opened"), (3, "pickup")]
    assert restored_conn.execute("SELECT key_hex FROM lockers WHERE id = 'hall-1'").scalar() == bytes(range(32)).hex()
    restored_conn.close()
