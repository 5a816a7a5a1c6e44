"""Logging in and out, and the language switch."""

from __future__ import annotations

import math
import secrets
from typing import Any

from aiohttp import web

from lockertools.desk import audit, auth, i18n
from lockertools.desk.base import (
    LANGUAGE_COOKIE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    address_of,
    audit_action,
    desk_settings,
    now,
    public,
    render,
    run_db,
    safe_next,
    session_of,
    translate,
)
from lockertools.service import db


def setup(app: web.Application) -> None:
    app.router.add_get("/", home, name="home")
    app.router.add_get("/login", login_form, name="login")
    app.router.add_post("/login", login_post)
    app.router.add_post("/logout", logout, name="logout")
    app.router.add_get("/language/{lang}", language, name="language")


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(str(request.app.router["lockers"].url_for()))


def _cookie_flags(request: web.Request) -> dict[str, Any]:
    return {"httponly": True, "samesite": "Strict", "secure": desk_settings(request).https, "path": "/"}


async def _login_page(
    request: web.Request, status: int = 200, error: str | None = None, name: str = ""
) -> web.Response:
    _ = translate(request)
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    context = {
        "title": _("Log in"),
        "error": error,
        "name": name,
        "login_csrf": token,
        "next": safe_next(request.query.get("next")),
        "expired": request.query.get("expired") == "1",
    }
    response = await render(request, "login.html", context, status=status)
    response.set_cookie(LOGIN_COOKIE, token, **_cookie_flags(request))
    return response


@public
async def login_form(request: web.Request) -> web.StreamResponse:
    if session_of(request) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    return await _login_page(request)


@public
async def login_post(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    address = address_of(request)
    at = now(request)
    _ = translate(request)

    def attempt(conn: db.Connection) -> auth.LoginResult:
        result = auth.login(conn, name, password, address, at)
        if result.account is None:
            with db.transaction(conn):
                audit_action(request, conn, "login.refused", name[:100], {"reason": result.reason})
        return result

    result = await run_db(request, attempt)
    if result.account is None:
        if result.reason == "throttled":
            seconds = math.ceil(result.wait_s)
            response = await _login_page(
                request, 429, _("Too many failed attempts: try again in {s} seconds.", s=seconds), name
            )
            response.headers["Retry-After"] = str(seconds)
            return response
        return await _login_page(request, 401, _("Wrong name or password."), name)
    account = result.account

    idle_s = desk_settings(request).idle_minutes * 60.0

    def start(conn: db.Connection) -> str:
        auth.drop_idle_sessions(conn, at, idle_s)  # housekeeping: sessions nobody will present again
        session_id = auth.open_session(conn, account, address, at)
        audit.record(
            conn, at=at, who=account.name, account_id=account.id, role=account.role, address=address, action="login"
        )
        return session_id

    session_id = await run_db(request, start)
    target = safe_next(str(form.get("next", "/")))
    response = web.HTTPSeeOther(target)
    response.set_cookie(SESSION_COOKIE, session_id, **_cookie_flags(request))
    response.del_cookie(LOGIN_COOKIE, path="/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    cookie = request.cookies.get(SESSION_COOKIE, "")

    def end(conn: db.Connection) -> None:
        audit_action(request, conn, "logout")
        auth.close_session(conn, cookie)

    await run_db(request, end)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


@public
async def language(request: web.Request) -> web.StreamResponse:
    """Switch the pages' language (a preference cookie; no data changes: a plain link)."""
    lang = request.match_info["lang"]
    if lang not in i18n.LANGUAGES:
        raise web.HTTPNotFound()
    response = web.HTTPSeeOther(safe_next(request.query.get("next")))
    response.set_cookie(LANGUAGE_COOKIE, lang, max_age=365 * 86400, **_cookie_flags(request))
    raise response
