"""Admins' page of the town's integrations: API tokens (created with their scopes, the secret shown
once, revoked after a confirmation) and webhooks (registered, the signing secret shown once, removed
after a confirmation), with the webhook requests that failed or wait for a retry, retried at once on
request. The work is lockertools.api's (tokens.py, webhooks.py); every action is audited."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lockertools.api import outbox, tokens, webhooks
from lockertools.desk.base import (
    add_nav,
    audit_action,
    flash,
    page,
    redirect,
    render,
    requires,
    run_db,
    session_of,
    translate,
)
from lockertools.service import db
from lockertools.service.fleet.common import FleetError


def setup(app: web.Application) -> None:
    app.router.add_get("/admin/integrations", integrations_page, name="integrations")
    app.router.add_get("/admin/integrations/confirm", confirm_page, name="integrations_confirm")
    app.router.add_post("/admin/integrations/tokens", create_token)
    app.router.add_post("/admin/integrations/tokens/revoke", revoke_token)
    app.router.add_post("/admin/integrations/webhooks", add_webhook)
    app.router.add_post("/admin/integrations/webhooks/remove", remove_webhook)
    app.router.add_post("/admin/integrations/webhooks/retry", retry_webhook)
    add_nav(app, "integrations", "Integrations", "admin", badge=webhooks.failure_count)


def _read(conn: db.Connection) -> dict[str, Any]:
    return {
        "tokens": tokens.list_tokens(conn, include_revoked=True),
        "webhooks": webhooks.list_webhooks(conn, include_removed=True),
        "failures": webhooks.webhook_failures(conn),
    }


async def _context(
    request: web.Request, error: str | None = None, form: dict[str, Any] | None = None
) -> dict[str, Any]:
    found = await run_db(request, _read)
    _ = translate(request)
    scope_help = {
        "read": _("read deliveries, list lockers"),
        "deliveries": _("create and cancel deliveries; reads too"),
    }
    blank = {"name": "", "scopes": ["read"], "url": "", "description": ""}
    return {
        "title": _("Integrations"),
        "scope_help": scope_help,
        **found,
        "scopes": tokens.SCOPES,
        "events": outbox.EVENTS,
        "error": error,
        "form": {**blank, **(form or {})},
    }


async def _refused(request: web.Request, exc: Exception, form: dict[str, Any] | None = None) -> web.Response:
    """The page again with the error and what was typed (400)."""
    context = await _context(request, str(exc), form)
    return await render(request, "integrations.html", context, status=400)


@page("admin", "integrations.html")
async def integrations_page(request: web.Request) -> dict[str, Any]:
    return await _context(request)


@page("admin", "integrations_confirm.html")
async def confirm_page(request: web.Request) -> dict[str, Any]:
    """Asks before a token is revoked (?token=NAME) or a webhook removed (?webhook=ID)."""
    _ = translate(request)
    name = request.query.get("token")
    webhook_id = request.query.get("webhook", "")
    if name is not None:
        live = await run_db(request, tokens.list_tokens)
        if not any(t.name == name for t in live):
            raise redirect(request, "integrations")
        return {"title": _("Revoke the token {name}?", name=name), "token": name, "webhook": None}
    if webhook_id.isdigit():
        found = [w for w in await run_db(request, webhooks.list_webhooks) if w.id == int(webhook_id)]
        if found:
            return {"title": _("Remove the webhook {id}?", id=found[0].id), "token": None, "webhook": found[0]}
    raise redirect(request, "integrations")


@requires("admin")
async def create_token(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name = str(form.get("name", "")).strip()
    scopes = [str(s) for s in form.getall("scopes", [])]

    def create(conn: db.Connection) -> tokens.NewToken:
        new = tokens.create_token(conn, name, scopes, _account_name(request))
        audit_action(request, conn, "token.create", new.token.name, {"scopes": list(new.token.scopes)})
        return new

    try:
        new = await run_db(request, create)
    except FleetError as exc:
        return await _refused(request, exc, {"name": name, "scopes": scopes})
    # The secret is on this answer only: not in a redirect, not stored (its hash is).
    context = {"title": translate(request)("Token {name} created", name=new.token.name), "new": new}
    return await render(request, "token_created.html", context)


@requires("admin")
async def revoke_token(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name = str(form.get("name", ""))

    def revoke(conn: db.Connection) -> tokens.ApiToken:
        token = tokens.revoke_token(conn, name)
        audit_action(request, conn, "token.revoke", token.name)
        return token

    try:
        token = await run_db(request, revoke)
    except FleetError as exc:
        return await _refused(request, exc)
    flash(request, translate(request)("Token {name} revoked.", name=token.name))
    raise redirect(request, "integrations")


@requires("admin")
async def add_webhook(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    url = str(form.get("url", "")).strip()
    description = str(form.get("description", "")).strip()

    def add(conn: db.Connection) -> webhooks.NewWebhook:
        new = webhooks.add_webhook(conn, url, description or None, _account_name(request))
        audit_action(request, conn, "webhook.add", str(new.webhook.id), {"url": new.webhook.url})
        return new

    try:
        new = await run_db(request, add)
    except FleetError as exc:
        return await _refused(request, exc, {"url": url, "description": description})
    context = {"title": translate(request)("Webhook {id} registered", id=new.webhook.id), "new": new}
    return await render(request, "webhook_created.html", context)


@requires("admin")
async def remove_webhook(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    webhook_id = _number(form.get("webhook"))

    def remove(conn: db.Connection) -> webhooks.Webhook:
        removed = webhooks.remove_webhook(conn, webhook_id)
        audit_action(request, conn, "webhook.remove", str(removed.id), {"url": removed.url})
        return removed

    try:
        removed = await run_db(request, remove)
    except FleetError as exc:
        return await _refused(request, exc)
    flash(request, translate(request)("Webhook {id} removed.", id=removed.id))
    raise redirect(request, "integrations")


@requires("admin")
async def retry_webhook(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    event_id, webhook_id = _number(form.get("event")), _number(form.get("webhook"))

    def retry(conn: db.Connection) -> webhooks.FailedDelivery:
        failure = webhooks.retry_now(conn, event_id, webhook_id)
        detail = {"event": failure.event, "delivery": failure.delivery, "attempts": failure.attempts}
        audit_action(request, conn, "webhook.retry", str(webhook_id), detail)
        return failure

    try:
        await run_db(request, retry)
    except FleetError as exc:
        return await _refused(request, exc)
    flash(request, translate(request)("The event is sent again at the next round (within seconds)."))
    raise redirect(request, "integrations")


def _account_name(request: web.Request) -> str | None:
    session = session_of(request)
    return session.account.name if session else None


def _number(raw: object) -> int:
    """A form's id field; anything else is an id no row has."""
    return int(raw) if isinstance(raw, str) and raw.isdigit() and len(raw) < 19 else -1
