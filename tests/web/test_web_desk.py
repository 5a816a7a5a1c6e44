"""`lockerctl sim web` serves the real staff desk beside the simulated lockers: on the simulator's
fleet database, logged in as the demo account the simulator creates, through a one-time login link
that only the simulator's own page (the run's token) can ask for. Against the real command."""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
from typing import Any

import pytest
from websim_support import Driver, WebSimProc, addr_of, http_raw, needs_browser, needs_the_stack, page_token

from lockertools.sim.web.desk import DEMO_NAME, DEMO_ROLE

pytestmark = [needs_the_stack, pytest.mark.scenario]

HTTP_S = 30.0


def _get(url: str, path: str, host: str | None = None, cookie: str | None = None) -> http.client.HTTPResponse:
    address, port = addr_of(url)
    conn = http.client.HTTPConnection(address, port, timeout=HTTP_S)
    headers = {"Host": host or f"{address}:{port}"}
    if cookie:
        headers["Cookie"] = cookie
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def _body(url: str, path: str, cookie: str) -> tuple[int, str]:
    address, port = addr_of(url)
    conn = http.client.HTTPConnection(address, port, timeout=HTTP_S)
    conn.request("GET", path, headers={"Cookie": cookie})
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    return response.status, text


def _lockers(websim: WebSimProc) -> list[str]:
    line = websim.wait_line(lambda ln: ln.startswith("Simulator ready: lockers "), "ready line")
    return line.split("lockers ", 1)[1].split(" (", 1)[0].split(", ")


def test_the_sim_page_opens_the_real_desk_logged_in_as_the_demo_account(websim: WebSimProc) -> None:
    url = websim.url()
    lockers = _lockers(websim)
    desk_line = websim.wait_line(lambda ln: "staff desk" in ln.lower() and "http://127.0.0.1:" in ln, "desk line")
    found = re.search(r"http://127\.0\.0\.1:\d+/", desk_line)
    assert found is not None
    desk = found.group(0)
    token = page_token(url)
    page = http_raw(url, "GET", "/")[1].decode()
    assert f'href="/desk?token={token}"' in page  # the link is the served page's alone

    # Without the run's token, or from a DNS-rebound name: no login link.
    for query in ("", "?token=", f"?token={token}x"):
        assert _get(url, f"/desk{query}").status == 403, query
    assert http_raw(url, "GET", f"/desk?token={token}", host="evil.example")[0] == 403

    reply = _get(url, f"/desk?token={token}")
    assert reply.status == 303
    link = reply.getheader("Location") or ""
    assert link.startswith(desk + "sim-login?ticket="), link
    path = link[len(desk) - 1 :]
    assert http_raw(desk, "GET", path, host="evil.example")[0] == 403  # the desk answers to loopback names only
    logged_in = _get(desk, path)
    assert (logged_in.status, logged_in.getheader("Location")) == (303, "/lockers")
    cookie = (logged_in.getheader("Set-Cookie") or "").split(";", 1)[0]
    assert cookie.startswith("desk_session=") and len(cookie) > 40
    assert _get(desk, path).status == 403  # the link works once

    # The desk is the real one, on the simulator's lockers, as the demo account.
    status, text = _body(desk, "/lockers", cookie)
    assert status == 200
    for lid in lockers:
        assert f'href="/lockers/{lid}"' in text
    assert DEMO_NAME in text
    status, wall = _body(desk, f"/lockers/{lockers[0]}", cookie)
    assert status == 200 and 'data-door="1"' in wall
    assert _body(desk, "/incidents", cookie)[0] == 200
    assert _get(desk, "/lockers").status == 303  # no session: the login page

    with sqlite3.connect(websim.workdir / "fleet.db") as conn:
        conn.row_factory = sqlite3.Row
        (account,) = conn.execute("SELECT role, disabled_at FROM desk_accounts WHERE name = ?", (DEMO_NAME,))
        logins = conn.execute(
            "SELECT account_name, detail_json FROM desk_audit WHERE action = 'login' ORDER BY id"
        ).fetchall()
    assert (account["role"], account["disabled_at"]) == (DEMO_ROLE, None)
    assert [(r["account_name"], json.loads(r["detail_json"])) for r in logins] == [(DEMO_NAME, {"via": "simulator"})]


@needs_browser
def test_the_desk_opens_from_the_page_beside_the_lockers(websim: WebSimProc, browser_page: Any) -> None:
    page = browser_page
    me = Driver(page)
    me.open(websim.url())
    lockers = _lockers(websim)
    with page.context.expect_page() as opened:
        page.click("#desk-link")
    desk = opened.value
    desk.wait_for_url(re.compile(r"/lockers$"))
    assert DEMO_NAME in desk.inner_text("header")
    desk.click(f'a[href="/lockers/{lockers[0]}"]')
    desk.wait_for_selector("#wall[data-live-ready='1']")
    # The door a person opens on the simulator's wall opens on the desk's wall, live.
    me.wait_door("1", state="closed")
    page.click('.door[data-door="1"]', modifiers=["Shift"])  # forced: the locker reports it
    desk.wait_for_selector("tr[data-door='1'][data-state='open']", timeout=60_000)
    assert page.errors == []
