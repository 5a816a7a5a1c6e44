"""Who may use `lockerctl sim web`, and what it tells them: raw HTTP and aiohttp's client against the
real command (the lockers, the host service and the broker running behind it).

A page of another site in the same browser must not drive the lockers, not even after DNS rebinding
(its name resolved to 127.0.0.1: Host and Origin both its own), and no page of the simulator ever
gets a code or staff PIN: staff create them on the desk, which shows each once, on the answer to the
request that created it; the simulator's pages get the hook's messages with their codes masked, and
have no staff operations of their own.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import sqlite3
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from websim_support import WebSimProc, addr_of, http_raw, needs_the_stack, page_token, ws_handshake

from lockertools.service import fleet_db
from tests.desk.desk_support import DeskClient

pytestmark = [needs_the_stack, pytest.mark.scenario]

WAIT_S = 60.0  # a reply from the host's database on a loaded machine


def test_only_a_loopback_host_and_the_runs_token_get_in(websim: WebSimProc) -> None:
    url = websim.url()
    _, port = addr_of(url)
    # DNS rebinding first (evil.example resolved to 127.0.0.1): not even the page, which has the token.
    assert http_raw(url, "GET", "/", host="evil.example")[0] == 403
    token = page_token(url)
    assert len(token) >= 32 and "SIM_TOKEN" not in token
    hook_body = json.dumps({"kind": "reminder", "locker": "x", "door": "1", "code": None}).encode()
    json_type = ("Content-Type: application/json",)

    # The simulator's own names, as a browser on this machine writes them.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert http_raw(url, "GET", "/", host=host)[0] == 200, host
        assert http_raw(url, "GET", "/static/app.js", host=host)[0] == 200, host
    assert ws_handshake(url, f"?token={token}", origin=url.rstrip("/")) == 101
    assert ws_handshake(url, f"?token={token}", host=f"localhost:{port}", origin=f"http://localhost:{port}") == 101
    assert ws_handshake(url, f"?token={token}") == 101  # not a browser: no Origin
    assert http_raw(url, "POST", f"/hook?token={token}", headers=json_type, body=hook_body)[0] == 200

    # DNS rebinding: evil.example resolved to 127.0.0.1; the browser sends its own name, as Host and Origin.
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1", f"127.0.0.2:{port}"):
        status, text = http_raw(url, "GET", "/", host=host)
        assert status == 403 and token.encode() not in text, host
        assert http_raw(url, "GET", "/static/app.js", host=host)[0] == 403, host
        assert ws_handshake(url, f"?token={token}", host=host, origin=f"http://{host}") == 403, host
        assert http_raw(url, "POST", f"/hook?token={token}", host=host, headers=json_type, body=hook_body)[0] == 403

    # The right Host without the run's token: refused, on the WebSocket and on the hook.
    for query in ("", "?token=", f"?token={token[:-1]}", f"?token={token}x"):
        assert ws_handshake(url, query, origin=url.rstrip("/")) == 403, query
        assert http_raw(url, "POST", f"/hook{query}", headers=json_type, body=hook_body)[0] == 403, query
    assert ws_handshake(url, f"?token={token}", origin="http://example.org") == 403  # another site's page


# --- codes ----------------------------------------------------------------------------------------


def _leaves(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _leaves(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v)
    elif obj is not None:
        yield str(obj)


def _mentions(obj: Any, secret: str) -> bool:
    return any(secret in leaf for leaf in _leaves(obj))


def _in_host_database(conn: sqlite3.Connection, lid: str, code: str) -> bool:
    """Whether `code` is one of locker `lid`'s codes in the host's database (its tag, over its door
    or over '*' for a door-free code)."""
    key = bytes.fromhex(conn.execute("SELECT key_hex FROM lockers WHERE id = ?", (lid,)).fetchone()[0])
    rows = conn.execute("SELECT door, tag_hex FROM codes WHERE locker_id = ?", (lid,)).fetchall()
    return any(tag in (fleet_db.tag_hex(key, door, code), fleet_db.tag_hex(key, "*", code)) for door, tag in rows)


class _Page:
    """One WebSocket connection, as a page has it: every message it got, and requests by rid."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.got: list[dict[str, Any]] = []
        self.rid = 0

    async def next(self) -> dict[str, Any]:
        msg: dict[str, Any] = await asyncio.wait_for(self.ws.receive_json(), WAIT_S)
        self.got.append(msg)
        return msg

    async def until(self, pred: Any) -> dict[str, Any]:
        for msg in self.got:
            if pred(msg):
                return msg
        while True:
            msg = await self.next()
            if pred(msg):
                return msg

    async def ask(self, op: str, **args: Any) -> dict[str, Any]:
        """The reply to one request (ok or not)."""
        self.rid += 1
        rid = self.rid
        await self.ws.send_json({"rid": rid, "op": op, "locker": 0, **args})
        return await self.until(lambda m: m.get("type") == "reply" and m.get("rid") == rid)

    def notes(self) -> list[dict[str, Any]]:
        return [m["note"] for m in self.got if m.get("type") == "note"]


_SHOWN_ONCE = re.compile(r'<span class="code-once" id="(?:resident-code|staff-pin)">(\d+)</span>')


def _shown_once(reply: Any) -> str:
    """The code (or PIN) a desk answer shows once."""
    assert reply.status == 200, reply.text[:500]
    found = _SHOWN_ONCE.search(reply.text)
    assert found is not None, reply.text[:500]
    return found.group(1)


def _desk_as_demo(url: str, token: str) -> DeskClient:
    """The desk, logged in through the simulator's one-time link, as the page's link does it."""
    status, _ = http_raw(url, "GET", f"/desk?token={token}")
    assert status == 303
    location = _location(url, f"/desk?token={token}")
    desk_url, _, path = location.partition("/sim-login")
    client = DeskClient(SimpleNamespace(port=addr_of(desk_url + "/")[1]))  # type: ignore[arg-type]
    assert client.get("/sim-login" + path).status == 303
    assert client.get("/lockers").status == 200 and client.csrf is not None
    return client


def _location(url: str, path: str) -> str:
    address, port = addr_of(url)
    conn = http.client.HTTPConnection(address, port, timeout=WAIT_S)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.getheader("Location") or ""


async def _no_code_reaches_the_simulator(url: str, token: str, db_path: str) -> None:
    ws_url = url.replace("http://", "ws://") + f"ws?token={token}"
    async with aiohttp.ClientSession() as http_session:

        async def page() -> _Page:
            p = _Page(await http_session.ws_connect(ws_url, origin=url.rstrip("/")))
            assert (await p.next())["type"] == "hello"
            return p

        early = await page()
        lid = early.got[0]["lockers"][0]["lid"]
        # The simulator's page has no staff operations: what it asked for before is refused.
        for op in ("issue_code", "prepare_delivery", "return_code", "add_staff", "remote_open"):
            reply = await early.ask(op, door=2, size="M", name="Sam", by="desk")
            assert reply["ok"] is False and "unknown request" in reply["error"], (op, reply)

        # Staff create every kind of code on the desk (in a thread: the desk client blocks).
        def on_the_desk() -> dict[str, str]:
            desk = _desk_as_demo(url, token)
            got = {"pickup code": _shown_once(desk.post("/codes/pickup", {"locker": lid, "door": "2", "days": "2"}))}
            got["return code"] = _shown_once(desk.post("/codes/return", {"locker": lid, "size": "M", "days": "5"}))
            assert desk.post("/staff", {"name": "Sam"}).status == 303
            with sqlite3.connect(db_path) as conn:
                (staff_id,) = conn.execute("SELECT id FROM staff WHERE name = 'Sam'").fetchone()
            got["staff PIN"] = _shown_once(desk.post("/staff/pin", {"staff": str(staff_id), "locker": lid}))
            fields = {"locker": lid, "item": "parcel", "size": "M", "language": "en", "days": "5"}
            answer = desk.post("/deliveries/new", fields)
            got["delivery's code"] = _shown_once(answer)
            found = re.search(r'<dd id="delivery-number">(\d+)</dd>', answer.text)
            assert found is not None
            got["number"] = found.group(1)
            return got

        made = await asyncio.to_thread(on_the_desk)
        number = made.pop("number")
        with sqlite3.connect(db_path) as conn:
            for what, code in made.items():
                assert code.isdigit() and _in_host_database(conn, lid, code), what
        # The resident's message once the delivery is loaded, as the service's hook hands it on.
        loaded = {"kind": "loaded", "locker": lid, "door": "3", "code": made["delivery's code"]}
        loaded |= {"code_id": int(number), "expires": 0, "recipient": None, "item": "parcel", "staff": "Sam"}
        async with http_session.post(f"{url}hook?token={token}", json=loaded) as r:
            assert r.status == 200

        # Every page hears of the message, with no code in it; a page connecting later too.
        note = await early.until(lambda m: m.get("type") == "note" and m["note"].get("kind") == "loaded")
        assert note["note"]["code"] is None and note["note"]["masked"] is True
        late = await page()
        hello = late.got[0]
        assert any(n["kind"] == "loaded" for n in hello["notes"])
        assert all(n.get("code") is None for n in hello["notes"])
        for what, code in made.items():
            assert not any(_mentions(m, code) for m in early.got), f"a page open meanwhile is sent the {what}"
            assert not _mentions(hello, code), f"a page connecting later is sent the {what}"
        for p in (early, late):
            await p.ws.close()


def test_no_code_created_on_the_desk_reaches_a_simulator_page(websim: WebSimProc) -> None:
    url = websim.url()
    asyncio.run(_no_code_reaches_the_simulator(url, page_token(url), str(websim.workdir / "fleet.db")))
