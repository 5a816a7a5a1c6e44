"""The desk's aiohttp application: `create_app(engine, settings)` puts base.py's middlewares and
the pages together, and mounts the integration API at /api/v1/ when it is installed."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable

import aiohttp_jinja2
import jinja2
import sqlalchemy as sa
from aiohttp import web

from lockertools.config import Settings
from lockertools.desk import live
from lockertools.desk.base import (
    API_PREFIX,
    CLOCK,
    ENGINE,
    FLASH,
    HERE,
    NAV,
    SETTINGS,
    TRUSTED,
    csrf_middleware,
    guard_middleware,
    session_middleware,
    trusted_networks,
)
from lockertools.desk.pages import accounts, audit_trail, incidents, lockers, login

API_MODULE = "lockertools.api.app"  # the integration API, mounted at API_PREFIX when installed


# --- the application --------------------------------------------------------------------------------------


def create_app(engine: sa.Engine, settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The desk on `engine` (a migrated fleet database), with `settings` ([desk], and the rest for
    the integration API); `clock` gives the time (seconds since the epoch) for sessions, the login
    throttle and the audit trail."""
    app = web.Application(middlewares=[guard_middleware, session_middleware, csrf_middleware])
    app[ENGINE] = engine
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
    app.router.add_static("/static/", HERE / "static", name="static")
    login.setup(app)
    lockers.setup(app)
    audit_trail.setup(app)
    accounts.setup(app)
    incidents.setup(app)
    live.setup(app)
    mount_api(app, engine, settings)
    return app


def mount_api(app: web.Application, engine: sa.Engine, settings: Settings) -> None:
    """The integration API at /api/v1/ when its package (lockertools.api) is there; without it nothing
    is served under that prefix. The desk's session and CSRF checks leave its paths alone: it
    authenticates its callers with API tokens."""
    try:
        module = importlib.import_module(API_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name is not None and API_MODULE.startswith(exc.name):
            return  # not built yet, or not installed: nothing is served there
        raise
    api: web.Application = module.create_api_app(engine, settings)
    app.add_subapp(API_PREFIX, api)
