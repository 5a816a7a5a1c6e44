"""The lockers overview, a locker's wall, and its live door states (server-sent events fed by the
service's commits: PostgreSQL's NOTIFY, SQLite's data_version)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from desk_support import DeskClient, DeskServer, stream_events

from lockertools import BOARDS_DIR
from lockertools.boards import door_sizes
from lockertools.desk import live
from lockertools.service import db, fleet_db, ingest
from tests.support.mosquitto import wait_until

ClientFor = Callable[[str | None], DeskClient]
LOCKER = "hall-1"


class _Locker:
    """A registered locker (esp32-4door: doors 1-2 S and low, 3 M, 4 L) and the service's side of it."""

    def __init__(self, server: DeskServer) -> None:
        self.server = server
        self.seq = 0
        board = json.loads((BOARDS_DIR / "esp32-4door.json").read_text())
        with server.connect() as conn:
            fleet_db.add_locker(conn, LOCKER, bytes(32), ["1", "2", "3", "4"], door_sizes(board))
            with db.transaction(conn):
                ingest.apply_status(
                    conn, LOCKER, {"online": True, "mode": "normal", "rev": 0, "snap": False}, time.time()
                )

    def event(self, kind: str, door: str, **fields: Any) -> None:
        """What the service does with a locker's event: one transaction, committed."""
        self.seq += 1
        msg = {"seq": self.seq, "ev": {"t": int(time.time()), "k": kind, "d": door, **fields}}
        with self.server.connect() as conn, db.transaction(conn):
            ingest.apply_event(conn, LOCKER, msg, time.time())


@pytest.fixture
def locker(desk_server: DeskServer) -> _Locker:
    return _Locker(desk_server)


def test_the_overview_counts_doors_per_size_full_out_of_service_and_in_alarm(
    locker: _Locker, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    with desk_server.connect() as conn:
        delivery = fleet_db.prepare_delivery(conn, LOCKER, "L", item="document")
    locker.event("loaded", "4", id=delivery.number)  # door 4: full
    locker.event("jammed", "2")  # door 2: in alarm
    locker.event("door_service", "3", on=False)  # door 3: out of service
    page = desk_client("desk").get("/lockers")
    assert page.status == 200
    row = page.text.split('href="/lockers/hall-1"')[1].split("</tr>")[0]
    cells = [c.split(">", 1)[1].strip() for c in row.split("<td")[1:]]
    assert cells[0].startswith("ja")  # online (Dutch, the default)
    assert re.findall(r"<li>(\w+): (\d+)</li>", cells[2]) == [("S", "1"), ("M", "0"), ("L", "0")]
    assert cells[3].startswith("1 / 4")
    assert cells[4].startswith("1")
    assert ">1<" in cells[5]


def test_the_wall_shows_what_is_in_each_door(locker: _Locker, desk_client: ClientFor, desk_server: DeskServer) -> None:
    with desk_server.connect() as conn:
        delivery = fleet_db.prepare_delivery(conn, LOCKER, "L", item="document")
    locker.event("loaded", "4", id=delivery.number)
    locker.event("left_open", "1")
    client = desk_client("desk")
    client.get("/language/en?next=/lockers")
    page = client.get("/lockers/hall-1")
    assert page.status == 200
    assert "<title>Wall of locker hall-1 — Staff desk</title>" in page.text
    door4 = page.text.split('<tr data-door="4">')[1].split("</tr>")[0]
    assert "document" in door4 and f"<td>{delivery.number}</td>" in door4
    assert time.strftime("%Y-%m-%d", time.localtime(time.time())) in door4  # loaded today
    door1 = page.text.split('<tr data-door="1">')[1].split("</tr>")[0]
    assert "door left open" in door1 and "♿" in door1
    assert desk_client("desk").get("/lockers/nowhere").status == 404


def _collect(server: DeskServer, client: DeskClient, path: str) -> tuple[list[tuple[str, Any]], threading.Thread]:
    got: list[tuple[str, Any]] = []

    def read() -> None:
        for event, data in stream_events(server, client, path):
            got.append((event, json.loads(data)))
            if event == "end":
                return

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return got, thread


def _doors_seen(got: list[tuple[str, Any]]) -> Iterator[dict[str, Any]]:
    for event, data in got:
        if event == "door":
            yield data


def test_a_door_event_reaches_the_wall_live(locker: _Locker, desk_client: ClientFor, desk_server: DeskServer) -> None:
    client = desk_client("desk")
    got, thread = _collect(desk_server, client, "/lockers/hall-1/live")
    wait_until(lambda: any(e == "doors" for e, _ in got), 30.0, "the stream's first message: every door")
    first = next(d for e, d in got if e == "doors")
    assert sorted(d["d"] for d in first) == ["1", "2", "3", "4"]
    locker.event("opened", "3")
    wait_until(lambda: any(d["d"] == "3" and d["state"] == "open" for d in _doors_seen(got)), 30.0, "door 3 open")
    locker.event("forced", "2")
    wait_until(lambda: any(d["d"] == "2" and d["alarm"] == "forced" for d in _doors_seen(got)), 30.0, "door 2 forced")
    assert all(d["d"] in ("2", "3") for d in _doors_seen(got))  # only the doors that changed
    desk_server.stop()  # the stream ends with the desk
    thread.join(30)
    assert got[-1][0] == "end"


def test_the_stream_ends_with_its_session(
    locker: _Locker, desk_client: ClientFor, desk_server: DeskServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.05)
    client = desk_client("desk")
    got, thread = _collect(desk_server, client, "/lockers/hall-1/live")
    wait_until(lambda: any(e == "doors" for e, _ in got), 30.0, "the stream's first message")
    assert client.post("/logout").status == 303
    thread.join(30)
    assert got[-1] == ("end", {"reason": "session"})


def test_the_stream_needs_a_session(locker: _Locker, desk_client: ClientFor) -> None:
    reply = desk_client(None).get("/lockers/hall-1/live")
    assert reply.status == 303 and reply.location is not None and reply.location.startswith("/login")


def test_the_wall_shows_the_towns_case_number(locker: _Locker, desk_client: ClientFor, desk_server: DeskServer) -> None:
    from lockertools.desk import fleetview
    from lockertools.service import schema

    if fleetview.CASE_TABLE not in schema.metadata.tables:
        pytest.skip("this schema has no deliveries' details (their case numbers) yet")
    with desk_server.connect() as conn:
        delivery = fleet_db.prepare_delivery(conn, LOCKER, "L", item="document")
        with db.transaction(conn):
            conn.execute(
                f"INSERT INTO {fleetview.CASE_TABLE}(code_id, {fleetview.CASE_COLUMN}) VALUES (?, ?)"
                " ON CONFLICT (code_id) DO UPDATE SET case_ref = excluded.case_ref",
                (delivery.number, "<i>EL-2026/0042</i>"),
            )
    locker.event("loaded", "4", id=delivery.number)
    page = desk_client("desk").get("/lockers/hall-1").text
    door4 = page.split('<tr data-door="4">')[1].split("</tr>")[0]
    assert "<td>&lt;i&gt;EL-2026/0042&lt;/i&gt;</td>" in door4
