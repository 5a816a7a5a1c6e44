"""The manager's reports: deliveries per week (prepared, loaded, picked up, expired, cancelled, the
time from loading to pickup, the share expired) and each locker's door occupancy over a period,
on the page and as CSV. The figures are SQL aggregates (fleet_db.delivery_weeks, door_occupancy)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from lockertools.desk.base import add_nav, now, render, requires, run_db, translate
from lockertools.service import db, fleet_db

DEFAULT_WEEKS = 12
_DATE = "%Y-%m-%d"


def setup(app: web.Application) -> None:
    app.router.add_get("/reports", reports_page, name="reports")
    app.router.add_get("/reports/weeks.csv", weeks_csv, name="reports_weeks_csv")
    app.router.add_get("/reports/doors.csv", doors_csv, name="reports_doors_csv")
    add_nav(app, "reports", "Reports", "manager")


class PeriodError(ValueError):
    pass


def period(query: Any, at: float, _: Callable[..., str]) -> tuple[str, str, float, float, int]:
    """The report's period from the query's `from` and `to` (dates, both included; local time):
    (from, to, since, until, the local UTC offset in seconds). Default: the last 12 weeks to today."""
    today = datetime.fromtimestamp(at).date()
    first = query.get("from") or (today - timedelta(weeks=DEFAULT_WEEKS)).strftime(_DATE)
    last = query.get("to") or today.strftime(_DATE)
    try:
        start = datetime.strptime(first, _DATE).astimezone()
        end = (datetime.strptime(last, _DATE) + timedelta(days=1)).astimezone()
    except ValueError as exc:
        raise PeriodError(_("dates are YYYY-MM-DD")) from exc
    if end <= start:
        raise PeriodError(_("the period ends after it starts"))
    offset = start.utcoffset()
    return first, last, start.timestamp(), end.timestamp(), int(offset.total_seconds()) if offset else 0


def _hours(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 3600:.1f}"


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.1f}"


async def _figures(request: web.Request) -> dict[str, Any]:
    at = now(request)
    try:
        first, last, since, until, offset = period(request.query, at, translate(request))
    except PeriodError as exc:
        return {"error": str(exc), "first": request.query.get("from", ""), "last": request.query.get("to", "")}

    def read(conn: db.Connection) -> tuple[list[fleet_db.WeekRow], list[fleet_db.OccupancyRow]]:
        return fleet_db.delivery_weeks(conn, since, until, offset), fleet_db.door_occupancy(conn, since, until, at)

    weeks, doors = await run_db(request, read)
    span = min(until, at) - since
    return {
        "error": None, "first": first, "last": last, "span": span,
        "weeks": [
            {
                "week": time.strftime(_DATE, time.localtime(w.week)), "prepared": w.prepared, "loaded": w.loaded,
                "picked_up": w.picked_up, "expired": w.expired, "cancelled": w.cancelled,
                "share_expired": _percent(w.share_expired), "avg_hours": _hours(w.avg_pickup_s),
                "max_hours": _hours(w.max_pickup_s),
            }
            for w in weeks
        ],
        "doors": [
            {
                "locker": d.locker_id, "doors": d.doors, "occupied_hours": _hours(d.occupied_s),
                "occupancy": _percent(d.occupancy(span)), "full_now": d.full_now,
            }
            for d in doors
        ],
    }  # fmt: skip


@requires("manager")
async def reports_page(request: web.Request) -> web.StreamResponse:
    _ = translate(request)
    figures = await _figures(request)
    if figures["error"]:
        context = {"title": _("Reports"), "weeks": [], "doors": [], **figures}
        context["error"] = _("Not shown: {reason}", reason=figures["error"])
        return await render(request, "reports.html", context, status=400)
    return await render(request, "reports.html", {"title": _("Reports"), **figures})


WEEK_COLUMNS = ("week", "prepared", "loaded", "picked_up", "expired", "cancelled", "share_expired",
                "avg_hours", "max_hours")  # fmt: skip
DOOR_COLUMNS = ("locker", "doors", "occupied_hours", "occupancy", "full_now")


def _cell(value: Any) -> Any:
    # a text a spreadsheet would run as a formula is quoted
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv(request: web.Request, name: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@requires("manager")
async def weeks_csv(request: web.Request) -> web.StreamResponse:
    figures = await _figures(request)
    if figures["error"]:
        raise web.HTTPBadRequest(text=figures["error"])
    return _csv(request, f"deliveries-{figures['first']}-{figures['last']}", WEEK_COLUMNS, figures["weeks"])


@requires("manager")
async def doors_csv(request: web.Request) -> web.StreamResponse:
    figures = await _figures(request)
    if figures["error"]:
        raise web.HTTPBadRequest(text=figures["error"])
    return _csv(request, f"occupancy-{figures['first']}-{figures['last']}", DOOR_COLUMNS, figures["doors"])
