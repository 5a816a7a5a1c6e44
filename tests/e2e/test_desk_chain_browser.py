"""The staff desk's whole chain in headless Chromium: `lockerctl sim web` (a real mosquitto, the real
host service, the real firmware on the simulated board) with its desk, and a webhook receiver on
loopback registered with `lockerctl api webhook add`.

A manager logs in on the desk with a real account (not the simulator's demo link), prepares a
delivery with a case number and gets today's staff PIN from the staff PIN page; at the simulated
keypad staff load it with that PIN; the desk shows it loaded; the resident picks it up with the code
the desk showed; the desk shows it picked up; the receiver got `loaded` then `picked_up`, once each,
signed with the webhook's secret. Then a latch made to stick on the simulator's page (its fault
injection) makes a pickup fail: the host opens an incident, the manager resolves it on the desk
with a note, and the desk's audit trail shows both actions. Every wait is on a condition.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockertools.api import openapi
from tests.api.api_support import Contract
from tests.support.mosquitto import wait_until
from tests.support.procs import left_behind
from tests.support.webhook_receiver import Receiver, check_signed
from tests.web.websim_support import (
    LOCKERCTL,
    WAIT_MS,
    Desk,
    Driver,
    WebSimProc,
    chromium_page,
    needs_browser,
    needs_the_stack,
    to_front,
)

# The simulator's fleet database is a SQLite file in its work directory: one run, not one per database.
pytestmark = [needs_the_stack, needs_browser, pytest.mark.scenario, pytest.mark.sqlite_only]

WAIT_S = WAIT_MS / 1000
MANAGER = "mia"
CASE = "EL-2026-0815"


@pytest.fixture
def websim(tmp_path: Path) -> Iterator[WebSimProc]:
    sim = WebSimProc(tmp_path / "sim-web")
    try:
        yield sim
    finally:
        sim.stop()
    assert left_behind(sim.workdir) == []


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def _lockerctl(*args: str, stdin: str = "") -> str:
    done = subprocess.run([str(LOCKERCTL), *args], input=stdin, capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _desk_url(websim: WebSimProc) -> str:
    line = websim.wait_line(lambda ln: ln.startswith("The staff desk (http://127.0.0.1:"), "desk line")
    found = re.search(r"http://127\.0\.0\.1:\d+/", line)
    assert found is not None
    return found.group(0)


def _audit(desk: Desk) -> list[list[str]]:
    """The audit trail's rows, as the desk's page shows them (When, Who, Role, Address, Action, Target, Details)."""
    desk.go("/audit")
    rows: list[list[str]] = desk.page.eval_on_selector_all(
        "main tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    return rows


def test_the_desk_s_whole_chain_in_the_browser(websim: WebSimProc, receiver: Receiver) -> None:
    url = websim.url()
    desk_url = _desk_url(websim)
    db_path = websim.workdir / "fleet.db"
    password = secrets.token_urlsafe(16)
    _lockerctl("user", "add", MANAGER, "--role", "manager", "--password-stdin", "--db", str(db_path), stdin=password)
    secret = _lockerctl("api", "webhook", "add", receiver.url, "--db", str(db_path), "--by", "test").strip()
    assert secret.startswith("whsec_")

    with chromium_page() as page:
        me = Driver(page)
        me.open(url)
        lid = me.lid()
        desk = Desk(page.context.new_page(), desk_url)
        desk.log_in(MANAGER, password)

        # The desk: a delivery with the town's case number, and today's PIN from the staff PIN page.
        rev = me.host_rev()
        number, code = desk.prepare_delivery(lid, "M", case=CASE, name="Anna Peeters")
        pin = desk.staff_pin("Alex", lid)
        me.wait_synced_after(rev)  # the delivery and the PIN are on the locker

        # At the locker: Alex loads it; the desk shows it in its door.
        label = me.load(pin, number)
        desk.wait_delivery_state(number, f"in door {label}")
        desk.go(f"/deliveries/{number}")
        assert CASE in desk.page.inner_text("main")
        assert code not in desk.page.content(), "the desk shows the resident's code only once"

        # The resident picks it up with the code the desk showed; the desk shows it picked up.
        assert me.pickup(code) == label
        desk.wait_delivery_state(number, "picked up")

        # The webhook: loaded, then picked_up, once each, signed with its secret.
        wait_until(lambda: len(receiver.bodies()) >= 2, WAIT_S, "the webhook's loaded and picked_up", poll=0.05)
        bodies = receiver.bodies()
        assert [(b["event"], b["delivery"], b["case_number"]) for b in bodies] == [
            ("loaded", int(number), CASE),
            ("picked_up", int(number), CASE),
        ]
        assert [b["door"] for b in bodies] == [label, label]
        check_signed(receiver, secret, Contract(openapi.document()))

        # A latch that sticks: a resident's code for a door a parcel waits behind opens nothing.
        stuck = "1" if label != "1" else "2"
        assert me.door_attr(stuck, "parcel") == "1"
        rev = me.host_rev()
        jammed_code = desk.pickup_code(lid, stuck)
        me.wait_synced_after(rev)
        me.jam(stuck)
        desk.go("/incidents")  # open: a new incident reaches it by itself
        me.keys(jammed_code + "#")
        me.wait_event("host", "jammed")
        assert me.door_attr(stuck, "state") == "closed"
        to_front(desk.page)  # back at the desk's list: the incident arrives there by itself
        row = desk.page.locator('#incidents tr[data-cause="jammed"]')
        row.wait_for(timeout=WAIT_MS)
        cells = row.locator("td").all_inner_texts()
        assert row.count() == 1 and (cells[2], cells[3], cells[4]) == (lid, stuck, "the latch did not open"), cells

        # The manager resolves it on the desk, with a note saying what was done.
        with desk.page.expect_navigation(timeout=WAIT_MS):
            row.locator("a").first.click()
        incident_id = desk.page.url.rsplit("/", 1)[1]
        desk.page.fill("#resolve-note", "latch freed, tested twice")
        desk.submit("Resolve")
        assert desk.page.inner_text("#state").strip() == "resolved"
        assert "latch freed, tested twice" in desk.page.inner_text("#resolution")

        # The audit trail shows both actions, by the manager's own account.
        rows = _audit(desk)
        actions = [(r[1], r[4], r[5]) for r in rows]
        assert (MANAGER, "delivery.prepare", number) in actions, actions
        assert (MANAGER, "incident.resolve", incident_id) in actions, actions
        assert all(code not in " ".join(r) and pin not in " ".join(r) for r in rows)

        # Nothing more went to the webhook: every delivery of it sent, and only those two.
        def all_sent() -> bool:
            with sqlite3.connect(db_path) as conn:
                return conn.execute("SELECT count(*) FROM webhook_deliveries WHERE state != 'sent'").fetchone()[0] == 0

        wait_until(all_sent, WAIT_S, "every webhook delivery sent", poll=0.1)
        assert [b["event"] for b in receiver.bodies()] == ["loaded", "picked_up"]
        with sqlite3.connect(db_path) as conn:
            logins = conn.execute("SELECT account_name, detail_json FROM desk_audit WHERE action = 'login'").fetchall()
        assert {name for name, _ in logins} == {MANAGER}, logins  # the real account, never the demo link
        assert page.errors == [] and desk.page.errors == []
