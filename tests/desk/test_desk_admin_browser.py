"""The Integrations page in headless Chromium, in each language: its fields all labelled, a token
created and revoked and a webhook registered with the keyboard alone, and the pages test_desk_axe.py
cannot reach by a plain address (the answers that show a secret once, a form refused with its error,
the list after a revocation) pass the axe-core audit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from desk_support import DeskServer
from test_desk_axe import _log_in_with_the_keyboard, _violations

from lockertools.api import tokens
from lockertools.desk import i18n
from tests.web.websim_support import chromium_page, needs_browser

pytestmark = needs_browser

_UNLABELLED = (
    "[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
    ".filter(e => !e.labels || e.labels.length === 0).map(e => e.name)"
)


@pytest.fixture
def page(desk_server: DeskServer) -> Iterator[Any]:
    with chromium_page() as browser_page:
        yield browser_page


def _press(page: Any, key: str, navigates: bool = False) -> None:
    if navigates:
        with page.expect_navigation():
            page.keyboard.press(key)
    else:
        page.keyboard.press(key)


def test_tokens_and_webhooks_with_the_keyboard_and_the_answers_pass_the_audit(
    page: Any, desk_server: DeskServer
) -> None:
    problems: dict[str, list[str]] = {}
    for lang in i18n.LANGUAGES:
        _ = i18n.translator(lang)
        page.context.clear_cookies()
        page.goto(f"{desk_server.url}/language/{lang}?next=/login")
        _log_in_with_the_keyboard(page, desk_server.url)
        page.goto(desk_server.url + "/admin/integrations")
        assert page.evaluate(_UNLABELLED) == []
        # a token: its name typed, a second scope ticked with the space bar, sent with Enter
        page.focus("#token-name")
        page.keyboard.type(f"erp-{lang}")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "scope-read"
        page.keyboard.press("Tab")
        page.keyboard.press("Space")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.tagName") == "BUTTON"
        _press(page, "Enter", navigates=True)
        secret = page.inner_text("#new-secret")
        assert secret.startswith(tokens.PREFIX)
        problems[f"{lang} token created"] = _violations(page)
        with desk_server.connect() as conn:
            (made,) = [t for t in tokens.list_tokens(conn) if t.name == f"erp-{lang}"]
            assert made.scopes == ("read", "deliveries")
        # a webhook refused (not http), then registered
        page.goto(desk_server.url + "/admin/integrations")
        page.focus("#webhook-url")
        page.keyboard.type("ftp://files.example/in")
        _press(page, "Enter", navigates=True)
        assert page.locator("p.error").is_visible()
        assert page.input_value("#webhook-url") == "ftp://files.example/in"  # what was typed is kept
        problems[f"{lang} webhook refused"] = _violations(page)
        page.fill("#webhook-url", f"http://127.0.0.1:9/{lang}")
        page.focus("#webhook-url")
        _press(page, "Enter", navigates=True)
        assert page.inner_text("#new-secret").startswith("whsec_")
        problems[f"{lang} webhook registered"] = _violations(page)
        # revoked: the link, then the confirmation's button, with the keyboard
        page.goto(desk_server.url + "/admin/integrations")
        page.get_by_role("link", name=f"{_('Revoke')} erp-{lang}").focus()
        _press(page, "Enter", navigates=True)
        problems[f"{lang} revoke?"] = _violations(page)
        page.get_by_role("button", name=_("Revoke the token")).focus()
        _press(page, "Enter", navigates=True)
        assert page.locator("p.flash").inner_text() == _("Token {name} revoked.", name=f"erp-{lang}")
        problems[f"{lang} token revoked"] = _violations(page)
        assert secret not in page.content()
    found = {where: v for where, v in problems.items() if v}
    assert not found, json.dumps(found, indent=1)
    assert page.errors == []
