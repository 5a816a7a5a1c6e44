"""The audit trail, read-only for managers and admins: no role has a page or a route that changes it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lockertools.desk import audit
from lockertools.desk.base import add_nav, page, run_db, translate

PAGE_ROWS = 100


def setup(app: web.Application) -> None:
    app.router.add_get("/audit", trail, name="audit")
    add_nav(app, "audit", "Audit trail", "manager")


@page("manager", "audit.html")
async def trail(request: web.Request) -> dict[str, Any]:
    before = request.query.get("before")
    before_id = int(before) if before and before.isdigit() else None
    rows = await run_db(request, lambda conn: audit.trail(conn, PAGE_ROWS + 1, before_id))
    older = rows[PAGE_ROWS]["id"] + 1 if len(rows) > PAGE_ROWS else None
    return {"title": translate(request)("Audit trail"), "rows": rows[:PAGE_ROWS], "older": older}
