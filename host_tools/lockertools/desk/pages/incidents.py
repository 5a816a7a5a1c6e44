"""Incidents (desk role and up): the list with its filters and counts per state, an incident's page
with its history, and staff's actions on it (take it, a note, resolve with a note), each in the
audit trail. The service's lockertools.service.incidents does the work and checks the rules.

New incidents appear on an open list page by themselves: `/incidents/live` is a server-sent events
stream of incident_log's new rows (its id only grows: the page gives the last one it showed, so
nothing is missed between the page and its stream). The desk process reads the log every
`POLL_S`, one index probe per open page; the browser never polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from typing import Any

from aiohttp import web

from lockertools.desk import auth
from lockertools.desk.base import (
    SESSION_COOKIE,
    add_nav,
    audit_action,
    desk_settings,
    flash,
    now,
    page,
    redirect,
    render,
    requires,
    run_db,
    session_of,
    translate,
    when_text,
)
from lockertools.service import db
from lockertools.service import incidents as service

POLL_S = 1.0  # a live list page's stream reads incident_log this often
HEARTBEAT_S = 15.0  # and checks its session is still alive this often
LIST_LIMIT = 200
FILTER_STATES = ("open", *service.STATES)
STATE_LABELS = {"open": "unresolved", "new": "new", "in_progress": "in progress", "resolved": "resolved"}


def setup(app: web.Application) -> None:
    app.router.add_get("/incidents", incident_list, name="incidents")
    app.router.add_get("/incidents/live", stream, name="incidents_live")
    app.router.add_get("/incidents/{incident_id:\\d+}", incident_page, name="incident")
    app.router.add_post("/incidents/{incident_id:\\d+}/take", take, name="incident_take")
    app.router.add_post("/incidents/{incident_id:\\d+}/note", note, name="incident_note")
    app.router.add_post("/incidents/{incident_id:\\d+}/resolve", resolve, name="incident_resolve")
    add_nav(app, "incidents", "Incidents", "desk", badge=lambda conn: counts(conn)["open"])
    app[STOPPING] = asyncio.Event()

    async def stop(_app: web.Application) -> None:
        _app[STOPPING].set()

    app.on_shutdown.append(stop)  # the live streams end before the server waits for its handlers


STOPPING = web.AppKey("desk_incidents_stopping", asyncio.Event)


# --- reading --------------------------------------------------------------------------------------


def counts(conn: db.Connection) -> dict[str, int]:
    """Incidents per state, and `open` (new + in progress)."""
    got = {s: 0 for s in service.STATES}
    for row in conn.execute("SELECT state, count(*) AS n FROM incidents GROUP BY state").fetchall():
        got[str(row["state"])] = int(row["n"])
    return {"open": got["new"] + got["in_progress"], **got}


def last_log_id(conn: db.Connection) -> int:
    row = conn.execute("SELECT max(id) FROM incident_log").fetchone()
    return int(row[0] or 0)


def _filters(request: web.Request) -> dict[str, str]:
    """The list's filters from the query; an unknown value is dropped (the list shows everything)."""
    query = request.query
    state = query.get("state", "open")
    cause = query.get("cause", "")
    return {
        "state": state if state in FILTER_STATES or state == "all" else "open",
        "locker": query.get("locker", "").strip()[:64],
        "cause": cause if cause in service.CAUSES else "",
    }


def _lockers(conn: db.Connection) -> list[str]:
    return [str(r["id"]) for r in conn.execute("SELECT id FROM lockers ORDER BY id").fetchall()]


def _incident_id(request: web.Request) -> int:
    return int(request.match_info["incident_id"])


def _view(incident: service.Incident, _: Any) -> dict[str, Any]:
    """What a row of the list shows, translated (the live stream sends the same)."""
    return {
        "id": incident.id,
        "url": f"/incidents/{incident.id}",
        "opened": when_text(incident.opened_at),
        "locker": incident.locker_id,
        "subject": incident.subject,
        "cause": incident.cause,
        "what": _(incident.what),
        "count": incident.count,
        "state": incident.state,
        "state_label": _(STATE_LABELS[incident.state]),
        "handled_by": incident.handled_by or "",
    }


@page("desk", "incidents.html")
async def incident_list(request: web.Request) -> dict[str, Any]:
    _ = translate(request)
    chosen = _filters(request)

    def read(conn: db.Connection) -> tuple[list[service.Incident], dict[str, int], list[str], int]:
        after = last_log_id(conn)  # before the list: a change in between comes again on the stream
        found = service.list_incidents(
            conn,
            state=None if chosen["state"] == "all" else chosen["state"],
            locker=chosen["locker"] or None,
            cause=chosen["cause"] or None,
            limit=LIST_LIMIT,
        )
        return found, counts(conn), _lockers(conn), after

    found, per_state, lockers, after = await run_db(request, read)
    return {
        "title": _("Incidents"),
        "incidents": [_view(i, _) for i in found],
        "counts": per_state,
        "filters": chosen,
        "states": FILTER_STATES,
        "state_labels": STATE_LABELS,
        "causes": service.CAUSES,
        "lockers": lockers,
        "after": after,
        "live_url": str(request.app.router["incidents_live"].url_for()),
        "limit": LIST_LIMIT,
    }


async def _detail_context(request: web.Request, incident_id: int) -> dict[str, Any]:
    _ = translate(request)

    def read(conn: db.Connection) -> tuple[service.IncidentDetail, dict[str, int]]:
        return service.get(conn, incident_id), counts(conn)

    try:
        detail, per_state = await run_db(request, read)
    except service.IncidentError:
        raise web.HTTPNotFound() from None
    incident = detail.incident
    session = session_of(request)
    return {
        "title": _("Incident {id}", id=incident.id),
        "incident": incident,
        "log": detail.log,
        "auto": service.AUTO,
        "counts": per_state,
        "states": FILTER_STATES,
        "state_labels": STATE_LABELS,
        "mine": session is not None and incident.handled_by == session.account.name,
        "note_text": "",
        "resolve_text": "",
        "error": None,
        "error_field": None,
    }


@page("desk", "incident.html")
async def incident_page(request: web.Request) -> dict[str, Any]:
    return await _detail_context(request, _incident_id(request))


# --- actions ----------------------------------------------------------------------------------------


async def _act(request: web.Request, action: str, field: str | None) -> web.StreamResponse:
    """take / note / resolve the incident as the logged-in account, and its audit row in the same
    transaction. A refused request (no note, resolved already) shows the page again with what was
    typed, and changes nothing."""
    _ = translate(request)
    incident_id = _incident_id(request)
    form = await request.post()
    raw = form.get("note", "")
    text = raw if isinstance(raw, str) else ""
    session = session_of(request)
    assert session is not None  # requires() let the request in
    name, at = session.account.name, now(request)

    def write(conn: db.Connection) -> service.Incident:
        with db.transaction(conn):
            if action == "take":
                done = service.take(conn, incident_id, name, at)
            elif action == "note":
                done = service.add_note(conn, incident_id, name, text, at)
            else:
                done = service.resolve(conn, incident_id, name, text, at)
            detail = {"locker": done.locker_id, "cause": done.cause, "state": done.state}
            if done.subject:
                detail["subject"] = done.subject
            audit_action(request, conn, f"incident.{action}", str(incident_id), detail)
        return done

    try:
        await run_db(request, write)
    except service.IncidentError as exc:
        context = await _detail_context(request, incident_id)
        if field is not None:
            context[f"{field}_text"] = text  # nothing typed is lost
        context["error_field"] = field
        context["error"] = _error_text(_, str(exc))
        return await render(request, "incident.html", context, status=400)
    flash(
        request,
        {
            "take": _("You took incident {id}.", id=incident_id),
            "note": _("Note added to incident {id}.", id=incident_id),
            "resolve": _("Incident {id} resolved.", id=incident_id),
        }[action],
    )
    raise redirect(request, "incident", incident_id=str(incident_id))


def _error_text(_: Any, message: str) -> str:
    """The service's refusal in the reader's language where the desk knows it."""
    if message.startswith("a note is required"):
        return str(_("A note is required: say what was done."))
    if message.startswith("the note is"):
        return str(_("The note is too long: at most {n} characters.", n=service.MAX_NOTE))
    if "resolved already" in message:
        return str(_("This incident is resolved already."))
    return message


@requires("desk")
async def take(request: web.Request) -> web.StreamResponse:
    return await _act(request, "take", None)


@requires("desk")
async def note(request: web.Request) -> web.StreamResponse:
    return await _act(request, "note", "note")


@requires("desk")
async def resolve(request: web.Request) -> web.StreamResponse:
    return await _act(request, "resolve", "resolve")


# --- live ---------------------------------------------------------------------------------------------


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@requires("desk")
async def stream(request: web.Request) -> web.StreamResponse:
    """Each change of incident_log after `?after=` (the list page's last id): `event: incident` with
    the incident as a list row shows it and the counts per state; `event: end` when the session is
    over or the desk stops."""
    _ = translate(request)
    stopping = request.app[STOPPING]
    given = request.query.get("after", "")
    cursor = int(given) if given.isdigit() else None
    cookie = request.cookies.get(SESSION_COOKIE, "")
    idle_s = desk_settings(request).idle_minutes * 60.0
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)

    def read(conn: db.Connection, after: int | None) -> tuple[int, list[service.Change], dict[str, int] | None]:
        if after is None:
            return last_log_id(conn), [], None
        changes = service.changes_since(conn, after, limit=100)
        return (changes[-1].entry.id if changes else after), changes, counts(conn) if changes else None

    quiet_s = 0.0
    try:
        await response.write(b"retry: 5000\n\n")
        while True:
            cursor, changes, per_state = await run_db(request, functools.partial(read, after=cursor))
            for change in changes:
                row = _view(change.incident, _)
                await response.write(
                    _event("incident", {"action": change.entry.action, "row": row, "counts": per_state})
                )
            if len(changes) < 100:  # else more are waiting: read on at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), POLL_S)
            if stopping.is_set():
                await response.write(_event("end", {"reason": "stopping"}))
                break
            quiet_s += POLL_S
            if quiet_s >= HEARTBEAT_S:
                quiet_s = 0.0
                alive = await run_db(request, lambda conn: auth.session_alive(conn, cookie, now(request), idle_s))
                if not alive:
                    await response.write(_event("end", {"reason": "session"}))
                    break
                await response.write(b": still here\n\n")
    except ConnectionResetError:
        pass  # the reader went away
    return response
