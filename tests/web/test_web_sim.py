"""`lockerctl sim web` in headless Chromium, as staff in training use it: staff work on the real desk
(opened from the simulator's page, logged in as the demo account), the physical part happens on the
simulator's page, by clicks alone: codes typed on its keypad, doors pulled and pushed on its wall,
parcels put and taken with its buttons.

What the tests assert is what the pages show: the simulator's DOM (the doors' states, the display,
the event log, the hook's messages), which its server fills from the real firmware's board events,
the host service's database and the service's notification hook; and the desk's pages. A screenshot
of the end state goes under build/.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
from websim_support import (
    STEP_MS,
    WAIT_MS,
    Desk,
    Driver,
    WebSimProc,
    needs_browser,
    needs_the_stack,
    page_token,
    ws_handshake,
)

from tests.support import REPO_ROOT
from tests.support.procs import left_behind

pytestmark = [needs_the_stack, pytest.mark.scenario]

SHOTS = REPO_ROOT / "build"


def _no_code_on(page: Any, *codes: str) -> None:
    """The simulator's page shows no code staff got on the desk: not in its text, not in its DOM."""
    html = page.content()
    for code in codes:
        assert code not in html, "a code reached the simulator's page"


@needs_browser
def test_pickup_by_clicks(websim: WebSimProc, browser_page: Any) -> None:
    page = browser_page
    me = Driver(page)
    me.open(websim.url())
    assert "\n" in me.lcd() and me.lcd().strip(), "the display shows the firmware's two lines"
    me.wait_door("2", state="closed", parcel="1")
    assert page.locator("form").count() == 0, "the simulator's page has no staff forms: staff use the desk"

    # Pulling a locked door does nothing but say so.
    page.click('.door[data-door="1"]')
    page.wait_for_selector("#error:has-text('locked')", timeout=STEP_MS)
    assert me.door_attr("1", "state") == "closed"

    # On the desk: a pickup code for door 2, shown there once.
    desk = Desk.from_sim(page)
    lid = me.lid()
    rev = me.host_rev()
    code = desk.pickup_code(lid, "2")
    assert code.isdigit() and len(code) == 8
    me.wait_synced_after(rev)

    # The resident types it on the keypad: door 2's latch turns on and its spring pops it open.
    me.keys(code + "#")
    assert me.wait_open_door() == "2"
    assert "2" in me.lcd(), f"the display names the door: {me.lcd()!r}"
    assert [me.door_attr(d, "state") for d in ("1", "3", "4")] == ["closed"] * 3
    me.parcel("2", False)
    me.push_shut("2")

    # The host heard of the pickup: the event arrives live.
    me.wait_event("host", "pickup")
    assert page.locator('#events li[data-source="board"][data-kind="solenoid"]').count() >= 2  # on, then off
    assert page.locator('#events li[data-source="you"]').count() >= 2  # parcel taken, door shut
    assert me.clicks == 9 + 2

    # The physical keyboard types on the keypad too (Enter is #), even with a keypad key focused.
    rev = me.host_rev()
    second = desk.pickup_code(lid, "1")
    me.wait_synced_after(rev)
    page.focus('#keypad [data-key="5"]')
    page.keyboard.type(second)
    page.keyboard.press("Enter")
    assert me.wait_open_door() == "1"
    me.parcel("1", False)
    me.push_shut("1")
    me.wait_event("host", "pickup", count=2)
    # Neither code ever reached the simulator's page, nor does it after a reload.
    _no_code_on(page, code, second)
    page.reload()
    page.wait_for_selector("#door-0", timeout=WAIT_MS)
    _no_code_on(page, code, second)
    assert page.errors == [] and desk.page.errors == []
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "web-pickup.png"), full_page=True)


@needs_browser
def test_delivery_and_pickup_by_clicks(websim: WebSimProc, browser_page: Any) -> None:
    page = browser_page
    me = Driver(page)
    me.open(websim.url())
    empty = [d for d in ("1", "2", "3", "4") if me.door_attr(d, "parcel") == "0"]
    assert empty, "a free door for the delivery"
    desk = Desk.from_sim(page)
    lid = me.lid()

    # The desk: today's PIN for Alex, a delivery prepared (its number, and the resident's code once).
    rev = me.host_rev()
    pin = desk.staff_pin("Alex", lid)
    number, code = desk.prepare_delivery(lid, "M", case="TRAIN-1")
    assert len(number) == 6 and number.isdigit() and code.isdigit() and code != number
    me.wait_synced_after(rev)  # both codes on the locker

    # At the locker: Alex loads it; the hook tells the resident (the code masked on this page).
    label = me.load(pin, number)
    assert label in empty
    size = page.locator(f'.door[data-door="{label}"] .tags').inner_text()
    assert size.split()[0] in ("M", "L"), f"a medium delivery went to a door of size {size}"
    me.wait_note("loaded")
    note = page.locator('#notes .note[data-kind="loaded"]').first
    assert f"door {label}" in note.inner_text() and "hook" in note.inner_text()
    assert note.locator(".masked").count() == 1
    desk.wait_delivery_state(number, f"in door {label}")

    # The resident picks it up with the code the desk showed.
    assert me.pickup(code) == label
    for kind in ("staff_in", "loaded", "staff_out", "pickup"):
        me.wait_event("host", kind)
    loaded = page.locator('#events li[data-source="host"][data-kind="loaded"]').first.inner_text()
    assert f"door {label}" in loaded and "staff=Alex" in loaded
    me.wait_door(label, state="closed", parcel="0")
    desk.wait_delivery_state(number, "picked up")
    assert me.clicks == Driver.fewest_load_and_pickup(len(pin), len(number), len(code))
    _no_code_on(page, pin, code)
    assert page.errors == [] and desk.page.errors == []
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "web-delivery.png"), full_page=True)


@needs_browser
def test_remote_open_and_return_by_clicks(websim: WebSimProc, browser_page: Any) -> None:
    page = browser_page
    me = Driver(page)
    me.open(websim.url())
    desk = Desk.from_sim(page)
    lid = me.lid()
    # The desk opens door 3 for a resident at the counter: the host signs door.open, the locker opens.
    desk.remote_open(lid, "3", "lost code")
    assert me.wait_open_door(timeout=WAIT_MS) == "3"
    me.push_shut("3")
    me.wait_event("host", "remote_open")
    remote = page.locator('#events li[data-source="host"][data-kind="remote_open"]').first.inner_text()
    assert "door 3" in remote and "by=demo" in remote

    # A resident returns borrowed material: a door that fits and is empty opens, the item goes in.
    empty = [d for d in ("1", "2", "3", "4") if me.door_attr(d, "parcel") == "0"]
    rev = me.host_rev()
    code = desk.return_code(lid, "M")
    me.wait_synced_after(rev)
    label = me.return_item(code)
    assert label in empty and code.isdigit()
    me.wait_event("host", "returned")
    me.wait_note("returned")  # the hook told staff
    me.wait_door(label, state="closed", parcel="1")

    # A member of staff takes door 4 out of service at the keypad (menu 4, the label, #), then leaves.
    rev = me.host_rev()
    pin = desk.staff_pin("Sam", lid)
    me.wait_synced_after(rev)
    me.keys(pin + "#")
    me.wait_event("host", "staff_in")
    me.keys("4" + "4" + "#")
    me.wait_door("4", state="service", timeout=WAIT_MS)
    me.keys("*")
    me.wait_event("host", "staff_out")
    assert "staff=Sam" in page.locator('#events li[data-source="host"][data-kind="door_service"]').first.inner_text()
    _no_code_on(page, code, pin)
    assert page.errors == [] and desk.page.errors == []
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "web-return.png"), full_page=True)


def test_ctrl_c_stops_everything(websim: WebSimProc) -> None:
    """A page of another site cannot use the WebSocket. Ctrl-C once everything runs: the lockers, the
    service, the broker and the web server stop, the command exits 0, and no process of the simulator
    is left (the fixture checks SIGTERM the same way)."""
    url = websim.url()
    token = page_token(url)
    assert ws_handshake(url, f"?token={token}", origin=url.rstrip("/")) == 101  # the simulator's own page
    assert ws_handshake(url, f"?token={token}", origin="http://example.org") == 403  # another site open in the browser
    assert websim.stop(signal.SIGINT) == 0
    assert websim.lines[-1] == "stopped: web server, lockers, host service, broker"
    assert left_behind(websim.workdir) == []
