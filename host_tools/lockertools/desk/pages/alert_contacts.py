"""The manager's staff alert contacts (docs/notifications.md, "Staff alerts"): per locker, the e-mail
addresses and SMS numbers its incidents are alerted to, added and removed one at a time, with the
`[alerts]` defaults a locker without contacts of its own falls back on. The contacts are those of
`lockerctl incidents alerts` (notify/alerts.py checks and normalizes them); each change is one row
added or removed, in the transaction that writes its audit row, so two managers' changes never
undo each other."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from lockertools.desk.base import (
    SETTINGS,
    add_nav,
    audit_action,
    flash,
    page,
    redirect,
    render,
    requires,
    run_db,
    translate,
)
from lockertools.notify.alerts import AlertError, Contact, all_contacts, checked_contacts, contacts_of
from lockertools.service import db, fleet_db

CHANNELS = ("email", "sms")
ADDRESS_MAX = 254  # the form's limit: the longest e-mail address (fleet_db.Resident checks each)


def setup(app: web.Application) -> None:
    app.router.add_get("/alerts", alerts_index, name="alerts")
    app.router.add_get("/alerts/{locker_id}", locker_alerts, name="locker_alerts")
    app.router.add_post("/alerts/{locker_id}/add", add_contact, name="alert_add")
    app.router.add_post("/alerts/{locker_id}/remove", remove_contact, name="alert_remove")
    add_nav(app, "alerts", "Staff alerts", "manager")


def _defaults(request: web.Request) -> list[Contact]:
    alerts = request.app[SETTINGS].alerts
    return [Contact("email", a) for a in alerts.default_email] + [Contact("sms", n) for n in alerts.default_sms]


def _waiting(request: web.Request, contacts: list[Contact]) -> list[str]:
    """The channels the contacts use that the configuration cannot send on yet (their alerts wait)."""
    settings = request.app[SETTINGS]
    used = {c.channel for c in contacts}
    waiting = []
    if "email" in used and (settings.email.host is None or settings.email.sender is None):
        waiting.append("email")
    if "sms" in used and not settings.sms.url:
        waiting.append("sms")
    return waiting


@page("manager", "alerts_index.html")
async def alerts_index(request: web.Request) -> dict[str, Any]:
    def read(conn: db.Connection) -> tuple[list[str], dict[str, list[Contact]]]:
        return fleet_db.locker_ids(conn), all_contacts(conn)

    lockers, own = await run_db(request, read)
    return {
        "title": translate(request)("Staff alerts"),
        "lockers": [(lid, own.get(lid, [])) for lid in lockers],
        "defaults": _defaults(request),
    }


async def _alerts_context(
    request: web.Request, error: str | None = None, form: dict[str, str] | None = None
) -> dict[str, Any]:
    locker_id = request.match_info["locker_id"]

    def read(conn: db.Connection) -> list[Contact] | None:
        if locker_id not in fleet_db.locker_ids(conn):
            return None
        return contacts_of(conn, locker_id)

    own = await run_db(request, read)
    if own is None:
        raise web.HTTPNotFound()
    defaults = _defaults(request)
    return {
        "title": translate(request)("Staff alerts of locker {id}", id=locker_id),
        "locker_id": locker_id,
        "own": own,
        "defaults": defaults,
        "waiting": _waiting(request, own or defaults),
        "error": error,
        "form": form or {"channel": "", "address": ""},
        "address_max": ADDRESS_MAX,
    }


@page("manager", "alerts.html")
async def locker_alerts(request: web.Request) -> dict[str, Any]:
    return await _alerts_context(request)


def _posted_contact(posted: Any) -> tuple[str, str]:
    channel = str(posted.get("channel", ""))
    address = " ".join(str(posted.get("address", "")).split())
    return channel, address


def _checked(channel: str, address: str) -> Contact:
    """The contact as notify/alerts.py keeps it (normalized); AlertError says what is wrong."""
    if channel not in CHANNELS:
        raise AlertError("choose e-mail or SMS")
    if not address:
        raise AlertError("an e-mail address or phone number is needed")
    emails, phones = ([address], []) if channel == "email" else ([], [address])
    return checked_contacts(emails, phones)[0]


async def _refused(request: web.Request, text: str, form: dict[str, str]) -> web.Response:
    context = await _alerts_context(request, text, form or None)
    return await render(request, "alerts.html", context, status=400)


@requires("manager")
async def add_contact(request: web.Request) -> web.StreamResponse:
    _ = translate(request)
    locker_id = request.match_info["locker_id"]
    channel, address = _posted_contact(await request.post())
    form = {"channel": channel, "address": address}

    def add(conn: db.Connection) -> Contact:
        contact = _checked(channel, address)
        with db.transaction(conn):
            if locker_id not in fleet_db.locker_ids(conn):
                raise web.HTTPNotFound()
            if contact in contacts_of(conn, locker_id):
                raise AlertError(f"{contact.address} is a contact of this locker already")
            conn.execute(
                "INSERT INTO alert_contacts(locker_id, channel, address, created_at) VALUES (?, ?, ?, ?)",
                (locker_id, contact.channel, contact.address, time.time()),
            )
            detail = {"channel": contact.channel, "address": contact.address}
            audit_action(request, conn, "alerts.add", locker_id, detail)
        return contact

    try:
        contact = await run_db(request, add)
    except AlertError as exc:
        return await _refused(request, _("{address} not added: {reason}", address=address, reason=str(exc)), form)
    except db.IntegrityError:  # another manager added the same contact in the same instant
        reason = f"{address} is a contact of this locker already"
        return await _refused(request, _("{address} not added: {reason}", address=address, reason=reason), form)
    flash(request, _("Alerts of locker {id} also go to {address}.", id=locker_id, address=contact.address))
    raise redirect(request, "locker_alerts", locker_id=locker_id)


@requires("manager")
async def remove_contact(request: web.Request) -> web.StreamResponse:
    _ = translate(request)
    locker_id = request.match_info["locker_id"]
    channel, address = _posted_contact(await request.post())

    def remove(conn: db.Connection) -> bool:
        """True when the contact went; AlertError when the locker has no such contact."""
        with db.transaction(conn):
            if locker_id not in fleet_db.locker_ids(conn):
                raise web.HTTPNotFound()
            gone = conn.execute(
                "DELETE FROM alert_contacts WHERE locker_id = ? AND channel = ? AND address = ?",
                (locker_id, channel, address),
            ).rowcount
            if not gone:
                raise AlertError(f"{address} is not a contact of this locker")
            audit_action(request, conn, "alerts.remove", locker_id, {"channel": channel, "address": address})
            return not contacts_of(conn, locker_id)

    try:
        back_to_defaults = await run_db(request, remove)
    except AlertError as exc:
        return await _refused(request, _("{address} not removed: {reason}", address=address, reason=str(exc)), {})
    flash(request, _("Alerts of locker {id} no longer go to {address}.", id=locker_id, address=address))
    if back_to_defaults:
        flash(request, _("Locker {id} has no contacts of its own: its alerts go to the defaults.", id=locker_id))
    raise redirect(request, "locker_alerts", locker_id=locker_id)
