"""The reports: deliveries per week, the time from loading to pickup, the share expired and door
occupancy, on the page and as CSV, right on a known data set; SQL aggregates (fleet_db.delivery_weeks,
door_occupancy) on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator

import pytest
from desk_support import DeskClient, DeskServer
from pages_support import LOCKER, Locker, table_rows

from lockertools.service import db, fleet_db

ClientFor = Callable[[str | None], DeskClient]
H, D = 3600, 86400
W0 = fleet_db.MONDAY_S + 2970 * fleet_db.WEEK_S  # a Monday 00:00 UTC, before the desk's clock
NOW = W0 + 21 * D


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The report's dates are local: the known figures are worked out in UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _code(
    code_id: int, created: float, state: str, door: str = "*", kind: int = 3, loaded: float | None = None,
    used: float | None = None, revoked: float | None = None, back: float | None = None,
) -> tuple[object, ...]:  # fmt: skip
    return (code_id, LOCKER, door, kind, "0" * 64, int(NOW + 5 * D), state, created, "parcel", loaded, used, revoked,
            back)  # fmt: skip


KNOWN = [
    # the week before the period: loaded, picked up an hour into it (1 h of occupancy inside the period)
    _code(100001, W0 - D, "used", "1", loaded=W0 - D + H, used=W0 + H),
    # week 0: two picked up (3 h and 9 h after loading), one expired still inside, one cancelled
    _code(100002, W0 + H, "used", "1", loaded=W0 + 2 * H, used=W0 + 5 * H),
    _code(100003, W0 + D, "used", "2", loaded=W0 + D + H, used=W0 + D + 10 * H),
    _code(100004, W0 + 2 * D, "expired", "3", loaded=W0 + 2 * D + H),
    _code(100005, W0 + 3 * D, "revoked", revoked=W0 + 3 * D + H),
    # week 1: one expired and taken back, one still to load
    _code(100006, W0 + 7 * D + H, "taken_back", "4", loaded=W0 + 7 * D + 2 * H, back=W0 + 14 * D),
    _code(100007, W0 + 8 * D, "issued"),
    # not deliveries: a return code; a pickup code for door 2 (an item put in by hand: the door is full)
    _code(100008, W0 + 2 * H, "issued", kind=2),
    _code(100009, W0 + 2 * H, "issued", "2", kind=0),
]


@pytest.fixture
def known(desk_server: DeskServer) -> DeskServer:
    Locker(desk_server)
    Locker(desk_server, "hall-2")
    with desk_server.connect() as conn, db.transaction(conn):
        conn.executemany(
            "INSERT INTO codes(id, locker_id, door, kind, tag_hex, expires, state, created_at, item, loaded_at,"
            " used_at, revoked_at, taken_back_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            KNOWN,
        )
    desk_server.clock.now = NOW
    return desk_server


def test_the_weekly_figures_on_a_known_data_set(known: DeskServer) -> None:
    with known.connect() as conn:
        weeks = fleet_db.delivery_weeks(conn, W0, W0 + 14 * D)
    assert weeks == [
        fleet_db.WeekRow(W0, prepared=4, loaded=3, picked_up=2, expired=1, cancelled=1,
                         avg_pickup_s=6 * H, max_pickup_s=9 * H),
        fleet_db.WeekRow(W0 + 7 * D, prepared=2, loaded=1, picked_up=0, expired=1, cancelled=0,
                         avg_pickup_s=None, max_pickup_s=None),
    ]  # fmt: skip
    assert weeks[0].share_expired == pytest.approx(1 / 3) and weeks[1].share_expired == 1.0
    with known.connect() as conn:
        # weeks start on Monday 00:00 local time: an hour east of UTC the first one starts an hour earlier
        shifted = fleet_db.delivery_weeks(conn, W0 - D, W0 + 14 * D, utc_offset_s=H)
    assert [(w.week, w.prepared) for w in shifted] == [(W0 - 7 * D - H, 1), (W0 - H, 4), (W0 + 7 * D - H, 2)]


def test_door_occupancy_on_a_known_data_set(known: DeskServer) -> None:
    with known.connect() as conn:
        rows = fleet_db.door_occupancy(conn, W0, W0 + 14 * D, NOW)
    occupied = 1 * H + 3 * H + 9 * H + (12 * D - H) + (7 * D - 2 * H)  # each clipped to the period
    assert rows == [fleet_db.OccupancyRow(LOCKER, 4, occupied, 2), fleet_db.OccupancyRow("hall-2", 4, 0.0, 0)]
    assert rows[0].occupancy(14 * D) == pytest.approx(occupied / (4 * 14 * D))
    with known.connect() as conn:  # a period still running counts up to now
        running = fleet_db.door_occupancy(conn, W0 + 13 * D, W0 + 30 * D, W0 + 14 * D)
    assert running[0].occupied_s == 2 * D  # doors 3 and 4, a day each


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_page_and_its_csv_exports(known: DeskServer, desk_client: ClientFor) -> None:
    manager = desk_client("manager")
    manager.get("/language/en?next=/reports")
    first, last = time.strftime("%Y-%m-%d", time.gmtime(W0)), time.strftime("%Y-%m-%d", time.gmtime(W0 + 13 * D))
    query = f"?from={first}&to={last}"
    page = manager.get("/reports" + query)
    assert page.status == 200
    assert table_rows(page.text, "Deliveries per week") == [
        [first, "4", "3", "2", "1", "1", "33.3", "6.0", "9.0"],
        [time.strftime("%Y-%m-%d", time.gmtime(W0 + 7 * D)), "2", "1", "0", "1", "0", "100.0", "", ""],
    ]
    assert table_rows(page.text, "<h2>Door occupancy") == [
        [LOCKER, "4", "466.0", "34.7", "2"],
        ["hall-2", "4", "0.0", "0.0", "0"],
    ]
    assert f'href="/reports/weeks.csv{query.replace("&", "&amp;")}"' in page.text
    weeks = manager.get("/reports/weeks.csv" + query)
    assert weeks.status == 200 and weeks.headers["Content-Type"].startswith("text/csv")
    assert weeks.headers["Content-Disposition"] == f'attachment; filename="deliveries-{first}-{last}.csv"'
    assert _csv(weeks.text) == [
        {"week": first, "prepared": "4", "loaded": "3", "picked_up": "2", "expired": "1", "cancelled": "1",
         "share_expired": "33.3", "avg_hours": "6.0", "max_hours": "9.0"},
        {"week": time.strftime("%Y-%m-%d", time.gmtime(W0 + 7 * D)), "prepared": "2", "loaded": "1",
         "picked_up": "0", "expired": "1", "cancelled": "0", "share_expired": "100.0", "avg_hours": "",
         "max_hours": ""},
    ]  # fmt: skip
    doors = _csv(manager.get("/reports/doors.csv" + query).text)
    assert doors == [
        {"locker": LOCKER, "doors": "4", "occupied_hours": "466.0", "occupancy": "34.7", "full_now": "2"},
        {"locker": "hall-2", "doors": "4", "occupied_hours": "0.0", "occupancy": "0.0", "full_now": "0"},
    ]


def test_a_bad_period_is_refused_with_what_was_typed(known: DeskServer, desk_client: ClientFor) -> None:
    manager = desk_client("manager")
    manager.get("/language/en?next=/reports")
    for query, error in (("?from=yesterday&to=2027-01-01", "dates are YYYY-MM-DD"),
                         ("?from=2027-01-10&to=2027-01-01", "the period ends after it starts")):  # fmt: skip
        page = manager.get("/reports" + query)
        assert page.status == 400 and error in page.text, query
        assert manager.get("/reports/weeks.csv" + query).status == 400
    assert 'value="yesterday"' in manager.get("/reports?from=yesterday&to=2027-01-01").text
    assert manager.get("/reports").status == 200  # no dates: the last 12 weeks


def test_a_spreadsheet_formula_in_a_locker_s_name_is_quoted(desk_server: DeskServer, desk_client: ClientFor) -> None:
    Locker(desk_server, "=HYPERLINK(1)")
    rows = _csv(desk_client("manager").get("/reports/doors.csv").text)
    assert [r["locker"] for r in rows] == ["'=HYPERLINK(1)"]
