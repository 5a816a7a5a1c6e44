"""Accessibility: axe-core (axe-playwright-python) in headless Chromium finds no serious or critical
violation on any page of the desk, in each language; and the desk is used with the keyboard alone
(log in, reach the navigation, see focus)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from desk_support import PASSWORDS, DeskServer

from lockertools import BOARDS_DIR
from lockertools.api import tokens, webhooks
from lockertools.boards import door_sizes
from lockertools.desk import i18n
from lockertools.notify import Outbox
from lockertools.notify.alerts import set_contacts
from lockertools.service import db, fleet_db, ingest
from tests.notify.notify_helpers import free_port
from tests.notify.notify_helpers import settings as message_settings
from tests.web.websim_support import chromium_page, needs_browser

pytestmark = needs_browser

# Every page of the desk (a new page adds its path here); the error pages too.
PAGES = ["/lockers", "/lockers/hall-1", "/audit", "/admin/accounts", "/lockers/nowhere"]
PAGES += ["/deliveries", "/deliveries/new", "/codes", "/staff", "/doors", "/doors/hall-1", "/reports"]
PAGES += ["/incidents", "/incidents/1"]
PAGES += ["/admin/integrations", "/admin/integrations/confirm?token=erp", "/admin/integrations/confirm?webhook=1"]
PAGES += ["/admin/settings"]
PAGES += ["/alerts", "/alerts/hall-1"]  # staff alert contacts (hall-1 has one of its own: the table)
# residents' messages: a delivery only a letter reaches ({letter}), another whose e-mail failed ({failed})
PAGES += ["/messages/letters", "/messages/failed", "/deliveries/{letter}", "/deliveries/{failed}"]
SERIOUS = ("serious", "critical")


@pytest.fixture
def deliveries(desk_server: DeskServer) -> dict[str, str]:
    """The fleet the pages show; the path fields of PAGES ({letter}, {failed}: delivery numbers)."""
    with desk_server.connect() as conn:
        board = json.loads((BOARDS_DIR / "esp32-4door.json").read_text())
        fleet_db.add_locker(conn, "hall-1", bytes(32), ["1", "2", "3", "4"], door_sizes(board))
        tokens.create_token(conn, "erp", ["read"])  # the integrations page with a row in each table
        set_contacts(conn, "hall-1", ["wacht@gent.example"], ["+32470123456"])
        webhooks.add_webhook(conn, "http://127.0.0.1:9/hook", "town ERP")
        delivery = fleet_db.prepare_delivery(conn, "hall-1", "L", item="document")
        letter = fleet_db.prepare_delivery(conn, "hall-1", "S", resident=fleet_db.Resident("Élise", language="fr"))
        failed = fleet_db.prepare_delivery(conn, "hall-1", "M", resident=fleet_db.Resident(email="jan@example.org"))
        with db.transaction(conn):
            ingest.apply_status(
                conn, "hall-1", {"online": True, "mode": "normal", "rev": 0, "snap": False}, time.time()
            )
            for seq, (kind, door, extra) in enumerate(
                [("loaded", "4", {"id": delivery.number}), ("jammed", "2", {}), ("door_service", "3", {"on": False}),
                 ("loaded", "1", {"id": letter.number}), ("loaded", "3", {"id": failed.number})], 1
            ):  # fmt: skip
                ev = {"t": int(time.time()), "k": kind, "d": door, **extra}
                ingest.apply_event(conn, "hall-1", {"seq": seq, "ev": ev}, time.time())
            conn.execute("UPDATE webhook_deliveries SET state = 'failed', attempts = 12, last_error = 'HTTP 500'")
        Outbox(message_settings(["email"], smtp_port=free_port())).plan(conn, time.time())
        with db.transaction(conn):
            conn.execute(
                "UPDATE resident_messages SET state = 'failed', attempts = 1, error = 'SMTP: 451 try later'"
                " WHERE channel = 'email'"
            )
    return {"letter": str(letter.number), "failed": str(failed.number)}


@pytest.fixture
def page(deliveries: dict[str, str]) -> Iterator[Any]:
    with chromium_page() as browser_page:
        yield browser_page


def _violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in SERIOUS
    ]


def _log_in_with_the_keyboard(page: Any, url: str) -> None:
    page.goto(url + "/login")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'name'")  # autofocus
    page.keyboard.type("admin1")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORDS["admin"])
    page.keyboard.press("Enter")
    page.wait_for_url(url + "/lockers")


def test_no_serious_violation_on_any_page_in_any_language(
    page: Any, desk_server: DeskServer, deliveries: dict[str, str]
) -> None:
    problems: dict[str, list[str]] = {}
    for lang in i18n.LANGUAGES:
        page.context.clear_cookies()
        page.goto(f"{desk_server.url}/language/{lang}?next=/login")
        assert page.evaluate("document.documentElement.lang") == lang
        problems[f"{lang} /login"] = _violations(page)
        _log_in_with_the_keyboard(page, desk_server.url)
        for path in (p.format(**deliveries) for p in PAGES):
            page.goto(desk_server.url + path)
            assert page.title().endswith(i18n.translator(lang)("Staff desk")), (lang, path, page.title())
            problems[f"{lang} {path}"] = _violations(page)
    found = {where: v for where, v in problems.items() if v}
    assert not found, json.dumps(found, indent=1)
    assert len(problems) == len(i18n.LANGUAGES) * (len(PAGES) + 1)


def test_the_desk_works_with_the_keyboard_alone(page: Any, desk_server: DeskServer) -> None:
    _log_in_with_the_keyboard(page, desk_server.url)
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.getAttribute('href')") == "#content"
    focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focused == "solid"  # focus is visible
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # Kluizen, Logboek, Accounts: the navigation in order
    assert page.evaluate("document.activeElement.textContent") == i18n.NL["Accounts"]
    page.keyboard.press("Enter")
    page.wait_for_url(desk_server.url + "/admin/accounts")
    # every field of the page has a label
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input:not([type=hidden]), select')]"
        ".filter(e => !e.labels || e.labels.length === 0).map(e => e.name)"
    )
    assert unlabelled == []


def test_the_wall_follows_the_doors_in_the_browser(page: Any, desk_server: DeskServer) -> None:
    _log_in_with_the_keyboard(page, desk_server.url)
    page.goto(desk_server.url + "/lockers/hall-1")
    page.wait_for_selector("#wall[data-live-ready='1']")
    with desk_server.connect() as conn, db.transaction(conn):
        ingest.apply_event(
            conn, "hall-1", {"seq": 10, "ev": {"t": int(time.time()), "k": "opened", "d": "1"}}, time.time()
        )
    page.wait_for_selector("tr[data-door='1'][data-state='open']")
    assert "open" in page.inner_text("tr[data-door='1'] [data-field='state']")
    assert "open" in page.inner_text("#live-status")
    assert page.errors == []
