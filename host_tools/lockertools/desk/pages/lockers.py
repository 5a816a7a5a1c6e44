"""The lockers overview and a locker's wall (its live door states: live.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lockertools.desk import fleetview
from lockertools.desk.base import add_nav, page, run_db, translate
from lockertools.desk.pages.deliveries import item_labels, kind_text


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
    _ = translate(request)
    items = item_labels(_)
    for door in locker.doors:
        for inside in door.contents:  # what the door holds: its item, else the code's kind
            item = inside["item"]
            inside["what"] = items.get(item, item) if item else kind_text(_, inside["kind"])
    live_url = str(request.app.router["wall_live"].url_for(locker_id=locker_id))
    return {"title": _("Wall of locker {id}", id=locker_id), "locker": locker, "live_url": live_url}
