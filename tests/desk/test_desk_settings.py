"""The admin's Settings page: read-only, the configuration in effect (the file's path, each section's
values as lockertools.config loaded them), a secret shown by where it was read from and never by
its value, on this page or any other; admins only."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from desk_support import PASSWORDS, DeskClient, DeskServer
from pages_support import table_rows

from lockertools import config

PAGE = "/admin/settings"
PASSWORD = "broker-password-4f9a1c"
NOTIFY_KEY = "n0tify-key-77e2"


def _config_file(tmp_path: Path, secret_line: str) -> Path:
    path = tmp_path / "lockertools.toml"
    path.write_text(
        f"""
[service]
broker_host = "broker.town.example"
{secret_line}

[notify]
url = "https://hooks.town.example/code?key={NOTIFY_KEY}"

[desk]
language = "en"
idle_minutes = 45
trusted_proxies = ["127.0.0.1", "::1"]
"""
    )
    return path


def _serve(desk_db: str, settings: config.Settings) -> Iterator[tuple[DeskServer, DeskClient]]:
    server = DeskServer(desk_db, settings).start()
    try:
        admin = DeskClient(server)
        assert admin.login("admin1", PASSWORDS["admin"]).status == 303
        yield server, admin
    finally:
        server.stop()


@pytest.fixture
def from_file(desk_db: str, tmp_path: Path) -> Iterator[tuple[DeskServer, DeskClient, Path]]:
    secret = tmp_path / "host.password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    path = _config_file(tmp_path, 'password_file = "host.password"')
    for server, admin in _serve(desk_db, config.load(path)):
        yield server, admin, path


def _values(html: str, section: str) -> dict[str, str]:
    return {row[0]: row[1] for row in table_rows(html, f'id="section-{section}"')}


def test_the_page_shows_the_file_and_every_section_with_the_secret_by_its_source(
    from_file: tuple[DeskServer, DeskClient, Path], tmp_path: Path
) -> None:
    server, admin, path = from_file
    reply = admin.get(PAGE)
    assert reply.status == 200
    assert f"The configuration file: {path}" in reply.text
    for name, cls in config.sections().items():  # every section, every field
        shown = _values(reply.text, name)
        assert list(shown) == [f.name for f in dataclasses.fields(cls)], name
    service = _values(reply.text, "service")
    assert service["broker_host"] == "broker.town.example" and service["broker_port"] == "8883"
    assert service["password"] == f"set (from the file {tmp_path / 'host.password'})"
    assert service["tls_ca"] == "not set" and service["plain"] == "no"
    desk = _values(reply.text, "desk")
    assert (desk["language"], desk["idle_minutes"], desk["trusted_proxies"]) == ("en", "45", "127.0.0.1, ::1")
    assert _values(reply.text, "notify")["url"] == "https://hooks.town.example/code?******"
    assert PASSWORD not in reply.text and NOTIFY_KEY not in reply.text
    # read-only: no form but the logout's
    assert reply.text.count("<form") == 1 and 'action="/logout"' in reply.text


def test_no_page_of_the_desk_shows_a_secret_s_value(from_file: tuple[DeskServer, DeskClient, Path]) -> None:
    server, admin, _path = from_file
    paths = [
        str(r.resource.canonical)
        for r in server.app.router.routes()
        if r.method == "GET" and r.resource is not None and "{" not in r.resource.canonical
    ]
    assert PAGE in paths and "/admin/integrations" in paths
    for path in paths:
        if path.startswith(("/static", "/api")) or path.endswith("/live"):
            continue
        reply = admin.get(path)
        assert PASSWORD not in reply.text and NOTIFY_KEY not in reply.text, path


def test_a_secret_from_the_environment_says_which_variable(
    desk_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKER_TEST_BROKER_PASSWORD", PASSWORD)
    path = _config_file(tmp_path, 'password_env = "LOCKER_TEST_BROKER_PASSWORD"')
    for _server, admin in _serve(desk_db, config.load(path)):
        reply = admin.get(PAGE)
        assert _values(reply.text, "service")["password"] == (
            "set (from the environment variable LOCKER_TEST_BROKER_PASSWORD)"
        )
        assert PASSWORD not in reply.text


def test_without_a_file_the_defaults_are_shown_in_the_reader_s_language(desk_db: str) -> None:
    for _server, admin in _serve(desk_db, config.Settings()):
        reply = admin.get(PAGE)  # the default language: Dutch
        assert reply.status == 200 and "Geen configuratiebestand" in reply.text
        assert _values(reply.text, "service")["password"] == "niet ingesteld"
        assert _values(reply.text, "desk")["language"] == "nl"


def test_only_admins_see_it(desk_client: Callable[[str | None], DeskClient]) -> None:
    make = desk_client
    for role, status in (("desk", 403), ("manager", 403), ("admin", 200)):
        assert make(role).get(PAGE).status == status, role
    assert 'href="/admin/settings"' not in make("manager").get("/lockers").text
    assert make(None).get(PAGE).status == 303
