"""The manager's pages (staff PINs, doors out of service and back, remote opening with a reason)
and the codes for residents: who may use them, CSRF on every form, what each records (the request
queued for the service, the audit trail), the code or PIN shown on its own answer only; on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from desk_support import DeskClient, DeskServer
from pages_support import LOCKER, NASTY, NASTY_SHOWN, Locker, table_rows

from lockertools.desk import audit
from lockertools.service import db, fleet_db

ClientFor = Callable[[str | None], DeskClient]

MANAGER_PAGES = ["/staff", "/doors", f"/doors/{LOCKER}", "/reports", "/reports/weeks.csv", "/reports/doors.csv"]
DESK_PAGES = ["/deliveries", "/deliveries/new", "/codes"]


@pytest.fixture
def locker(desk_server: DeskServer) -> Locker:
    return Locker(desk_server)


def _forms(server: DeskServer) -> dict[str, dict[str, str]]:
    """Every form of these pages, filled in as it would be sent."""
    with server.connect() as conn:
        number = fleet_db.prepare_delivery(conn, LOCKER).number
        staff_id, _ = fleet_db.add_staff(conn, "Piet")
    return {
        "/deliveries/new": {"locker": LOCKER, "item": "parcel", "size": "any", "language": "nl", "days": "5"},
        f"/deliveries/{number}/cancel": {},
        "/codes/return": {"locker": LOCKER, "item": "borrowed material", "size": "M", "days": "14"},
        "/codes/pickup": {"locker": LOCKER, "door": "2", "days": "5"},
        "/staff": {"name": "Marie"},
        "/staff/pin": {"staff": str(staff_id), "locker": LOCKER},
        f"/doors/{LOCKER}/service": {"door": "3", "on": "0"},
        f"/doors/{LOCKER}/open": {"door": "3", "reason": "resident on the phone"},
    }


def _state(server: DeskServer) -> tuple[int, ...]:
    """What any of the forms would change: codes, staff, requests, audit rows (not logins)."""
    with server.connect() as conn:
        counts = [
            conn.execute(sql).fetchone()[0]
            for sql in (
                "SELECT count(*) FROM codes",
                "SELECT count(*) FROM codes WHERE state = 'revoked'",
                "SELECT count(*) FROM staff",
                "SELECT count(*) FROM requests",
                "SELECT count(*) FROM desk_audit WHERE action NOT LIKE 'log%'",
            )
        ]
    return tuple(counts)


def test_desk_accounts_get_403_on_the_manager_s_pages_and_forms(
    locker: Locker, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    forms = _forms(desk_server)
    desk, manager = desk_client("desk"), desk_client("manager")
    for path in MANAGER_PAGES:
        assert desk.get(path).status == 403, path
        assert manager.get(path).status == 200, path
    for path in DESK_PAGES:
        assert desk.get(path).status == 200, path
    before = _state(desk_server)
    for path in ("/staff", "/staff/pin", f"/doors/{LOCKER}/service", f"/doors/{LOCKER}/open"):
        reply = desk.post(path, forms[path])
        assert reply.status == 403, path
        assert 'id="staff-pin"' not in reply.text
    assert _state(desk_server) == before
    nav = desk.get("/deliveries").text
    assert 'href="/deliveries"' in nav and 'href="/codes"' in nav and 'href="/staff"' not in nav
    assert 'href="/reports"' in manager.get("/deliveries").text


def test_no_session_gets_the_login_page(locker: Locker, desk_client: ClientFor, desk_server: DeskServer) -> None:
    anonymous = desk_client(None)
    for path in MANAGER_PAGES + DESK_PAGES:
        reply = anonymous.get(path)
        assert reply.status == 303 and reply.location is not None and reply.location.startswith("/login"), path
    forms = _forms(desk_server)
    before = _state(desk_server)
    for path, fields in forms.items():
        assert anonymous.post(path, fields, csrf=None).status in (303, 403), path
    assert _state(desk_server) == before


def test_every_form_needs_its_csrf_token(locker: Locker, desk_client: ClientFor, desk_server: DeskServer) -> None:
    forms = _forms(desk_server)
    manager = desk_client("manager")
    before = _state(desk_server)
    for path, fields in forms.items():
        assert manager.post(path, fields, csrf=None).status == 403, path
        assert manager.post(path, fields, csrf="not-the-token").status == 403, path
    assert _state(desk_server) == before
    # with the token, each form does its work (and writes its audit row)
    for path, fields in forms.items():
        assert manager.post(path, fields).status in (200, 303), path
    after = _state(desk_server)
    assert after[4] == before[4] + len(forms)


def test_today_s_pin_is_for_one_locker_and_shown_once(
    locker: Locker, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    Locker(desk_server, "hall-2")
    manager = desk_client("manager")
    manager.get("/language/en?next=/staff")
    assert manager.post("/staff", {"name": "Piet Janssens"}).status == 303
    page = manager.get("/staff")
    assert "Piet Janssens added." in page.text
    staff_id = re.search(r'name="staff" value="(\d+)"', page.text)
    assert staff_id
    reply = manager.post("/staff/pin", {"staff": staff_id.group(1), "locker": LOCKER})
    assert reply.status == 200
    pin = re.search(r'id="staff-pin">(\d+)<', reply.text)
    assert pin
    with desk_server.connect() as conn:
        rows = conn.execute(
            "SELECT locker_id, door, tag_hex, expires FROM codes WHERE staff_id = ? AND state = 'issued'",
            (int(staff_id.group(1)),),
        ).fetchall()
        trail = audit.trail(conn)
    assert [(r["locker_id"], r["door"]) for r in rows] == [(LOCKER, "*")]  # valid at that locker only
    assert rows[0]["tag_hex"] == fleet_db.tag_hex(bytes(32), "*", pin.group(1))
    assert rows[0]["expires"] <= desk_server.clock() + fleet_db.DAY_PIN_MAX_S
    issued = next(r for r in trail if r["action"] == "staff.pin")
    assert issued["target"] == "Piet Janssens" and issued["detail"]["locker"] == LOCKER
    assert pin.group(1) not in json.dumps(trail)
    listing = manager.get("/staff")
    assert pin.group(1) not in listing.text
    assert table_rows(listing.text)[0][1].startswith(f"{LOCKER} (until ")
    # a second PIN for the same member and locker replaces the first
    again = re.search(
        r'id="staff-pin">(\d+)<', manager.post("/staff/pin", {"staff": staff_id.group(1), "locker": LOCKER}).text
    )
    assert again and again.group(1) != pin.group(1)
    refused = manager.post("/staff/pin", {"staff": staff_id.group(1), "locker": "nowhere"})
    assert refused.status == 400 and "unknown locker" in refused.text
    assert manager.post("/staff", {"name": ""}).status == 400


def test_doors_out_of_service_and_back_and_opened_with_a_reason(
    locker: Locker, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    manager = desk_client("manager")
    manager.get("/language/en?next=/doors")
    assert f'href="/doors/{LOCKER}"' in manager.get("/doors").text
    assert manager.post(f"/doors/{LOCKER}/service", {"door": "3", "on": "maybe"}).status == 400
    assert manager.post(f"/doors/{LOCKER}/service", {"door": "3", "on": "0"}).status == 303
    no_reason = manager.post(f"/doors/{LOCKER}/open", {"door": "2", "reason": "   "})
    assert no_reason.status == 400 and "needs a reason" in no_reason.text
    too_long = manager.post(f"/doors/{LOCKER}/open", {"door": "2", "reason": "x" * 65})
    assert too_long.status == 400 and 'value="' + "x" * 65 + '"' in too_long.text  # kept as typed
    assert manager.post(f"/doors/{LOCKER}/open", {"door": "9", "reason": "test"}).status == 400  # no such door
    assert manager.post(f"/doors/{LOCKER}/open", {"door": "2", "reason": "resident  on the\tphone"}).status == 303
    with desk_server.connect() as conn:
        sent = [(r["op"], json.loads(r["args_json"]), r["by"]) for r in fleet_db.request_table(conn, LOCKER)]
        trail = [r for r in audit.trail(conn) if r["action"].startswith("door.")]
    assert sent == [
        ("door.service", {"door": "3", "on": False, "by": "manager1"}, "manager1"),
        ("door.open", {"door": "2", "r": "resident on the phone", "by": "manager1"}, "manager1"),
    ]
    assert [(r["action"], r["target"], r["account_name"]) for r in reversed(trail)] == [
        ("door.service", f"{LOCKER}/3", "manager1"),
        ("door.open", f"{LOCKER}/2", "manager1"),
    ]
    assert trail[0]["detail"]["reason"] == "resident on the phone"
    page = manager.get(f"/doors/{LOCKER}")
    assert [r[2:5] for r in table_rows(page.text, "Commands sent")] == [["door.open", "2", "queued"],
                                                                        ["door.service", "3", "queued"]]  # fmt: skip
    # the locker reports door 3 out of service: the page offers to put it back
    locker.event("door_service", "3", on=False)
    row3 = next(r for r in table_rows(manager.get(f"/doors/{LOCKER}").text) if r[0] == "3")
    assert "Out of service" in row3[2] and "Back in service" in row3[2]
    assert manager.get("/doors/nowhere").status == 404


def test_return_and_pickup_codes_are_shown_once(
    locker: Locker, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    desk = desk_client("desk")
    reply = desk.post("/codes/return", {"locker": LOCKER, "item": "borrowed material", "size": "M", "low": "1",
                                        "days": "14", "recipient": NASTY})  # fmt: skip
    assert reply.status == 200 and "<script>alert" not in reply.text and NASTY_SHOWN in reply.text
    code = re.search(r'id="resident-code">(\d+)<', reply.text)
    assert code
    pickup = desk.post("/codes/pickup", {"locker": LOCKER, "door": "2", "days": "5"})
    pickup_code = re.search(r'id="resident-code">(\d+)<', pickup.text)
    assert pickup.status == 200 and pickup_code
    with desk_server.connect() as conn:
        rows = {r["door"]: r for r in conn.execute("SELECT door, kind, tag_hex, recipient FROM codes").fetchall()}
        trail = audit.trail(conn)
    assert fleet_db.describe_kind(rows["*"]["kind"]) == "return M low" and rows["*"]["recipient"] == NASTY
    assert rows["*"]["tag_hex"] == fleet_db.tag_hex(bytes(32), "*", code.group(1))
    assert rows["2"]["tag_hex"] == fleet_db.tag_hex(bytes(32), "2", pickup_code.group(1))
    assert [r["action"] for r in trail[:2]] == ["code.pickup", "code.return"]
    assert code.group(1) not in json.dumps(trail) and pickup_code.group(1) not in json.dumps(trail)
    assert code.group(1) not in desk.get("/codes").text
    for bad in ({"door": "9", "days": "5"}, {"door": "2", "days": "0"}, {"door": "2", "days": "x"}):
        refused = desk.post("/codes/pickup", {"locker": LOCKER} | bad)
        assert refused.status == 400 and 'id="resident-code"' not in refused.text, bad
    with desk_server.connect() as conn, db.transaction(conn):
        assert conn.execute("SELECT count(*) FROM codes").fetchone()[0] == 2
