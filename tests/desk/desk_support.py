"""Support for the staff desk's tests (tests/desk): the desk served on loopback from a thread of the
test process, with a clock the test drives, and a plain HTTP client that keeps its cookies and
knows its session's CSRF token.

- `DeskServer(target, settings)`: `create_app` on the database `target`, on a free port;
  `clock.advance(s)` moves the desk's time (sessions, the login throttle, the audit trail).
- `DeskClient(server)`: `get(path)`, `post(path, fields)` (adds the session's CSRF token unless
  told `csrf=None` or another value), `login(name, password)`; answers are `Reply` (status, text,
  headers, location). Redirects are not followed: the tests look at them.
"""

from __future__ import annotations

import asyncio
import http.client
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from lockertools.config import DeskSettings, Settings
from lockertools.desk.app import create_app
from lockertools.service import db

PASSWORDS = {"desk": "desk-password-1", "manager": "manager-password-1", "admin": "admin-password-1"}
HTTP_S = 30.0
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Clock:
    """The desk's time: starts at a fixed epoch, moves only when the test says."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class DeskServer:
    def __init__(self, target: str, settings: Settings | None = None) -> None:
        self.target = target
        self.settings = settings or Settings()
        self.clock = Clock()
        self.engine = db.engine_for(target)
        self.app: web.Application = create_app(self.engine, self.settings, clock=self.clock)
        self.loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(self.app, access_log=None)
        self._thread = threading.Thread(target=self.loop.run_forever, name="desk", daemon=True)
        self.port = 0

    def start(self) -> DeskServer:
        self._thread.start()
        self.port = self.call(self._start())
        return self

    async def _start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the desk's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(HTTP_S)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.call(self._runner.cleanup())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(HTTP_S)
        self.engine.dispose()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self) -> db.Connection:
        return db.connect(self.target)


def settings_with(**desk: Any) -> Settings:
    return Settings(desk=DeskSettings(**desk))


@dataclass
class Reply:
    status: int
    text: str
    headers: http.client.HTTPMessage
    location: str | None = None
    cookies: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""  # as received (a PDF); `text` is it decoded, an undecodable byte replaced


class DeskClient:
    def __init__(self, server: DeskServer, headers: dict[str, str] | None = None) -> None:
        self.server = server
        self.cookies: dict[str, str] = {}
        self.headers = dict(headers or {})
        self.csrf: str | None = None
        self.last: Reply | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=HTTP_S)
        try:
            sent = {**self.headers, **(headers or {})}
            if self.cookies:
                sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            if body is not None:
                sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            body = response.read()
            text = body.decode(errors="replace")
            got: dict[str, Any] = {}
            for header in response.headers.get_all("Set-Cookie") or []:
                jar = SimpleCookie()
                jar.load(header)
                for name, morsel in jar.items():
                    got[name] = morsel
                    if morsel["max-age"] == "0" or morsel["expires"].startswith("Thu, 01 Jan 1970"):
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            reply = Reply(response.status, text, response.headers, response.headers.get("Location"), got, body)
        finally:
            conn.close()
        found = _CSRF.search(reply.text)
        if found:
            self.csrf = found.group(1)
        self.last = reply
        return reply

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def post(
        self, path: str, fields: dict[str, str] | None = None, csrf: str | None | bool = True,
        headers: dict[str, str] | None = None,
    ) -> Reply:  # fmt: skip
        """POST a form; the CSRF token of the last page seen is added (csrf=True), or none (None), or
        the one given."""
        data = dict(fields or {})
        if csrf is True:
            if self.csrf is None:
                self.get("/lockers")
            assert self.csrf is not None, "no CSRF token seen yet"
            data["csrf"] = self.csrf
        elif isinstance(csrf, str):
            data["csrf"] = csrf
        return self.request("POST", path, urlencode(data).encode(), headers)

    def login(self, name: str, password: str, headers: dict[str, str] | None = None) -> Reply:
        page = self.get("/login", headers=headers)
        assert page.status == 200, page.text
        reply = self.post("/login", {"name": name, "password": password, "next": "/lockers"}, headers=headers)
        if reply.status == 303:
            self.csrf = None
            self.get("/lockers", headers=headers)  # the session's CSRF token
        return reply


def stream_events(server: DeskServer, client: DeskClient, path: str) -> Iterator[tuple[str, str]]:
    """(event, data) pairs from a server-sent events stream, as they come (the caller stops)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HTTP_S)
    headers = {"Accept": "text/event-stream", "Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())}
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    assert response.status == 200, response.read()
    try:
        event, data = "message", []
        while True:
            raw = response.fp.readline()
            if not raw:
                return
            line = raw.decode().rstrip("\n")
            if not line:
                if data:
                    yield event, "\n".join(data)
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
    finally:
        conn.close()
