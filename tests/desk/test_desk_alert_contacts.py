"""The manager's staff alert contacts: per locker, its e-mail addresses and SMS numbers seen, added
and removed (the contacts the alert sender uses: notify/alerts.py), the `[alerts]` defaults shown for
a locker without its own; bad input refused with what was typed and nothing changed; every change in
the audit trail; desk accounts get 403, every form needs its CSRF token; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from desk_support import PASSWORDS, DeskClient, DeskServer
from pages_support import LOCKER, NASTY, NASTY_SHOWN, Locker, table_rows

from lockertools.config import AlertSettings, Settings
from lockertools.desk import audit
from lockertools.notify.alerts import Contact, contacts_of
from lockertools.service import db

ClientFor = Callable[[str | None], DeskClient]
DEFAULT_EMAIL, DEFAULT_SMS = "duty@stad.example", "+32470000001"
PAGE = f"/alerts/{LOCKER}"


@pytest.fixture
def desk_server(desk_db: str) -> Iterator[DeskServer]:
    """The desk with `[alerts]` defaults (and no [email] or [sms] channel configured)."""
    settings = Settings(alerts=AlertSettings(default_email=[DEFAULT_EMAIL], default_sms=[DEFAULT_SMS]))
    server = DeskServer(desk_db, settings).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def desk_client(desk_server: DeskServer) -> Callable[[str | None], DeskClient]:
    def make(role: str | None) -> DeskClient:
        client = DeskClient(desk_server)
        if role is not None:
            assert client.login(f"{role}1", PASSWORDS[role]).status == 303
            client.get("/language/en?next=/lockers")
        return client

    return make


@pytest.fixture
def locker(desk_server: DeskServer) -> Locker:
    Locker(desk_server, "hall-2")
    return Locker(desk_server)


def _contacts(server: DeskServer, locker_id: str = LOCKER) -> list[Contact]:
    with server.connect() as conn:
        return contacts_of(conn, locker_id)


def _changes(server: DeskServer) -> list[dict[str, object]]:
    with server.connect() as conn:
        return [r for r in audit.trail(conn) if str(r["action"]).startswith("alerts.")]


def _state(server: DeskServer) -> tuple[object, ...]:
    with server.connect() as conn:
        rows = conn.execute("SELECT locker_id, channel, address FROM alert_contacts ORDER BY id").fetchall()
        audited = conn.execute("SELECT count(*) FROM desk_audit WHERE action NOT LIKE 'log%'").fetchone()[0]
    return tuple(tuple(r) for r in rows), audited


def test_a_manager_adds_and_removes_a_locker_s_contacts_each_change_audited(
    locker: Locker, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    manager = desk_client("manager")
    page = manager.get(PAGE)
    assert page.status == 200
    assert 'id="uses-defaults"' in page.text  # no contacts of its own: the defaults, shown
    assert DEFAULT_EMAIL in page.text and DEFAULT_SMS in page.text
    assert 'id="waiting-email"' in page.text and 'id="waiting-sms"' in page.text  # no channel configured

    reply = manager.post(f"{PAGE}/add", {"channel": "email", "address": " Ops@Stad.Example "})
    assert reply.status == 303 and reply.location == PAGE
    reply = manager.post(f"{PAGE}/add", {"channel": "sms", "address": "+32 470 12 34 56"})
    assert reply.status == 303
    stored = _contacts(desk_server)  # as the alert sender reads them: normalized
    assert stored == [Contact("email", "Ops@Stad.Example"), Contact("sms", "+32470123456")]
    assert _contacts(desk_server, "hall-2") == []  # the other locker keeps the defaults

    page = manager.get(PAGE)
    assert "also go to +32470123456" in page.text
    own = table_rows(page.text, 'id="own-contacts"')
    assert [row[:2] for row in own] == [["e-mail", stored[0].address], ["text message", "+32470123456"]]
    assert 'id="uses-defaults"' not in page.text
    overview = table_rows(manager.get("/alerts").text, 'id="alert-lockers"')
    assert overview[0][1] == f"e-mail {stored[0].address}, text message +32470123456"
    assert overview[1][1] == "the defaults"

    reply = manager.post(f"{PAGE}/remove", {"channel": "sms", "address": "+32470123456"})
    assert reply.status == 303 and _contacts(desk_server) == stored[:1]
    reply = manager.post(f"{PAGE}/remove", {"channel": "email", "address": stored[0].address})
    assert reply.status == 303 and _contacts(desk_server) == []
    page = manager.get(PAGE)
    assert "has no contacts of its own: its alerts go to the defaults" in page.text
    assert 'id="uses-defaults"' in page.text

    changes = [(r["action"], r["target"], r["account_name"], r["detail"]) for r in _changes(desk_server)]
    assert list(reversed(changes)) == [  # the trail lists the newest first
        ("alerts.add", LOCKER, "manager1", {"channel": "email", "address": stored[0].address}),
        ("alerts.add", LOCKER, "manager1", {"channel": "sms", "address": "+32470123456"}),
        ("alerts.remove", LOCKER, "manager1", {"channel": "sms", "address": "+32470123456"}),
        ("alerts.remove", LOCKER, "manager1", {"channel": "email", "address": stored[0].address}),
    ]
    assert {r["address"] for r in _changes(desk_server)} == {"127.0.0.1"}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"channel": "email", "address": "not-an-address"}, "is not an e-mail address"),
        ({"channel": "sms", "address": "12ab"}, "8 to 15 digits"),
        ({"channel": "sms", "address": ""}, "is needed"),
        ({"channel": "fax", "address": "+32470123456"}, "choose e-mail or SMS"),
        ({"channel": "email", "address": NASTY}, "is not an e-mail address"),
        ({"channel": "email", "address": "x@" + "a" * 260 + ".example"}, "at most 254 characters"),
    ],
)
def test_bad_input_is_refused_with_what_was_typed_and_nothing_changes(
    fields: dict[str, str], reason: str, locker: Locker, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    manager = desk_client("manager")
    before = _state(desk_server)
    reply = manager.post(f"{PAGE}/add", fields)
    assert reply.status == 400
    assert 'role="alert"' in reply.text and reason in reply.text
    typed = NASTY_SHOWN if fields["address"] == NASTY else fields["address"]
    assert f'name="address" value="{typed}"' in reply.text  # the form keeps what was typed
    assert NASTY not in reply.text
    assert _state(desk_server) == before


def test_a_contact_is_added_once_and_removing_an_unknown_one_is_refused(
    locker: Locker, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    manager = desk_client("manager")
    assert manager.post(f"{PAGE}/add", {"channel": "sms", "address": "+32470123456"}).status == 303
    before = _state(desk_server)
    reply = manager.post(f"{PAGE}/add", {"channel": "sms", "address": "+32 470 123 456"})
    assert reply.status == 400 and "is a contact of this locker already" in reply.text
    reply = manager.post(f"{PAGE}/remove", {"channel": "email", "address": "nobody@stad.example"})
    assert reply.status == 400 and "is not a contact of this locker" in reply.text
    reply = manager.post("/alerts/hall-2/remove", {"channel": "sms", "address": "+32470123456"})
    assert reply.status == 400  # another locker's contact is not this one's
    assert _state(desk_server) == before
    assert manager.get("/alerts/nowhere").status == 404
    assert manager.post("/alerts/nowhere/add", {"channel": "sms", "address": "+32470123456"}).status == 404
    assert _state(desk_server) == before


def test_desk_accounts_get_403_and_every_form_needs_its_csrf_token(
    locker: Locker, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    with desk_server.connect() as conn, db.transaction(conn):
        conn.execute(
            "INSERT INTO alert_contacts(locker_id, channel, address, created_at) VALUES (?, 'sms', '+32470123456', 0)",
            (LOCKER,),
        )
    forms = {
        f"{PAGE}/add": {"channel": "email", "address": "ops@stad.example"},
        f"{PAGE}/remove": {"channel": "sms", "address": "+32470123456"},
    }
    desk, manager = desk_client("desk"), desk_client("manager")
    assert desk.get("/alerts").status == 403 and desk.get(PAGE).status == 403
    assert 'href="/alerts"' not in desk.get("/lockers").text
    assert 'href="/alerts"' in manager.get("/lockers").text
    before = _state(desk_server)
    for path, fields in forms.items():
        assert desk.post(path, fields).status == 403, path
        assert manager.post(path, fields, csrf=None).status == 403, path
        assert manager.post(path, fields, csrf="not-the-token").status == 403, path
        assert desk_client(None).post(path, fields, csrf=None).status in (303, 403), path
    assert _state(desk_server) == before
    for path, fields in forms.items():
        assert manager.post(path, fields).status == 303, path
    assert _contacts(desk_server) == [Contact("email", "ops@stad.example")]


@pytest.mark.parametrize(
    ("language", "title", "heading", "defaults"),
    [
        ("nl", "Personeelsmeldingen van kluis hall-1", "<h2>Standaardwaarden</h2>", "de standaardwaarden"),
        ("fr", "Alertes du personnel de la consigne hall-1", "<h2>Valeurs par défaut</h2>", "les valeurs par défaut"),
    ],
)
def test_the_pages_speak_dutch_and_french(
    language: str, title: str, heading: str, defaults: str, locker: Locker, desk_client: ClientFor
) -> None:
    manager = desk_client("manager")
    manager.get(f"/language/{language}?next=/alerts")
    page = manager.get(PAGE)
    assert title in page.text and heading in page.text
    refused = manager.post(f"{PAGE}/add", {"channel": "email", "address": "oops"})
    assert refused.status == 400 and "oops" in refused.text
    assert ("niet toegevoegd" if language == "nl" else "non ajouté") in refused.text
    assert table_rows(manager.get("/alerts").text, 'id="alert-lockers"')[0][1] == defaults


def test_the_same_contact_added_by_two_managers_at_once_is_refused_not_an_error(
    locker: Locker, desk_client: ClientFor, desk_server: DeskServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second of two simultaneous adds passes the page's own check and meets the table's unique
    constraint: it gets the same "already" answer, not a server error, and nothing changes."""
    manager = desk_client("manager")
    assert manager.post(f"{PAGE}/add", {"channel": "sms", "address": "+32470123456"}).status == 303
    before = _state(desk_server)
    # as if the other manager's insert committed between this request's check and its insert
    monkeypatch.setattr("lockertools.desk.pages.alert_contacts.contacts_of", lambda conn, locker_id: [])
    reply = manager.post(f"{PAGE}/add", {"channel": "sms", "address": "+32470123456"})
    assert reply.status == 400 and "is a contact of this locker already" in reply.text
    assert _state(desk_server) == before
