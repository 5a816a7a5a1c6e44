"""lockerctl commands for the host service and staff: service run, locker add, codes, lockers, events.

Every command takes `--db` (or the LOCKER_DB environment variable). Only `locker add` creates a
database; the others say so when it is missing.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import click

from lockertools.service import db, fleet_db
from lockertools.service.notify import Notification, Notifier, NotifyError, make_notifier

_DB = click.option(
    "--db",
    "db_path",
    envvar="LOCKER_DB",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The fleet database (default: $LOCKER_DB).",
)
_NOTIFY_COMMAND = "notify_command"
_NOTIFY_URL = "notify_url"


def _open(db_path: Path, create: bool = False) -> sqlite3.Connection:
    try:
        return db.connect(db_path, create=create)
    except db.DatabaseMissing as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"{db_path}: {exc}") from None


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_expiry(text: str | None, now: float | None = None) -> int:
    """'5d', '12h', '30m', '2w' from now, or 'never'/'0' -> epoch seconds (0: none)."""
    if text is None or text in ("never", "0"):
        return 0
    match = _DURATION.match(text.strip())
    if match is None:
        raise click.BadParameter("use a number and a unit: 30m, 12h, 5d, 2w (or 'never')", param_hint="--expires")
    now = time.time() if now is None else now
    return int(now) + int(match.group(1)) * _UNIT_S[match.group(2)]


# --- service ---------------------------------------------------------------------------------------


@click.group("service")
def service_cli() -> None:
    """Run the host service."""


@service_cli.command("run")
@_DB
@click.option("--broker", "broker_addr", default="127.0.0.1:1883", show_default=True, help="HOST:PORT of the broker.")
@click.option("--user", default="host", show_default=True, help="The host service's MQTT user.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Its password.")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CA of the broker (TLS).")
@click.option("--client-id", default="host", show_default=True, help="Fixed MQTT client id (persistent session).")
@click.option("--notify-command", help="Hook for new codes: a command reading the JSON on stdin.")
@click.option("--notify-url", help="Hook for new codes: a URL to POST the JSON to.")
@click.option("-v", "--verbose", is_flag=True, help="Log every sync step.")
def run_cmd(
    db_path: Path,
    broker_addr: str,
    user: str,
    password_file: Path | None,
    tls_ca: Path | None,
    client_id: str,
    notify_command: str | None,
    notify_url: str | None,
    verbose: bool,
) -> None:
    """Serve the fleet: ingest events, acknowledge them, keep every locker's codes in sync.

    The notification hook given here is recorded in the database, so `lockerctl codes issue` (run by
    staff in another process) hands new codes to it."""
    from lockertools.service.runner import ServiceConfig, run_service

    host, _, port = broker_addr.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("use HOST:PORT", param_hint="--broker")
    try:
        make_notifier(notify_command, notify_url)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    conn = _open(db_path)
    with db.transaction(conn):
        db.set_setting(conn, _NOTIFY_COMMAND, notify_command)
        db.set_setting(conn, _NOTIFY_URL, notify_url)
    lockers = conn.execute("SELECT count(*) FROM lockers").fetchone()[0]
    conn.close()
    password = password_file.read_text().strip() if password_file else None
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    click.echo(f"serving {lockers} locker(s) from {db_path} via {host}:{port} as {user!r}; Ctrl-C stops", err=True)
    run_service(
        ServiceConfig(
            db_path=db_path,
            host=host,
            port=int(port),
            username=user,
            password=password,
            tls_ca=tls_ca,
            client_id=client_id,
        )
    )


# --- lockers ---------------------------------------------------------------------------------------


@click.group("locker")
def locker_cli() -> None:
    """Register lockers in the fleet database."""


def _read_key(path: Path) -> bytes:
    raw = path.read_bytes()
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode()) if len(text) == 64 else raw
    except (UnicodeDecodeError, ValueError):
        key = raw
    if len(key) != 32:
        raise click.BadParameter("a key file holds 32 bytes, raw or as 64 hex digits", param_hint="--key-file")
    return key


@locker_cli.command("add")
@_DB
@click.argument("locker_id")
@click.option("--board", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
def locker_add_cmd(db_path: Path, locker_id: str, board: Path, key_file: Path) -> None:
    """Register LOCKER_ID with its key and the door labels of its board (creates the database)."""
    from lockertools.boards import validate
    from lockertools.flash import board_labels

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", locker_id):
        raise click.BadParameter("1-32 characters of A-Z, a-z, 0-9, '_' and '-'", param_hint="LOCKER_ID")
    report = validate(board)
    if not report.ok:
        raise click.ClickException("board file has errors:\n" + "\n".join(str(e) for e in report.errors))
    labels = board_labels(json.loads(board.read_text()))
    conn = _open(db_path, create=True)
    try:
        fleet_db.add_locker(conn, locker_id, _read_key(key_file), labels)
    except fleet_db.FleetError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"locker {locker_id} registered with {len(labels)} doors: {', '.join(labels)}")


@click.command("lockers")
@_DB
def lockers_cmd(db_path: Path) -> None:
    """The fleet at a glance: online, revisions (host/locker), doors full, last seen, outbox."""
    conn = _open(db_path)
    rows = []
    for r in conn.execute("SELECT * FROM lockers ORDER BY id"):
        status = json.loads(r["status_json"]) if r["status_json"] else {}
        full = conn.execute("SELECT count(*) FROM doors WHERE locker_id = ? AND full = 1", (r["id"],)).fetchone()[0]
        doors = len(json.loads(r["doors_json"]))
        rev = f"{r['host_rev']}/{'-' if r['locker_rev'] is None else r['locker_rev']}"
        if r["locker_rev"] is not None and r["locker_rev"] != r["host_rev"]:
            rev += " *"  # not in sync yet
        online = "no"
        if r["online"]:
            # Safe mode: no door opens until a technician looks (docs/operation.md, "Staying alive").
            online = "SAFE MODE" if status.get("mode") == "safe" else "yes"
        outbox = str(status.get("outbox", "-"))
        if status.get("lost"):
            outbox += f" ({status['lost']} lost)"  # the outbox overflowed while the host was away
        rows.append([r["id"], online, rev, f"{full}/{doors}", _when(r["last_seen"]), outbox])
    if not rows:
        click.echo("no lockers registered (lockerctl locker add)")
        return
    _table(rows, ["locker", "online", "rev host/locker", "full", "last seen", "outbox"])


# --- codes -----------------------------------------------------------------------------------------


@click.group("codes")
def codes_cli() -> None:
    """Issue, revoke and list pickup codes."""


def _notifier(conn: sqlite3.Connection, command: str | None, url: str | None) -> Notifier | None:
    if not command and not url:  # the service's configuration, recorded by `service run`
        command, url = db.get_setting(conn, _NOTIFY_COMMAND), db.get_setting(conn, _NOTIFY_URL)
    try:
        return make_notifier(command, url)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@codes_cli.command("issue")
@_DB
@click.option("--locker", "locker_id", required=True)
@click.option("--door", required=True)
@click.option("--expires", default="5d", show_default=True, help="30m, 12h, 5d, 2w, or 'never'.")
@click.option("--kind", type=click.Choice(list(fleet_db.KINDS)), default="pickup", show_default=True)
@click.option("--recipient", help="Who the hook should send the code to (e-mail, phone, ...).")
@click.option("--notify-command", envvar="LOCKER_NOTIFY_COMMAND", help="Override the service's hook.")
@click.option("--notify-url", envvar="LOCKER_NOTIFY_URL", help="Override the service's hook.")
def issue_cmd(
    db_path: Path,
    locker_id: str,
    door: str,
    expires: str,
    kind: str,
    recipient: str | None,
    notify_command: str | None,
    notify_url: str | None,
) -> None:
    """Issue a new random 8-digit code for one door. The code is shown once and never stored."""
    conn = _open(db_path)
    notifier = _notifier(conn, notify_command, notify_url)
    try:
        issued = fleet_db.issue_code(conn, locker_id, door, fleet_db.KINDS[kind], parse_expiry(expires), recipient)
    except fleet_db.FleetError as exc:
        raise click.ClickException(str(exc)) from None
    expiry = _when(issued.expires) if issued.expires else "never"
    click.echo(f"code {issued.code} for {locker_id} door {door} (id {issued.code_id}, expires {expiry})")
    click.echo("shown once: it is not stored; the service sends its tag to the locker", err=True)
    if notifier is None:
        return
    note = Notification(locker_id, door, issued.code, issued.expires, issued.code_id, recipient)
    try:
        notifier.send(note)
    except NotifyError as exc:
        fleet_db.record_notification(conn, issued.code_id, str(exc))
        raise click.ClickException(
            f"notification failed ({exc}); recorded. Give the code above by hand, or revoke "
            f"{issued.code_id} and issue a new one."
        ) from None
    fleet_db.record_notification(conn, issued.code_id, None)
    click.echo(f"handed to the notification hook ({notifier.describe()})", err=True)


@codes_cli.command("revoke")
@_DB
@click.argument("code_id", type=int)
def revoke_cmd(db_path: Path, code_id: int) -> None:
    """Revoke a code by its id; the service removes it from the locker."""
    conn = _open(db_path)
    try:
        locker_id = fleet_db.revoke_code(conn, code_id)
    except fleet_db.FleetError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"code {code_id} revoked; locker {locker_id} will drop it at its next sync")


@codes_cli.command("list")
@_DB
@click.option("--locker", "locker_id")
@click.option("--state", type=click.Choice(["issued", "revoked", "used", "expired"]))
def list_cmd(db_path: Path, locker_id: str | None, state: str | None) -> None:
    """Codes (ids, doors, states; never the codes themselves)."""
    conn = _open(db_path)
    rows = [
        [
            str(c["id"]),
            c["locker_id"],
            c["door"],
            fleet_db.KIND_NAMES[c["kind"]],
            c["state"],
            _when(c["expires"]) if c["expires"] else "never",
            c["recipient"] or "-",
            c["notify_state"] or "-",
            _when(c["used_at"]),
        ]
        for c in fleet_db.code_table(conn, locker_id, state)
    ]
    if not rows:
        click.echo("no codes")
        return
    _table(rows, ["id", "locker", "door", "kind", "state", "expires", "recipient", "notified", "used"])


# --- events ----------------------------------------------------------------------------------------


def _event_line(r: sqlite3.Row) -> str:
    ev: dict[str, Any] = json.loads(r["json"])
    extra = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("k", "t", "d"))
    door = f" door {r['door']}" if r["door"] else ""
    return f"{_when(r['received_at'])}  {r['locker_id']}#{r['seq']}  {r['kind']}{door}  {extra}".rstrip()


@click.command("events")
@_DB
@click.option("--locker", "locker_id", help="Only this locker.")
@click.option("-n", "--last", default=20, show_default=True, help="How many recent events to show first.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events (Ctrl-C stops).")
def events_cmd(db_path: Path, locker_id: str | None, last: int, follow: bool) -> None:
    """Events the lockers reported, oldest first."""
    conn = _open(db_path)
    if locker_id:
        _require_locker(conn, locker_id)
    where, params = ("WHERE locker_id = ?", [locker_id]) if locker_id else ("", [])
    rows = conn.execute(f"SELECT * FROM events {where} ORDER BY id DESC LIMIT ?", [*params, last]).fetchall()
    for r in reversed(rows):
        click.echo(_event_line(r))
    newest = max((r["id"] for r in rows), default=0)
    try:
        while follow:
            time.sleep(0.5)
            sql = f"SELECT * FROM events {where} {'AND' if where else 'WHERE'} id > ? ORDER BY id"
            for r in conn.execute(sql, [*params, newest]).fetchall():
                click.echo(_event_line(r))
                newest = r["id"]
    except KeyboardInterrupt:
        pass


def _require_locker(conn: sqlite3.Connection, locker_id: str) -> None:
    try:
        fleet_db.locker_labels(conn, locker_id)
    except fleet_db.FleetError as exc:
        raise click.ClickException(str(exc)) from None
