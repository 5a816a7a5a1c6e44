"""The desk's aiohttp application: `create_app(engine, settings)` puts base.py's middlewares and
the pages together, and mounts the integration API (lockertools.api) at /api/v1/."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp_jinja2
import jinja2
import sqlalchemy as sa
from aiohttp import web

from lockertools.api.app import ApiOptions, create_api_app
from lockertools.config import Settings, masked_url
from lockertools.desk import live
from lockertools.desk.base import (
    API_PREFIX,
    CLOCK,
    ENGINE,
    FLASH,
    HERE,
    NAV,
    POOL,
    SETTINGS,
    TRUSTED,
    ConnectionPool,
    csrf_middleware,
    guard_middleware,
    session_middleware,
    trusted_networks,
)
from lockertools.desk.pages import (
    accounts,
    alert_contacts,
    audit_trail,
    codes,
    configuration,
    deliveries,
    incidents,
    integrations,
    lockers,
    login,
    manage,
    reports,
)
from lockertools.desk.pages import messages as resident_messages

# --- the application --------------------------------------------------------------------------------------


def create_app(engine: sa.Engine, settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The desk on `engine` (a migrated fleet database), with `settings` ([desk], and the rest for
    the integration API); `clock` gives the time (seconds since the epoch) for sessions, the login
    throttle and the audit trail."""
    app = web.Application(middlewares=[guard_middleware, session_middleware, csrf_middleware])
    app[ENGINE] = engine
    app[POOL] = ConnectionPool(engine)
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[NAV] = []
    app[FLASH] = {}
    app[TRUSTED] = trusted_networks(settings.desk.trusted_proxies)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    # a webhook receiver's key may ride in its URL's query: pages show it starred
    aiohttp_jinja2.get_env(app).filters["masked_url"] = masked_url
    app.router.add_static("/static/", HERE / "static", name="static")
    login.setup(app)
    lockers.setup(app)
    audit_trail.setup(app)
    accounts.setup(app)
    integrations.setup(app)  # the admin's pages, beside the accounts
    configuration.setup(app)
    deliveries.setup(app)  # the staff's pages: after the foundation's, in the navigation too
    resident_messages.setup(app)  # residents' messages: letters to print, failed messages
    codes.setup(app)
    manage.setup(app)
    alert_contacts.setup(app)  # the manager's staff alert contacts, beside the doors
    reports.setup(app)
    incidents.setup(app)
    live.setup(app)
    mount_api(app, engine, settings)

    async def close_pool(_app: web.Application) -> None:
        app[POOL].close()

    app.on_cleanup.append(close_pool)
    return app


def mount_api(app: web.Application, engine: sa.Engine, settings: Settings) -> None:
    """The integration API at /api/v1/, on the desk's database. The desk's session and CSRF checks
    leave its paths alone: it authenticates its callers with API tokens."""
    options = ApiOptions(idempotency_ttl_s=settings.api.idempotency_hours * 3600)
    api = create_api_app(engine.url.render_as_string(hide_password=False), options=options)
    app.add_subapp(API_PREFIX, api)
