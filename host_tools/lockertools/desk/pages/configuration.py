"""Admins' read-only page of the configuration in effect: the file it came from and each section's
values as lockertools.config has them (config.effective). A secret shows where it was read from,
never its value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from lockertools import config
from lockertools.desk.base import SETTINGS, add_nav, page, translate


def setup(app: web.Application) -> None:
    app.router.add_get("/admin/settings", settings_page, name="settings")
    add_nav(app, "settings", "Settings", "admin")


@page("admin", "settings.html")
async def settings_page(request: web.Request) -> dict[str, Any]:
    _ = translate(request)
    settings = request.app[SETTINGS]
    sections = [
        (name, [(key, shown_value(value, _)) for key, value in values]) for name, values in config.effective(settings)
    ]
    return {"title": _("Settings"), "path": settings.path, "sections": sections}


def shown_value(value: Any, _: Callable[..., str]) -> str:
    """A value for people: a secret by its source only."""
    if isinstance(value, config.Secret):
        kind, where = value.origin
        if kind == "file":
            return _("set (from the file {path})", path=where)
        if kind == "env":
            return _("set (from the environment variable {name})", name=where)
        return _("set ({source})", source=where)
    if value is None:
        return _("not set")
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else _("none")
    return str(value)
