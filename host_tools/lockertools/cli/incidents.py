"""lockerctl incidents: what needs a person, for a shell user (list, show, take, resolve).

The service opens and auto-resolves incidents (service/incidents.py); these commands read them and
record what staff did. A resolve needs a note; who did it is --by, by default the login name.
"""

from __future__ import annotations

import getpass
import time

import click

from lockertools.cli.service import _DB, _open, _table, _when
from lockertools.service import incidents

_BY = click.option(
    "--by",
    default=lambda: getpass.getuser(),
    show_default="your login name",
    help="The staff account that did it.",
)


@click.group("incidents")
def incidents_cli() -> None:
    """Incidents: a door jammed, forced or left open, a locker offline, ... (docs/operation.md, "Incidents")."""


def _where(incident: incidents.Incident) -> str:
    return incident.subject or "-"


@incidents_cli.command("list")
@_DB
@click.option(
    "--state",
    type=click.Choice(["open", *incidents.STATES, "all"]),
    default="open",
    show_default=True,
    help="open: new or in progress.",
)
@click.option("--locker", help="Only this locker's.")
@click.option("--cause", type=click.Choice(list(incidents.CAUSES)), help="Only this cause.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
def list_cmd(db_path: str, state: str, locker: str | None, cause: str | None, limit: int) -> None:
    """The incidents, newest first."""
    conn = _open(db_path)
    try:
        found = incidents.list_incidents(
            conn, state=None if state == "all" else state, locker=locker, cause=cause, limit=limit
        )
    except incidents.IncidentError as exc:
        raise click.ClickException(str(exc)) from None
    rows = [
        [
            str(i.id),
            _when(i.opened_at),
            i.locker_id,
            _where(i),
            i.cause,
            i.state,
            str(i.count),
            i.handled_by or "-",
            i.detail or i.what,
        ]
        for i in found
    ]
    _table(rows, ["id", "opened", "locker", "where", "cause", "state", "times", "handled by", "what"], "no incidents")


@incidents_cli.command("show")
@_DB
@click.argument("incident_id", type=int)
def show_cmd(db_path: str, incident_id: int) -> None:
    """One incident and its history."""
    conn = _open(db_path)
    try:
        detail = incidents.get(conn, incident_id)
    except incidents.IncidentError as exc:
        raise click.ClickException(str(exc)) from None
    i = detail.incident
    click.echo(f"incident {i.id}: {i.cause} ({i.what})")
    click.echo(f"  locker      {i.locker_id}, {'door ' + i.door if i.door else i.subject or 'the whole locker'}")
    click.echo(f"  state       {i.state}" + (f", handled by {i.handled_by}" if i.handled_by else ""))
    click.echo(f"  opened      {_when(i.opened_at)}" + (f" (event {i.event_seq})" if i.event_seq is not None else ""))
    click.echo(f"  times       {i.count}, last at {_when(i.last_at)}")
    if i.detail:
        click.echo(f"  detail      {i.detail}")
    if i.note:
        click.echo(f"  note        {i.note}")
    if i.resolved_at is not None:
        click.echo(f"  resolved    {_when(i.resolved_at)} by {i.resolved_by}: {i.resolution}")
    click.echo("history:")
    for e in detail.log:
        click.echo(f"  {_when(e.at)}  {e.action:<9} {e.by}" + (f": {e.note}" if e.note else ""))


@incidents_cli.command("take")
@_DB
@click.argument("incident_id", type=int)
@_BY
@click.option("--note", help="What you are going to do.")
def take_cmd(db_path: str, incident_id: int, by: str, note: str | None) -> None:
    """Handle an incident: it is in progress, by you."""
    conn = _open(db_path)
    try:
        incident = incidents.take(conn, incident_id, by, time.time(), note)
    except incidents.IncidentError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"incident {incident.id} ({incident.cause} at {incident.locker_id}) is in progress, by {by}")


@incidents_cli.command("resolve")
@_DB
@click.argument("incident_id", type=int)
@_BY
@click.option("--note", required=True, help="What was done (required).")
def resolve_cmd(db_path: str, incident_id: int, by: str, note: str) -> None:
    """Mark an incident resolved, saying what was done."""
    conn = _open(db_path)
    try:
        incident = incidents.resolve(conn, incident_id, by, note, time.time())
    except incidents.IncidentError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"incident {incident.id} ({incident.cause} at {incident.locker_id}) resolved by {incident.resolved_by}")


# --- staff alerts: whom a locker's incidents are alerted to (docs/notifications.md, "Staff alerts") ---


@incidents_cli.group("alerts")
def alerts_cli() -> None:
    """Whom each locker's incidents are alerted to, by e-mail or text message."""


@alerts_cli.command("set")
@_DB
@click.argument("locker_id")
@click.option("--email", "emails", multiple=True, help="A staff e-mail address (repeat for several).")
@click.option("--sms", "phones", multiple=True, help="A staff phone number for text messages (repeat for several).")
def alerts_set_cmd(db_path: str, locker_id: str, emails: tuple[str, ...], phones: tuple[str, ...]) -> None:
    """Set LOCKER_ID's alert contacts, replacing the ones it had."""
    from lockertools.notify.alerts import AlertError, set_contacts

    if not emails and not phones:
        raise click.UsageError("give --email and/or --sms (to go back to the defaults: alerts clear)")
    conn = _open(db_path)
    try:
        contacts = set_contacts(conn, locker_id, emails, phones)
    except AlertError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{locker_id}: alerts go to " + ", ".join(f"{c.channel} {c.address}" for c in contacts))
    from lockertools.cli.config import settings_of

    settings = settings_of(click.get_current_context())
    if emails and (settings.email.host is None or settings.email.sender is None):
        click.echo("warning: no [email] host and sender are configured: e-mail alerts wait until they are", err=True)
    if phones and not settings.sms.url:
        click.echo("warning: no [sms] url is configured: SMS alerts wait until it is", err=True)


@alerts_cli.command("clear")
@_DB
@click.argument("locker_id")
def alerts_clear_cmd(db_path: str, locker_id: str) -> None:
    """Remove LOCKER_ID's own alert contacts: its alerts go to the configuration's defaults."""
    from lockertools.notify.alerts import AlertError, set_contacts

    conn = _open(db_path)
    try:
        set_contacts(conn, locker_id, (), ())
    except AlertError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{locker_id}: alerts go to the defaults ([alerts] default_email, default_sms)")


@alerts_cli.command("list")
@_DB
def alerts_list_cmd(db_path: str) -> None:
    """Each locker's alert contacts (or the defaults it falls back on)."""
    from lockertools.cli.config import settings_of
    from lockertools.notify.alerts import all_contacts

    alerts = settings_of(click.get_current_context()).alerts
    defaults = [f"email {a}" for a in alerts.default_email] + [f"sms {n}" for n in alerts.default_sms]
    conn = _open(db_path)
    own = all_contacts(conn)
    rows = []
    for (locker_id,) in conn.execute("SELECT id FROM lockers ORDER BY id").fetchall():
        contacts = own.get(str(locker_id))
        if contacts:
            rows.append([str(locker_id), "own", ", ".join(f"{c.channel} {c.address}" for c in contacts)])
        else:
            rows.append([str(locker_id), "default", ", ".join(defaults) or "nobody: no alerts"])
    _table(rows, ["locker", "contacts", "alerts go to"], "no lockers")
