"""`lockerctl messages`: residents' messages (docs/notifications.md): where each locker is, the
templates' check, each delivery's messages, failed ones, and the letters to print."""

from __future__ import annotations

import time
from pathlib import Path

import click

from lockertools.cli.config import settings_of
from lockertools.cli.service import _DB, _open


@click.group("messages")
def messages_cli() -> None:
    """Residents' messages: e-mail, text messages, printed letters."""


@messages_cli.command("place")
@_DB
@click.argument("locker_id")
@click.option("--address", help='Where the locker stands, as residents read it ("Botermarkt 1, 9000 Gent").')
@click.option("--hours", help="When it can be reached, as residents read it (unset: open day and night).")
def place_cmd(db_path: str, locker_id: str, address: str | None, hours: str | None) -> None:
    """Set (or, with neither option, show) where a locker is and when it is open."""
    from lockertools.notify import locker_place, set_locker_place
    from lockertools.service import fleet_db

    conn = _open(db_path)
    try:
        fleet_db.locker_labels(conn, locker_id)
    except fleet_db.FleetError as exc:
        raise click.ClickException(str(exc)) from None
    if address is not None or hours is not None:
        set_locker_place(conn, locker_id, address, hours)
    now_address, now_hours = locker_place(conn, locker_id)
    click.echo(f"{locker_id}: {now_address or '(no address)'}; {now_hours or 'open day and night'}")


@messages_cli.command("check")
def check_cmd() -> None:
    """Check the templates (the configuration file's messages.templates, else the shipped ones)."""
    from lockertools.notify import TemplateError, Templates

    try:
        templates = Templates.load(settings_of(click.get_current_context()).messages.templates)
    except TemplateError as exc:
        raise click.ClickException(str(exc)) from None
    for (language, kind), origin in sorted(templates.origins.items()):
        click.echo(f"{language}/{kind}: {origin}")
    click.echo("templates OK")


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


@messages_cli.command("list")
@_DB
@click.argument("delivery", type=int)
def list_cmd(db_path: str, delivery: int) -> None:
    """A delivery's messages: channel, state, attempts, the last error (never the code)."""
    from lockertools.notify import delivery_reach, messages_of_delivery

    conn = _open(db_path)
    reach = delivery_reach(conn, settings_of(click.get_current_context()), delivery)
    click.echo(f"delivery {delivery} reaches the resident by: {', '.join(reach) or '-'}")
    for m in messages_of_delivery(conn, delivery):
        state = "hand over the letter" if m.hand_over_letter else m.state
        click.echo(
            f"{m.id}\t{m.kind}\t{m.channel}\t{m.language}\t{state}\t{m.attempts}\t{_when(m.sent_at)}\t{m.error or ''}"
        )


@messages_cli.command("failed")
@_DB
@click.option("--locker", "locker_id")
def failed_cmd(db_path: str, locker_id: str | None) -> None:
    """Messages whose last send failed, with their error and next try."""
    from lockertools.notify import failed_messages

    for m in failed_messages(_open(db_path), locker_id):
        click.echo(
            f"{m.id}\tdelivery {m.delivery}\t{m.kind}\t{m.channel}\t{m.attempts} tries"
            f"\tnext {_when(m.next_at)}\t{m.error}"
        )


@messages_cli.command("letters")
@_DB
@click.option("--locker", "locker_id")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The PDF to write.")
@click.option("--printed", is_flag=True, help="Record the letters as printed (their codes may then be deleted).")
def letters_cmd(db_path: str, locker_id: str | None, out: Path, printed: bool) -> None:
    """Write the letters waiting to be printed as one PDF (a page each)."""
    from lockertools.notify import OutboxError, letter_pdf, letters_to_print, mark_letters_printed

    conn = _open(db_path)
    ids = [m.id for m in letters_to_print(conn, locker_id)]
    if not ids:
        click.echo("no letters to print")
        return
    try:
        pdf = letter_pdf(conn, settings_of(click.get_current_context()), ids)
    except OutboxError as exc:
        raise click.ClickException(str(exc)) from None
    out.write_bytes(pdf)
    click.echo(f"{len(ids)} letter(s) in {out}")
    if printed:
        click.echo(f"{mark_letters_printed(conn, ids)} recorded as printed")
