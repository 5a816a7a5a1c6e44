"""The lockers overview and a locker's wall (its live door states: live.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lockertools.desk import fleetview
from lockertools.desk.base import add_nav, page, run_db, translate


def setup(app: web.Application) -> None:
    app.router.add_get("/lockers", overview, name="lockers")
    app.router.add_get("/lockers/{locker_id}", wall, name="wall")
    add_nav(app, "lockers", "Lockers", "desk")


@page("desk", "lockers.html")
async def overview(request: web.Request) -> dict[str, Any]:
    lockers = await run_db(request, fleetview.overview)
    return {"title": translate(request)("Lockers overview"), "lockers": lockers, "sizes": fleetview.SIZES}


@page("desk", "wall.html")
async def wall(request: web.Request) -> dict[str, Any]:
    locker_id = request.match_info["locker_id"]
    locker = await run_db(request, lambda conn: fleetview.wall(conn, locker_id))
    if locker is None:
        raise web.HTTPNotFound()
    live_url = str(request.app.router["wall_live"].url_for(locker_id=locker_id))
    return {"title": translate(request)("Wall of locker {id}", id=locker_id), "locker": locker, "live_url": live_url}
