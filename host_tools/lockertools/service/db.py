"""The host service's database, through SQLAlchemy Core: SQLite (the default: one file, WAL) or
PostgreSQL (an operator running many towns' lockers from more than one host).

It holds the fleet: lockers and their keys, the codes (tags only; the one exception is a delivery's
code, held in `held_codes` until the resident has been notified after `loaded`), the change log per
locker (one row per revision), events, doors, the commands sent, staff members, queued notifications
and door requests (door.open, door.service) with who asked. The tables are defined once, in
schema.py; the schema moves on through Alembic (service/migrations).

`connect(target)` is the entry point for the service, the CLI and the operators' tools (backups): the
target is a URL (`sqlite:///path/fleet.db`, `postgresql+psycopg://user@host/db`) or a plain path,
which means SQLite (every `--db PATH` keeps working). `engine_for(target)` gives the SQLAlchemy engine
for tools that want one of their own.

A `Connection` runs in autocommit mode: every write goes through `transaction()` (BEGIN IMMEDIATE on
SQLite, BEGIN on PostgreSQL), so what is one transaction is visible in the code. Its `execute()`
takes a SQLAlchemy statement or SQL text in the form both databases read, with `?` placeholders;
rows answer to an index and to a column name, like sqlite3.Row. The service's hot paths use `Query`
(Core, compiled once, run on the driver: `run`, `run_many`) and `send()` (a write whose answer
nobody reads goes with the next answered statement: one round trip on PostgreSQL).

The service and the CLI use it from different processes. The service notices the other's commits
through `data_version()` (SQLite: `PRAGMA data_version`; PostgreSQL: a NOTIFY that every change to a
locker's codes sends on commit, see `changed()`), and is woken at once by `changed()` in its own
process.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from lockertools.service import schema
from lockertools.service.migrations.legacy import LEGACY_STEPS, LEGACY_VERSION

# What a database failure raises, on either database: SQL text goes to the driver itself (sqlite3,
# psycopg), SQLAlchemy statements through SQLAlchemy.
Error: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError, sqlite3.Error, psycopg.Error)
IntegrityError: tuple[type[Exception], ...] = (sa.exc.IntegrityError, sqlite3.IntegrityError, psycopg.IntegrityError)

# PostgreSQL: the channel a commit that changed a locker's codes (or the lockers) notifies.
CHANGES_CHANNEL = "lockers_changed"
# PostgreSQL: the channel a commit that moved a locker's doors notifies, with the locker's id (the
# staff desk's live door states listen to it).
DOORS_CHANNEL = "doors_changed"


class DatabaseMissing(FileNotFoundError):
    """The database file does not exist (and the caller did not ask to create it)."""


def database_url(target: str | Path) -> sa.URL:
    """The SQLAlchemy URL a --db value names: a URL as it is, a plain path as SQLite."""
    text = str(target)
    if "://" in text:
        url = make_url(text)
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(
                f"unsupported database {url.get_backend_name()!r}: sqlite:///PATH or postgresql+psycopg://..."
            )
        if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")  # the driver the project ships
        return url
    return sa.URL.create("sqlite", database=str(Path(text)))


def describe(target: str | Path) -> str:
    """A database's name for messages, without a password."""
    text = str(target)
    if "://" not in text:
        return text
    try:
        return make_url(text).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "a database URL that does not parse"


def engine_for(target: str | Path, create: bool = False) -> sa.Engine:
    """The engine for a database (no pooling: a connection closed is closed). create=False: a missing
    SQLite file is an error, not a new fleet."""
    url = database_url(target)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        if not url.database or str(path) == ":memory:":
            raise ValueError("the fleet database is a file: sqlite:///PATH")
        if not path.exists():
            if not create:
                raise DatabaseMissing(f"no database at {path} (create it with `lockerctl locker add`)")
            # Created 0600 before SQLite touches it: it holds every locker's key.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        engine = sa.create_engine(
            url,
            poolclass=NullPool,
            connect_args={"timeout": 10.0, "check_same_thread": False},
            isolation_level="AUTOCOMMIT",
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
            cur.close()

        return engine
    return sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")


class Row:
    """A result row by index or by column name (row[0], row["id"], dict(row)), like sqlite3.Row."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: tuple[Any, ...], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


class Result:
    """What `Connection.execute` returns: rows (fetchone, fetchall, iteration) and rowcount."""

    def __init__(self, rowcount: int, keys: Sequence[str] | None, rows: Iterable[Sequence[Any]]) -> None:
        self.rowcount = rowcount
        self._rows: list[Row] | None = None
        if keys is not None:
            index = {name: i for i, name in enumerate(keys)}
            self._rows = [Row(tuple(r), index) for r in rows]
        self._next = 0

    @classmethod
    def of(cls, result: sa.CursorResult[Any]) -> Result:
        if not result.returns_rows:
            return cls(result.rowcount, None, ())
        return cls(result.rowcount, list(result.keys()), result.fetchall())

    @classmethod
    def of_cursor(cls, cursor: Any) -> Result:
        if cursor.description is None:
            return cls(cursor.rowcount, None, ())
        return cls(cursor.rowcount, [d[0] for d in cursor.description], cursor.fetchall())

    def fetchone(self) -> Any:  # a Row or None (Any, as sqlite3's: callers know their query)
        if not self._rows or self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Row]:
        rows = (self._rows or [])[self._next :]
        self._next += len(rows)
        return rows

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())

    def scalar(self) -> Any:
        row = self.fetchone()
        return None if row is None else row[0]


_PLACEHOLDERS = re.compile(r"'[^']*'|\?|%")


class Query:
    """A SQLAlchemy Core statement for the service's hot paths, compiled once per database kind to the
    driver's SQL (named parameters: `:name` for sqlite3, `%(name)s` for psycopg) and run on the driver
    (`Connection.run`, `Connection.run_many`): SQLAlchemy builds and quotes it, but its per-statement
    machinery (costlier than SQLite's own work on a small statement) runs once, not per execution.
    `build(dialect)` gets "sqlite" or "postgresql" (for what differs: ON CONFLICT, greatest/max).
    Parameters are plain values (no type processing): text, numbers, None; booleans become 0/1."""

    def __init__(self, build: Callable[[str], sa.ClauseElement]) -> None:
        self.build = build
        self._compiled: dict[str, tuple[str, dict[str, Any]]] = {}

    def compiled(self, conn: Connection) -> tuple[str, dict[str, Any]]:
        """The driver's SQL and the values of the statement's own parameters (its literals: `+ 1`)."""
        out = self._compiled.get(conn.dialect)
        if out is None:
            dialect: Any = conn.engine.dialect
            if conn.sqlite:
                dialect = type(dialect)(paramstyle="named")
            compiled: Any = self.build(conn.dialect).compile(dialect=dialect)
            own = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
            out = self._compiled[conn.dialect] = (str(compiled), own)
        return out

    def sql(self, conn: Connection) -> str:
        return self.compiled(conn)[0]

    def params(self, conn: Connection, given: dict[str, Any]) -> dict[str, Any]:
        """The parameters for one execution: the statement's own, and the given ones (booleans as 0/1)."""
        own = self.compiled(conn)[1]
        plain = {k: int(v) if isinstance(v, bool) else v for k, v in given.items()}
        return own | plain if own else plain


def query(build: Callable[[str], sa.ClauseElement]) -> Query:
    """Decorator: a module-level Query from its builder."""
    return Query(build)


def insert_ignoring(dialect: str, table: sa.Table, conflict: Sequence[sa.Column[Any]], **values: Any) -> sa.Insert:
    """INSERT .. ON CONFLICT (conflict) DO NOTHING on either database (Core)."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).values(**values).on_conflict_do_nothing(index_elements=conflict)
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert(table).values(**values).on_conflict_do_nothing(index_elements=conflict)


def greatest_of(dialect: str) -> Any:
    """The SQL function for the larger of its arguments (Core): max on SQLite, greatest on PostgreSQL."""
    return sa.func.max if dialect == "sqlite" else sa.func.greatest


def least_of(dialect: str) -> Any:
    return sa.func.min if dialect == "sqlite" else sa.func.least


def _driver_token(match: re.Match[str]) -> str:
    token = match.group(0)
    return "%s" if token == "?" else token.replace("%", "%%")


class Connection:
    """One connection to the fleet database (see the module's docstring)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name  # "sqlite" or "postgresql"
        self.sqlite = self.dialect == "sqlite"
        self.url = engine.url
        self._conn = engine.connect()
        # SQL text goes straight to the driver's connection (SQLAlchemy's per-statement machinery
        # costs more than SQLite's own work on a small statement); autocommit, as SQLAlchemy set it.
        self._driver: Any = self._conn.connection.dbapi_connection
        self._driver_sql: dict[str, str] = {}  # SQL text with ? -> the driver's placeholders
        self.in_transaction = False
        self._changed = False  # a change to notify at commit (changed())
        self._notified = False  # this transaction sent its NOTIFY already
        self._pending: list[tuple[str, Any]] = []  # statements waiting to go (send())
        self._binder: Any = None  # PostgreSQL: a psycopg ClientCursor, for its client-side binding

    @property
    def sa_connection(self) -> sa.Connection:
        self.flush()  # what waits (a BEGIN, send()) goes before anything done on it
        return self._conn

    def _to_driver(self, sql: str) -> str:
        if self.sqlite:
            return sql  # sqlite3 takes ? as it is
        out = self._driver_sql.get(sql)
        if out is None:
            # psycopg: %s for a ? outside quotes, and every literal % doubled
            out = _PLACEHOLDERS.sub(_driver_token, sql)
            self._driver_sql[sql] = out
        return out

    @staticmethod
    def _plain(params: Sequence[Any]) -> tuple[Any, ...]:
        # PostgreSQL's integer columns do not take a boolean: 0/1, as SQLite stores them anyway.
        return tuple(int(p) if isinstance(p, bool) else p for p in params)

    def execute(self, statement: str | sa.Executable, params: Sequence[Any] | dict[str, Any] | None = None) -> Result:
        if isinstance(statement, str):
            if params:
                args = params if isinstance(params, dict) else self._plain(params)
                return self._answered(self._to_driver(statement), args)
            return self._answered(statement, None)  # no parameters: the text as it is (no placeholders)
        self.flush()
        return Result.of(self._conn.execute(statement, params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [self._plain(r) for r in rows]
        self.flush()
        if batch:
            cursor = self._driver.cursor()
            try:
                cursor.executemany(self._to_driver(sql), batch)
            finally:
                cursor.close()

    def run(self, statement: Query, params: dict[str, Any] | None = None) -> Result:
        """A Query with named parameters, on the driver."""
        return self._answered(statement.sql(self), statement.params(self, params or {}))

    def send(self, statement: str | Query, params: Sequence[Any] | dict[str, Any] | None = None) -> None:
        """A statement whose answer nobody reads (a write, SAVEPOINT, NOTIFY). On PostgreSQL inside a
        transaction it waits to go with the next statement that is answered (execute, run, RELEASE,
        COMMIT): one round trip for all of them (`_together`), and an error of it is raised there.
        Elsewhere it runs at once. ROLLBACK (TO) drops what waits."""
        if self.sqlite or not self.in_transaction:
            if isinstance(statement, Query):
                self.run(statement, params if isinstance(params, dict) else None)
            else:
                self.execute(statement, params)
            return
        if isinstance(statement, Query):
            self._pending.append((statement.sql(self), statement.params(self, dict(params or {}))))
        elif params:
            args = params if isinstance(params, dict) else self._plain(params)
            self._pending.append((self._to_driver(statement), args))
        else:
            self._pending.append((statement, None))

    def flush(self) -> None:
        """Send what waits (send()) now, and raise its error if any."""
        if self._pending:
            self._pipelined(None, None)

    def _answered(self, sql: str, args: Any) -> Result:
        if self._pending:
            return self._pipelined(sql, args)
        cursor = self._driver.cursor()
        try:
            if args is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, args)
            return Result.of_cursor(cursor)
        finally:
            cursor.close()

    def _pipelined(self, sql: str | None, args: Any) -> Result:
        """What waits (send()), then `sql` if any, in one round trip; the last statement's result."""
        pending, self._pending = self._pending, []
        results = self._together(pending if sql is None else [*pending, (sql, args)])
        return results[-1] if sql is not None else Result(0, None, ())

    def _together(self, statements: Sequence[tuple[str, Any]]) -> list[Result]:
        """PostgreSQL: statements (driver SQL and parameters, or None) as ONE query message of the simple
        protocol, their parameters bound on the client (psycopg's own quoting): one round trip and
        one wake-up of the server process for all of them, where each statement on its own costs
        both (psycopg's pipeline mode measured slower than this here). Inside a transaction block an
        error stops the rest and is raised. Every statement's result, in order."""
        if self._binder is None:
            self._binder = psycopg.ClientCursor(self._driver)
        bind = self._binder.mogrify
        text = ";\n".join(sql if args is None else bind(sql, args) for sql, args in statements)
        cursor = self._driver.cursor()
        try:
            cursor.execute(text)  # no parameters: the simple query protocol, several statements
            results = [Result.of_cursor(cursor)]
            while cursor.nextset():
                results.append(Result.of_cursor(cursor))
            return results
        finally:
            cursor.close()

    def run_many(self, steps: Sequence[tuple[Query | str, Sequence[dict[str, Any]]]]) -> list[list[Result]]:
        """Each Query once per parameter set, steps in order, and every result: on PostgreSQL all of it
        in one round trip (with what waits; see `_together`: an error is raised at the end, and the
        statements after it are not run), on SQLite a loop (in-process: a round trip costs nothing
        there). A step that is SQL text (SAVEPOINT, RELEASE) runs once, without parameters (give it
        `[{}]`)."""
        out: list[list[Result]] = []
        if self.sqlite:
            for statement, rows in steps:
                if isinstance(statement, str):
                    out.append([self.execute(statement)])
                else:
                    out.append([self.run(statement, row) for row in rows])
            return out
        pending, self._pending = self._pending, []
        statements: list[tuple[str, Any]] = []
        for statement, rows in steps:
            if isinstance(statement, str):
                statements.append((statement, None))
            else:
                statements += [(statement.sql(self), statement.params(self, row)) for row in rows]
        results = iter(self._together([*pending, *statements])[len(pending) :])
        for statement, rows in steps:
            out.append([next(results) for _ in range(1 if isinstance(statement, str) else len(rows))])
        return out

    def changed(self) -> None:
        """This transaction changed a locker's codes or the lockers: wake the service's sync at commit
        (in this process at once; on PostgreSQL, other processes through NOTIFY)."""
        if not self.sqlite and not self._notified:
            self.send(f"NOTIFY {CHANGES_CHANNEL}")  # delivered at commit, and only if it commits
            self._notified = self.in_transaction  # one per transaction is enough
        self._changed = True

    def rollback_to(self, savepoint: str) -> None:
        """ROLLBACK TO a savepoint (a NOTIFY sent after it is undone too: the next change sends another)."""
        mark = (f"SAVEPOINT {savepoint}", None)
        if mark in self._pending:  # not sent yet: what came before it still goes, what came after does not
            del self._pending[len(self._pending) - self._pending[::-1].index(mark) :]
        else:
            self._pending.clear()
        self.execute(f"ROLLBACK TO {savepoint}")
        self._notified = False

    def doors_changed(self, locker_id: str) -> None:
        """This transaction moved a door of `locker_id`: PostgreSQL tells DOORS_CHANNEL's listeners at
        commit (SQLite's readers see the commit in `data_version`)."""
        if not self.sqlite:  # sent with the next statement (or the COMMIT): no round trip of its own
            self.send("SELECT pg_notify(?, ?)", (DOORS_CHANNEL, locker_id))

    def backend_pid(self) -> int | None:
        """PostgreSQL: this connection's server process (what a NOTIFY it sends carries)."""
        return None if self.sqlite else int(self.execute("SELECT pg_backend_pid()").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# In-process wake-ups: a callback per listener, called with the connection after a commit that changed something.
_listeners: list[Callable[[Connection], None]] = []
_listeners_lock = threading.Lock()


def on_change(callback: Callable[[Connection], None]) -> Callable[[], None]:
    """Call `callback(conn)` after every commit in this process that changed a locker's codes
    (changed()), from the thread that committed; returns a function that stops it. The service's
    sync wakes on it instead of waiting for its poll."""
    with _listeners_lock:
        _listeners.append(callback)

    def stop() -> None:
        with _listeners_lock:
            if callback in _listeners:
                _listeners.remove(callback)

    return stop


def connect(target: str | Path, create: bool = False) -> Connection:
    """Open (and migrate) the database `target` (a URL, or a path: SQLite). create=False: a missing
    SQLite file is an error, not a new fleet."""
    conn = Connection(engine_for(target, create))
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _tables(conn: Connection) -> set[str]:
    return set(sa.inspect(conn.sa_connection).get_table_names())


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    return cfg


@functools.cache
def schema_head() -> str:
    """The newest Alembic revision this program knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every Alembic revision this program knows (a database at another one is newer than it)."""
    from alembic.script import ScriptDirectory

    return frozenset(r.revision for r in ScriptDirectory.from_config(_alembic_config()).walk_revisions())


def schema_revision(conn: Connection) -> str | None:
    """The Alembic revision the database is at (None: not stamped)."""
    if "alembic_version" not in _tables(conn):
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def migrate(conn: Connection) -> str:
    """Bring the database to this program's schema; returns its Alembic revision.

    - an empty database: the tables of schema.py, stamped with the newest revision;
    - a SQLite database of the service before Alembic (`PRAGMA user_version` 0-4): the missing
      legacy steps, each in its own transaction, then stamped with the baseline revision;
    - then Alembic's upgrade to the newest revision (nothing when it is there already).
    Two processes starting at once: the first one does it, the other finds it done."""
    head = schema_head()
    current = schema_revision(conn)
    if current == head:
        return head
    if current is None:
        with transaction(conn):
            if not conn.sqlite:
                conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATE_LOCK,))  # one migrator at a time
            tables = _tables(conn)
            if "alembic_version" in tables:
                pass  # another process did it meanwhile
            elif "lockers" not in tables:
                schema.metadata.create_all(conn.sa_connection)
                _stamp(conn, head)
            elif not conn.sqlite:
                raise RuntimeError("the database has the fleet's tables but no Alembic revision: not ours?")
        if conn.sqlite and schema_revision(conn) is None:
            legacy_upgrade(conn)
    current = schema_revision(conn)
    if current != head:
        _alembic_upgrade(conn, head)
    return head


_MIGRATE_LOCK = 0x4C4B5253  # pg_advisory_xact_lock key while migrating ("LKRS")


def _stamp(conn: Connection, revision: str) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    conn.execute("DELETE FROM alembic_version")
    conn.execute("INSERT INTO alembic_version(version_num) VALUES (?)", (revision,))


def legacy_upgrade(conn: Connection, steps: Sequence[Sequence[str]] = LEGACY_STEPS, stamp: bool = True) -> None:
    """A SQLite database of the service before Alembic: the legacy steps it lacks, then the baseline
    stamp. (Tests write the databases of older programs with `steps` cut short and stamp=False.)"""
    from lockertools.service.migrations.versions import baseline

    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > LEGACY_VERSION:
        raise RuntimeError(f"database schema {version} is newer than this program ({LEGACY_VERSION})")
    # A step may rebuild a table others refer to (SQLite's way to change a constraint): foreign keys
    # are off while it runs (the pragma is a no-op inside a transaction) and checked before it commits.
    conn.execute("PRAGMA foreign_keys=OFF")
    try:
        for number in range(version, len(steps)):
            with transaction(conn):
                # Re-read inside the write lock: another process may have migrated meanwhile.
                if int(conn.execute("PRAGMA user_version").fetchone()[0]) > number:
                    continue
                for statement in steps[number]:
                    conn.execute(statement)
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration {number + 1} broke {len(broken)} foreign key(s)")
                conn.execute(f"PRAGMA user_version = {number + 1}")
    finally:
        conn.execute("PRAGMA foreign_keys=ON")
    if stamp:
        with transaction(conn):
            if schema_revision(conn) is None:
                _stamp(conn, baseline.revision)


def _alembic_upgrade(conn: Connection, head: str) -> None:
    from alembic import command

    cfg = _alembic_config()
    with conn.engine.connect().execution_options(isolation_level="SERIALIZABLE") as alembic_conn:
        cfg.attributes["connection"] = alembic_conn
        command.upgrade(cfg, head)
        alembic_conn.commit()


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """BEGIN (IMMEDIATE on SQLite: the write lock at once) ... COMMIT, or ROLLBACK on an exception."""
    conn.in_transaction = True
    conn._changed = conn._notified = False
    if conn.sqlite:
        conn.execute("BEGIN IMMEDIATE")
    else:
        conn._pending.append(("BEGIN", None))  # goes with the transaction's first answered statement
    try:
        yield conn
    except BaseException:
        conn.in_transaction = False
        conn._changed = conn._notified = False
        conn._pending.clear()
        conn.execute("ROLLBACK")
        raise
    conn.in_transaction = False
    conn._notified = False
    try:
        conn.execute("COMMIT")  # with what waits (send()): an error there leaves nothing committed
    except Error:
        conn._changed = False
        conn._pending.clear()
        with suppress(*Error):
            conn.execute("ROLLBACK")
        raise
    if conn._changed:
        conn._changed = False
        with _listeners_lock:
            listeners = list(_listeners)
        for callback in listeners:
            callback(conn)


def data_version(conn: Connection) -> int:
    """Changes when ANOTHER connection commits (SQLite; cheap: no disk read in WAL mode). PostgreSQL
    has no such counter: the service listens for CHANGES_CHANNEL instead (ChangeListener)."""
    if not conn.sqlite:
        return 0
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def greatest(conn: Connection) -> str:
    """The SQL function for the larger of two values: max(a, b) on SQLite, greatest(a, b) on PostgreSQL."""
    return "max" if conn.sqlite else "greatest"


def least(conn: Connection) -> str:
    return "min" if conn.sqlite else "least"


def next_command_seq(conn: Connection, locker_id: str) -> int:
    """The next command sequence number: max(last + 1, ms since the epoch), stored before use.

    Call inside a transaction. Strictly increasing per locker even when the clock goes back."""
    row = conn.execute("SELECT last_cmd_seq FROM lockers WHERE id = ?", (locker_id,)).fetchone()
    assert row is not None
    seq = max(int(row[0]) + 1, int(time.time() * 1000))
    conn.execute("UPDATE lockers SET last_cmd_seq = ? WHERE id = ?", (seq, locker_id))
    return seq


SEQ_RESERVE_MS = 600_000  # a reservation of command seqs covers the next 10 minutes of clock


class CommandSeqs:
    """Command sequence numbers as `next_command_seq` hands them out (max(last + 1, ms since the
    epoch), strictly increasing per locker), with one database write per locker every 10 minutes
    instead of one per command (the service sends an ack for nearly every event). The stored top is
    read again before a take whenever another process may have moved it: a technician's tool that
    reserved a block above it (reserve_seq_block) moves the service's numbers past that block. With
    no `outside` counter that is every take (a primary-key lookup; SQLite: in-process). With one (the
    service on PostgreSQL: the count of NOTIFYs from other processes, which reserve_seq_block sends
    at commit) it is when the counter moved, or after `stale(locker)` (this process moved the top:
    a locker's status reported a higher seq), so an ack costs no round trip.

    The database holds the top of each locker's reservation (`last_cmd_seq`, SEQ_RESERVE_MS above the
    seq that opened it), written before any seq of it is used; the seqs themselves come from memory.
    After a restart, numbers start above the stored top, so they stay above everything handed out
    before, whatever the clock did. `take()` writes inside the caller's transaction when there is one
    (the caller publishes only after it commits) or on its own (autocommit) otherwise; after a
    rollback call `forget()`, and the next `take()` reads and reserves again."""

    def __init__(self, reserve_ms: int = SEQ_RESERVE_MS, outside: Callable[[], int] | None = None) -> None:
        self.reserve_ms = reserve_ms
        self.outside = outside
        self.writes = 0
        self.reads = 0
        self._last: dict[str, int] = {}  # the last seq handed out (kept over forget(): never reused)
        self._top: dict[str, int] = {}  # the reservation's top, as stored
        self._read_at: dict[str, int] = {}  # the `outside` count when the top was last read or written

    def take(self, conn: Connection, locker_id: str) -> int:
        top = self._top.get(locker_id)
        last = self._last.get(locker_id, 0)
        count = None if self.outside is None else self.outside()
        if top is None or count is None or self._read_at.get(locker_id) != count:
            # A stored top above ours is a block a technician's tool reserved (reserve_seq_block), or a
            # seq a locker reported (its status's cseq): our numbers go on above it.
            stored = stored_seq_top(conn, locker_id)
            self.reads += 1
            if count is not None:
                self._read_at[locker_id] = count
            if top is None or stored > top:
                top = stored
                last = max(last, stored)
        seq = max(last + 1, int(time.time() * 1000))
        if seq > top:
            top = seq + self.reserve_ms
            conn.send(
                f"UPDATE lockers SET last_cmd_seq = {greatest(conn)}(last_cmd_seq, ?) WHERE id = ?",
                (top, locker_id),
            )
            self.writes += 1
        self._last[locker_id], self._top[locker_id] = seq, top
        return seq

    def forget(self) -> None:
        """A transaction that may have held reservations was rolled back: read them again."""
        self._top.clear()
        self._read_at.clear()

    def stale(self, locker_id: str) -> None:
        """This process may have moved the locker's stored top: read it before the next take."""
        self._read_at.pop(locker_id, None)


SEQ_BLOCK = 100_000  # a technician's tool reserves this many command seqs at a time


def stored_seq_top(conn: Connection, locker_id: str) -> int:
    """The top of the locker's reserved command seqs as stored (every seq handed out is at or below it).
    KeyError: no such locker."""
    row = conn.execute("SELECT last_cmd_seq FROM lockers WHERE id = ?", (locker_id,)).fetchone()
    if row is None:
        raise KeyError(locker_id)
    return int(row[0])


def reserve_seq_block(conn: Connection, locker_id: str, n: int = SEQ_BLOCK) -> int:
    """The first of `n` command seqs for a technician's tool (lockerctl diag, selftest, update), above
    every seq the service handed out or reserved and above the clock; the stored top moves past them in
    a transaction of its own, and the service's next seq comes after them (CommandSeqs.take). So a
    tool's commands and the service's never reuse or undercut each other's numbers, whatever the
    service reserved before a restart. KeyError: no such locker."""
    with transaction(conn):
        first = max(stored_seq_top(conn, locker_id) + 1, int(time.time() * 1000))
        conn.execute("UPDATE lockers SET last_cmd_seq = ? WHERE id = ?", (first + n - 1, locker_id))
        conn.changed()  # the service (CommandSeqs with an `outside` count) reads the top again
    return first


def new_code_id(conn: Connection) -> int:
    """A random unused code id, 1 <= id < 2**32 (random: ids reveal nothing about volume)."""
    while True:
        code_id = 1 + secrets.randbelow(2**32 - 1)
        if conn.execute("SELECT 1 FROM codes WHERE id = ?", (code_id,)).fetchone() is None:
            return code_id


def get_setting(conn: Connection, name: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def set_setting(conn: Connection, name: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM settings WHERE name = ?", (name,))
    else:
        conn.execute("DELETE FROM settings WHERE name = ?", (name,))  # inside a transaction: a replace
        conn.execute("INSERT INTO settings(name, value) VALUES (?, ?)", (name, value))


# --- the service's lease: one service sends at a time ---------------------------------------------

LEASE_KEY = 0x4C4B5253_0001  # pg_try_advisory_lock key of the service's lease


class Lease:
    """Held by the one service that may run against a database: two services started against one
    database by mistake (or a standby on a second host) never both send commands.

    PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) on a connection of its own, held
    while that connection lives (a holder that dies loses it with its connection). SQLite: an
    exclusive `flock` on the file next to the database, `<db>-lease` (0600), held while the file
    is open (a holder that dies loses it with the process). `try_acquire()` does not wait."""

    def __init__(self, target: str | Path) -> None:
        self.url = database_url(target)
        self._fd: int | None = None
        self._pg: Any = None  # psycopg connection holding the advisory lock

    @property
    def held(self) -> bool:
        return self._fd is not None or self._pg is not None

    def try_acquire(self) -> bool:
        if self.held:
            return True
        if self.url.get_backend_name() == "sqlite":
            import fcntl

            fd = os.open(f"{self.url.database}-lease", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
            return True
        import psycopg

        pg = psycopg.connect(libpq_url(self.url), autocommit=True)
        row = pg.execute("SELECT pg_try_advisory_lock(%s)", (LEASE_KEY,)).fetchone()
        if row is None or not row[0]:
            pg.close()
            return False
        self._pg = pg
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None
        if self._pg is not None:
            self._pg.close()  # ending the session drops the advisory lock
            self._pg = None


def libpq_url(url: sa.URL) -> str:
    """A PostgreSQL URL as libpq reads it (for psycopg connections of our own: lease, LISTEN)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class ChangeListener:
    """PostgreSQL: LISTEN for CHANGES_CHANNEL (or another channel) on a connection of its own.
    `fileno()` turns readable when a notification arrives; `drain()` reads them and returns how
    many, `drain_payloads()` returns their payloads."""

    def __init__(self, url: sa.URL, ignore_pid: int | None = None, channel: str = CHANGES_CHANNEL) -> None:
        import psycopg

        self._pg = psycopg.connect(libpq_url(url), autocommit=True)
        self._pg.execute(f"LISTEN {channel}")
        self.ignore_pid = ignore_pid  # the listener's own process's connection: its commits wake it already
        self.count = 0

    def fileno(self) -> int:
        return int(self._pg.fileno())

    def drain(self) -> int:
        pgconn = self._pg.pgconn
        pgconn.consume_input()
        got = 0
        while (note := pgconn.notifies()) is not None:
            got += note.be_pid != self.ignore_pid
        self.count += got
        return got

    def drain_payloads(self) -> list[str]:
        pgconn = self._pg.pgconn
        pgconn.consume_input()
        payloads = []
        while (note := pgconn.notifies()) is not None:
            if note.be_pid != self.ignore_pid:
                payloads.append(note.extra.decode())
        self.count += len(payloads)
        return payloads

    def close(self) -> None:
        self._pg.close()
