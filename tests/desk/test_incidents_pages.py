"""The incidents pages: the list (filters, newest first, counts per state), an incident's page (its
history, take it, a note, resolve with a required note; why an automatic resolution happened), each
action in the audit trail, roles and CSRF, and new incidents arriving live on an open list (server-
sent events). On SQLite and PostgreSQL."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from desk_support import PASSWORDS, DeskClient, DeskServer, stream_events

from lockertools.desk import audit, i18n
from lockertools.desk.pages import incidents as pages
from lockertools.service import db, fleet_db, incidents, ingest
from tests.support.mosquitto import wait_until
from tests.web.websim_support import chromium_page, needs_browser

ClientFor = Callable[[str | None], DeskClient]


class _Fleet:
    """Two registered lockers and the service's side of their events."""

    def __init__(self, server: DeskServer) -> None:
        self.server = server
        self.seq: dict[str, int] = {}
        with server.connect() as conn:
            for lid in ("hall-1", "hall-2"):
                fleet_db.add_locker(conn, lid, bytes(32), ["1", "2", "3", "4"])
                self.seq[lid] = 0

    def event(self, locker: str, kind: str, door: str, **fields: Any) -> None:
        """What the service does with a locker's event: one transaction, committed."""
        self.seq[locker] += 1
        msg = {"seq": self.seq[locker], "ev": {"t": int(time.time()), "k": kind, "d": door, **fields}}
        with self.server.connect() as conn, db.transaction(conn):
            ingest.apply_event(conn, locker, msg, time.time())

    def only(self, **filters: Any) -> incidents.Incident:
        with self.server.connect() as conn:
            (found,) = incidents.list_incidents(conn, **filters)
        return found

    def get(self, incident_id: int) -> incidents.IncidentDetail:
        with self.server.connect() as conn:
            return incidents.get(conn, incident_id)


@pytest.fixture
def fleet(desk_server: DeskServer) -> _Fleet:
    return _Fleet(desk_server)


def _rows(text: str) -> list[str]:
    """The list's rows: each incident's id, in the order shown."""
    return re.findall(r'<tr data-incident="(\d+)"', text)


def _count(text: str, state: str) -> int:
    found = re.search(rf'data-count="{state}">(\d+)<', text)
    assert found, text
    return int(found.group(1))


def _audit(server: DeskServer) -> list[dict[str, Any]]:
    with server.connect() as conn:
        return [r for r in reversed(audit.trail(conn)) if r["action"].startswith("incident.")]


def test_the_list_filters_by_state_locker_and_cause_newest_first_with_counts(
    fleet: _Fleet, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    fleet.event("hall-1", "jammed", "1")
    desk_server.clock.advance(1)
    fleet.event("hall-2", "forced", "2")
    fleet.event("hall-1", "left_open", "3")
    fleet.event("hall-1", "closed", "3")  # resolves the left_open by itself
    jammed, forced = fleet.only(cause="jammed"), fleet.only(cause="forced")
    left_open = fleet.only(cause="left_open")
    client = desk_client("desk")
    with desk_server.connect() as conn:
        incidents.take(conn, forced.id, "manager1", time.time())

    page = client.get("/incidents")  # unresolved ones by default, newest first
    assert page.status == 200
    assert _rows(page.text) == [str(forced.id), str(jammed.id)]
    assert (_count(page.text, "open"), _count(page.text, "new")) == (2, 1)
    assert (_count(page.text, "in_progress"), _count(page.text, "resolved")) == (1, 1)
    assert _rows(client.get("/incidents?state=resolved").text) == [str(left_open.id)]
    assert _rows(client.get("/incidents?state=in_progress").text) == [str(forced.id)]
    assert _rows(client.get("/incidents?state=all").text) == [str(left_open.id), str(forced.id), str(jammed.id)]
    assert _rows(client.get("/incidents?state=all&locker=hall-1").text) == [str(left_open.id), str(jammed.id)]
    assert _rows(client.get("/incidents?state=all&cause=forced").text) == [str(forced.id)]
    assert _rows(client.get("/incidents?state=new&locker=hall-2").text) == []
    assert "Geen incidenten." in client.get("/incidents?state=new&locker=hall-2").text
    # every page's navigation says how many are unresolved
    nav = client.get("/lockers").text.split('href="/incidents"')[1].split("</a>")[0]
    assert '<span class="count">2</span>' in nav
    # an unknown filter value is dropped, not an error
    assert client.get("/incidents?state=bogus&cause=bogus").status == 200


def test_every_role_from_desk_sees_them_and_no_session_gets_the_login_page(
    fleet: _Fleet, desk_client: ClientFor
) -> None:
    fleet.event("hall-1", "jammed", "1")
    found = fleet.only()
    for role in ("desk", "manager", "admin"):
        client = desk_client(role)
        assert 'href="/incidents"' in client.get("/lockers").text  # in the navigation
        assert client.get(f"/incidents/{found.id}").status == 200
    anonymous = desk_client(None)
    for path in ("/incidents", f"/incidents/{found.id}", "/incidents/live"):
        reply = anonymous.get(path)
        assert reply.status == 303 and reply.location is not None and reply.location.startswith("/login"), path
    reply = anonymous.post(f"/incidents/{found.id}/take", {}, csrf=None)
    assert reply.status in (303, 403)
    assert fleet.get(found.id).incident.state == "new"
    assert desk_client("desk").get("/incidents/999999").status == 404


def test_take_note_and_resolve_are_kept_in_the_history_and_the_audit_trail(
    fleet: _Fleet, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    fleet.event("hall-1", "jammed", "2")
    found = fleet.only()
    client = desk_client("desk")
    client.get("/language/en?next=/incidents")
    base = f"/incidents/{found.id}"
    assert "Take it" in client.get(base).text

    reply = client.post(f"{base}/take", {})
    assert (reply.status, reply.location) == (303, base)
    page = client.get(base)
    assert "You took incident" in page.text and "Take it" not in page.text
    taken = fleet.get(found.id).incident
    assert (taken.state, taken.handled_by) == ("in_progress", "desk1")

    assert client.post(f"{base}/note", {"note": "latch oiled, watching it"}).status == 303
    assert client.post(f"{base}/resolve", {"note": "replaced the solenoid"}).status == 303
    detail = fleet.get(found.id)
    assert (detail.incident.state, detail.incident.resolved_by) == ("resolved", "desk1")
    assert detail.incident.resolution == "replaced the solenoid"
    assert [(e.action, e.by, e.note) for e in detail.log] == [
        ("opened", "auto", None),
        ("taken", "desk1", None),
        ("note", "desk1", "latch oiled, watching it"),
        ("resolved", "desk1", "replaced the solenoid"),
    ]
    page = client.get(base)
    history = page.text.split('id="history"')[1]
    assert "latch oiled, watching it" in history and "replaced the solenoid" in history
    assert "by desk1: replaced the solenoid" in page.text
    assert 'action="/incidents/' not in page.text  # a resolved incident has no forms left

    rows = _audit(desk_server)
    assert [(r["action"], r["account_name"], r["role"], r["target"]) for r in rows] == [
        ("incident.take", "desk1", "desk", str(found.id)),
        ("incident.note", "desk1", "desk", str(found.id)),
        ("incident.resolve", "desk1", "desk", str(found.id)),
    ]
    assert rows[-1]["detail"] == {"locker": "hall-1", "cause": "jammed", "state": "resolved", "subject": "2"}
    assert all(r["address"] == "127.0.0.1" for r in rows)


def test_a_post_without_the_session_token_is_refused_and_changes_nothing(
    fleet: _Fleet, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    fleet.event("hall-1", "jammed", "1")
    found = fleet.only()
    client = desk_client("desk")
    for action, fields in (("take", {}), ("note", {"note": "x"}), ("resolve", {"note": "done"})):
        assert client.post(f"/incidents/{found.id}/{action}", fields, csrf=None).status == 403
        assert client.post(f"/incidents/{found.id}/{action}", fields, csrf="not-the-token").status == 403
    detail = fleet.get(found.id)
    assert detail.incident.state == "new" and len(detail.log) == 1
    assert _audit(desk_server) == []


def test_resolving_without_a_note_is_refused_and_the_typed_text_comes_back(
    fleet: _Fleet, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    fleet.event("hall-1", "jammed", "1")
    found = fleet.only()
    client = desk_client("desk")
    client.get("/language/en?next=/incidents")
    refused = client.post(f"/incidents/{found.id}/resolve", {"note": "   "})
    assert refused.status == 400
    assert "A note is required: say what was done." in refused.text
    too_long = "checked the door " * 70  # over the 1000 characters a note may have
    refused = client.post(f"/incidents/{found.id}/resolve", {"note": too_long})
    assert refused.status == 400 and "The note is too long" in refused.text
    typed = refused.text.split('id="resolve-note"')[1].split("</textarea>")[0]
    assert typed.split(">", 1)[1] == too_long  # nothing typed is lost
    assert client.post(f"/incidents/{found.id}/note", {"note": ""}).status == 400
    detail = fleet.get(found.id)
    assert detail.incident.state == "new" and len(detail.log) == 1
    assert _audit(desk_server) == []


def test_html_in_a_note_comes_back_as_text(fleet: _Fleet, desk_client: ClientFor) -> None:
    fleet.event("hall-1", "jammed", "1")
    found = fleet.only()
    client = desk_client("desk")
    note = '<script>alert(1)</script><b onclick="x()">bold</b> & {field}'
    assert client.post(f"/incidents/{found.id}/note", {"note": note}).status == 303
    page = client.get(f"/incidents/{found.id}")
    assert "<script>alert(1)</script>" not in page.text and "<b onclick" not in page.text
    cells = page.text.split('id="history"')[1].split("<td>")
    assert html.unescape(cells[-1].split("</td>")[0]) == note  # shown as the text typed
    assert fleet.get(found.id).incident.note == note


def test_an_incident_resolved_by_itself_says_why(fleet: _Fleet, desk_client: ClientFor) -> None:
    fleet.event("hall-1", "jammed", "1")
    fleet.event("hall-1", "opened", "1")
    found = fleet.only()
    assert (found.state, found.resolved_by) == ("resolved", incidents.AUTO)
    client = desk_client("desk")
    client.get("/language/en?next=/incidents")
    page = client.get(f"/incidents/{found.id}")
    assert "by itself: the door opened" in page.text
    client.get("/language/nl?next=/incidents")
    assert "vanzelf: de deur ging open" in client.get(f"/incidents/{found.id}").text
    # and a resolved one takes no more actions
    client.post(f"/incidents/{found.id}/note", {"note": "late"})
    assert client.post(f"/incidents/{found.id}/take", {}).status == 400
    assert len(fleet.get(found.id).log) == 2


def test_a_new_incident_comes_to_an_open_list_by_itself(
    fleet: _Fleet, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    fleet.event("hall-1", "jammed", "1")
    client = desk_client("desk")
    page = client.get("/incidents")
    live = re.search(r'data-live="([^"]+)"', page.text)
    assert live is not None
    got: list[tuple[str, str]] = []
    done = threading.Event()

    def read() -> None:
        for event, data in stream_events(desk_server, client, html.unescape(live.group(1))):
            got.append((event, data))
            if event == "incident":
                done.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    fleet.event("hall-2", "forced", "3")  # after the page: the stream brings it
    wait_until(done.is_set, 30, "the new incident on the live stream")
    event, data = got[-1]
    message = json.loads(data)
    forced = fleet.only(cause="forced")
    assert message["action"] == "opened"
    assert message["row"]["id"] == forced.id and message["row"]["locker"] == "hall-2"
    assert message["row"]["what"] == "de deur is opengebroken"  # in the reader's language (Dutch)
    assert message["counts"]["open"] == 2
    reader.join(30)


def test_every_incident_text_chosen_at_run_time_has_its_dutch_and_french() -> None:
    reasons = {reason for pairs in incidents._CLEARS.values() for _, reason in pairs}
    texts = {*incidents.CAUSES.values(), *reasons, *pages.STATE_LABELS.values(), "opened", "taken", "note"}
    for name, catalogue in (("NL", i18n.NL), ("FR", i18n.FR)):
        missing = sorted(t for t in texts if t not in catalogue)
        assert not missing, f"{name} lacks: {missing}"


@needs_browser
def test_the_list_in_the_browser_shows_a_new_incident_and_its_counts(fleet: _Fleet, desk_server: DeskServer) -> None:
    fleet.event("hall-1", "jammed", "1")
    with chromium_page() as page:
        page.goto(desk_server.url + "/login")
        page.fill("#name", "desk1")
        page.fill("#password", PASSWORDS["desk"])
        page.press("#password", "Enter")
        page.wait_for_url(desk_server.url + "/lockers")
        page.goto(desk_server.url + "/incidents")
        page.wait_for_selector("#incidents[data-live-ready='1']")
        assert page.inner_text("[data-count='open']") == "1"
        fleet.event("hall-2", "forced", "3")
        forced = fleet.only(cause="forced")
        page.wait_for_selector(f"tr[data-incident='{forced.id}']")
        assert page.inner_text("[data-count='open']") == "2"
        first = page.query_selector("#incidents tbody tr")
        assert first is not None and first.get_attribute("data-incident") == str(forced.id)  # newest first
        assert "de deur is opengebroken" in page.inner_text(f"tr[data-incident='{forced.id}']")
        assert "Nieuw incident" in page.inner_text("#live-status")
        with desk_server.connect() as conn:
            incidents.resolve(conn, forced.id, "manager1", "closed it", time.time())
        page.wait_for_selector(f"tr[data-incident='{forced.id}']", state="detached")  # the list shows open ones
        assert page.inner_text("[data-count='resolved']") == "1"
        assert page.errors == []
