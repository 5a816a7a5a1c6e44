"""The integration API's mount point: /api/v1/ serves lockertools.api's application when that
package is there, and nothing (404, not the login page) when it is not; the desk's session and
CSRF checks leave the API's paths to it."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from desk_support import DeskClient, DeskServer

from lockertools.desk import app as desk_app


def test_without_the_api_package_nothing_is_served_there(
    desk_server: DeskServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    if desk_app.API_MODULE in sys.modules or _importable(desk_app.API_MODULE):
        pytest.skip("lockertools.api is installed: the other test covers the mount")
    client = DeskClient(desk_server)
    for method in ("GET", "POST"):
        reply = client.request(method, "/api/v1/lockers", b"" if method == "POST" else None)
        assert reply.status == 404, (method, reply.status, reply.location)


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    calls: list[Any] = []

    def create_api_app(engine: Any, settings: Any) -> web.Application:
        calls.append((engine, settings))
        api = web.Application()

        async def lockers(request: web.Request) -> web.Response:
            return web.json_response({"lockers": [], "method": request.method})

        api.router.add_route("*", "/lockers", lockers)
        return api

    module = types.ModuleType("fake_api_app")
    module.create_api_app = create_api_app  # type: ignore[attr-defined]
    monkeypatch.setattr(desk_app, "API_MODULE", "fake_api_app")
    monkeypatch.setitem(sys.modules, "fake_api_app", module)
    yield calls


def test_the_api_is_mounted_at_api_v1_with_its_own_checks(fake_api: list[Any], desk_db: str) -> None:
    server = DeskServer(desk_db).start()
    try:
        assert len(fake_api) == 1 and fake_api[0][1] is server.settings
        client = DeskClient(server)  # no session, no CSRF token: the API's callers have neither
        got = client.get("/api/v1/lockers")
        assert got.status == 200 and '"method": "GET"' in got.text
        posted = client.request("POST", "/api/v1/lockers", b"{}", {"Content-Type": "application/json"})
        assert posted.status == 200 and '"method": "POST"' in posted.text
        assert client.get("/lockers").status == 303  # the desk's own pages still need a session
    finally:
        server.stop()
