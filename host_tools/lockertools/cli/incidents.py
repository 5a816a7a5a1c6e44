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
