"""lockerctl commands for the host service and staff: service run, locker add, codes, lockers, events.

Every command takes `--db` (or the LOCKER_DB environment variable). Only `locker add` creates a
database; the others say so when it is missing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Iterator
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
    help="The fleet database: a path (SQLite) or a URL, sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    " (default: $LOCKER_DB).",
)
_NOTIFY_COMMAND = "notify_command"
_NOTIFY_URL = "notify_url"


def _open(db_path: str, create: bool = False) -> db.Connection:
    try:
        return db.connect(db_path, create=create)
    except db.DatabaseMissing as exc:
        raise click.ClickException(str(exc)) from None
    except db.Error + (ValueError,) as exc:
        raise click.ClickException(f"{db.describe(db_path)}: {exc}") from None


@contextlib.contextmanager
def _fleet_errors() -> Iterator[None]:
    """A refusal of fleet_db (FleetError) becomes the command's error message."""
    try:
        yield
    except fleet_db.FleetError as exc:
        raise click.ClickException(str(exc)) from None


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _table(rows: list[list[str]], header: list[str], empty: str) -> None:
    """Rows in aligned columns under their header; the line `empty` where there are none."""
    if not rows:
        click.echo(empty)
        return
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
@click.option("--broker", "broker_addr", default="127.0.0.1:8883", show_default=True, help="HOST:PORT of the broker.")
@click.option("--user", default="host", show_default=True, help="The host service's MQTT user.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Its password.")
@click.option(
    "--tls-ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA of the broker (its set-up's ca.crt); required unless --plain.",
)
@click.option("--plain", is_flag=True, help="INSECURE: plain MQTT (password in clear): a broker on loopback only.")
@click.option("--client-id", default="host", show_default=True, help="Fixed MQTT client id (persistent session).")
@click.option("--notify-command", help="Hook for new codes: a command reading the JSON on stdin.")
@click.option("--notify-url", help="Hook for new codes: a URL to POST the JSON to.")
@click.option(
    "--metrics",
    "metrics_addr",
    envvar="LOCKER_METRICS",
    default="127.0.0.1:9466",
    show_default=True,
    help="HOST:PORT of the health endpoint (/healthz) and Prometheus metrics (/metrics); 'off': none.",
)
@click.option("--no-watchdog", is_flag=True, help="Do not feed systemd's watchdog (WatchdogSec=) even if asked to.")
@click.option("--log-format", type=click.Choice(["json", "text"]), default="json", show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Log every sync step.")
def run_cmd(
    db_path: str,
    broker_addr: str,
    user: str,
    password_file: Path | None,
    tls_ca: Path | None,
    plain: bool,
    client_id: str,
    notify_command: str | None,
    notify_url: str | None,
    metrics_addr: str,
    no_watchdog: bool,
    log_format: str,
    verbose: bool,
) -> None:
    """Serve the fleet: ingest events, acknowledge them, keep every locker's codes in sync.

    The notification hook given here is recorded in the database, so `lockerctl codes issue` (run by
    staff in another process) hands new codes to it. The password: --password-file, else the
    configuration file's service.password_file or password_env."""
    from lockertools.cli.config import settings_of
    from lockertools.service.runner import ServiceConfig, ServiceError, run_service

    host, _, port = broker_addr.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("use HOST:PORT", param_hint="--broker")
    if tls_ca is None and not plain:
        raise click.UsageError("give the broker's CA (--tls-ca, its set-up's ca.crt), or --plain for plain MQTT")
    if tls_ca is not None and plain:
        raise click.UsageError("--plain and --tls-ca: choose one")
    metrics_host, metrics_port = None, None
    if metrics_addr != "off":
        metrics_host, _, metrics_port_text = metrics_addr.rpartition(":")
        if not metrics_host or not metrics_port_text.isdigit() or int(metrics_port_text) > 65535:
            raise click.BadParameter("use HOST:PORT, or 'off'", param_hint="--metrics")
        metrics_port = int(metrics_port_text)
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
    settings = settings_of(click.get_current_context())
    if settings.messages.channels:
        from lockertools.notify import TemplateError, Templates

        try:
            Templates.load(settings.messages.templates)  # refused here, before the service starts
        except TemplateError as exc:
            raise click.ClickException(f"residents' messages: {exc}") from None
    if password_file is not None:
        password: str | None = password_file.read_text().strip()
    else:
        configured = settings.service.password
        password = configured.value if configured is not None else None
    api = settings.api
    from lockertools.service import logs

    logs.setup(logging.INFO if verbose else logging.WARNING, log_format)
    click.echo(
        f"serving {lockers} locker(s) from {db.describe(db_path)} via {host}:{port} as {user!r}; Ctrl-C stops", err=True
    )
    config = ServiceConfig(
        db_path=db_path,
        host=host,
        port=int(port),
        username=user,
        password=password,
        tls_ca=tls_ca,
        client_id=client_id,
        metrics_host=metrics_host or "127.0.0.1",
        metrics_port=metrics_port,
        watchdog=not no_watchdog,
        incident_offline_s=settings.incidents.offline_after_min * 60,
        webhook_timeout_s=api.webhook_timeout_s,
        webhook_retry_min_s=api.webhook_retry_min_s,
        webhook_retry_max_s=api.webhook_retry_max_s,
        webhook_attempts=api.webhook_attempts,
        messages=settings,
        helpline=settings.town if settings.town.help_phone is not None else None,
    )
    try:
        run_service(config)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None


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
def locker_add_cmd(db_path: str, locker_id: str, board: Path, key_file: Path) -> None:
    """Register LOCKER_ID with its key and the door labels of its board (creates the database)."""
    from lockertools.boards import door_sizes, validate
    from lockertools.flash import board_labels

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", locker_id):
        raise click.BadParameter("1-32 characters of A-Z, a-z, 0-9, '_' and '-'", param_hint="LOCKER_ID")
    report = validate(board)
    if not report.ok:
        raise click.ClickException("board file has errors:\n" + "\n".join(str(e) for e in report.errors))
    doc = json.loads(board.read_text())
    labels = board_labels(doc)
    conn = _open(db_path, create=True)
    with _fleet_errors():
        fleet_db.add_locker(conn, locker_id, _read_key(key_file), labels, door_sizes(doc))
    click.echo(f"locker {locker_id} registered with {len(labels)} doors: {', '.join(labels)}")


@click.command("lockers")
@_DB
def lockers_cmd(db_path: str) -> None:
    """The fleet at a glance: online, revisions (host/locker), doors full, last seen, outbox, a connection
    that flaps."""
    conn = _open(db_path)
    flapping = fleet_db.flapping(conn)
    rows = []
    for r in conn.execute("SELECT * FROM lockers ORDER BY id"):
        status = json.loads(r["status_json"]) if r["status_json"] else {}
        full = conn.execute('SELECT count(*) FROM doors WHERE locker_id = ? AND "full" = 1', (r["id"],)).fetchone()[0]
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
        take_back = len(fleet_db.take_back_table(conn, r["id"]))
        off = [
            row[0]
            for row in conn.execute(
                "SELECT label FROM doors WHERE locker_id = ? AND in_service = 0 ORDER BY label", (r["id"],)
            )
        ]
        flap = flapping.get(r["id"])
        rows.append(
            [
                *(r["id"], online, rev, f"{full}/{doors}", _when(r["last_seen"]), outbox),
                str(take_back) if take_back else "-",
                ",".join(off) or "-",
                "-" if flap is None else f"FLAPPING: {flap['changes']} changes since {_when(flap['started_at'])}",
            ]
        )
    _table(
        rows,
        ["locker", "online", "rev host/locker", "full", "last seen", "outbox", "take back", "out of service"]
        + ["connection"],
        empty="no lockers registered (lockerctl locker add)",
    )
    if any(row[6] != "-" for row in rows):
        click.echo("items to take back: lockerctl codes list --take-back")
    if flapping:
        click.echo(
            "a flapping connection: another client may be logging in with the locker's password (give it a"
            " new one: lockerctl broker add-locker DIR LID --rotate, then provision the board --no-firmware),"
            ' or its link keeps failing (docs/operation.md, "Running the host service")'
        )


# --- codes -----------------------------------------------------------------------------------------


@click.group("codes")
def codes_cli() -> None:
    """Issue, revoke and list pickup codes."""


def _notifier(conn: db.Connection, command: str | None, url: str | None) -> Notifier | None:
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
@click.option(
    "--kind",
    type=click.Choice(["pickup"]),
    default="pickup",
    show_default=True,
    help="Staff PINs: `lockerctl staff add`; return codes: `lockerctl returns issue`.",
)
@click.option("--recipient", help="Who the hook should send the code to (e-mail, phone, ...).")
@click.option("--notify-command", envvar="LOCKER_NOTIFY_COMMAND", help="Override the service's hook.")
@click.option("--notify-url", envvar="LOCKER_NOTIFY_URL", help="Override the service's hook.")
def issue_cmd(
    db_path: str,
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
    with _fleet_errors():
        issued = fleet_db.issue_code(conn, locker_id, door, fleet_db.KINDS[kind], parse_expiry(expires), recipient)
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
def revoke_cmd(db_path: str, code_id: int) -> None:
    """Revoke a code by its id; the service removes it from the locker."""
    conn = _open(db_path)
    with _fleet_errors():
        locker_id = fleet_db.revoke_code(conn, code_id)
    click.echo(f"code {code_id} revoked; locker {locker_id} will drop it at its next sync")


@codes_cli.command("list")
@_DB
@click.option("--locker", "locker_id")
@click.option("--state", type=click.Choice(["issued", "revoked", "used", "expired", "taken_back"]))
@click.option("--take-back", is_flag=True, help="Only the items whose pickup window ended, still in their door.")
def list_cmd(db_path: str, locker_id: str | None, state: str | None, take_back: bool) -> None:
    """Codes (ids, doors, states; never the codes themselves). Expired items still in their door
    show as TAKE BACK: staff take them out at the locker."""
    conn = _open(db_path)
    back = {r["id"] for r in fleet_db.take_back_table(conn, locker_id)}
    rows = [
        [
            str(c["id"]),
            c["locker_id"],
            c["door"],
            fleet_db.describe_kind(c["kind"]),
            "expired: TAKE BACK" if c["id"] in back else c["state"],
            _when(c["expires"]) if c["expires"] else "never",
            c["recipient"] or "-",
            c["notify_state"] or "-",
            _when(c["used_at"]),
        ]
        for c in fleet_db.code_table(conn, locker_id, state)
        if not take_back or c["id"] in back
    ]
    _table(
        rows, ["id", "locker", "door", "kind", "state", "expires", "recipient", "notified", "used"], empty="no codes"
    )


# --- events ----------------------------------------------------------------------------------------


def _event_line(r: db.Row, conn: db.Connection | None = None) -> str:
    ev: dict[str, Any] = json.loads(r["json"])
    if conn is not None and "staff" in ev:  # the locker reports the staff code's id; names stay here
        name = fleet_db.staff_name(conn, r["locker_id"], ev["staff"])
        if name is not None:
            ev["staff"] = f"{name!r}({ev['staff']})"
    extra = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("k", "t", "d"))
    door = f" door {r['door']}" if r["door"] else ""
    return f"{_when(r['received_at'])}  {r['locker_id']}#{r['seq']}  {r['kind']}{door}  {extra}".rstrip()


@click.command("events")
@_DB
@click.option("--locker", "locker_id", help="Only this locker.")
@click.option("-n", "--last", default=20, show_default=True, help="How many recent events to show first.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events (Ctrl-C stops).")
def events_cmd(db_path: str, locker_id: str | None, last: int, follow: bool) -> None:
    """Events the lockers reported, oldest first."""
    conn = _open(db_path)
    if locker_id:
        _require_locker(conn, locker_id)
    where, params = ("WHERE locker_id = ?", [locker_id]) if locker_id else ("", [])
    rows = conn.execute(f"SELECT * FROM events {where} ORDER BY id DESC LIMIT ?", [*params, last]).fetchall()
    for r in reversed(rows):
        click.echo(_event_line(r, conn))
    newest = max((r["id"] for r in rows), default=0)
    try:
        while follow:
            time.sleep(0.5)
            sql = f"SELECT * FROM events {where} {'AND' if where else 'WHERE'} id > ? ORDER BY id"
            for r in conn.execute(sql, [*params, newest]).fetchall():
                click.echo(_event_line(r, conn))
                newest = r["id"]
    except KeyboardInterrupt:
        pass


def _require_locker(conn: db.Connection, locker_id: str) -> None:
    with _fleet_errors():
        fleet_db.locker_labels(conn, locker_id)


# --- deliveries, returns, staff, doors ---------------------------------------------------------------

_SIZE = click.option(
    "--size", type=click.Choice(["S", "M", "L", "any"]), default="any", show_default=True, help="Door size wanted."
)
_LOW = click.option("--low", is_flag=True, help="A low door: for a resident who cannot reach a high one.")
_DAYS = click.option(
    "--days", type=float, default=fleet_db.PICKUP_DAYS, show_default=True, help="The pickup window, in days."
)


@click.group("delivery")
def delivery_cli() -> None:
    """Deliveries staff load at a locker: prepare, list, cancel."""


@delivery_cli.command("prepare")
@_DB
@click.argument("locker_id")
@_SIZE
@_LOW
@click.option("--item", type=click.Choice(fleet_db.ITEMS), default="parcel", show_default=True)
@_DAYS
@click.option("--contact", help="Who to notify when it is loaded (e-mail, phone, ...), for the hook.")
@click.option("--name", "resident_name", help="The resident's name.")
@click.option("--email", help="The resident's e-mail address.")
@click.option("--phone", help="The resident's mobile number, for a text message.")
@click.option(
    "--language",
    type=click.Choice(fleet_db.LANGUAGES),
    default=fleet_db.LANGUAGES[0],
    show_default=True,
    help="The language the resident is told in.",
)
@click.option("--case", "case_ref", help="The town's case number (e-loket, appointment).")
@click.option("--show-code", is_flag=True, help="Also print the resident's code (to hand it over by hand).")
def delivery_prepare_cmd(
    db_path: str,
    locker_id: str,
    size: str,
    low: bool,
    item: str,
    days: float,
    contact: str | None,
    resident_name: str | None,
    email: str | None,
    phone: str | None,
    language: str,
    case_ref: str | None,
    show_code: bool,
) -> None:
    """Prepare a delivery: staff type its number at the locker, which opens a free door that fits.
    Once the item is in, the service notifies the resident with the code."""
    conn = _open(db_path)
    with _fleet_errors():
        resident = fleet_db.Resident(resident_name, email, phone, language, case_ref)
        issued = fleet_db.prepare_delivery(conn, locker_id, size, low, days, item, contact, resident)
    load_by = issued.expires - int(days * 86400)
    click.echo(
        f"delivery {issued.number} for {locker_id}: {item}, size {size}{', low door' if low else ''};"
        f" load it by {_when(load_by)}, then the resident has {days:g} days"
    )
    if show_code:
        click.echo(f"resident's code {issued.code} (shown once)")
    from lockertools.cli.config import settings_of

    no_hook = db.get_setting(conn, _NOTIFY_COMMAND) is None and db.get_setting(conn, _NOTIFY_URL) is None
    if no_hook and not settings_of(click.get_current_context()).messages.channels and not show_code:
        click.echo(
            "warning: no notification hook recorded (service run --notify-...) and no residents' messages"
            " (messages.channels): nobody gets the code",
            err=True,
        )


@delivery_cli.command("list")
@_DB
@click.option("--locker", "locker_id")
def delivery_list_cmd(db_path: str, locker_id: str | None) -> None:
    """Deliveries and size-only loads: to load, in which door, picked up, to take back."""
    conn = _open(db_path)
    rows = [
        [
            str(d["id"]),
            d["locker_id"],
            d["case_ref"] or "-",
            d["item"] or "-",
            fleet_db.describe_kind(d["kind"]),
            d["status"],
            _when(d["expires"]),
            d["recipient"] or "-",
            d["notify_state"] or "-",
            fleet_db.staff_name(conn, d["locker_id"], d["loaded_by"]) or "-",
        ]
        for d in fleet_db.delivery_table(conn, locker_id)
    ]
    _table(
        rows,
        ["number", "locker", "case", "item", "kind", "status", "until", "contact", "notified", "loaded by"],
        empty="no deliveries",
    )


@delivery_cli.command("cancel")
@_DB
@click.argument("number", type=int)
def delivery_cancel_cmd(db_path: str, number: int) -> None:
    """Cancel a delivery not loaded yet; the service removes it from the locker."""
    conn = _open(db_path)
    with _fleet_errors():
        locker_id = fleet_db.cancel_delivery(conn, number)
    click.echo(f"delivery {number} cancelled; locker {locker_id} will drop it at its next sync")


@click.group("returns")
def returns_cli() -> None:
    """Return codes: a resident brings a borrowed item back to a locker."""


@returns_cli.command("issue")
@_DB
@click.argument("locker_id")
@_SIZE
@_LOW
@click.option("--item", type=click.Choice(fleet_db.ITEMS), default="borrowed material", show_default=True)
@_DAYS
@click.option("--recipient", help="Who the hook should send the code to.")
@click.option("--notify-command", envvar="LOCKER_NOTIFY_COMMAND", help="Override the service's hook.")
@click.option("--notify-url", envvar="LOCKER_NOTIFY_URL", help="Override the service's hook.")
def returns_issue_cmd(
    db_path: str,
    locker_id: str,
    size: str,
    low: bool,
    item: str,
    days: float,
    recipient: str | None,
    notify_command: str | None,
    notify_url: str | None,
) -> None:
    """A return code: the locker gives an empty door of that size; staff are told when it is in."""
    conn = _open(db_path)
    notifier = _notifier(conn, notify_command, notify_url)
    with _fleet_errors():
        issued = fleet_db.issue_return_code(conn, locker_id, size, low, days, item, recipient)
    click.echo(f"return code {issued.code} for {locker_id} (id {issued.code_id}, until {_when(issued.expires)})")
    click.echo("shown once: it is not stored; the service sends its tag to the locker", err=True)
    if notifier is not None:
        _hand_over(conn, notifier, Notification(locker_id, "*", issued.code, issued.expires, issued.code_id,
                                                recipient, item=item))  # fmt: skip


def _hand_over(conn: db.Connection, notifier: Notifier, note: Notification) -> None:
    try:
        notifier.send(note)
    except NotifyError as exc:
        assert note.code_id is not None
        fleet_db.record_notification(conn, note.code_id, str(exc))
        raise click.ClickException(f"notification failed ({exc}); recorded. Give the code above by hand.") from None
    assert note.code_id is not None
    fleet_db.record_notification(conn, note.code_id, None)
    click.echo(f"handed to the notification hook ({notifier.describe()})", err=True)


@click.group("staff")
def staff_cli() -> None:
    """Staff and their PINs: one PIN per member and locker, valid until the end of the working day
    (or, asked for, a long-lived one of at most 90 days). Names stay on the host; a locker knows a
    PIN's tag, its expiry and an id."""


_TIME_OF_DAY = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _pin_line(p: fleet_db.StaffPin) -> str:
    return f"PIN {p.pin} for {p.name!r} at {p.locker_id}, valid until {_when(p.expires)} (code id {p.code_id})"


@staff_cli.command("add")
@_DB
@click.argument("name")
@click.option("--locker", "lockers", multiple=True, help="Also give a PIN for today at this locker (repeatable).")
def staff_add_cmd(db_path: str, name: str, lockers: tuple[str, ...]) -> None:
    """Add a member of staff; with --locker, prints their PIN for today at each of those lockers."""
    conn = _open(db_path)
    with _fleet_errors():
        staff_id, pins = fleet_db.add_staff(conn, name, lockers)
    click.echo(f"staff {staff_id} {name.strip()!r} added")
    for p in pins:
        click.echo(_pin_line(p))
    if pins:
        click.echo("shown once: not stored; give it to them in person", err=True)
    else:
        click.echo(f"their PIN for a locker: lockerctl staff pin {staff_id} --locker LOCKER", err=True)


@staff_cli.command("pin")
@_DB
@click.argument("who")
@click.option("--locker", "lockers", multiple=True, required=True, help="The locker (repeatable: one PIN each).")
@click.option("--until", "until", help="Valid until this time of day, HH:MM (within 12 hours).")
@click.option("--hours", type=float, help="Valid this many hours (at most 12).")
@click.option("--days", type=float, help="A long-lived PIN, for technicians: this many days (at most 90).")
def staff_pin_cmd(
    db_path: str, who: str, lockers: tuple[str, ...], until: str | None, hours: float | None, days: float | None
) -> None:
    """A fresh PIN for WHO (a staff id or name) at each locker given, valid until the end of the
    working day by default; it replaces their earlier PIN at that locker. Printed once."""
    conn = _open(db_path)
    at: tuple[int, int] | None = None
    if until is not None:
        found = _TIME_OF_DAY.match(until.strip())
        if found is None:
            raise click.BadParameter("a time of day, HH:MM", param_hint="--until")
        at = (int(found.group(1)), int(found.group(2)))
    with _fleet_errors():
        now = time.time()
        expires, long_lived = fleet_db.pin_expiry(now, hours=hours, days=days, until=at)
        # Every name checked before the first PIN is drawn: a PIN issued and never shown is lost.
        staff_id = int(fleet_db.find_staff(conn, who)["id"])
        lockers = tuple(dict.fromkeys(lockers))
        for lid in lockers:
            fleet_db.locker_labels(conn, lid)
        pins = [
            fleet_db.issue_staff_pin(conn, staff_id, lid, expires, long_lived=long_lived, now=now) for lid in lockers
        ]
    for p in pins:
        click.echo(_pin_line(p))
    click.echo("shown once: not stored; give it to them in person", err=True)


def _pins_cell(member: dict[str, Any]) -> str:
    return ", ".join(f"{p['locker_id']} until {_when(p['expires'])}" for p in member["pins"]) or "-"


def _staff_note(member: dict[str, Any]) -> str:
    if member["pins_withdrawn_at"] is None or member["pins"]:
        return ""
    return (
        f"old PIN withdrawn {_when(member['pins_withdrawn_at'])} (every locker or no expiry): get one per"
        f" locker with lockerctl staff pin {member['id']} --locker LOCKER"
    )


@staff_cli.command("list")
@_DB
@click.option("--all", "include_removed", is_flag=True, help="Removed members too.")
def staff_list_cmd(db_path: str, include_removed: bool) -> None:
    """Members of staff and their live PINs (locker, valid until); never a PIN."""
    conn = _open(db_path)
    rows = [
        [str(m["id"]), m["name"], _pins_cell(m), _when(m["created_at"]), _when(m["removed_at"]), _staff_note(m)]
        for m in fleet_db.staff_table(conn, include_removed)
    ]
    _table(rows, ["id", "name", "PINs", "added", "removed", "note"], empty="no staff")


@staff_cli.command("remove")
@_DB
@click.argument("staff_id", type=int)
def staff_remove_cmd(db_path: str, staff_id: int) -> None:
    """Remove a member of staff and revoke their PINs."""
    conn = _open(db_path)
    with _fleet_errors():
        count = fleet_db.remove_staff(conn, staff_id)
    click.echo(f"staff {staff_id} removed; {count} locker(s) drop a PIN at their next sync")


@click.group("door")
def door_cli() -> None:
    """Signed one-off door commands (logged with who asked): open, service, requests."""


def _request(db_path: str, locker_id: str, op: str, args: dict[str, Any], by: str, wait: float) -> None:
    conn = _open(db_path)
    with _fleet_errors():
        request_id, _ = fleet_db.queue_request(conn, locker_id, op, args, by)
    click.echo(f"request {request_id}: {op} {args['door']} at {locker_id}, asked by {by}; the service sends it")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        row = conn.execute("SELECT state, reply_json FROM requests WHERE id = ?", (request_id,)).fetchone()
        if row["state"] in ("ok", "failed", "expired"):
            reply = json.loads(row["reply_json"]) if row["reply_json"] else {}
            detail = f": {reply.get('error')}" if reply.get("error") else ""
            click.echo(f"request {request_id}: {row['state']}{detail}")
            if row["state"] != "ok":
                raise SystemExit(1)
            return
        time.sleep(0.1)
    if wait:
        click.echo(f"request {request_id}: no reply yet (lockerctl door requests)")


_BY = click.option("--by", required=True, help="Who asked (a name; logged, and sent to the locker).")
_WAIT = click.option("--wait", type=float, default=10.0, show_default=True, help="Seconds to wait for the reply.")


@door_cli.command("open")
@_DB
@click.argument("locker_id")
@click.argument("door")
@_BY
@click.option("--reason", help="Why (at most 64 characters).")
@_WAIT
def door_open_cmd(db_path: str, locker_id: str, door: str, by: str, reason: str | None, wait: float) -> None:
    """Open DOOR now, e.g. for a resident on the phone."""
    args: dict[str, Any] = {"door": door}
    if reason:
        args["r"] = reason
    _request(db_path, locker_id, "door.open", args, by, wait)


@door_cli.command("service")
@_DB
@click.argument("locker_id")
@click.argument("door")
@click.option("--off/--on", "off", required=True, help="--off: out of service; --on: back in service.")
@_BY
@_WAIT
def door_service_cmd(db_path: str, locker_id: str, door: str, off: bool, by: str, wait: float) -> None:
    """Take DOOR out of service (no delivery or return is given it) or put it back."""
    _request(db_path, locker_id, "door.service", {"door": door, "on": not off}, by, wait)


@door_cli.command("requests")
@_DB
@click.option("--locker", "locker_id")
@click.option("-n", "--last", default=20, show_default=True)
def door_requests_cmd(db_path: str, locker_id: str | None, last: int) -> None:
    """The door commands people asked for, with who asked and what the locker answered."""
    conn = _open(db_path)
    rows = []
    for r in fleet_db.request_table(conn, locker_id, last):
        args = json.loads(r["args_json"])
        what = " ".join(f"{k}={v}" for k, v in args.items() if k != "by")
        rows.append([str(r["id"]), _when(r["created_at"]), r["locker_id"], r["op"], what, r["by"], r["state"],
                     str(r["attempts"])])  # fmt: skip
    _table(rows, ["id", "asked", "locker", "op", "args", "by", "state", "attempts"], empty="no requests")


@click.command("notifications")
@_DB
@click.option("--failed", is_flag=True, help="Only those the hook has not taken yet (retried by the service).")
@click.option("-n", "--last", default=20, show_default=True)
def notifications_cmd(db_path: str, failed: bool, last: int) -> None:
    """What the service handed (or is trying to hand) to the notification hook; never a code."""
    conn = _open(db_path)
    where = "WHERE state IN ('pending', 'failed')" if failed else ""
    found = conn.execute(f"SELECT * FROM notifications {where} ORDER BY id DESC LIMIT ?", (last,)).fetchall()
    rows = [
        [
            str(r["id"]),
            _when(r["created_at"]),
            r["locker_id"],
            r["door"] or "-",
            r["kind"],
            str(r["code_id"] or "-"),
            r["state"],
            str(r["attempts"]),
            r["error"] or "-",
        ]
        for r in reversed(found)
    ]
    _table(
        rows,
        ["id", "queued", "locker", "door", "kind", "code id", "state", "attempts", "last error"],
        empty="no notifications",
    )


STAFF_COMMANDS: dict[str, click.Command] = {
    "notifications": notifications_cmd,
    "delivery": delivery_cli,
    "returns": returns_cli,
    "staff": staff_cli,
    "door": door_cli,
}
