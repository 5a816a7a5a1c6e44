"""`lockerctl desk run`: the staff desk's web server (docs/desk.md)."""

from __future__ import annotations

import dataclasses

import click

from lockertools.cli.config import settings_of
from lockertools.cli.service import _DB, _open
from lockertools.service import db


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group("desk")
def desk_cli() -> None:
    """The staff desk: a web application on the fleet database."""


@desk_cli.command("run")
@_DB
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on ([desk] host).")
@click.option("--port", type=click.IntRange(1, 65535), default=8070, show_default=True, help="[desk] port.")
@click.pass_context
def run_cmd(ctx: click.Context, db_path: str, host: str, port: int) -> None:
    """Serve the desk until stopped (SIGINT or SIGTERM). Behind a TLS reverse proxy in production."""
    from aiohttp import web

    from lockertools.desk.app import create_app

    _open(db_path).close()  # the schema migrated (and a missing database said) before serving
    settings = settings_of(ctx)
    settings = dataclasses.replace(settings, desk=dataclasses.replace(settings.desk, host=host, port=port))
    app = create_app(db.engine_for(db_path), settings)
    scheme = "https (by the proxy)" if settings.desk.https else "http"
    click.echo(f"staff desk on http://{host}:{port}/ ({scheme}); database {db.describe(db_path)}")
    if not _loopback(host):
        click.echo(
            f"warning: listening on {host}, not loopback: staff's passwords and sessions cross the network"
            ' unencrypted unless a TLS proxy is the only way in (docs/deployment.md, "The desk")',
            err=True,
        )
    web.run_app(app, host=host, port=port, print=None, handle_signals=True, access_log=None)
    click.echo("staff desk stopped")
