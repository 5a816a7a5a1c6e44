"""The host service's database: SQLite (stdlib), WAL, foreign keys, `PRAGMA user_version` migrations.

One file holds the fleet: lockers and their keys, the codes (tags only; the one exception is a
delivery's code, held in `held_codes` until the resident has been notified after `loaded`), the
change log per locker (one row per revision), events, doors, the commands sent, staff members,
queued notifications and door requests (door.open, door.service) with who asked.
The service and the CLI open it from different processes; WAL lets the CLI write while the service
reads, and the service notices the CLI's commits through `PRAGMA data_version`.

Connections are in autocommit mode (isolation_level=None): every write goes through `transaction()`,
so what is one transaction is visible in the code.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Each step runs in its own transaction, then user_version is set to its index + 1. Append new
# steps; never edit a released one.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE lockers (
            id TEXT PRIMARY KEY,
            key_hex TEXT NOT NULL,
            doors_json TEXT NOT NULL,            -- ["A1", "A2", ...]: the door labels
            host_rev INTEGER NOT NULL DEFAULT 0, -- H: revision of the host's code set
            log_floor INTEGER NOT NULL DEFAULT 0,-- changes after this revision are in the log
            locker_rev INTEGER,                  -- R: last revision the locker reported
            snap INTEGER NOT NULL DEFAULT 0,     -- the locker asked for a snapshot
            online INTEGER NOT NULL DEFAULT 0,
            status_json TEXT,
            last_seen REAL,
            last_cmd_seq INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE codes (
            id INTEGER PRIMARY KEY CHECK (id >= 1 AND id < 4294967296),
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            door TEXT NOT NULL,
            kind INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
            tag_hex TEXT NOT NULL,
            expires INTEGER NOT NULL DEFAULT 0,  -- epoch seconds, 0: none
            state TEXT NOT NULL DEFAULT 'issued' CHECK (state IN ('issued', 'revoked', 'used', 'expired')),
            recipient TEXT,
            notify_state TEXT,                   -- NULL: no hook; 'sent'; 'failed'
            notify_error TEXT,
            created_at REAL NOT NULL,
            used_at REAL,
            revoked_at REAL
        )""",
        "CREATE INDEX codes_locker_state ON codes(locker_id, state)",
        """CREATE TABLE changes (
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            rev INTEGER NOT NULL,
            op TEXT NOT NULL CHECK (op IN ('add', 'del')),
            code_id INTEGER NOT NULL REFERENCES codes(id),
            PRIMARY KEY (locker_id, rev)
        )""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            door TEXT,
            json TEXT NOT NULL,
            received_at REAL NOT NULL,
            UNIQUE (locker_id, seq)
        )""",
        """CREATE TABLE doors (
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            label TEXT NOT NULL,
            state TEXT,
            full INTEGER,                        -- NULL: no parcel sensor / unknown
            -- the events last applied to state and to full: an older event never overrides a newer one
            state_seq INTEGER NOT NULL DEFAULT 0,
            full_seq INTEGER NOT NULL DEFAULT 0,
            updated_at REAL,
            PRIMARY KEY (locker_id, label)
        )""",
        """CREATE TABLE commands (
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            tx TEXT NOT NULL,
            seq INTEGER NOT NULL,                -- of the last attempt
            op TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('sent', 'ok', 'failed', 'abandoned')),
            attempts INTEGER NOT NULL DEFAULT 1,
            detail TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (locker_id, tx)
        )""",
        "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
    # 2: deliveries, returns and staff PINs. `codes` is rebuilt: its kind is now the kind
    # byte of the protocol (bits 0-3 kind, 4-5 size wanted, 6 low door wanted), a door-free code
    # (staff, return, a delivery not loaded yet) has door '*', and more states.
    [
        """CREATE TABLE staff (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            locker_id TEXT REFERENCES lockers(id),  -- NULL: every locker registered when added
            created_at REAL NOT NULL,
            removed_at REAL
        )""",
        """CREATE TABLE codes_v2 (
            id INTEGER PRIMARY KEY CHECK (id >= 1 AND id < 4294967296),
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            door TEXT NOT NULL,                  -- a label; '*': door-free (a delivery: until loaded)
            kind INTEGER NOT NULL CHECK (kind >= 0 AND kind <= 127),
            tag_hex TEXT NOT NULL,
            expires INTEGER NOT NULL DEFAULT 0,  -- epoch seconds, 0: none
            state TEXT NOT NULL DEFAULT 'issued'
                CHECK (state IN ('issued', 'revoked', 'used', 'expired', 'taken_back')),
            recipient TEXT,
            notify_state TEXT,                   -- NULL: no hook; 'sent'; 'failed'; 'pending'
            notify_error TEXT,
            created_at REAL NOT NULL,
            used_at REAL,
            revoked_at REAL,
            item TEXT,                           -- deliveries and returns: parcel, document, ...
            staff_id INTEGER REFERENCES staff(id),  -- staff PINs: whose
            loaded_at REAL,                      -- deliveries and size-only loads: when (and by whom)
            loaded_by INTEGER,                   -- the staff code id the locker reported
            door_seq INTEGER,                    -- the event that bound a door-free code to its door
            reminded_at REAL,
            taken_back_at REAL
        )""",
        """INSERT INTO codes_v2(id, locker_id, door, kind, tag_hex, expires, state, recipient, notify_state,
                                notify_error, created_at, used_at, revoked_at)
           SELECT id, locker_id, door, kind, tag_hex, expires, state, recipient, notify_state,
                  notify_error, created_at, used_at, revoked_at FROM codes""",
        "DROP TABLE codes",
        "ALTER TABLE codes_v2 RENAME TO codes",
        "CREATE INDEX codes_locker_state ON codes(locker_id, state)",
        # A plain code waiting for its notification (a delivery's, until the resident has been told
        # after `loaded`); deleted once the hook took it. The database file is 0600.
        """CREATE TABLE held_codes (
            code_id INTEGER PRIMARY KEY REFERENCES codes(id),
            code TEXT NOT NULL
        )""",
        """CREATE TABLE notifications (
            id INTEGER PRIMARY KEY,
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            code_id INTEGER,
            kind TEXT NOT NULL,                  -- code, loaded, reminder, returned, taken_back
            door TEXT,
            detail_json TEXT NOT NULL DEFAULT '{}',  -- never a code
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed', 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            error TEXT,
            created_at REAL NOT NULL,
            sent_at REAL
        )""",
        "CREATE INDEX notifications_due ON notifications(state, next_at)",
        # One-off signed commands people ask for (door.open, door.service), with who asked.
        """CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            op TEXT NOT NULL,
            args_json TEXT NOT NULL,
            by TEXT NOT NULL,
            tx TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'sent', 'ok', 'failed', 'expired', 'cancelled')),
            attempts INTEGER NOT NULL DEFAULT 0,
            seq INTEGER,
            reply_json TEXT,
            created_at REAL NOT NULL,
            sent_at REAL,
            done_at REAL
        )""",
        "CREATE INDEX requests_open ON requests(state)",
        "ALTER TABLE doors ADD COLUMN in_service INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE doors ADD COLUMN service_seq INTEGER NOT NULL DEFAULT 0",
    ],
    # 3: lockers whose connection flaps (online/offline over and over: a second client logging in with
    # a locker's password, which takes over its session each time, or a failing link), for staff.
    [
        """CREATE TABLE connection_flaps (
            id INTEGER PRIMARY KEY,
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            started_at REAL NOT NULL,            -- the first change of the window that raised it
            last_at REAL NOT NULL,               -- the latest change
            changes INTEGER NOT NULL,            -- online/offline changes from started_at to last_at
            ended_at REAL                        -- NULL: still flapping
        )""",
        "CREATE INDEX connection_flaps_open ON connection_flaps(locker_id, ended_at)",
    ],
    # 4: staff PINs are per member and locker, and expire (fleet_db.issue_staff_pin). A staff member
    # is a person (staff.locker_id is no longer used). The PINs of the old rules stop working: one
    # PIN for every locker (one board's flash gave it for all), no expiry, staff codes of nobody, or
    # more than 90 days left; they are revoked and deleted from their lockers (one change each, in
    # code id order), and the member's pins_withdrawn_at says so in `lockerctl staff list`. Staff
    # codes that had expired are deleted from the lockers too (the host now removes expired PINs).
    [
        "ALTER TABLE staff ADD COLUMN pins_withdrawn_at REAL",
        """CREATE TEMP TABLE staff_pins_gone AS
           SELECT c.id, c.locker_id, c.staff_id, c.state,
                  row_number() OVER (PARTITION BY c.locker_id ORDER BY c.id) AS n
           FROM codes c LEFT JOIN staff s ON s.id = c.staff_id
           WHERE (c.kind & 15) = 1 AND (c.state = 'expired' OR (c.state = 'issued' AND (
               c.expires = 0 OR c.staff_id IS NULL OR s.locker_id IS NULL
               OR c.expires > CAST(strftime('%s', 'now') AS INTEGER) + 90 * 86400)))""",
        """INSERT INTO changes(locker_id, rev, op, code_id)
           SELECT g.locker_id, l.host_rev + g.n, 'del', g.id
           FROM staff_pins_gone g JOIN lockers l ON l.id = g.locker_id""",
        """UPDATE lockers
           SET host_rev = host_rev + (SELECT count(*) FROM staff_pins_gone g WHERE g.locker_id = lockers.id)""",
        """UPDATE staff SET pins_withdrawn_at = (julianday('now') - 2440587.5) * 86400.0
           WHERE id IN (SELECT staff_id FROM staff_pins_gone WHERE state = 'issued')""",
        """UPDATE codes SET state = 'revoked', revoked_at = (julianday('now') - 2440587.5) * 86400.0
           WHERE id IN (SELECT id FROM staff_pins_gone WHERE state = 'issued')""",
        "DROP TABLE staff_pins_gone",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


class DatabaseMissing(FileNotFoundError):
    """The database file does not exist (and the caller did not ask to create it)."""


def connect(path: str | Path, create: bool = False) -> sqlite3.Connection:
    """Open (and migrate) the database. create=False: a missing file is an error, not a new fleet."""
    path = Path(path)
    if not path.exists():
        if not create:
            raise DatabaseMissing(f"no database at {path} (create it with `lockerctl locker add`)")
        # Created 0600 before SQLite touches it: it holds every locker's key.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the missing migration steps, each in one transaction. Returns the schema version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"database schema {version} is newer than this program ({SCHEMA_VERSION})")
    if version == SCHEMA_VERSION:
        return SCHEMA_VERSION
    # A step may rebuild a table others refer to (SQLite's way to change a constraint): foreign keys
    # are off while it runs (the pragma is a no-op inside a transaction) and checked before it commits.
    conn.execute("PRAGMA foreign_keys=OFF")
    try:
        for number in range(version, SCHEMA_VERSION):
            with transaction(conn):
                # Re-read inside the write lock: another process may have migrated meanwhile.
                if int(conn.execute("PRAGMA user_version").fetchone()[0]) > number:
                    continue
                for statement in MIGRATIONS[number]:
                    conn.execute(statement)
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration {number + 1} broke {len(broken)} foreign key(s)")
                conn.execute(f"PRAGMA user_version = {number + 1}")
    finally:
        conn.execute("PRAGMA foreign_keys=ON")
    return SCHEMA_VERSION


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def data_version(conn: sqlite3.Connection) -> int:
    """Changes when ANOTHER connection commits (cheap: no disk read in WAL mode)."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def next_command_seq(conn: sqlite3.Connection, locker_id: str) -> int:
    """The next command sequence number: max(last + 1, ms since the epoch), stored before use.

    Call inside a transaction. Strictly increasing per locker even when the clock goes back."""
    row = conn.execute("SELECT last_cmd_seq FROM lockers WHERE id = ?", (locker_id,)).fetchone()
    seq = max(int(row[0]) + 1, int(time.time() * 1000))
    conn.execute("UPDATE lockers SET last_cmd_seq = ? WHERE id = ?", (seq, locker_id))
    return seq


SEQ_RESERVE_MS = 600_000  # a reservation of command seqs covers the next 10 minutes of clock


class CommandSeqs:
    """Command sequence numbers as `next_command_seq` hands them out (max(last + 1, ms since the
    epoch), strictly increasing per locker), with one database write per locker every 10 minutes
    instead of one per command (the service sends an ack for nearly every event). The stored top is
    read on every take: a technician's tool that reserved a block above it (reserve_seq_block) moves
    the service's numbers past that block.

    The database holds the top of each locker's reservation (`last_cmd_seq`, SEQ_RESERVE_MS above the
    seq that opened it), written before any seq of it is used; the seqs themselves come from memory.
    After a restart, numbers start above the stored top, so they stay above everything handed out
    before, whatever the clock did. `take()` writes inside the caller's transaction when there is one
    (the caller publishes only after it commits) or on its own (autocommit) otherwise; after a
    rollback call `forget()`, and the next `take()` reads and reserves again."""

    def __init__(self, reserve_ms: int = SEQ_RESERVE_MS) -> None:
        self.reserve_ms = reserve_ms
        self.writes = 0
        self._last: dict[str, int] = {}  # the last seq handed out (kept over forget(): never reused)
        self._top: dict[str, int] = {}  # the reservation's top, as stored

    def take(self, conn: sqlite3.Connection, locker_id: str) -> int:
        top = self._top.get(locker_id)
        last = self._last.get(locker_id, 0)
        # Read every time (a primary-key lookup): a stored top above ours is a block a technician's tool
        # reserved (reserve_seq_block), and our numbers go on above it.
        stored = stored_seq_top(conn, locker_id)
        if top is None or stored > top:
            top = stored
            last = max(last, stored)
        seq = max(last + 1, int(time.time() * 1000))
        if seq > top:
            top = seq + self.reserve_ms
            conn.execute(
                "UPDATE lockers SET last_cmd_seq = max(last_cmd_seq, ?) WHERE id = ?",
                (top, locker_id),
            )
            self.writes += 1
        self._last[locker_id], self._top[locker_id] = seq, top
        return seq

    def forget(self) -> None:
        """A transaction that may have held reservations was rolled back: read them again."""
        self._top.clear()


SEQ_BLOCK = 100_000  # a technician's tool reserves this many command seqs at a time


def stored_seq_top(conn: sqlite3.Connection, locker_id: str) -> int:
    """The top of the locker's reserved command seqs as stored (every seq handed out is at or below it).
    KeyError: no such locker."""
    row = conn.execute("SELECT last_cmd_seq FROM lockers WHERE id = ?", (locker_id,)).fetchone()
    if row is None:
        raise KeyError(locker_id)
    return int(row[0])


def reserve_seq_block(conn: sqlite3.Connection, locker_id: str, n: int = SEQ_BLOCK) -> int:
    """The first of `n` command seqs for a technician's tool (lockerctl diag, selftest, update), above
    every seq the service handed out or reserved and above the clock; the stored top moves past them in
    a transaction of its own, and the service's next seq comes after them (CommandSeqs.take). So a
    tool's commands and the service's never reuse or undercut each other's numbers, whatever the
    service reserved before a restart. KeyError: no such locker."""
    with transaction(conn):
        first = max(stored_seq_top(conn, locker_id) + 1, int(time.time() * 1000))
        conn.execute("UPDATE lockers SET last_cmd_seq = ? WHERE id = ?", (first + n - 1, locker_id))
    return first


def new_code_id(conn: sqlite3.Connection) -> int:
    """A random unused code id, 1 <= id < 2**32 (random: ids reveal nothing about volume)."""
    while True:
        code_id = 1 + secrets.randbelow(2**32 - 1)
        if conn.execute("SELECT 1 FROM codes WHERE id = ?", (code_id,)).fetchone() is None:
            return code_id


def get_setting(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def set_setting(conn: sqlite3.Connection, name: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM settings WHERE name = ?", (name,))
    else:
        conn.execute("INSERT OR REPLACE INTO settings(name, value) VALUES (?, ?)", (name, value))
