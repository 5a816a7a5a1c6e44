"""Who may use `lockerctl sim web`, and what it tells them: raw HTTP and aiohttp's client against the
real command (the lockers, the host service and the broker running behind it).

A page of another site in the same browser must not drive the lockers, not even after DNS rebinding
(its name resolved to 127.0.0.1: Host and Origin both its own), and no page may read a code or staff
PIN it did not just create: those go in plain only in the reply to the request that created them
(and a delivery's `loaded` message, to the page that prepared it).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from websim_support import WebSimProc, addr_of, http_raw, needs_the_stack, page_token, ws_handshake

from lockertools.service import fleet_db

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
        self.rid += 1
        rid = self.rid
        await self.ws.send_json({"rid": rid, "op": op, "locker": 0, **args})
        reply = await self.until(lambda m: m.get("type") == "reply" and m.get("rid") == rid)
        assert reply["ok"], reply
        result: dict[str, Any] = reply["result"]
        return result

    def notes(self) -> list[dict[str, Any]]:
        return [m["note"] for m in self.got if m.get("type") == "note"]


async def _codes_only_to_their_page(url: str, token: str, db_path: str) -> None:
    ws_url = url.replace("http://", "ws://") + f"ws?token={token}"
    async with aiohttp.ClientSession() as http:

        async def page() -> _Page:
            p = _Page(await http.ws_connect(ws_url, origin=url.rstrip("/")))
            assert (await p.next())["type"] == "hello"
            return p

        staff_desk, other = await page(), await page()
        lid = staff_desk.got[0]["lockers"][0]["lid"]
        issued = await staff_desk.ask("issue_code", door="2", days=2)
        returned = await staff_desk.ask("return_code", size="M")
        member = await staff_desk.ask("add_staff", name="Sam")
        delivery = await staff_desk.ask("prepare_delivery", size="M")
        with sqlite3.connect(db_path) as conn:
            held = conn.execute("SELECT code FROM held_codes WHERE code_id = ?", (delivery["number"],)).fetchone()[0]
            # The code the delivery's resident will get, as the service's hook hands it on `loaded`.
            loaded = {"kind": "loaded", "locker": lid, "door": "3", "code": held, "code_id": delivery["number"]}
            loaded |= {"expires": 0, "recipient": None, "item": "parcel", "staff": "Sam"}
            async with http.post(f"{url}hook?token={token}", json=loaded) as r:
                assert r.status == 200
            secrets_ = {
                "pickup code": issued["note"]["code"],
                "return code": returned["note"]["code"],
                "staff PIN": member["note"]["code"],
                "delivery's code": held,
            }
            for what, code in secrets_.items():
                assert code and code.isdigit() and _in_host_database(conn, lid, code), what

        # The staff desk's page had each in the reply to its request, and the delivery's code from the hook.
        assert _mentions(issued, secrets_["pickup code"]) and _mentions(member, secrets_["staff PIN"])
        await staff_desk.until(lambda m: m.get("type") == "note" and m["note"].get("code") == held)
        # The other page heard of every message (5), with no code in any.
        await other.until(lambda m: len(other.notes()) >= 5)
        late = await page()
        hello = late.got[0]
        assert len(hello["notes"]) >= 5 and all(n.get("code") is None for n in hello["notes"])
        assert {n["kind"] for n in hello["notes"]} >= {"code", "return", "staff", "delivery", "loaded"}
        for what, code in secrets_.items():
            assert not _mentions(hello, code), f"a page connecting later is sent the {what}"
            assert not any(_mentions(m, code) for m in other.got), f"another page is sent the {what}"
        for p in (staff_desk, other, late):
            await p.ws.close()


def test_no_plain_code_reaches_a_page_that_did_not_create_it(websim: WebSimProc) -> None:
    url = websim.url()
    asyncio.run(_codes_only_to_their_page(url, page_token(url), str(websim.workdir / "fleet.db")))
