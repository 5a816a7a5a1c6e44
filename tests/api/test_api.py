"""The town's HTTP API (lockertools.api.app) on loopback, on SQLite and PostgreSQL: tokens and scopes,
deliveries created (once per Idempotency-Key), read and cancelled, validation errors naming their
field, text that looks like HTML or SQL kept as text, free doors per size. Every answer is checked
against the OpenAPI document the server serves (api_support.Contract)."""

from __future__ import annotations

import calendar
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import ApiServer
from click.testing import CliRunner

from lockertools import BOARDS_DIR
from lockertools.api import openapi, tokens
from lockertools.api.app import create_api_app
from lockertools.api.lockers import record_door_sizes
from lockertools.boards import doors
from lockertools.cli import main
from lockertools.service import db, fleet_db

LABELS = ["1", "2", "3", "4"]  # boards/esp32-4door.json: 1-2 S and low, 3 M, 4 L


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[db.Connection]:
    conn = db.connect(tmp_path / "fleet.db", create=True)
    fleet_db.add_locker(conn, "hall-1", secrets.token_bytes(32), LABELS)
    record_door_sizes(conn, "hall-1", doors(json.loads((BOARDS_DIR / "esp32-4door.json").read_text())))
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def api(tmp_path: Path, fleet: db.Connection) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path / "fleet.db")
    try:
        yield server
    finally:
        server.close()


def _token(conn: db.Connection, name: str, *scopes: str) -> str:
    return tokens.create_token(conn, name, scopes, created_by="admin").secret


NEW = {
    "locker": "hall-1",
    "case_number": "EL-2026-0042",
    "resident": {"name": "Ann Peeters", "email": "ann@example.org", "phone": "+32 470 12 34 56", "language": "fr"},
    "item": "document",
    "size": "M",
    "low": True,
}


def test_the_openapi_document_is_valid_and_served_without_a_token(api: ApiServer) -> None:
    answer = api.request("GET", "/openapi.json")
    assert answer.status == 200
    assert answer.json == openapi.document()  # Contract() ran openapi-spec-validator over the served one
    assert answer.json["openapi"] == "3.1.0"


def test_without_a_live_token_every_call_is_401(api: ApiServer, fleet: db.Connection) -> None:
    revoked = _token(fleet, "old", "deliveries")
    tokens.revoke_token(fleet, "old")
    calls = [("POST", "/deliveries", NEW), ("GET", "/deliveries/123456", None), ("GET", "/lockers", None),
             ("POST", "/deliveries/123456/cancel", None)]  # fmt: skip
    for method, path, body in calls:
        for token in (None, "lkr_" + "x" * 43, revoked, "not-a-token"):
            answer = api.request(method, path, body, token=token)
            assert answer.status == 401, (method, path, token)
            assert answer.headers.get_content_type() == "application/problem+json"
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            assert answer.json["status"] == 401
    assert fleet.execute("SELECT count(*) FROM codes").scalar() == 0


def test_a_token_without_the_scope_is_403(api: ApiServer, fleet: db.Connection) -> None:
    reader = _token(fleet, "dashboard", "read")
    writer = _token(fleet, "e-loket", "deliveries")
    answer = api.request("POST", "/deliveries", NEW, token=reader)
    assert answer.status == 403
    assert "deliveries" in answer.json["detail"]
    assert fleet.execute("SELECT count(*) FROM codes").scalar() == 0
    made = api.request("POST", "/deliveries", NEW, token=writer).json["number"]
    assert api.request("POST", f"/deliveries/{made}/cancel", token=reader).status == 403
    assert api.request("GET", f"/deliveries/{made}", token=reader).status == 200  # read is enough to read
    assert api.request("GET", "/lockers", token=reader).status == 200
    assert api.request("GET", f"/deliveries/{made}", token=writer).status == 200  # deliveries reads too


def test_a_delivery_created_read_and_cancelled(api: ApiServer, fleet: db.Connection) -> None:
    token = _token(fleet, "e-loket", "deliveries")
    before = time.time()
    answer = api.request("POST", "/deliveries", NEW, token=token)
    assert answer.status == 201, answer.text
    made = answer.json
    number = made["number"]
    assert answer.headers["Location"] == f"/api/v1/deliveries/{number}"
    assert made["state"] == "prepared" and made["door"] is None and made["loaded_at"] is None
    assert (made["locker"], made["case_number"], made["item"], made["size"], made["low"], made["language"]) == (
        "hall-1", "EL-2026-0042", "document", "M", True, "fr",
    )  # fmt: skip
    # The resident's code never leaves in an answer, nor the resident's contact.
    code = fleet.execute("SELECT code FROM held_codes WHERE code_id = ?", (number,)).scalar()
    assert code and code not in answer.text and "ann@example.org" not in answer.text
    row = fleet.execute("SELECT * FROM delivery_details WHERE code_id = ?", (number,)).fetchone()
    assert (row["source"], row["created_by"], row["email"], row["phone"]) == (
        "api", "e-loket", "ann@example.org", "+32470123456",
    )  # fmt: skip
    kind = fleet.execute("SELECT kind FROM codes WHERE id = ?", (number,)).scalar()
    assert kind == fleet_db.kind_byte(fleet_db.KIND_DELIVERY, "M", True)
    deadline = calendar.timegm(time.strptime(made["deadline"], "%Y-%m-%dT%H:%M:%SZ"))
    assert deadline >= before + (fleet_db.LOAD_DAYS + fleet_db.PICKUP_DAYS) * 86400 - 1
    assert api.request("GET", f"/deliveries/{number}", token=token).json == made
    cancelled = api.request("POST", f"/deliveries/{number}/cancel", token=token)
    assert cancelled.status == 200 and cancelled.json["state"] == "cancelled"
    assert fleet.execute("SELECT state FROM codes WHERE id = ?", (number,)).scalar() == "revoked"
    again = api.request("POST", f"/deliveries/{number}/cancel", token=token)
    assert again.status == 200 and again.json == cancelled.json
    missing = api.request("GET", "/deliveries/999999", token=token)
    assert missing.status == 404 and missing.headers.get_content_type() == "application/problem+json"
    assert api.request("GET", "/deliveries/abc", token=token).status == 404


def test_a_loaded_delivery_is_not_cancelled(api: ApiServer, fleet: db.Connection) -> None:
    token = _token(fleet, "e-loket", "deliveries")
    number = api.request("POST", "/deliveries", NEW, token=token).json["number"]
    with db.transaction(fleet):
        fleet.execute("UPDATE codes SET door = '3', loaded_at = ? WHERE id = ?", (time.time(), number))
    assert api.request("GET", f"/deliveries/{number}", token=token).json["state"] == "loaded"
    answer = api.request("POST", f"/deliveries/{number}/cancel", token=token)
    assert answer.status == 409 and "taken back" in answer.json["detail"]
    assert fleet.execute("SELECT state FROM codes WHERE id = ?", (number,)).scalar() == "issued"


def test_a_retried_post_with_the_same_idempotency_key_creates_one_delivery(
    api: ApiServer, fleet: db.Connection
) -> None:
    token = _token(fleet, "e-loket", "deliveries")
    other = _token(fleet, "appointments", "deliveries")
    key = {"Idempotency-Key": "case-EL-2026-0042-try"}
    first = api.request("POST", "/deliveries", NEW, token=token, headers=key)
    assert first.status == 201
    retried = api.request("POST", "/deliveries", NEW, token=token, headers=key)
    assert retried.status == 201 and retried.json == first.json
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert fleet.execute("SELECT count(*) FROM codes").scalar() == 1
    # The same key with another body: refused, nothing created.
    changed = api.request("POST", "/deliveries", NEW | {"item": "permit"}, token=token, headers=key)
    assert changed.status == 422 and changed.json["errors"][0]["field"] == "Idempotency-Key"
    assert fleet.execute("SELECT count(*) FROM codes").scalar() == 1
    # Keys are per token: another integration's same key is its own request.
    theirs = api.request("POST", "/deliveries", NEW, token=other, headers=key)
    assert theirs.status == 201 and theirs.json["number"] != first.json["number"]
    # A key is kept 24 h: after that, the same key makes a new delivery.
    with db.transaction(fleet):
        fleet.execute("UPDATE api_idempotency SET created_at = created_at - 86401")
    later = api.request("POST", "/deliveries", NEW, token=token, headers=key)
    assert later.status == 201 and later.json["number"] not in (first.json["number"], theirs.json["number"])
    assert fleet.execute("SELECT count(*) FROM codes").scalar() == 3
    # A request that failed validation does not hold on to its key.
    bad_key = {"Idempotency-Key": "second"}
    assert api.request("POST", "/deliveries", NEW | {"size": "XL"}, token=token, headers=bad_key).status == 422
    assert api.request("POST", "/deliveries", NEW, token=token, headers=bad_key).status == 201
    assert api.request("POST", "/deliveries", NEW, token=token, headers={"Idempotency-Key": "a b"}).status == 400
    # While the first request with a key is being answered (another process), a retry is told to wait.
    with db.transaction(fleet):
        fleet.execute("UPDATE api_idempotency SET status = NULL, response_json = NULL WHERE key = 'second'")
    busy = api.request("POST", "/deliveries", NEW, token=token, headers=bad_key)
    assert busy.status == 409 and "still being answered" in busy.json["detail"]
    assert fleet.execute("SELECT count(*) FROM codes").scalar() == 4


def test_validation_errors_name_each_field(api: ApiServer, fleet: db.Connection) -> None:
    token = _token(fleet, "e-loket", "deliveries")
    body = {
        "locker": "hall-9",
        "resident": {"email": "not-an-address", "phone": "12", "language": "de", "age": 3},
        "item": "piano",
        "size": "XL",
        "low": "yes",
        "pickup_days": 0,
        "colour": "red",
    }
    answer = api.request("POST", "/deliveries", body, token=token)
    assert answer.status == 422
    assert answer.json["type"].endswith("/validation")
    fields = {e["field"] for e in answer.json["errors"]}
    assert fields == {
        "colour", "resident.age", "resident.email", "resident.phone", "resident.language", "item", "size", "low",
        "pickup_days",
    }  # fmt: skip
    unknown = api.request("POST", "/deliveries", NEW | {"locker": "hall-9"}, token=token)
    assert unknown.status == 422 and unknown.json["errors"] == [
        {"field": "locker", "detail": "unknown locker 'hall-9' (registered: hall-1)"}
    ]
    assert api.request("POST", "/deliveries", {}, token=token).json["errors"][0]["field"] == "locker"
    assert api.request("POST", "/deliveries", raw=b"{not json", token=token,
                       headers={"Content-Type": "application/json"}).status == 400  # fmt: skip
    assert api.request("POST", "/deliveries", raw=b"locker=hall-1", token=token,
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).status == 415  # fmt: skip
    huge = {"locker": "hall-1", "case_number": "x" * 20000}
    assert api.request("POST", "/deliveries", huge, token=token).status == 413
    assert fleet.execute("SELECT count(*) FROM codes").scalar() == 0


def test_html_and_sql_in_text_fields_come_back_as_text(api: ApiServer, fleet: db.Connection) -> None:
    token = _token(fleet, "e-loket", "deliveries")
    case = "<script>alert('x')</script>'); DROP TABLE codes; --"
    name = '<b>Ann</b>" OR 1=1; --'
    answer = api.request("POST", "/deliveries", NEW | {"case_number": case, "resident": {"name": name}}, token=token)
    assert answer.status == 201 and answer.headers.get_content_type() == "application/json"
    assert answer.json["case_number"] == case
    number = answer.json["number"]
    assert api.request("GET", f"/deliveries/{number}", token=token).json["case_number"] == case
    row = fleet.execute("SELECT case_ref, resident_name FROM delivery_details WHERE code_id = ?", (number,)).fetchone()
    assert (row[0], row[1]) == (case, name)
    assert fleet.execute("SELECT count(*) FROM codes").scalar() == 1  # the table is there, with its row


def test_lockers_list_their_free_doors_per_size(api: ApiServer, fleet: db.Connection) -> None:
    token = _token(fleet, "dashboard", "read")
    fleet_db.add_locker(fleet, "annex", secrets.token_bytes(32), ["A", "B"])  # sizes never recorded
    answer = api.request("GET", "/lockers", token=token)
    assert answer.status == 200
    by_id = {x["id"]: x for x in answer.json["lockers"]}
    assert by_id["hall-1"]["free"] == {"S": 2, "M": 1, "L": 1} and by_id["hall-1"]["free_low"] == {
        "S": 2,
        "M": 0,
        "L": 0,
    }
    assert by_id["hall-1"]["doors"] == 4 and by_id["annex"]["free_unsized"] == 2
    # Door 1 holds an item, door 4 is out of service, door 3 holds a resident's code, door 2 is jammed.
    with db.transaction(fleet):
        fleet.execute("""UPDATE doors SET "full" = 1 WHERE locker_id = 'hall-1' AND label = '1'""")
        fleet.execute("UPDATE doors SET in_service = 0 WHERE locker_id = 'hall-1' AND label = '4'")
    fleet_db.issue_code(fleet, "hall-1", "3")
    assert api.request("GET", "/lockers", token=token).json["lockers"][1]["free"] == {"S": 1, "M": 0, "L": 0}
    with db.transaction(fleet):
        fleet.execute("UPDATE doors SET state = 'jammed' WHERE locker_id = 'hall-1' AND label = '2'")
    hall = api.request("GET", "/lockers", token=token).json["lockers"][1]
    assert hall["free"] == {"S": 0, "M": 0, "L": 0} and hall["free_low"] == {"S": 0, "M": 0, "L": 0}


def test_locker_add_records_the_boards_door_sizes(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(secrets.token_hex(32))
    path = tmp_path / "cli.db"
    board = BOARDS_DIR / "esp32-16door-mcp.json"
    result = CliRunner().invoke(main, ["locker", "add", "--db", str(path), "hall-2", "--board", str(board),
                                       "--key-file", str(key)])  # fmt: skip
    assert result.exit_code == 0, result.output
    conn = db.connect(path)
    try:
        rows = conn.execute("SELECT label, size, low FROM door_sizes WHERE locker_id = 'hall-2'").fetchall()
        want = {(d.label, d.size, int(d.low)) for d in doors(json.loads(board.read_text()))}
        assert {(r[0], r[1], r[2]) for r in rows} == want and len(want) == 16
    finally:
        conn.close()


def test_the_app_on_a_connection_its_host_keeps(tmp_path: Path, fleet: db.Connection) -> None:
    """The desk's way: the app uses the desk's connection and leaves it open at cleanup."""
    with pytest.raises(ValueError):
        create_api_app()
    own = db.connect(tmp_path / "fleet.db")
    try:
        server = ApiServer(None, connection=own)
        try:
            token = _token(fleet, "desk-test", "read")
            assert server.request("GET", "/lockers", token=token).json["lockers"][0]["id"] == "hall-1"
        finally:
            server.close()
        assert own.execute("SELECT count(*) FROM lockers").scalar() == 1  # still open
    finally:
        own.close()
