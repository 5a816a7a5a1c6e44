"""What every page of the desk uses: the middlewares, the decorators (`page`, `requires`, `public`),
`run_db`, `audit_action`, `render`, `flash`, `redirect`; the application's keys. The factory that
puts the pages together is app.py.

Every request passes three middlewares, outermost first:
- `guard_middleware`: security headers on every answer (a strict Content-Security-Policy: scripts
  and styles from /static only) and a Server-Timing; 403/404 rendered as pages in the reader's
  language;
- `session_middleware`: the client's address (X-Forwarded-For only from a trusted proxy), the
  session from its cookie (idle time-out, disabled accounts), the language; a route not marked
  `public` without a session answers with the login page (a redirect that remembers where the
  reader was going);
- `csrf_middleware`: a POST whose `csrf` field is not the session's token (the login form: the
  token of its own cookie) is refused with 403 before its handler runs.

Pages are handlers decorated with `page(role, template)` (docs/desk.md, "How to add a page"): the
role check, the template and the navigation come with it. Database work runs in a thread through
`run_db(request, fn)`; a staff action writes its audit row with `audit_action(request, conn, ...)`
on the same connection.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp_jinja2
import sqlalchemy as sa
from aiohttp import web

from lockertools.config import DeskSettings, Settings
from lockertools.desk import audit, auth, i18n
from lockertools.service import db

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "desk_session"
LOGIN_COOKIE = "desk_login"  # the login form's CSRF token (no session yet)
LANGUAGE_COOKIE = "desk_lang"
CSRF_FIELD = "csrf"
API_PREFIX = "/api/v1/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

ENGINE = web.AppKey("desk_engine", sa.Engine)
POOL: web.AppKey[ConnectionPool] = web.AppKey("desk_pool")
SETTINGS = web.AppKey("desk_settings", Settings)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("desk_clock")
NAV = web.AppKey("desk_nav", list)
FLASH = web.AppKey("desk_flash", dict)
SESSION = web.RequestKey("desk_session", object)  # auth.Session | None
ADDRESS = web.RequestKey("desk_address", str)
LANGUAGE = web.RequestKey("desk_language", str)

_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class NavItem:
    """One entry of the navigation: a named route, its label (an English text, translated), the role
    that sees it."""

    route: str
    label: str
    role: str
    badge: Callable[[db.Connection], int] | None = None  # a number shown beside the label (0: none)


# --- helpers for pages -------------------------------------------------------------------------------


def desk_settings(request: web.Request) -> DeskSettings:
    return request.app[SETTINGS].desk


def now(request: web.Request) -> float:
    return float(request.app[CLOCK]())


def session_of(request: web.Request) -> auth.Session | None:
    found: auth.Session | None = request.get(SESSION)
    return found


def address_of(request: web.Request) -> str:
    return request[ADDRESS]


def translate(request: web.Request) -> Callable[..., str]:
    return i18n.translator(request.get(LANGUAGE, desk_settings(request).language))


class ConnectionPool:
    """Idle database connections kept for the next call (a new PostgreSQL connection costs more
    than most of the desk's queries). A connection comes back only when its call ended outside a
    transaction and without a database error; at most `size` are kept."""

    def __init__(self, engine: sa.Engine, size: int = 4) -> None:
        self.engine = engine
        self.size = size
        self._idle: list[db.Connection] = []
        self._lock = threading.Lock()

    def call(self, fn: Callable[[db.Connection], T]) -> T:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = db.Connection(self.engine)
        reusable = False
        try:
            result = fn(conn)
            reusable = not conn.in_transaction
            return result
        except db.Error:
            raise
        except Exception:
            reusable = not conn.in_transaction  # a refusal (AuthError, ...): the connection is sound
            raise
        finally:
            with self._lock:
                keep = reusable and len(self._idle) < self.size
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


async def run_db(request: web.Request | web.Application, fn: Callable[[db.Connection], T]) -> T:
    """`fn(conn)` on a database connection, in a worker thread (the event loop never waits on the
    database); one call at a time per connection."""
    app = request if isinstance(request, web.Application) else request.app
    return await asyncio.to_thread(app[POOL].call, fn)


def audit_action(
    request: web.Request,
    conn: db.Connection,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record a staff action by the request's account (inside the action's transaction)."""
    session = session_of(request)
    account = session.account if session else None
    audit.record(
        conn,
        at=now(request),
        who=account.name if account else "-",
        account_id=account.id if account else None,
        role=account.role if account else None,
        address=address_of(request),
        action=action,
        target=target,
        detail=detail,
    )


def flash(request: web.Request, text: str) -> None:
    """A message (already translated) shown on the next page this session sees."""
    session = session_of(request)
    if session is not None:
        request.app[FLASH].setdefault(session.id_hash, []).append(text)


def public(handler: Handler) -> Handler:
    """A route anyone may reach without a session (the login page, static files)."""
    handler.desk_public = True  # type: ignore[attr-defined]
    return handler


def requires(role: str) -> Callable[[Handler], Handler]:
    """The handler needs a session of `role` or higher: 403 for a lower one."""
    if role not in auth.ROLES:
        raise ValueError(f"unknown role {role!r}")

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def check(request: web.Request) -> web.StreamResponse:
            session = session_of(request)
            if session is None:
                raise _to_login(request)
            if not session.account.has(role):
                raise web.HTTPForbidden()
            return await handler(request)

        check.desk_role = role  # type: ignore[attr-defined]
        return check

    return wrap


def page(role: str, template: str) -> Callable[[Callable[[web.Request], Awaitable[dict[str, Any]]]], Handler]:
    """A page: `role` needed, and the dict the handler returns rendered with `template` (its `title`
    is the page's heading and, with the desk's name, its <title>)."""

    def wrap(handler: Callable[[web.Request], Awaitable[dict[str, Any]]]) -> Handler:
        @functools.wraps(handler)
        async def rendered(request: web.Request) -> web.StreamResponse:
            return await render(request, template, await handler(request))

        return requires(role)(rendered)

    return wrap


async def render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    """`template` with `context` and what every page has (the translator `_`, the session's CSRF
    token, the navigation, ...)."""
    badges: dict[str, int] = {}
    session = session_of(request)
    counted = [
        i for i in request.app[NAV] if i.badge is not None and session is not None and session.account.has(i.role)
    ]
    if counted:
        badges = await run_db(request, lambda conn: {i.route: i.badge(conn) for i in counted if i.badge is not None})
    return aiohttp_jinja2.render_template(template, request, {**_context(request, badges), **context}, status=status)


def redirect(request: web.Request, route: str, **parts: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(str(request.app.router[route].url_for(**parts)))


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _to_login(request: web.Request, expired: bool = False) -> web.HTTPSeeOther:
    target = request.path_qs if request.method == "GET" else "/"
    return web.HTTPSeeOther("/login?next=" + quote(target, safe="/") + ("&expired=1" if expired else ""))


# --- client address, language ------------------------------------------------------------------------


def trusted_networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(e, strict=False) for e in entries]


def _trusted(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def client_address(request: web.Request) -> str:
    """The peer's address; behind a trusted proxy, the last X-Forwarded-For hop the trusted proxies
    did not add (a client can prepend anything it likes, but not append)."""
    peer = request.remote or "-"
    networks = request.app[TRUSTED]
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [h.strip() for line in request.headers.getall("X-Forwarded-For", []) for h in line.split(",")]
    hops = [h for h in hops if h]
    while hops and _trusted(hops[-1], networks):
        hops.pop()
    return hops[-1] if hops else peer


TRUSTED = web.AppKey("desk_trusted", list)


# --- middlewares ---------------------------------------------------------------------------------------


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPForbidden as exc:
        response = await _error_page(request, 403, exc.text if exc.text and not exc.text.startswith("403") else None)
    except web.HTTPNotFound:
        response = await _error_page(request, 404, None)
    except web.HTTPException as exc:  # redirects and the rest: raised on, with the same headers
        _headers(exc.headers, started)
        raise
    if not response.prepared:  # a stream's headers are gone already
        _headers(response.headers, started)
    return response


def _headers(headers: Any, started: float) -> None:
    for name, value in _SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    # the server's own time for the answer (bench/desk.py reads it; browsers show it)
    headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"


async def _error_page(request: web.Request, status: int, message: str | None) -> web.Response:
    _ = translate(request)
    if status == 403:
        title, text = _("Forbidden"), message or _("You may not see this page.")
    else:
        title, text = _("Page not found"), _("Not found.")
    return await render(request, "error.html", {"title": title, "message": text}, status=status)


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = desk_settings(request)
    request[ADDRESS] = client_address(request)
    request[SESSION] = None
    request[LANGUAGE] = settings.language
    if request.path.startswith(_OWN_AUTH):
        return await handler(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        at = now(request)
        request[SESSION] = await run_db(
            request, lambda conn: auth.load_session(conn, cookie, at, settings.idle_minutes * 60.0)
        )
    session = session_of(request)
    wanted = request.cookies.get(LANGUAGE_COOKIE) or (session.account.language if session else None)
    request[LANGUAGE] = i18n.pick_language(wanted, settings.language)
    target = _route_handler(request)
    if session is None and not getattr(target, "desk_public", False):
        raise _to_login(request, expired=bool(cookie))
    return await handler(request)


# Static files carry no data (the login page needs its style sheet); the integration API
# authenticates its callers itself (API tokens), and takes no forms.
_OWN_AUTH = ("/static/", API_PREFIX)


def _route_handler(request: web.Request) -> Any:
    info = request.match_info
    return getattr(info, "handler", None) if info.http_exception is None else _public_missing


@public
async def _public_missing(request: web.Request) -> web.StreamResponse:  # a 404 needs no session
    raise web.HTTPNotFound()


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD", "OPTIONS") and not request.path.startswith(API_PREFIX):
        form = await request.post()
        given = form.get(CSRF_FIELD)
        session = session_of(request)
        expected = session.csrf if session is not None else request.cookies.get(LOGIN_COOKIE)
        if expected is None or not isinstance(given, str) or not auth.same_token(given, expected):
            raise web.HTTPForbidden(text=translate(request)("The form has expired: please try again."))
    return await handler(request)


# --- templates ------------------------------------------------------------------------------------------


def _context(request: web.Request, badges: dict[str, int] | None = None) -> dict[str, Any]:
    session = session_of(request)
    language = request.get(LANGUAGE, desk_settings(request).language)
    nav = []
    if session is not None:
        for item in request.app[NAV]:
            if session.account.has(item.role):
                url = str(request.app.router[item.route].url_for())
                current = request.path == url or request.path.startswith(url.rstrip("/") + "/")
                badge = (badges or {}).get(item.route, 0)
                nav.append({"url": url, "label": item.label, "current": current, "badge": badge})
    flashes = request.app[FLASH].pop(session.id_hash, []) if session is not None else []
    return {
        "_": i18n.translator(language),
        "lang": language,
        "languages": i18n.LANGUAGE_NAMES,
        "session": session,
        "account": session.account if session else None,
        "csrf": session.csrf if session else "",
        "csrf_field": CSRF_FIELD,
        "nav": nav,
        "flashes": flashes,
        "here": request.path_qs,
        "when": when_text,
    }


def when_text(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def add_nav(
    app: web.Application, route: str, label: str, role: str, badge: Callable[[db.Connection], int] | None = None
) -> None:
    """Put a page in the navigation, for `role` and higher (in the order pages are set up); `badge`
    counts something to show beside the label on every page (read with the page)."""
    app[NAV].append(NavItem(route, label, role, badge))
