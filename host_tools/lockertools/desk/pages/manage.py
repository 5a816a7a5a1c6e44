"""The manager's pages: staff members and today's PIN for a locker (valid at that locker only,
shown once), and a locker's doors: out of service and back, remote opening with a required reason.
Door commands are queued for the service (fleet_db.queue_request) and each is in the audit trail."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lockertools.desk import fleetview
from lockertools.desk.base import (
    add_nav,
    audit_action,
    flash,
    now,
    page,
    redirect,
    render,
    requires,
    run_db,
    session_of,
    translate,
)
from lockertools.service import db, fleet_db

REASON_MAX = 64  # what a signed door.open carries (fleet_db.queue_request)
BY_MAX = 32


def setup(app: web.Application) -> None:
    app.router.add_get("/staff", staff_page, name="staff")
    app.router.add_post("/staff", add_member)
    app.router.add_post("/staff/pin", issue_pin, name="staff_pin")
    app.router.add_get("/doors", doors_index, name="doors")
    app.router.add_get("/doors/{locker_id}", locker_doors, name="locker_doors")
    app.router.add_post("/doors/{locker_id}/service", door_service, name="door_service")
    app.router.add_post("/doors/{locker_id}/open", door_open, name="door_open")
    add_nav(app, "staff", "Staff PINs", "manager")
    add_nav(app, "doors", "Doors", "manager")


def _by(request: web.Request) -> str:
    session = session_of(request)
    return session.account.name[:BY_MAX] if session else "desk"


# --- staff and their PINs ----------------------------------------------------------------------------


async def _staff_context(request: web.Request, error: str | None = None, name: str = "") -> dict[str, Any]:
    at = now(request)

    def read(conn: db.Connection) -> tuple[list[dict[str, Any]], list[str]]:
        return fleet_db.staff_table(conn, now=at), fleet_db.locker_ids(conn)

    members, lockers = await run_db(request, read)
    return {"title": translate(request)("Staff PINs"), "members": members, "lockers": lockers,
            "error": error, "name": name}  # fmt: skip


@page("manager", "staff.html")
async def staff_page(request: web.Request) -> dict[str, Any]:
    return await _staff_context(request)


@requires("manager")
async def add_member(request: web.Request) -> web.StreamResponse:
    _ = translate(request)
    name = str((await request.post()).get("name", "")).strip()

    def add(conn: db.Connection) -> int:
        if any(ord(ch) < 32 for ch in name):
            raise fleet_db.FleetError("a staff name is on one line")
        staff_id, _pins = fleet_db.add_staff(conn, name)
        audit_action(request, conn, "staff.add", name, {"staff_id": staff_id})
        return staff_id

    try:
        await run_db(request, add)
    except fleet_db.FleetError as exc:
        context = await _staff_context(request, _("Not added: {reason}", reason=str(exc)), name)
        return await render(request, "staff.html", context, status=400)
    flash(request, _("{name} added.", name=name))
    raise redirect(request, "staff")


@requires("manager")
async def issue_pin(request: web.Request) -> web.StreamResponse:
    _ = translate(request)
    posted = await request.post()
    staff_id = str(posted.get("staff", "")).strip()
    locker_id = str(posted.get("locker", "")).strip()
    at = now(request)

    def issue(conn: db.Connection) -> fleet_db.StaffPin:
        if not staff_id.isdigit():
            raise fleet_db.FleetError("choose a member of staff")
        pin = fleet_db.issue_staff_pin(conn, int(staff_id), locker_id, now=at)
        audit_action(
            request,
            conn,
            "staff.pin",
            pin.name,
            {"staff_id": pin.staff_id, "locker": locker_id, "expires": pin.expires},
        )
        return pin

    try:
        pin = await run_db(request, issue)
    except fleet_db.FleetError as exc:
        context = await _staff_context(request, _("No PIN issued: {reason}", reason=str(exc)))
        return await render(request, "staff.html", context, status=400)
    # shown on this answer only: the host keeps the PIN's tag, never the PIN
    return await render(request, "staff_pin.html", {"title": _("Today's PIN for {name}", name=pin.name), "pin": pin})


# --- doors -------------------------------------------------------------------------------------------


@page("manager", "doors_index.html")
async def doors_index(request: web.Request) -> dict[str, Any]:
    lockers = await run_db(request, fleet_db.locker_ids)
    return {"title": translate(request)("Doors"), "lockers": lockers}


async def _doors_context(
    request: web.Request, locker_id: str, error: str | None = None, form: dict[str, str] | None = None
) -> dict[str, Any]:
    def read(conn: db.Connection) -> tuple[fleetview.LockerView | None, list[dict[str, Any]]]:
        locker = fleetview.wall(conn, locker_id)
        return locker, ([] if locker is None else fleet_db.request_table(conn, locker_id, last=20))

    locker, requests = await run_db(request, read)
    if locker is None:
        raise web.HTTPNotFound()
    for sent in requests:
        sent["door_label"] = json.loads(sent["args_json"]).get("door")
    return {
        "title": translate(request)("Doors of locker {id}", id=locker_id),
        "locker": locker,
        "requests": list(reversed(requests)),
        "error": error,
        "form": form or {"door": "", "reason": ""},
        "reason_max": REASON_MAX,
    }


@page("manager", "doors.html")
async def locker_doors(request: web.Request) -> dict[str, Any]:
    return await _doors_context(request, request.match_info["locker_id"])


async def _queue(
    request: web.Request, op: str, args: dict[str, Any], audit_detail: dict[str, Any], form: dict[str, str]
) -> web.StreamResponse:
    _ = translate(request)
    locker_id = request.match_info["locker_id"]

    def queue(conn: db.Connection) -> int:
        request_id, _tx = fleet_db.queue_request(conn, locker_id, op, args, _by(request))
        audit_action(request, conn, op, f"{locker_id}/{args['door']}", audit_detail | {"request": request_id})
        return request_id

    try:
        await run_db(request, queue)
    except fleet_db.FleetError as exc:
        context = await _doors_context(request, locker_id, _("Not sent: {reason}", reason=str(exc)), form)
        return await render(request, "doors.html", context, status=400)
    flash(request, _("Sent to locker {id}: the list below shows its answer.", id=locker_id))
    raise redirect(request, "locker_doors", locker_id=locker_id)


@requires("manager")
async def door_service(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    door = str(posted.get("door", "")).strip()
    wanted = str(posted.get("on", ""))
    if wanted not in ("0", "1"):
        error = translate(request)("Not sent: {reason}", reason="on is 1 (back in service) or 0 (out of service)")
        context = await _doors_context(request, request.match_info["locker_id"], error)
        return await render(request, "doors.html", context, status=400)
    on = wanted == "1"
    return await _queue(request, "door.service", {"door": door, "on": on}, {"on": on}, {"door": door, "reason": ""})


@requires("manager")
async def door_open(request: web.Request) -> web.StreamResponse:
    _ = translate(request)
    posted = await request.post()
    door = str(posted.get("door", "")).strip()
    reason = " ".join(str(posted.get("reason", "")).split())
    form = {"door": door, "reason": reason}
    if not reason or len(reason) > REASON_MAX:
        locker_id = request.match_info["locker_id"]
        error = _("A remote opening needs a reason (at most {n} characters).", n=REASON_MAX)
        return await render(request, "doors.html", await _doors_context(request, locker_id, error, form), status=400)
    return await _queue(request, "door.open", {"door": door, "r": reason}, {"reason": reason}, form)
