"""The audit trail: each staff action is recorded (who, what, when, from where), and nothing edits
or deletes it: no route of the desk, and not the database itself. Also: what staff type comes back
as text (HTML and SQL in every text field)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from desk_support import PASSWORDS, DeskClient, DeskServer, settings_with

from lockertools.desk import audit, auth
from lockertools.service import db, schema

ClientFor = Callable[[str | None], DeskClient]
NASTY = "<script>alert('x')</script>';DROP/**/TABLE/**/desk_accounts;--"


def _trail(server: DeskServer) -> list[dict[str, object]]:
    with server.connect() as conn:
        return list(reversed(audit.trail(conn)))


def test_each_action_is_recorded_with_who_when_and_where(desk_db: str) -> None:
    server = DeskServer(desk_db, settings_with(trusted_proxies=["127.0.0.1"])).start()
    try:
        admin = DeskClient(server, {"X-Forwarded-For": "198.51.100.20"})
        assert admin.login("admin1", "wrong-password").status == 401
        server.clock.advance(10)
        assert admin.login("admin1", PASSWORDS["admin"]).status == 303
        assert (
            admin.post("/admin/accounts", {"name": "clerk", "role": "desk", "password": "clerk-password"}).status == 303
        )
        with server.connect() as conn:
            clerk = auth.find_account(conn, "clerk").id
        for action in ({"action": "role", "role": "manager"}, {"action": "password", "password": "another-password"},
                       {"action": "disable"}, {"action": "enable"}):  # fmt: skip
            assert admin.post(f"/admin/accounts/{clerk}", action).status == 303
        assert admin.post("/logout").status == 303
        rows = _trail(server)
    finally:
        server.stop()
    got = [(r["action"], r["account_name"], r["role"], r["target"], r["address"]) for r in rows]
    assert got == [
        ("login.refused", "-", None, "admin1", "198.51.100.20"),
        ("login", "admin1", "admin", None, "198.51.100.20"),
        ("account.add", "admin1", "admin", "clerk", "198.51.100.20"),
        ("account.role", "admin1", "admin", "clerk", "198.51.100.20"),
        ("account.password", "admin1", "admin", "clerk", "198.51.100.20"),
        ("account.disable", "admin1", "admin", "clerk", "198.51.100.20"),
        ("account.enable", "admin1", "admin", "clerk", "198.51.100.20"),
        ("logout", "admin1", "admin", None, "198.51.100.20"),
    ]
    assert rows[0]["at"] == 1_800_000_000.0 and rows[1]["at"] == 1_800_000_010.0  # the desk's clock
    assert rows[3]["detail"] == {"from": "desk", "to": "manager"}
    assert "another-password" not in repr(rows) and "clerk-password" not in repr(rows)


def test_managers_read_the_trail(desk_client: ClientFor) -> None:
    manager = desk_client("manager")
    page = manager.get("/audit")
    assert page.status == 200
    assert "<td>login</td>" in page.text and "<td>manager1</td>" in page.text


def test_no_route_of_the_desk_changes_the_trail(desk_client: ClientFor, desk_server: DeskServer) -> None:
    for route in desk_server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = str(info.get("path") or info.get("formatter") or info.get("prefix") or "")
        if "audit" in path:
            assert route.method in ("GET", "HEAD"), (route.method, path)
    admin = desk_client("admin")
    before = _trail(desk_server)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        reply = admin.request(method, "/audit", f"csrf={admin.csrf}".encode())
        assert reply.status == 405, (method, reply.status)
    assert admin.post(f"/audit?before={before[-1]['id']}", {"delete": "1"}).status == 405
    assert _trail(desk_server) == before


def test_the_database_refuses_to_edit_or_delete_the_trail(desk_server: DeskServer, desk_client: ClientFor) -> None:
    desk_client("admin")  # a login: one row at least
    with desk_server.connect() as conn:
        count = len(audit.trail(conn))
        assert count >= 1
        for statement in (
            "UPDATE desk_audit SET account_name = 'someone else'",
            "DELETE FROM desk_audit",
            *(["TRUNCATE desk_audit"] if not conn.sqlite else []),
        ):
            with pytest.raises(db.Error, match="append-only"), db.transaction(conn):
                conn.execute(statement)
        assert len(audit.trail(conn)) == count
        assert {r["account_name"] for r in audit.trail(conn)} == {"admin1"}


def test_a_database_from_before_the_desk_gets_its_tables(tmp_path: Path) -> None:
    # A fleet database at the baseline revision (the service's, before the desk) is upgraded on open.
    target = str(tmp_path / "old.db")
    engine = db.engine_for(target, create=True)
    # the tables of the revisions after the baseline
    desk_tables = {"desk_accounts", "desk_sessions", "desk_login_failures", "desk_audit", "door_sizes"}
    desk_tables |= {"delivery_details", "incidents", "incident_log", "api_tokens", "api_idempotency"}
    desk_tables |= {"webhooks", "webhook_events", "webhook_deliveries"}
    with engine.connect() as conn:
        tables = [t for name, t in schema.metadata.tables.items() if name not in desk_tables]
        schema.metadata.create_all(conn, tables=tables)
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('0001_baseline')"))
        conn.commit()
    engine.dispose()
    with db.connect(target) as conn:
        assert db.schema_revision(conn) == db.schema_head()
        auth.add_account(conn, "first", "admin", "first-password", time.time())
        audit.record(conn, at=1.0, who="first", address="local", action="login")
        with pytest.raises(db.Error, match="append-only"), db.transaction(conn):
            conn.execute("DELETE FROM desk_audit")


def test_html_and_sql_in_text_fields_come_back_as_text(desk_client: ClientFor, desk_server: DeskServer) -> None:
    admin = desk_client("admin")
    # An account name cannot hold spaces; everything else of it is kept as typed.
    assert admin.post("/admin/accounts", {"name": NASTY, "role": "desk", "password": "nasty-password"}).status == 303
    page = admin.get("/admin/accounts").text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#39;;DROP/**/TABLE/**/desk_accounts;--" in page
    # a name that is refused is shown back, escaped, with the error (nothing typed is lost)
    bad = "<b>two words</b>' OR '1'='1"
    reply = admin.post("/admin/accounts", {"name": bad, "role": "desk", "password": "nasty-password"})
    assert reply.status == 400 and "<b>two" not in reply.text
    assert 'value="&lt;b&gt;two words&lt;/b&gt;&#39; OR &#39;1&#39;=&#39;1"' in reply.text
    # the login form's name field, and the audit trail that records the attempt
    client = DeskClient(desk_server)
    reply = client.login(NASTY, "' OR '1'='1")
    assert reply.status == 401 and "<script>alert" not in reply.text
    assert client.login(f"{NASTY}", "nasty-password").status == 303  # SQL text is just a name
    trail = desk_client("manager").get("/audit").text
    assert "<script>alert" not in trail and "&lt;script&gt;alert" in trail
    with desk_server.connect() as conn:
        assert auth.find_account(conn, NASTY).name == NASTY
        assert len(auth.accounts(conn)) == 4
