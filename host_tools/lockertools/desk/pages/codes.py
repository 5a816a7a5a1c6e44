"""Codes for residents at the desk: a return code (the resident brings a borrowed item back; the
locker gives an empty door of the size wanted) and a pickup code for one door. Each is shown once,
on the answer that creates it."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from lockertools.desk.base import add_nav, audit_action, page, render, requires, run_db, translate
from lockertools.desk.pages.deliveries import item_labels, size_labels
from lockertools.service import db, fleet_db

MAX_DAYS = 366.0
_BLANK = {
    "locker": "",
    "door": "",
    "size": "any",
    "low": "",
    "item": "borrowed material",
    "recipient": "",
    "days": "14",
}


def setup(app: web.Application) -> None:
    app.router.add_get("/codes", codes_page, name="codes")
    app.router.add_post("/codes/return", issue_return)
    app.router.add_post("/codes/pickup", issue_pickup)
    add_nav(app, "codes", "Codes for residents", "desk")


async def _context(
    request: web.Request, form: dict[str, str] | None = None, error: str | None = None, which: str = ""
) -> dict[str, Any]:
    _ = translate(request)
    lockers = await run_db(request, fleet_db.locker_ids)
    return {
        "title": _("Codes for residents"),
        "form": form or dict(_BLANK),
        "error": error,
        "which": which,
        "lockers": lockers,
        "items": item_labels(_),
        "sizes": size_labels(_),
    }


@page("desk", "codes.html")
async def codes_page(request: web.Request) -> dict[str, Any]:
    return await _context(request)


async def _read_form(request: web.Request) -> tuple[dict[str, str], float | None]:
    posted = await request.post()
    form = {key: str(posted.get(key, default)).strip() for key, default in _BLANK.items()}
    form["low"] = "1" if posted.get("low") else ""
    try:
        days = float(form["days"].replace(",", "."))
    except ValueError:
        return form, None
    return form, days if 0 < days <= MAX_DAYS else None


async def _refused(request: web.Request, form: dict[str, str], which: str, reason: str) -> web.Response:
    _ = translate(request)
    context = await _context(request, form, _("No code issued: {reason}", reason=reason), which)
    return await render(request, "codes.html", context, status=400)


def _recipient(text: str) -> str | None:
    if len(text) > 200 or any(ord(ch) < 32 for ch in text):
        raise fleet_db.FleetError("the resident: at most 200 characters, on one line")
    return text or None


async def _shown_once(request: web.Request, issued: fleet_db.IssuedCode, what: str, item: str) -> web.Response:
    _ = translate(request)
    context = {
        "title": _("Code issued"),
        "issued": issued,
        "what": what,
        "item": item,
        "door": None if issued.door == fleet_db.ANY_DOOR else issued.door,
    }
    return await render(request, "code_created.html", context)


@requires("desk")
async def issue_return(request: web.Request) -> web.StreamResponse:
    _ = translate(request)
    form, days = await _read_form(request)
    if days is None:
        return await _refused(request, form, "return", _("the code lasts more than 0 and at most 366 days"))
    size = None if form["size"] == "any" else form["size"]

    def issue(conn: db.Connection) -> fleet_db.IssuedCode:
        issued = fleet_db.issue_return_code(
            conn, form["locker"], size, bool(form["low"]), days, form["item"], _recipient(form["recipient"])
        )
        audit_action(
            request, conn, "code.return", str(issued.code_id),
            {"locker": issued.locker_id, "item": form["item"], "size": form["size"]},
        )  # fmt: skip
        return issued

    try:
        issued = await run_db(request, issue)
    except fleet_db.FleetError as exc:
        return await _refused(request, form, "return", str(exc))
    return await _shown_once(request, issued, _("Return code"), item_labels(_).get(form["item"], form["item"]))


@requires("desk")
async def issue_pickup(request: web.Request) -> web.StreamResponse:
    _ = translate(request)
    form, days = await _read_form(request)
    if days is None:
        return await _refused(request, form, "pickup", _("the code lasts more than 0 and at most 366 days"))
    expires = int(time.time() + days * 86400)

    def issue(conn: db.Connection) -> fleet_db.IssuedCode:
        issued = fleet_db.issue_code(
            conn, form["locker"], form["door"], fleet_db.KIND_PICKUP, expires, _recipient(form["recipient"])
        )
        audit_action(
            request, conn, "code.pickup", str(issued.code_id), {"locker": issued.locker_id, "door": issued.door}
        )
        return issued

    try:
        issued = await run_db(request, issue)
    except fleet_db.FleetError as exc:
        return await _refused(request, form, "pickup", str(exc))
    return await _shown_once(request, issued, _("Pickup code"), "")
