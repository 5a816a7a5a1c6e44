"""The admin's Integrations page: API tokens (created with their scopes and shown once, listed with
their last use, revoked after a confirmation) and webhooks (registered with the signing secret
shown once, removed after a confirmation), with the webhook requests that failed and "retry now";
admins only, every action in the audit trail; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from desk_support import DeskClient, DeskServer
from pages_support import LOCKER, NASTY, NASTY_SHOWN, Locker, get_pages, table_rows

from lockertools.api import tokens, webhooks
from lockertools.desk import audit
from lockertools.service import db, fleet_db, incidents

ClientFor = Callable[[str | None], DeskClient]
PAGE = "/admin/integrations"
_SECRET = re.compile(r'id="new-secret">([^<]+)<')


@pytest.fixture
def locker(desk_server: DeskServer) -> Locker:
    return Locker(desk_server)


def _secret_of(reply: Any) -> str:
    found = _SECRET.search(reply.text)
    assert reply.status == 200 and found, (reply.status, reply.text[:2000])
    return found.group(1)


def _every_page(server: DeskServer, locker: Locker, desk_client: ClientFor) -> Iterator[tuple[str, str, str]]:
    """(role, path, text) of every GET page of the desk, for every role (a new route is walked too)."""
    with server.connect() as conn:
        number = fleet_db.prepare_delivery(conn, LOCKER).number
        account_id = conn.execute("SELECT id FROM desk_accounts WHERE name = 'admin1'").fetchone()[0]
    locker.event("jammed", "A1")  # an incident, for its page
    with server.connect() as conn:
        incident = incidents.list_incidents(conn)[0]
    values = {"number": str(number), "locker_id": LOCKER, "lang": "en", "account_id": str(account_id)}
    values["incident_id"] = str(incident.id)
    paths = get_pages(server, values)
    assert PAGE in paths and "/admin/settings" in paths
    # the printed letters (tests/desk/test_desk_messages.py): this desk plans none, so there is none
    letters = (f"/deliveries/{number}/letter", "/messages/letters.pdf")
    for role in ("desk", "manager", "admin"):
        client = desk_client(role)
        for path in paths + [f"{PAGE}/confirm?webhook=1", f"{PAGE}/confirm?token=erp"]:
            reply = client.get(path)
            assert reply.status in ((404,) if path in letters else (200, 303, 403)), (role, path, reply.status)
            yield role, path, reply.text


def _audited(server: DeskServer, prefix: str) -> list[tuple[Any, ...]]:
    with server.connect() as conn:
        rows = list(reversed(audit.trail(conn)))
    return [
        (r["action"], r["account_name"], r["role"], r["address"], r["target"], r["detail"])
        for r in rows
        if str(r["action"]).startswith(prefix)
    ]


def test_only_admins_reach_the_page_and_its_forms(desk_client: ClientFor, desk_server: DeskServer) -> None:
    with desk_server.connect() as conn:
        tokens.create_token(conn, "erp", ["read"])
        hook = webhooks.add_webhook(conn, "http://127.0.0.1:9/hook").webhook
    forms = {
        f"{PAGE}/tokens": {"name": "by-them", "scopes": "read"},
        f"{PAGE}/tokens/revoke": {"name": "erp"},
        f"{PAGE}/webhooks": {"url": "http://127.0.0.1:9/theirs"},
        f"{PAGE}/webhooks/remove": {"webhook": str(hook.id)},
        f"{PAGE}/webhooks/retry": {"event": "1", "webhook": str(hook.id)},
    }
    for role in ("desk", "manager"):
        client = desk_client(role)
        for path in (PAGE, f"{PAGE}/confirm?token=erp", "/admin/settings"):
            assert client.get(path).status == 403, (role, path)
        for path, fields in forms.items():
            assert client.post(path, fields).status == 403, (role, path)
        assert 'href="/admin/integrations"' not in client.get("/lockers").text
    nobody = desk_client(None)
    assert nobody.get(PAGE).status == 303  # to the login page
    assert nobody.post(f"{PAGE}/tokens", forms[f"{PAGE}/tokens"], csrf=None).status in (303, 403)
    with desk_server.connect() as conn:  # nothing changed
        assert [(t.name, t.revoked_at) for t in tokens.list_tokens(conn, include_revoked=True)] == [("erp", None)]
        assert [w.url for w in webhooks.list_webhooks(conn)] == ["http://127.0.0.1:9/hook"]
    admin = desk_client("admin")
    assert 'href="/admin/integrations"' in admin.get("/lockers").text
    # a form without the session's token is refused, and changes nothing
    assert admin.post(f"{PAGE}/tokens/revoke", {"name": "erp"}, csrf=None).status == 403
    with desk_server.connect() as conn:
        assert tokens.list_tokens(conn)[0].revoked_at is None


def test_a_token_is_created_shown_once_listed_and_revoked_after_a_confirmation(
    locker: Locker, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    admin = desk_client("admin")
    admin.get("/language/en?next=/lockers")
    created = admin.post(f"{PAGE}/tokens", {"name": "e-loket", "scopes": "deliveries"})
    secret = _secret_of(created)
    assert secret.startswith(tokens.PREFIX) and "e-loket" in created.text
    with desk_server.connect() as conn:  # a working token, with its scope
        used = tokens.authenticate(conn, secret)
        assert used is not None and used.name == "e-loket" and used.scopes == ("deliveries",)
        stored = conn.execute("SELECT token_sha256 FROM api_tokens").scalar()
        assert stored == tokens.token_hash(secret)
    rows = table_rows(admin.get(PAGE).text, "API tokens")
    assert len(rows) == 1 and rows[0][0] == "e-loket" and rows[0][1] == "deliveries"
    assert "admin1" in rows[0][2] and rows[0][3] != "never" and rows[0][4] == "active"  # last used: just now
    # no page of the desk shows the secret again, to any role
    walked = list(_every_page(desk_server, locker, desk_client))
    assert len(walked) > 30
    for role, path, text in walked:
        assert secret not in text, (role, path)
    # revoking asks first
    confirm = admin.get(f"{PAGE}/confirm?token=e-loket")
    assert confirm.status == 200 and "Revoke the token e-loket?" in confirm.text
    assert 'action="/admin/integrations/tokens/revoke"' in confirm.text
    revoked = admin.post(f"{PAGE}/tokens/revoke", {"name": "e-loket"})
    assert revoked.status == 303 and revoked.location == PAGE
    page = admin.get(PAGE).text
    assert "Token e-loket revoked." in page and table_rows(page, "API tokens")[0][4].startswith("revoked on")
    assert "confirm?token=e-loket" not in page  # nothing more to revoke
    with desk_server.connect() as conn:
        assert tokens.authenticate(conn, secret) is None
    # revoking again is refused with a clear error
    again = admin.post(f"{PAGE}/tokens/revoke", {"name": "e-loket"})
    assert again.status == 400 and "revoked already" in again.text
    assert _audited(desk_server, "token.") == [
        ("token.create", "admin1", "admin", "127.0.0.1", "e-loket", {"scopes": ["deliveries"]}),
        ("token.revoke", "admin1", "admin", "127.0.0.1", "e-loket", {}),
    ]


def test_a_bad_token_form_is_refused_with_what_was_typed(desk_client: ClientFor, desk_server: DeskServer) -> None:
    admin = desk_client("admin")
    no_scope = admin.post(f"{PAGE}/tokens", {"name": "town-erp"})
    assert no_scope.status == 400 and "scopes: one or more of" in no_scope.text
    assert 'value="town-erp"' in no_scope.text
    bad_name = admin.post(f"{PAGE}/tokens", {"name": "<b>x</b>", "scopes": "read"})
    assert bad_name.status == 400 and "token name:" in bad_name.text
    assert 'value="&lt;b&gt;x&lt;/b&gt;"' in bad_name.text and 'id="scope-read" name="scopes" value="read" checked' in (
        bad_name.text
    )
    admin.post(f"{PAGE}/tokens", {"name": "town-erp", "scopes": "read"})
    twice = admin.post(f"{PAGE}/tokens", {"name": "town-erp", "scopes": "read"})
    assert twice.status == 400 and "already" in twice.text and not _SECRET.search(twice.text)
    with desk_server.connect() as conn:
        assert [t.name for t in tokens.list_tokens(conn)] == ["town-erp"]
    assert [a[0] for a in _audited(desk_server, "token.")] == ["token.create"]


class _Receiver:
    """A webhook's receiver on a loopback port reserved now and refusing connections (bound, not
    listening) until `start()`."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.bodies: list[dict[str, Any]] = []
        self.server: http.server.HTTPServer | None = None

    def start(self) -> None:
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = self.sock
        self.server.server_activate()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        self.sock.close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    try:
        yield r
    finally:
        r.stop()


def _send_round(server: DeskServer) -> int:
    """One round of the service's webhook sender on the desk's database: how many were sent."""
    sender = webhooks.WebhookSender(webhooks.SenderOptions(timeout_s=10))

    async def go() -> int:
        async with aiohttp.ClientSession() as session:
            with server.connect() as conn:
                return await sender.send_due(session, conn)

    return asyncio.run(go())


def _nav_badge(text: str) -> str | None:
    found = re.search(r'href="/admin/integrations"[^>]*>[^<]*(?:<span class="count">(\d+)</span>)?', text)
    assert found, "no Integrations entry in the navigation"
    return found.group(1)


def test_a_failed_webhook_is_shown_with_its_error_and_sent_once_on_retry_now(
    locker: Locker, receiver: _Receiver, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    admin = desk_client("admin")
    admin.get("/language/en?next=/lockers")
    registered = admin.post(f"{PAGE}/webhooks", {"url": receiver.url, "description": "town ERP"})
    signing = _secret_of(registered)
    assert signing.startswith(webhooks.SECRET_PREFIX) and receiver.url in registered.text
    with desk_server.connect() as conn:
        (hook,) = webhooks.list_webhooks(conn)
        issued = fleet_db.prepare_delivery(conn, LOCKER)
        fleet_db.cancel_delivery(conn, issued.number)  # one event queued for the webhook
    page = admin.get(PAGE).text
    assert table_rows(page, "Webhooks")[0][:3] == [str(hook.id), receiver.url, "town ERP"]
    assert "No webhook request has failed." in page and _nav_badge(page) is None
    assert _send_round(desk_server) == 0  # the receiver refuses the connection
    page = admin.get(PAGE).text
    (row,) = table_rows(page, "Webhook requests that failed")
    event, delivery, url, attempts, next_attempt, error = row[:6]
    assert (event, delivery, url, attempts) == ("cancelled", str(issued.number), receiver.url, "1")
    assert next_attempt and "Connect" in error, row  # aiohttp's ClientConnectorError: connection refused
    assert _nav_badge(page) == "1" and _nav_badge(admin.get("/lockers").text) == "1"
    for text in (page, admin.get("/lockers").text):
        assert signing not in text and issued.code not in text
    # the receiver comes up; retry now: sent at the next round, once
    receiver.start()
    retried = admin.post(f"{PAGE}/webhooks/retry", {"event": _event_id(page), "webhook": str(hook.id)})
    assert retried.status == 303 and retried.location == PAGE
    assert _send_round(desk_server) == 1
    assert _send_round(desk_server) == 0
    assert [(b["event"], b["delivery"]) for b in receiver.bodies] == [("cancelled", issued.number)]
    page = admin.get(PAGE).text
    assert "No webhook request has failed." in page and _nav_badge(page) is None
    # retrying what is not (or no longer) listed is refused, and changes nothing
    again = admin.post(f"{PAGE}/webhooks/retry", {"event": _event_id_of(desk_server), "webhook": str(hook.id)})
    assert again.status == 400 and "no failed event" in again.text
    assert _audited(desk_server, "webhook.") == [
        ("webhook.add", "admin1", "admin", "127.0.0.1", str(hook.id), {"url": receiver.url}),
        ("webhook.retry", "admin1", "admin", "127.0.0.1", str(hook.id),
         {"event": "cancelled", "delivery": issued.number, "attempts": 1}),
    ]  # fmt: skip
    # the signing secret is on no page of the desk
    for role, path, text in _every_page(desk_server, locker, desk_client):
        assert signing not in text, (role, path)


def _event_id(page: str) -> str:
    found = re.search(r'name="event" value="(\d+)"', page)
    assert found, "no retry form"
    return found.group(1)


def _event_id_of(server: DeskServer) -> str:
    with server.connect() as conn:
        return str(conn.execute("SELECT max(id) FROM webhook_events").scalar())


def test_a_given_up_webhook_request_is_retried_from_its_first_attempt(
    receiver: _Receiver, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    Locker(desk_server)
    with desk_server.connect() as conn:
        hook = webhooks.add_webhook(conn, receiver.url).webhook
        number = fleet_db.prepare_delivery(conn, LOCKER).number
        fleet_db.cancel_delivery(conn, number)
        with db.transaction(conn):  # as the sender leaves one after its last attempt
            conn.execute("UPDATE webhook_deliveries SET state = 'failed', attempts = 12, last_error = 'HTTP 500'")
    admin = desk_client("admin")
    admin.get("/language/en?next=/lockers")
    page = admin.get(PAGE).text
    (row,) = table_rows(page, "Webhook requests that failed")
    assert row[3:6] == ["12", "given up", "HTTP 500"]
    receiver.start()
    assert admin.post(f"{PAGE}/webhooks/retry", {"event": _event_id(page), "webhook": str(hook.id)}).status == 303
    with desk_server.connect() as conn:
        state = conn.execute("SELECT state, attempts FROM webhook_deliveries").fetchone()
        assert (state[0], state[1]) == ("pending", 0)
    assert _send_round(desk_server) == 1 and len(receiver.bodies) == 1


def test_a_webhook_is_removed_after_a_confirmation(desk_client: ClientFor, desk_server: DeskServer) -> None:
    admin = desk_client("admin")
    admin.get("/language/en?next=/lockers")
    _secret_of(admin.post(f"{PAGE}/webhooks", {"url": "http://127.0.0.1:9/old", "description": NASTY}))
    with desk_server.connect() as conn:
        (hook,) = webhooks.list_webhooks(conn)
    listed = admin.get(PAGE).text  # what an admin typed comes back as text
    assert NASTY_SHOWN in listed and NASTY not in listed and hook.description == NASTY
    confirm = admin.get(f"{PAGE}/confirm?webhook={hook.id}")
    assert confirm.status == 200 and f"Remove the webhook {hook.id}?" in confirm.text
    assert "http://127.0.0.1:9/old" in confirm.text
    assert admin.get(f"{PAGE}/confirm?webhook=999").status == 303  # none such: back to the page
    removed = admin.post(f"{PAGE}/webhooks/remove", {"webhook": str(hook.id)})
    assert removed.status == 303
    page = admin.get(PAGE).text
    assert f"Webhook {hook.id} removed." in page
    (row,) = table_rows(page, "Webhooks")
    assert row[1] == "http://127.0.0.1:9/old" and row[4].startswith("removed on") and row[5] == ""
    with desk_server.connect() as conn:
        assert webhooks.list_webhooks(conn) == []
    bad = admin.post(f"{PAGE}/webhooks", {"url": "ftp://example.invalid/x", "description": "old one"})
    assert bad.status == 400 and "http:// or https://" in bad.text and 'value="old one"' in bad.text
    gone = admin.post(f"{PAGE}/webhooks/remove", {"webhook": str(hook.id)})
    assert gone.status == 400 and f"no webhook {hook.id}" in gone.text
    assert [a[:5] for a in _audited(desk_server, "webhook.")] == [
        ("webhook.add", "admin1", "admin", "127.0.0.1", str(hook.id)),
        ("webhook.remove", "admin1", "admin", "127.0.0.1", str(hook.id)),
    ]


def test_a_key_in_a_webhook_urls_query_is_shown_starred(desk_client: ClientFor, desk_server: DeskServer) -> None:
    """Some receivers take their key in the query: the pages that list and confirm show it starred."""
    key = "receiver-key-5d1f"
    with desk_server.connect() as conn:
        hook = webhooks.add_webhook(conn, f"http://127.0.0.1:9/in?key={key}").webhook
    admin = desk_client("admin")
    admin.get("/language/en?next=/lockers")
    listed = admin.get(PAGE).text
    confirm = admin.get(f"{PAGE}/confirm?webhook={hook.id}").text
    for text in (listed, confirm):
        assert "http://127.0.0.1:9/in?******" in text and key not in text
