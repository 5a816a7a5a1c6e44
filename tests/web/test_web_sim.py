"""`lockerctl sim web` in headless Chromium, driven by clicks alone, as staff in training would.

The page is the only way in: codes are issued in the staff panel, typed on the page's keypad, doors
are pulled and pushed on the page's wall, parcels put and taken with the page's buttons. What the
tests assert is the page's DOM (the doors' states, the display, the event log, the messages, the
code table), which the server fills from the real firmware's board events, the host service's
database and the service's notification hook. A screenshot of the end state goes under build/.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
from websim_support import (
    STEP_MS,
    WAIT_MS,
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


@needs_browser
def test_pickup_by_clicks(websim: WebSimProc, browser_page: Any) -> None:
    page = browser_page
    me = Driver(page)
    me.open(websim.url())
    assert "\n" in me.lcd() and me.lcd().strip(), "the display shows the firmware's two lines"
    me.wait_door("2", state="closed", parcel="1")

    # Pulling a locked door does nothing but say so.
    page.click('.door[data-door="1"]')
    page.wait_for_selector("#error:has-text('locked')", timeout=STEP_MS)
    assert me.door_attr("1", "state") == "closed"

    # Staff desk: a pickup code for door 2; the message the resident would get shows the code.
    code = me.issue_pickup("2")
    assert code.isdigit() and len(code) == 8
    assert "door 2" in page.locator('#notes .note[data-kind="code"]').first.inner_text()
    page.wait_for_selector('#codes tr[data-state="issued"]', timeout=WAIT_MS)
    me.wait_synced()

    # The resident types it on the keypad: door 2's latch turns on and its spring pops it open.
    me.keys(code + "#")
    assert me.wait_open_door() == "2"
    assert "2" in me.lcd(), f"the display names the door: {me.lcd()!r}"
    assert [me.door_attr(d, "state") for d in ("1", "3", "4")] == ["closed"] * 3
    me.parcel("2", False)
    me.push_shut("2")

    # The host heard of the pickup: the event arrives live and the code is used.
    me.wait_event("host", "pickup")
    page.wait_for_selector('#codes tr[data-state="used"]', timeout=WAIT_MS)
    assert page.locator('#events li[data-source="board"][data-kind="solenoid"]').count() >= 2  # on, then off
    assert page.locator('#events li[data-source="you"]').count() >= 2  # parcel taken, door shut
    assert me.clicks == 1 + 9 + 2

    # The physical keyboard types on the keypad too (Enter is #), even with a keypad key focused.
    code = me.issue_pickup("1")
    me.wait_synced()
    page.focus('#keypad [data-key="5"]')
    page.keyboard.type(code)
    page.keyboard.press("Enter")
    assert me.wait_open_door() == "1"
    me.parcel("1", False)
    me.push_shut("1")
    me.wait_event("host", "pickup", count=2)
    # Reloaded, the page is sent the messages again, their codes masked: a code shows only once.
    page.reload()
    page.wait_for_selector('#notes .note[data-kind="code"] .masked', timeout=WAIT_MS)
    assert page.locator('#notes .note[data-kind="code"] .masked').count() == 2
    assert page.locator("#notes .code").count() == 0 and code not in page.inner_text("#notes")
    assert page.errors == []
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "web-pickup.png"), full_page=True)


@needs_browser
def test_delivery_and_pickup_by_clicks(websim: WebSimProc, browser_page: Any) -> None:
    page = browser_page
    me = Driver(page)
    me.open(websim.url())
    empty = [d for d in ("1", "2", "3", "4") if me.door_attr(d, "parcel") == "0"]
    assert empty, "a free door for the delivery"

    got = me.delivery_and_pickup("Alex")
    number, label, code = got["number"], got["door"], got["code"]

    assert len(number) == 6 and number.isdigit()
    assert label in empty
    size = page.locator(f'.door[data-door="{label}"] .tags').inner_text()
    assert size.split()[0] in ("M", "L"), f"a medium delivery went to a door of size {size}"
    assert code.isdigit() and code != number
    # The host's side of it, live: staff in, loaded (with the staff member), staff out, pickup.
    for kind in ("staff_in", "loaded", "staff_out", "pickup"):
        me.wait_event("host", kind)
    loaded = page.locator('#events li[data-source="host"][data-kind="loaded"]').first.inner_text()
    assert f"door {label}" in loaded
    note = page.locator('#notes .note[data-kind="loaded"]').first.inner_text()
    assert f"door {label}" in note and "hook" in note
    me.wait_door(label, state="closed", parcel="0")
    assert me.clicks == Driver.fewest_delivery_and_pickup(len(got["pin"]), len(number), len(code))
    assert page.errors == []
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "web-delivery.png"), full_page=True)


@needs_browser
def test_remote_open_and_return_by_clicks(websim: WebSimProc, browser_page: Any) -> None:
    page = browser_page
    me = Driver(page)
    me.open(websim.url())
    # The desk opens door 3 for a resident at the counter: the host signs door.open, the locker opens.
    assert me.remote_open("3", by="desk", reason="lost code") == "3"
    me.wait_event("host", "remote_open")
    remote = page.locator('#events li[data-source="host"][data-kind="remote_open"]').first.inner_text()
    assert "door 3" in remote and "by=desk" in remote
    # A resident returns borrowed material: a door that fits and is empty opens, the item goes in.
    empty = [d for d in ("1", "2", "3", "4") if me.door_attr(d, "parcel") == "0"]
    code, label = me.return_item("M")
    assert label in empty and code.isdigit()
    me.wait_event("host", "returned")
    page.wait_for_selector('#notes .note[data-kind="returned"]', timeout=WAIT_MS)  # the hook told staff
    me.wait_door(label, state="closed", parcel="1")

    # A member of staff takes door 4 out of service at the keypad (menu 4, the label, #), then leaves.
    pin = me.add_staff("Sam")
    me.wait_synced()
    me.keys(pin + "#")
    me.wait_event("host", "staff_in")
    me.keys("4" + "4" + "#")
    me.wait_door("4", state="service", timeout=WAIT_MS)
    me.keys("*")
    me.wait_event("host", "staff_out")
    assert "staff=Sam" in page.locator('#events li[data-source="host"][data-kind="door_service"]').first.inner_text()
    assert page.errors == []
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
