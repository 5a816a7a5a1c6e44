"""Admins' page of desk accounts: add one, disable or enable it, reset its password, change its role."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lockertools.desk import auth
from lockertools.desk.base import add_nav, audit_action, flash, now, page, redirect, render, requires, run_db, translate
from lockertools.service import db


def setup(app: web.Application) -> None:
    app.router.add_get("/admin/accounts", accounts_page, name="accounts")
    app.router.add_post("/admin/accounts", add_account)
    app.router.add_post("/admin/accounts/{account_id:\\d+}", change_account, name="account")
    add_nav(app, "accounts", "Accounts", "admin")


async def _context(
    request: web.Request, error: str | None = None, form: dict[str, str] | None = None
) -> dict[str, Any]:
    rows = await run_db(request, auth.accounts)
    return {
        "title": translate(request)("Accounts"),
        "accounts": rows,
        "roles": auth.ROLES,
        "min_password": auth.MIN_PASSWORD,
        "error": error,
        "form": form or {"name": "", "role": "desk"},
    }


@page("admin", "accounts.html")
async def accounts_page(request: web.Request) -> dict[str, Any]:
    return await _context(request)


@requires("admin")
async def add_account(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name = str(form.get("name", "")).strip()
    role = str(form.get("role", ""))
    password = str(form.get("password", ""))
    at = now(request)

    def add(conn: db.Connection) -> auth.Account:
        account = auth.add_account(conn, name, role, password, at)
        audit_action(request, conn, "account.add", account.name, {"role": role})
        return account

    try:
        account = await run_db(request, add)
    except auth.AuthError as exc:
        context = await _context(request, str(exc), {"name": name, "role": role})
        return await render(request, "accounts.html", context, status=400)
    flash(request, translate(request)("Account {name} added.", name=account.name))
    raise redirect(request, "accounts")


@requires("admin")
async def change_account(request: web.Request) -> web.StreamResponse:
    account_id = int(request.match_info["account_id"])
    form = await request.post()
    action = str(form.get("action", ""))
    at = now(request)

    def change(conn: db.Connection) -> auth.Account:
        if action == "disable":
            account = auth.set_disabled(conn, account_id, True, at)
            audit_action(request, conn, "account.disable", account.name)
        elif action == "enable":
            account = auth.set_disabled(conn, account_id, False, at)
            audit_action(request, conn, "account.enable", account.name)
        elif action == "password":
            account = auth.reset_password(conn, account_id, str(form.get("password", "")))
            audit_action(request, conn, "account.password", account.name)
        elif action == "role":
            role = str(form.get("role", ""))
            before = auth.find_account(conn, account_id).role
            account = auth.set_role(conn, account_id, role)
            audit_action(request, conn, "account.role", account.name, {"from": before, "to": role})
        else:
            raise auth.AuthError(f"unknown action {action!r}")
        return account

    try:
        account = await run_db(request, change)
    except auth.AuthError as exc:
        return await render(request, "accounts.html", await _context(request, str(exc)), status=400)
    flash(request, translate(request)("Account {name} changed.", name=account.name))
    raise redirect(request, "accounts")
