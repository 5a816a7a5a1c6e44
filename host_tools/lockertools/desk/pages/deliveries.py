"""Deliveries at the desk: prepare one for a resident (the one screen that shows the resident's
code), the list with its filters, a delivery's history, and cancelling one not loaded yet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from lockertools.desk.base import (
    add_nav,
    audit_action,
    flash,
    page,
    redirect,
    render,
    requires,
    run_db,
    session_of,
    translate,
)
from lockertools.desk.pages import messages
from lockertools.service import db, fleet_db

PAGE_ROWS = 50
# the printed letter with the resident's code (pages/messages.py; a route with a {number} field): the
# screen that prepares a delivery for a resident only a letter reaches links to it
LETTER_ROUTE = "delivery_letter"
FILTERS = tuple(fleet_db.DELIVERY_FILTERS)
SIZES = ("any", "S", "M", "L")


def setup(app: web.Application) -> None:
    app.router.add_get("/deliveries", deliveries_list, name="deliveries")
    app.router.add_get("/deliveries/new", new_delivery, name="delivery_new")
    app.router.add_post("/deliveries/new", prepare)
    app.router.add_get("/deliveries/{number:\\d{1,10}}", delivery_page, name="delivery")
    app.router.add_post("/deliveries/{number:\\d{1,10}}/cancel", cancel, name="delivery_cancel")
    add_nav(app, "deliveries", "Deliveries", "desk")
    add_nav(app, "delivery_new", "New delivery", "desk")


# --- texts chosen at run time (literal here, so the translations' scan finds them) -----------------


def filter_labels(_: Callable[..., str]) -> dict[str, str]:
    return {
        "all": _("all"),
        "to_load": _("to load"),
        "loaded": _("loaded"),
        "picked_up": _("picked up"),
        "expired": _("expired (take back)"),
        "taken_back": _("taken back"),
        "cancelled": _("cancelled"),
    }


def status_text(_: Callable[..., str], row: dict[str, Any]) -> str:
    """A delivery's state for people (delivery_status's, in the reader's language)."""
    state, door = row["state"], row["door"]
    if state == "issued":
        return _("to load") if door == fleet_db.ANY_DOOR else _("in door {door}", door=door)
    if state == "used":
        return _("picked up")
    if state == "expired":
        return _("expired, not loaded") if door == fleet_db.ANY_DOOR else _("take back from door {door}", door=door)
    if state == "taken_back":
        return _("taken back")
    return _("cancelled") if state == "revoked" else str(state)


def step_labels(_: Callable[..., str]) -> dict[str, str]:
    return {
        "prepared": _("prepared"),
        "loaded": _("loaded"),
        "reminder": _("reminder due"),
        "notification": _("notification"),
        "picked_up": _("picked up"),
        "expired": _("pickup window ended"),
        "taken_back": _("taken back"),
        "cancelled": _("cancelled"),
    }


def item_labels(_: Callable[..., str]) -> dict[str, str]:
    return {
        "parcel": _("parcel"),
        "document": _("document"),
        "permit": _("permit"),
        "waste bags": _("waste bags"),
        "borrowed material": _("borrowed material"),
    }


def language_labels(_: Callable[..., str]) -> dict[str, str]:
    return {"nl": _("Dutch"), "fr": _("French"), "en": _("English")}


def size_labels(_: Callable[..., str]) -> dict[str, str]:
    return {"any": _("any size"), "S": "S", "M": "M", "L": "L"}


def kind_text(_: Callable[..., str], byte: int) -> str:
    """A code's kind byte in the reader's language ("levering L lage deur"): fleet_db.describe_kind's
    words, which stay the CLI's English; the size letters are the same in every language."""
    kinds = {
        fleet_db.KIND_PICKUP: _("pickup"),
        fleet_db.KIND_STAFF: _("staff"),
        fleet_db.KIND_RETURN: _("return"),
        fleet_db.KIND_DELIVERY: _("delivery"),
    }
    words = [kinds.get(byte & fleet_db.KIND_MASK, str(byte & fleet_db.KIND_MASK))]
    size = (byte >> 4) & 3
    if size:
        words.append(fleet_db.SIZE_NAMES[size])
    if byte & fleet_db.LOW_BIT:
        words.append(_("low"))
    return " ".join(words)


# --- the list ----------------------------------------------------------------------------------------


@page("desk", "deliveries.html")
async def deliveries_list(request: web.Request) -> dict[str, Any]:
    _ = translate(request)
    state = request.query.get("state", "all")
    if state not in FILTERS:
        state = "all"
    locker = request.query.get("locker", "").strip()
    search = request.query.get("q", "").strip()[:200]
    number = request.query.get("page", "1")
    page_no = int(number) if number.isdigit() and 0 < int(number) < 100_000 else 1

    def read(conn: db.Connection) -> tuple[list[str], list[dict[str, Any]], int]:
        lockers = fleet_db.locker_ids(conn)
        rows, total = fleet_db.delivery_page(
            conn, state, locker_id=locker or None, search=search or None,
            limit=PAGE_ROWS, offset=(page_no - 1) * PAGE_ROWS,
        )  # fmt: skip
        return lockers, rows, total

    lockers, rows, total = await run_db(request, read)
    for row in rows:
        row["status_text"] = status_text(_, row)

    def link(to_page: int) -> str:
        query = {"state": state, "locker": locker, "q": search, "page": str(to_page)}
        return "/deliveries?" + urlencode({k: v for k, v in query.items() if v})

    pages = max(1, -(-total // PAGE_ROWS))
    return {
        "title": _("Deliveries"),
        "rows": rows,
        "total": total,
        "state": state,
        "filters": filter_labels(_),
        "items": item_labels(_),
        "lockers": lockers,
        "locker": locker,
        "search": search,
        "page_no": page_no,
        "pages": pages,
        "newer": link(page_no - 1) if page_no > 1 else None,
        "older": link(page_no + 1) if page_no < pages else None,
    }


# --- prepare -----------------------------------------------------------------------------------------

_BLANK = {
    "locker": "", "item": "parcel", "size": "any", "low": "", "name": "", "email": "", "phone": "",
    "language": fleet_db.LANGUAGES[0], "case": "", "days": f"{fleet_db.PICKUP_DAYS:g}",
}  # fmt: skip


async def _form_context(request: web.Request, form: dict[str, str], error: str | None = None) -> dict[str, Any]:
    _ = translate(request)
    lockers = await run_db(request, fleet_db.locker_ids)
    return {
        "title": _("Prepare a delivery"),
        "form": form,
        "error": error,
        "lockers": lockers,
        "items": item_labels(_),
        "sizes": size_labels(_),
        "languages_for_residents": language_labels(_),
    }


@page("desk", "delivery_new.html")
async def new_delivery(request: web.Request) -> dict[str, Any]:
    return await _form_context(request, dict(_BLANK))


@requires("desk")
async def prepare(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    form = {key: str(posted.get(key, default)).strip() for key, default in _BLANK.items()}
    form["low"] = "1" if posted.get("low") else ""
    _ = translate(request)
    session = session_of(request)
    by = session.account.name if session else None
    try:
        days = float(form["days"].replace(",", "."))
    except ValueError:
        return await render(
            request, "delivery_new.html",
            await _form_context(request, form, _("The pickup window is a number of days.")), status=400,
        )  # fmt: skip
    resident = fleet_db.Resident(form["name"], form["email"], form["phone"], form["language"], form["case"])
    size = None if form["size"] == "any" else form["size"]

    def create(conn: db.Connection) -> tuple[fleet_db.IssuedDelivery, bool]:
        issued = fleet_db.prepare_delivery(
            conn, form["locker"], size, bool(form["low"]), days, form["item"],
            resident=resident, source="desk", created_by=by,
        )  # fmt: skip
        audit_action(
            request, conn, "delivery.prepare", str(issued.number),
            {"locker": issued.locker_id, "item": form["item"], "size": form["size"], "case": form["case"] or None},
        )  # fmt: skip
        return issued, messages.delivery_messages(conn, request, issued.number)["letter_only"]

    try:
        issued, letter_only = await run_db(request, create)
    except fleet_db.FleetError as exc:
        context = await _form_context(request, form, _("Not prepared: {reason}", reason=str(exc)))
        return await render(request, "delivery_new.html", context, status=400)
    # The resident's code is on this answer only: not stored for the desk, not in a redirect.
    letter = request.app.router.named_resources().get(LETTER_ROUTE)
    context = {
        "letter_url": None if letter is None else str(letter.url_for(number=str(issued.number))),
        "letter_only": letter_only,
        "title": _("Delivery {number} prepared", number=issued.number),
        "issued": issued,
        "item": item_labels(_).get(form["item"], form["item"]),
        "case": form["case"],
        "name": form["name"],
        "load_by": issued.expires - int(days * 86400),
    }
    return await render(request, "delivery_created.html", context)


# --- one delivery ------------------------------------------------------------------------------------


def _read_delivery(conn: db.Connection, number: int) -> dict[str, Any] | None:
    delivery = fleet_db.delivery_history(conn, number)
    if delivery is None:
        return None
    # who cancelled it at the desk (the audit trail); the service's history has the rest
    for step in delivery["history"]:
        if step["what"] == "cancelled" and step["by"] is None:
            row = conn.execute(
                "SELECT account_name FROM desk_audit WHERE action = 'delivery.cancel' AND target = ?"
                " ORDER BY id DESC LIMIT 1",
                (str(number),),
            ).fetchone()
            step["by"] = None if row is None else row[0]
    return delivery


async def _delivery_context(request: web.Request, number: int, error: str | None = None) -> dict[str, Any]:
    _ = translate(request)
    delivery = await run_db(request, lambda conn: _read_delivery(conn, number))
    if delivery is None:
        raise web.HTTPNotFound()
    delivery["status_text"] = status_text(_, delivery)
    shown = await run_db(request, lambda conn: messages.delivery_messages(conn, request, number))
    channels = messages.channel_labels(_)
    return {
        **shown,
        **messages.labels(_),
        "reach_text": ", ".join(channels.get(c, c) for c in shown["reach"]),
        "title": _("Delivery {number}", number=number),
        "d": delivery,
        "error": error,
        "steps": step_labels(_),
        "items": item_labels(_),
        "languages_for_residents": language_labels(_),
        "can_cancel": delivery["state"] == "issued" and delivery["door"] == fleet_db.ANY_DOOR,
        "kind": kind_text(_, int(delivery["kind"])),
    }


@page("desk", "delivery.html")
async def delivery_page(request: web.Request) -> dict[str, Any]:
    return await _delivery_context(request, int(request.match_info["number"]))


@requires("desk")
async def cancel(request: web.Request) -> web.StreamResponse:
    number = int(request.match_info["number"])
    _ = translate(request)

    def do(conn: db.Connection) -> str:
        if fleet_db.delivery_history(conn, number) is None:
            raise web.HTTPNotFound()
        locker_id = fleet_db.cancel_delivery(conn, number)
        audit_action(request, conn, "delivery.cancel", str(number), {"locker": locker_id})
        return locker_id

    try:
        await run_db(request, do)
    except fleet_db.FleetError as exc:
        context = await _delivery_context(request, number, _("Not cancelled: {reason}", reason=str(exc)))
        return await render(request, "delivery.html", context, status=400)
    flash(request, _("Delivery {number} cancelled.", number=number))
    raise redirect(request, "delivery", number=str(number))
