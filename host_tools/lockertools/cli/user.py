"""`lockerctl user add|list|disable|enable|reset-password|role`: the desk's accounts from the shell
(the first admin is made here). Each change is written to the desk's audit trail, as by
`cli:<the system user>` from `local`."""

from __future__ import annotations

import getpass
import sys
import time

import click

from lockertools.cli.service import _DB, _open, _table
from lockertools.desk import audit, auth
from lockertools.service import db


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(click.prompt("password", hide_input=True, confirmation_prompt=True))


def _audit(conn: db.Connection, action: str, target: str, detail: dict[str, str] | None = None) -> None:
    audit.record(conn, at=time.time(), who=f"cli:{getpass.getuser()}", address="local", action=action,
                 target=target, detail=detail)  # fmt: skip


def _find(conn: db.Connection, name: str) -> auth.Account:
    try:
        return auth.find_account(conn, name)
    except auth.AuthError as exc:
        raise click.ClickException(str(exc)) from None


_STDIN = click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")


@click.group("user")
def user_cli() -> None:
    """The staff desk's accounts (roles: desk, manager, admin)."""


@user_cli.command("add")
@_DB
@click.argument("name")
@click.option("--role", type=click.Choice(auth.ROLES), required=True)
@_STDIN
def add_cmd(db_path: str, name: str, role: str, password_stdin: bool) -> None:
    """Add an account NAME with ROLE; the password is asked for (never given on the command line).
    A new installation's first admin creates the database."""
    conn = _open(db_path, create=True)
    try:
        account = auth.add_account(conn, name, role, _password(password_stdin), time.time())
    except auth.AuthError as exc:
        raise click.ClickException(str(exc)) from None
    _audit(conn, "account.add", account.name, {"role": role})
    click.echo(f"account {account.name} added ({account.role})")


@user_cli.command("list")
@_DB
def list_cmd(db_path: str) -> None:
    """Every account: name, role, active or disabled."""
    conn = _open(db_path)
    rows = [
        [
            a["name"],
            a["role"],
            "disabled" if a["disabled_at"] else "active",
            time.strftime("%Y-%m-%d", time.localtime(a["created_at"])),
        ]
        for a in auth.accounts(conn)
    ]
    _table(rows, ["name", "role", "status", "created"], empty="no accounts (lockerctl user add NAME --role admin)")


@user_cli.command("disable")
@_DB
@click.argument("name")
def disable_cmd(db_path: str, name: str) -> None:
    """Disable NAME: it cannot log in, and its sessions end now."""
    conn = _open(db_path)
    account = auth.set_disabled(conn, _find(conn, name).id, True, time.time())
    _audit(conn, "account.disable", account.name)
    click.echo(f"account {account.name} disabled")


@user_cli.command("enable")
@_DB
@click.argument("name")
def enable_cmd(db_path: str, name: str) -> None:
    """Enable a disabled account again."""
    conn = _open(db_path)
    account = auth.set_disabled(conn, _find(conn, name).id, False, time.time())
    _audit(conn, "account.enable", account.name)
    click.echo(f"account {account.name} enabled")


@user_cli.command("reset-password")
@_DB
@click.argument("name")
@_STDIN
def reset_cmd(db_path: str, name: str, password_stdin: bool) -> None:
    """Give NAME a new password (asked for); its sessions end."""
    conn = _open(db_path)
    account = _find(conn, name)
    try:
        auth.reset_password(conn, account.id, _password(password_stdin))
    except auth.AuthError as exc:
        raise click.ClickException(str(exc)) from None
    _audit(conn, "account.password", account.name)
    click.echo(f"account {account.name}: password changed")


@user_cli.command("role")
@_DB
@click.argument("name")
@click.argument("role", type=click.Choice(auth.ROLES))
def role_cmd(db_path: str, name: str, role: str) -> None:
    """Change NAME's role."""
    conn = _open(db_path)
    before = _find(conn, name)
    account = auth.set_role(conn, before.id, role)
    _audit(conn, "account.role", account.name, {"from": before.role, "to": role})
    click.echo(f"account {account.name}: role {role}")
