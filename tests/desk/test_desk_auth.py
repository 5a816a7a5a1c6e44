"""Logging in, roles, sessions, CSRF and the login throttle of the staff desk."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from desk_support import PASSWORDS, DeskClient, DeskServer, settings_with

from lockertools.desk import auth

ClientFor = Callable[[str | None], DeskClient]


def test_no_session_gets_the_login_page(desk_client: ClientFor) -> None:
    anonymous = desk_client(None)
    for path in ("/", "/lockers", "/lockers/L1", "/audit", "/admin/accounts", "/lockers/L1/live"):
        reply = anonymous.get(path)
        assert reply.status == 303, (path, reply.status)
        assert reply.location is not None and reply.location.startswith("/login?next="), (path, reply.location)
    page = anonymous.get("/login")
    assert page.status == 200
    assert 'type="password"' in page.text and 'name="csrf"' in page.text
    # a POST without a session goes to the login page too, and does nothing
    assert anonymous.post("/admin/accounts", {"name": "x", "role": "admin"}, csrf="made-up").status in (303, 403)


def test_a_session_cookie_that_is_not_one_gets_the_login_page(desk_server: DeskServer) -> None:
    client = DeskClient(desk_server)
    client.cookies["desk_session"] = "not-a-session"
    reply = client.get("/lockers")
    assert reply.status == 303 and reply.location == "/login?next=/lockers&expired=1"


def test_roles_see_their_pages_and_not_higher_ones(desk_client: ClientFor) -> None:
    expected = {
        "desk": {"/lockers": 200, "/audit": 403, "/admin/accounts": 403},
        "manager": {"/lockers": 200, "/audit": 200, "/admin/accounts": 403},
        "admin": {"/lockers": 200, "/audit": 200, "/admin/accounts": 200},
    }
    for role, pages in expected.items():
        client = desk_client(role)
        for path, status in pages.items():
            assert client.get(path).status == status, (role, path)
        # and a desk account cannot act as an admin either
        if role != "admin":
            reply = client.post("/admin/accounts", {"name": f"by-{role}", "role": "admin", "password": "x" * 12})
            assert reply.status == 403, (role, reply.status)
    admin = desk_client("admin")
    assert "by-desk" not in admin.get("/admin/accounts").text


def test_the_navigation_shows_what_the_role_may_open(desk_client: ClientFor) -> None:
    desk_page = desk_client("desk").get("/lockers").text
    assert (
        'href="/lockers"' in desk_page
        and 'href="/audit"' not in desk_page
        and 'href="/admin/accounts"' not in desk_page
    )
    admin_page = desk_client("admin").get("/lockers").text
    assert 'href="/audit"' in admin_page and 'href="/admin/accounts"' in admin_page


def test_a_form_without_its_csrf_token_is_refused(desk_client: ClientFor, desk_server: DeskServer) -> None:
    admin = desk_client("admin")
    fields = {"name": "newcomer", "role": "desk", "password": "a-long-password"}
    assert admin.post("/admin/accounts", fields, csrf=None).status == 403
    assert admin.post("/admin/accounts", fields, csrf="forged-token").status == 403
    other = desk_client("admin")  # another session's token is not this one's
    assert other.csrf is not None and other.csrf != admin.csrf
    assert admin.post("/admin/accounts", fields, csrf=other.csrf).status == 403
    with desk_server.connect() as conn, pytest.raises(auth.AuthError):
        auth.find_account(conn, "newcomer")
    assert admin.post("/admin/accounts", fields).status == 303  # with it: done
    with desk_server.connect() as conn:
        assert auth.find_account(conn, "newcomer").role == "desk"
    # logging out is a form too
    assert admin.post("/logout", csrf=None).status == 403
    assert admin.get("/lockers").status == 200


def test_the_login_form_needs_its_own_token(desk_server: DeskServer) -> None:
    client = DeskClient(desk_server)
    client.get("/login")
    reply = client.post("/login", {"name": "admin1", "password": PASSWORDS["admin"]}, csrf=None)
    assert reply.status == 403 and "desk_session" not in client.cookies


def test_the_session_cookie_is_httponly_and_samesite_strict(desk_server: DeskServer) -> None:
    client = DeskClient(desk_server)
    reply = client.login("desk1", PASSWORDS["desk"])
    morsel = reply.cookies["desk_session"]
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and not morsel["secure"]
    assert "desk_session" in client.cookies


def test_over_https_the_cookie_is_secure(desk_db: str) -> None:
    server = DeskServer(desk_db, settings_with(https=True)).start()
    try:
        morsel = DeskClient(server).login("desk1", PASSWORDS["desk"]).cookies["desk_session"]
        assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Strict"
    finally:
        server.stop()


def test_a_session_ends_after_the_idle_time_out(desk_client: ClientFor, desk_server: DeskServer) -> None:
    client = desk_client("desk")
    desk_server.clock.advance(29 * 60)
    assert client.get("/lockers").status == 200  # used: the time-out starts again
    desk_server.clock.advance(29 * 60)
    assert client.get("/lockers").status == 200
    desk_server.clock.advance(30 * 60 + 1)
    reply = client.get("/lockers")
    assert reply.status == 303 and reply.location is not None and "expired=1" in reply.location
    page = client.get(reply.location)
    assert page.status == 200 and 'name="password"' in page.text
    assert "Uw sessie is afgelopen" in page.text  # Dutch: the default language


def test_logging_out_ends_the_session(desk_client: ClientFor) -> None:
    client = desk_client("desk")
    cookie = client.cookies["desk_session"]
    assert client.post("/logout").status == 303
    again = DeskClient(client.server)
    again.cookies["desk_session"] = cookie  # the old cookie, replayed
    assert again.get("/lockers").status == 303


def test_wrong_passwords_are_slowed_per_account(desk_db: str) -> None:
    # Behind a trusted proxy each attempt comes from another address: only the account's count slows it.
    server = DeskServer(desk_db, settings_with(trusted_proxies=["127.0.0.1"])).start()
    try:

        def attempt(password: str, address: str) -> int:
            return DeskClient(server, {"X-Forwarded-For": address}).login("manager1", password).status

        for i in range(auth.FREE_FAILURES):
            assert attempt("wrong-password", f"192.0.2.{i + 1}") == 401
        # now even the right password waits THROTTLE_BASE_S, from anywhere
        refused = DeskClient(server, {"X-Forwarded-For": "198.51.100.7"})
        reply = refused.login("manager1", PASSWORDS["manager"])
        assert reply.status == 429 and reply.headers["Retry-After"] == str(int(auth.THROTTLE_BASE_S))
        assert "desk_session" not in refused.cookies
        server.clock.advance(auth.THROTTLE_BASE_S - 0.5)
        assert attempt(PASSWORDS["manager"], "198.51.100.9") == 429
        server.clock.advance(0.5)
        assert attempt("wrong-again", "198.51.100.10") == 401  # allowed, wrong: the wait doubles
        assert attempt(PASSWORDS["manager"], "198.51.100.11") == 429
        server.clock.advance(2 * auth.THROTTLE_BASE_S)
        assert attempt(PASSWORDS["manager"], "198.51.100.12") == 303
        # a success clears the count
        assert attempt("wrong-password", "198.51.100.13") == 401
        assert attempt(PASSWORDS["manager"], "198.51.100.14") == 303
        # another account was never slowed
        assert DeskClient(server, {"X-Forwarded-For": "192.0.2.1"}).login("desk1", PASSWORDS["desk"]).status == 303
    finally:
        server.stop()


def test_wrong_passwords_are_slowed_per_address(desk_db: str) -> None:
    server = DeskServer(desk_db, settings_with(trusted_proxies=["127.0.0.1"])).start()
    try:
        guesser = {"X-Forwarded-For": "203.0.113.66"}
        for i in range(auth.FREE_FAILURES):
            assert DeskClient(server, guesser).login(f"someone{i}", "guess").status == 401
        # a name never tried before, from that address: slowed
        reply = DeskClient(server, guesser).login("desk1", PASSWORDS["desk"])
        assert reply.status == 429
        # the same account from another address is not
        assert DeskClient(server, {"X-Forwarded-For": "203.0.113.1"}).login("desk1", PASSWORDS["desk"]).status == 303
        server.clock.advance(auth.THROTTLE_BASE_S)
        assert DeskClient(server, guesser).login("desk1", PASSWORDS["desk"]).status == 303
    finally:
        server.stop()


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(desk_server: DeskServer) -> None:
    # Not trusted (the default): a client cannot dodge the address count with a made-up header.
    for i in range(auth.FREE_FAILURES):
        client = DeskClient(desk_server, {"X-Forwarded-For": f"192.0.2.{i}"})
        assert client.login(f"nobody{i}", "guess").status == 401
    assert DeskClient(desk_server, {"X-Forwarded-For": "192.0.2.99"}).login("desk1", PASSWORDS["desk"]).status == 429
    with desk_server.connect() as conn:
        addresses = {r[0] for r in conn.execute("SELECT address FROM desk_audit")}
    assert addresses == {"127.0.0.1"}


def test_a_disabled_account_cannot_log_in_and_loses_its_sessions(desk_client: ClientFor) -> None:
    desk = desk_client("desk")
    admin = desk_client("admin")
    with desk.server.connect() as conn:
        desk_id = auth.find_account(conn, "desk1").id
    assert admin.post(f"/admin/accounts/{desk_id}", {"action": "disable"}).status == 303
    assert desk.get("/lockers").status == 303
    assert DeskClient(desk.server).login("desk1", PASSWORDS["desk"]).status == 401
    assert admin.post(f"/admin/accounts/{desk_id}", {"action": "enable"}).status == 303
    assert DeskClient(desk.server).login("desk1", PASSWORDS["desk"]).status == 303


def test_failures_a_day_old_are_forgotten(desk_server: DeskServer) -> None:
    for _ in range(auth.FREE_FAILURES + 2):
        DeskClient(desk_server).login("desk1", "wrong-password")
        desk_server.clock.advance(auth.THROTTLE_MAX_S)  # each one allowed
    desk_server.clock.advance(auth.FAILURE_MEMORY_S)
    assert DeskClient(desk_server).login("desk1", "wrong-password").status == 401  # the count starts at 1
    assert DeskClient(desk_server).login("desk1", PASSWORDS["desk"]).status == 303


def test_idle_sessions_are_removed_at_the_next_login(desk_client: ClientFor, desk_server: DeskServer) -> None:
    desk_client("desk")
    desk_server.clock.advance(31 * 60)
    desk_client("manager")
    with desk_server.connect() as conn:
        names = [
            r[0] for r in conn.execute("SELECT a.name FROM desk_sessions s JOIN desk_accounts a ON a.id = s.account_id")
        ]
    assert names == ["manager1"]


def test_pages_carry_a_strict_content_security_policy(desk_client: ClientFor) -> None:
    client = desk_client("desk")
    for path in ("/login", "/lockers", "/audit", "/nowhere"):
        reply = client.get(path)
        csp = reply.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Server-Timing"].startswith("app;dur=")
