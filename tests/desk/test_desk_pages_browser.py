"""The deliveries, codes, staff and reports pages in headless Chromium: the axe-core audit of the
pages test_desk_axe.py cannot reach by a plain address (a delivery's page, the answers that show a
code or a PIN once, a form refused with its error), in each language; and a delivery prepared,
found and cancelled with the browser."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from desk_support import PASSWORDS, DeskServer
from test_desk_axe import _log_in_with_the_keyboard, _violations

from lockertools import BOARDS_DIR
from lockertools.boards import door_sizes
from lockertools.desk import i18n
from lockertools.service import db, fleet_db, ingest
from tests.web.websim_support import chromium_page, needs_browser

pytestmark = needs_browser


@pytest.fixture
def page(desk_server: DeskServer) -> Iterator[Any]:
    with desk_server.connect() as conn:
        board = json.loads((BOARDS_DIR / "esp32-4door.json").read_text())
        fleet_db.add_locker(conn, "hall-1", bytes(32), ["1", "2", "3", "4"], door_sizes(board))
        with db.transaction(conn):
            status = {"online": True, "mode": "normal", "rev": 0, "snap": False}
            ingest.apply_status(conn, "hall-1", status, time.time())
        fleet_db.add_staff(conn, "Piet")
    with chromium_page() as browser_page:
        yield browser_page


def _submit(page: Any, button: str) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name=button).first.click()


def test_the_answers_and_a_delivery_s_page_pass_the_audit_in_every_language(page: Any, desk_server: DeskServer) -> None:
    problems: dict[str, list[str]] = {}
    for lang in i18n.LANGUAGES:
        _ = i18n.translator(lang)
        page.context.clear_cookies()
        page.goto(f"{desk_server.url}/language/{lang}?next=/login")
        _log_in_with_the_keyboard(page, desk_server.url)  # admin1: every page
        page.goto(desk_server.url + "/deliveries/new")
        page.fill("#d-email", "anna@example")  # a browser takes it, the desk does not
        _submit(page, _("Prepare the delivery"))
        assert page.locator("#form-error").is_visible()
        problems[f"{lang} refused delivery"] = _violations(page)
        page.fill("#d-email", "anna@example.org")
        page.fill("#d-name", "Anna")
        _submit(page, _("Prepare the delivery"))
        assert page.locator("#resident-code").is_visible()
        problems[f"{lang} delivery prepared"] = _violations(page)
        page.get_by_role("link", name=_("The delivery's page")).click()
        page.wait_for_selector("#delivery-state")
        problems[f"{lang} a delivery"] = _violations(page)
        page.goto(desk_server.url + "/codes")
        _submit(page, _("Issue a return code"))
        assert page.locator("#resident-code").is_visible()
        problems[f"{lang} return code"] = _violations(page)
        page.goto(desk_server.url + "/staff")
        _submit(page, _("Issue today's PIN"))
        assert page.locator("#staff-pin").is_visible()
        problems[f"{lang} staff PIN"] = _violations(page)
        page.goto(desk_server.url + "/doors/hall-1")
        page.fill("#reason-1", "")
        page.evaluate("document.getElementById('reason-1').removeAttribute('required')")
        _submit(page, _("Open") + " " + _("Door") + " 1")
        problems[f"{lang} opening refused"] = _violations(page)
        assert page.title().endswith(_("Staff desk"))
    found = {where: v for where, v in problems.items() if v}
    assert not found, json.dumps(found, indent=1)


def test_a_delivery_prepared_found_and_cancelled_in_the_browser(page: Any, desk_server: DeskServer) -> None:
    _ = i18n.translator("nl")
    page.goto(desk_server.url + "/login")
    page.fill("#name", "desk1")
    page.fill("#password", PASSWORDS["desk"])
    page.keyboard.press("Enter")
    page.wait_for_url(desk_server.url + "/lockers")
    page.click(f"nav >> text={_('New delivery')}")
    page.select_option("#d-item", "document")
    page.select_option("#d-size", "L")
    page.check("#d-low")
    page.fill("#d-name", "Anna Peeters")
    page.fill("#d-phone", "0470 12 34 56")
    page.select_option("#d-language", "fr")
    page.fill("#d-case", "EL-2026-0042")
    _submit(page, _("Prepare the delivery"))
    code = page.inner_text("#resident-code")
    number = int(page.inner_text("#delivery-number"))
    with desk_server.connect() as conn:
        held = conn.execute("SELECT code FROM held_codes WHERE code_id = ?", (number,)).fetchone()[0]
    assert code == held
    page.click(f"nav >> text={_('Deliveries')}")
    page.click(f"text={_('to load')}")
    page.fill("#q", "EL-2026-0042")
    _submit(page, _("Search"))
    page.click(f"a[href='/deliveries/{number}']")
    assert page.inner_text("#delivery-state") == _("to load")
    assert code not in page.content()
    _submit(page, _("Cancel this delivery"))
    assert page.inner_text("#delivery-state") == _("cancelled")
    assert _("Delivery {number} cancelled.", number=number) in page.inner_text("main")
    page.goto(desk_server.url + "/deliveries?state=cancelled")
    assert page.locator(f"a[href='/deliveries/{number}']").count() == 1
    assert page.errors == []
