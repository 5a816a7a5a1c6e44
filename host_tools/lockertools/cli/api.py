"""lockerctl api: the HTTP API for the town's systems (serve), its tokens and its webhooks (docs/api.md).

A token's secret and a webhook's signing secret are printed once, when created, and never again.
"""

from __future__ import annotations

import time

import click

from lockertools.cli.service import _DB, _fleet_errors, _open, _table, _when


@click.group("api")
def api_cli() -> None:
    """The HTTP API for the town's systems: serve it, its tokens, its webhooks."""


@api_cli.command("serve")
@_DB
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8470, show_default=True, help="The port (0: any).")
def serve_cmd(db_path: str, host: str, port: int) -> None:
    """Serve the API alone at http://HOST:PORT/api/v1/ (the staff desk serves it too)."""
    from aiohttp import web

    from lockertools.api.app import ApiOptions, create_api_app
    from lockertools.cli.config import settings_of

    _open(db_path).close()  # a missing or unreadable database is said now, not at the first request
    hours = settings_of(click.get_current_context()).api.idempotency_hours
    root = web.Application()
    root.add_subapp("/api/v1/", create_api_app(db_path, options=ApiOptions(idempotency_ttl_s=hours * 3600)))
    click.echo(f"the API on http://{host}:{port}/api/v1/ (openapi.json); Ctrl-C stops", err=True)
    try:
        web.run_app(root, host=host, port=port, print=None)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


# --- tokens ------------------------------------------------------------------------------------------


@api_cli.group("token")
def token_cli() -> None:
    """API tokens, one per integration: created (shown once), listed, revoked."""


@token_cli.command("create")
@_DB
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    type=click.Choice(["read", "deliveries"]),
    multiple=True,
    required=True,
    help="read: read deliveries, list lockers; deliveries: create and cancel them too. Repeat for more.",
)
@click.option("--by", "created_by", help="Who created it (an admin's name).")
def token_create_cmd(db_path: str, name: str, scopes: tuple[str, ...], created_by: str | None) -> None:
    """Create a token for the integration NAME; it is printed once: give it to the integration now."""
    from lockertools.api import tokens

    conn = _open(db_path)
    with _fleet_errors():
        new = tokens.create_token(conn, name, scopes, created_by)
    click.echo(f"token {new.token.name} ({' '.join(new.token.scopes)}); it is shown this once:", err=True)
    click.echo(new.secret)


@token_cli.command("list")
@_DB
@click.option("--all", "include_revoked", is_flag=True, help="Revoked tokens too.")
def token_list_cmd(db_path: str, include_revoked: bool) -> None:
    """The tokens: name, scopes, created, last used, revoked."""
    from lockertools.api import tokens

    rows = [
        [
            t.name,
            " ".join(t.scopes),
            _when(t.created_at),
            t.created_by or "-",
            _when(t.last_used_at),
            _when(t.revoked_at),
        ]
        for t in tokens.list_tokens(_open(db_path), include_revoked)
    ]
    _table(rows, ["NAME", "SCOPES", "CREATED", "BY", "LAST USED", "REVOKED"], "no API tokens")


@token_cli.command("revoke")
@_DB
@click.argument("name")
def token_revoke_cmd(db_path: str, name: str) -> None:
    """Revoke the token NAME: refused from its next request on."""
    from lockertools.api import tokens

    with _fleet_errors():
        tokens.revoke_token(_open(db_path), name)
    click.echo(f"token {name} revoked")


# --- webhooks ----------------------------------------------------------------------------------------


@api_cli.group("webhook")
def webhook_cli() -> None:
    """URLs told of every delivery state change (signed, retried; sent by `service run`)."""


@webhook_cli.command("add")
@_DB
@click.argument("url")
@click.option("--description", help="What it is (the town's system).")
@click.option("--by", "created_by", help="Who added it (an admin's name).")
def webhook_add_cmd(db_path: str, url: str, description: str | None, created_by: str | None) -> None:
    """Register URL; its signing secret is printed once: give it to the receiver now."""
    from lockertools.api import webhooks

    with _fleet_errors():
        new = webhooks.add_webhook(_open(db_path), url, description, created_by)
    click.echo(f"webhook {new.webhook.id}: {new.webhook.url}; its signing secret is shown this once:", err=True)
    click.echo(new.secret)


@webhook_cli.command("list")
@_DB
@click.option("--all", "include_removed", is_flag=True, help="Removed webhooks too.")
def webhook_list_cmd(db_path: str, include_removed: bool) -> None:
    """The webhooks: id, URL, description, added, removed."""
    from lockertools.api import webhooks

    rows = [
        [str(w.id), w.url, w.description or "-", _when(w.created_at), _when(w.removed_at)]
        for w in webhooks.list_webhooks(_open(db_path), include_removed)
    ]
    _table(rows, ["ID", "URL", "DESCRIPTION", "ADDED", "REMOVED"], "no webhooks")


@webhook_cli.command("remove")
@_DB
@click.argument("webhook_id", type=int)
def webhook_remove_cmd(db_path: str, webhook_id: int) -> None:
    """Stop sending to webhook WEBHOOK_ID (what it was not sent yet is dropped)."""
    from lockertools.api import webhooks

    with _fleet_errors():
        webhooks.remove_webhook(_open(db_path), webhook_id)
    click.echo(f"webhook {webhook_id} removed")


@webhook_cli.command("failures")
@_DB
@click.option("--webhook", "webhook_id", type=int, help="One webhook's only.")
@click.option("--retry", is_flag=True, help="Send the given-up events again now.")
def webhook_failures_cmd(db_path: str, webhook_id: int | None, retry: bool) -> None:
    """Events a webhook did not take: given up, or waiting for their next attempt, with the last error."""
    from lockertools.api import webhooks

    conn = _open(db_path)
    if retry:
        click.echo(f"{webhooks.retry_failed(conn, webhook_id)} event(s) to send again")
        return
    now = time.time()
    rows = [
        [
            str(f.webhook_id),
            str(f.event_id),
            f.event,
            str(f.delivery),
            str(f.attempts),
            "given up" if f.state == "failed" else f"retry in {max(0, int(f.next_at - now))} s",
            _when(f.last_attempt_at),
            f.last_error or "-",
        ]  # fmt: skip
        for f in webhooks.webhook_failures(conn, webhook_id)
    ]
    header = ["WEBHOOK", "EVENT", "KIND", "DELIVERY", "ATTEMPTS", "STATE", "LAST ATTEMPT", "LAST ERROR"]
    _table(rows, header, "no failed webhook requests")
