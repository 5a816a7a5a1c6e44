"""Encrypted backups of the fleet database, taken while the service runs, and their restore.

The database holds every locker's key, so a backup is only ever written encrypted, with age (pyrage)
to the operator's public key (`age1...`); restoring needs the matching identity file, which lives
neither on the host nor beside the backups (docs/deployment.md, "Backups").

- SQLite (a path, or `sqlite:///path`): the online backup API copies a consistent snapshot of the
  database (one read transaction: the service goes on writing meanwhile) into a private temporary
  file, which is encrypted and removed. What is encrypted is the database file itself.
- PostgreSQL (`postgresql://` or `postgresql+psycopg://`): `pg_dump --format=custom` (a consistent
  snapshot too), restored with `pg_restore`.

A restore refuses to overwrite a database that has tables unless `force` is given, checks what it
decrypted before it puts it in place (SQLite: integrity and a schema version this host knows), and
replaces a SQLite file in one rename.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyrage

from lockertools.service import db
from lockertools.service.migrations.legacy import LEGACY_VERSION

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"


class BackupError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    """A database named by a URL or a plain path (a path means SQLite)."""

    sqlite_path: Path | None = None
    pg_url: str | None = None  # libpq's form (no SQLAlchemy driver suffix)

    @classmethod
    def parse(cls, name: str) -> Target:
        if name.startswith(("postgresql://", "postgres://", "postgresql+")):
            scheme, sep, rest = name.partition("://")
            if not sep:
                raise BackupError(f"{name}: not a database URL")
            return cls(pg_url="postgresql://" + rest)
        if name.startswith("sqlite:///"):
            return cls(sqlite_path=Path(name.removeprefix("sqlite:///")))
        if "://" in name:
            raise BackupError(f"{name}: use a path, sqlite:///PATH or postgresql+psycopg://...")
        return cls(sqlite_path=Path(name))


def read_recipient(text: str) -> pyrage.x25519.Recipient:
    """An age public key (`age1...`), or a file holding one (comments and blank lines allowed)."""
    candidate = text.strip()
    if not candidate.startswith("age1") and Path(candidate).is_file():
        lines = [ln.strip() for ln in Path(candidate).read_text().splitlines()]
        keys = [ln for ln in lines if ln and not ln.startswith("#")]
        if len(keys) != 1:
            raise BackupError(f"{candidate}: expected one age public key (age1...), found {len(keys)} lines")
        candidate = keys[0]
    if candidate.startswith("AGE-SECRET-KEY-"):
        raise BackupError("that is an age identity (a secret key): a backup needs only the public key, age1...")
    try:
        return pyrage.x25519.Recipient.from_str(candidate)
    except pyrage.RecipientError as exc:
        raise BackupError(f"not an age public key (age1...): {exc}") from None


def read_identity(path: Path) -> pyrage.x25519.Identity:
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except OSError as exc:
        raise BackupError(f"{path}: {exc.strerror}") from None
    keys = [ln for ln in lines if ln.startswith("AGE-SECRET-KEY-")]
    if len(keys) != 1:
        raise BackupError(f"{path}: expected one age identity (AGE-SECRET-KEY-...), found {len(keys)}")
    try:
        return pyrage.x25519.Identity.from_str(keys[0])
    except pyrage.IdentityError as exc:
        raise BackupError(f"{path}: not an age identity: {exc}") from None


def backup(target: Target, out: Path, recipient: pyrage.x25519.Recipient) -> int:
    """Write an encrypted backup of the database to `out` (mode 0600, replaced in one rename);
    returns the size of the plain copy."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lockerctl-backup-") as tmp:  # mode 0700
        plain = Path(tmp) / "plain"
        if target.sqlite_path is not None:
            _sqlite_copy(target.sqlite_path, plain)
        else:
            assert target.pg_url is not None
            _run(["pg_dump", "--format=custom", "--no-owner", f"--file={plain}", f"--dbname={target.pg_url}"])
        size = plain.stat().st_size
        partial = out.with_name(out.name + ".partial")
        try:
            pyrage.encrypt_file(str(plain), str(partial), [recipient])
            os.chmod(partial, 0o600)
            os.replace(partial, out)
        except pyrage.EncryptError as exc:
            raise BackupError(f"encryption failed: {exc}") from None
        finally:
            partial.unlink(missing_ok=True)
    return size


def _sqlite_copy(path: Path, dest: Path) -> None:
    if not path.is_file():
        raise BackupError(f"no database at {path}")
    # Not db.connect(): a backup never migrates the database it copies.
    src = sqlite3.connect(path, timeout=10.0)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)  # all pages in one step: one read transaction, a consistent snapshot
        finally:
            dst.close()
    finally:
        src.close()


def restore(backup_file: Path, identity: pyrage.x25519.Identity, target: Target, *, force: bool = False) -> str:
    """Decrypt `backup_file` and put it in place as the database; returns what was restored."""
    if target.sqlite_path is not None and not force and _sqlite_has_tables(target.sqlite_path):
        raise BackupError(f"{target.sqlite_path} exists and holds a fleet: give --force to overwrite it")
    if target.pg_url is not None and not force and _pg_has_tables(target.pg_url):
        raise BackupError("the PostgreSQL database holds tables: give --force to overwrite it")
    where = target.sqlite_path.parent if target.sqlite_path is not None else None
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
    # SQLite: decrypt beside the database, so that putting it in place is one rename on one filesystem.
    with tempfile.TemporaryDirectory(prefix=".lockerctl-restore-", dir=where) as tmp:
        plain = Path(tmp) / "plain"
        try:
            pyrage.decrypt_file(str(backup_file), str(plain), [identity])
        except pyrage.DecryptError as exc:
            raise BackupError(f"{backup_file}: cannot decrypt it with that identity: {exc}") from None
        except OSError as exc:
            raise BackupError(f"{backup_file}: {exc.strerror}") from None
        with plain.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if target.sqlite_path is not None:
            if head != SQLITE_MAGIC:
                raise BackupError(f"{backup_file}: not a SQLite backup (a PostgreSQL one? restore it to a URL)")
            version = _check_sqlite(plain)
            for suffix in ("-wal", "-shm"):  # the old database's, which must not be replayed into the new one
                Path(str(target.sqlite_path) + suffix).unlink(missing_ok=True)
            os.chmod(plain, 0o600)
            os.replace(plain, target.sqlite_path)
            return f"SQLite database, schema {version}, to {target.sqlite_path}"
        assert target.pg_url is not None
        if not head.startswith(PG_DUMP_MAGIC):
            raise BackupError(f"{backup_file}: not a PostgreSQL backup (a SQLite one? restore it to a path)")
        args = ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={target.pg_url}"]
        if force:
            args += ["--clean", "--if-exists"]
        _run([*args, str(plain)])
        return "PostgreSQL dump"


def _check_sqlite(path: Path) -> str:
    """The backup's schema (an Alembic revision, or a legacy version), once it passed SQLite's
    integrity check and is a schema this program can open."""
    conn = sqlite3.connect(path)
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        row = (
            conn.execute("SELECT version_num FROM alembic_version").fetchone() if "alembic_version" in tables else None
        )
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the backup is not a readable database: {exc}") from None
    finally:
        conn.close()
    if ok != "ok":
        raise BackupError(f"the backup fails SQLite's integrity check: {ok}")
    if row is not None:
        revision = str(row[0])
        if revision not in db.known_revisions():
            raise BackupError(f"the backup has schema {revision}, which this lockerctl does not know: upgrade it")
        return revision
    if version > LEGACY_VERSION:
        raise BackupError(f"the backup has schema version {version}; this lockerctl knows {LEGACY_VERSION}: upgrade it")
    return f"version {version}"


def _sqlite_has_tables(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return bool(conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return True  # something that is not an empty database: never overwritten silently


def _pg_has_tables(url: str) -> bool:
    out = _run(["psql", "-qAt", f"--dbname={url}", "-c", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"])
    return out.strip() != "0"


def _run(args: list[str]) -> str:
    if shutil.which(args[0]) is None:
        raise BackupError(f"{args[0]} not found: install PostgreSQL's client (Debian: postgresql-client)")
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # The URL may hold a password: name the tool and its own message only.
        raise BackupError(f"{args[0]} failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout
