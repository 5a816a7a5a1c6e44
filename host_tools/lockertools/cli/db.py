"""`lockerctl db backup` / `db restore`: encrypted backups of the fleet database (service/backup.py)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from lockertools.service import backup as backups


def _target(name: str) -> backups.Target:
    try:
        return backups.Target.parse(name)
    except backups.BackupError as exc:
        raise click.BadParameter(str(exc), param_hint="--db") from None


_DB = click.option(
    "--db",
    "db_name",
    envvar="LOCKER_DB",
    required=True,
    help="The fleet database: a path (SQLite), sqlite:///PATH or postgresql+psycopg://... (default: $LOCKER_DB).",
)


@click.group("db")
def db_cli() -> None:
    """Back up and restore the fleet database (encrypted: it holds every locker's key)."""


@db_cli.command("backup")
@_DB
@click.option(
    "--recipient",
    envvar="LOCKER_BACKUP_RECIPIENT",
    required=True,
    help="The operator's age public key (age1...), or a file holding it (default: $LOCKER_BACKUP_RECIPIENT).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="The backup file, or a directory (ending in /) for fleet-YYYYMMDD-HHMMSS.db.age in it.",
)
def backup_cmd(db_name: str, recipient: str, out: Path) -> None:
    """Write a consistent, encrypted copy of the database to OUT; the service may keep running."""
    if out.is_dir() or str(out).endswith("/"):
        out = out / time.strftime("fleet-%Y%m%d-%H%M%S.db.age", time.gmtime())
    try:
        size = backups.backup(_target(db_name), out, backups.read_recipient(recipient))
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backed up {size} bytes, encrypted, to {out}")


@db_cli.command("restore")
@click.argument("backup_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_DB
@click.option(
    "--identity",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The age identity file (AGE-SECRET-KEY-...) matching the backup's recipient.",
)
@click.option("--force", is_flag=True, help="Overwrite a database that holds a fleet (stop the service first).")
def restore_cmd(backup_file: Path, db_name: str, identity: Path, force: bool) -> None:
    """Put BACKUP_FILE back as the database. Refuses to overwrite one that holds a fleet without --force."""
    try:
        what = backups.restore(backup_file, backups.read_identity(identity), _target(db_name), force=force)
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {what}")
