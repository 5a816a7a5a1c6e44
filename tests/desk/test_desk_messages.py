"""Residents' messages at the desk: a delivery's messages on its page (never the code, not even in an
error a server echoed), the letter for a resident no channel reaches (its PDF read back, only with a
session, audited), the letters to print (per locker, one PDF, marked printed), the failed messages
with a retry that the outbox then sends, and the incident that links to them; on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from desk_support import PASSWORDS, DeskClient, DeskServer, Reply
from pages_support import LOCKER, Locker, table_rows

from lockertools.config import NotifySettings, Settings
from lockertools.desk import audit, i18n, i18n_messages
from lockertools.notify import Outbox, words
from lockertools.service import db, fleet_db, incidents
from tests.notify.notify_helpers import GatewaySink, SmtpSink, free_port
from tests.notify.notify_helpers import settings as message_settings

Serve = Callable[[Settings], DeskServer]
STEPS_FR = ("Tapez le code.", "Appuyez sur #.", "La porte s'ouvre.")
_NUMBER = re.compile(r'id="delivery-number">(\d+)<')
_CODE = re.compile(r'id="resident-code">(\d+)<')
_TAGS = re.compile(r"<[^>]+>")


@pytest.fixture
def serve(desk_db: str) -> Iterator[Serve]:
    """The desk with the given settings (residents' messages on)."""
    started: list[DeskServer] = []

    def make(settings: Settings) -> DeskServer:
        server = DeskServer(desk_db, settings).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def _client(server: DeskServer, role: str = "desk", language: str = "en") -> DeskClient:
    client = DeskClient(server)
    assert client.login(f"{role}1", PASSWORDS[role]).status == 303
    client.get(f"/language/{language}?next=/lockers")
    return client


def _loaded(server: DeskServer, locker: Locker, resident: fleet_db.Resident, door: str = "4") -> tuple[int, str]:
    with server.connect() as conn:
        issued = fleet_db.prepare_delivery(conn, locker.id, "L", item="document", resident=resident)
    locker.event("loaded", door, id=issued.number)
    return issued.number, issued.code


def _plan(server: DeskServer) -> Outbox:
    """The service's outbox on the desk's database: the loaded deliveries' messages planned."""
    outbox = Outbox(server.settings)
    with server.connect() as conn:
        outbox.plan(conn, time.time())
    return outbox


def _send(server: DeskServer, outbox: Outbox) -> None:
    with server.connect() as conn:
        asyncio.run(outbox.run_once(conn))


def _pdf_text(reply: Reply, tmp_path: Path) -> tuple[str, int]:
    """The PDF's text (pdftotext) and its number of pages (pdfinfo)."""
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext is missing: apt-get install poppler-utils (the Makefile's SYSTEM_PACKAGES)")
    pdf = tmp_path / f"reply-{time.monotonic_ns()}.pdf"
    pdf.write_bytes(reply.body)
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, check=True, text=True).stdout
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, check=True, text=True).stdout
    pages = re.search(r"^Pages:\s+(\d+)$", info, re.M)
    assert pages, info
    return text, int(pages.group(1))


def _no_code(reply: Reply, code: str, where: str) -> None:
    for form in (code, words.grouped(code)):
        assert form not in reply.text, (where, form)


def _trail(server: DeskServer, action: str) -> list[dict[str, Any]]:
    with server.connect() as conn:
        return [r for r in reversed(audit.trail(conn)) if r["action"] == action]


class EchoingSmtp(SmtpSink):
    """An SMTP server that refuses every message, quoting the code back in its answer (as a spam
    filter quoting the text it objects to does)."""

    echo = ""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        return f"550 5.7.1 refused as spam: 'Uw code: {self.echo}'"


@pytest.fixture
def gateway() -> Iterator[GatewaySink]:
    sink = GatewaySink()
    try:
        yield sink
    finally:
        sink.close()


@pytest.fixture
def echoing_smtp() -> Iterator[EchoingSmtp]:
    sink = EchoingSmtp(free_port())
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


def test_a_delivery_s_page_shows_each_message_and_never_the_code(
    serve: Serve, echoing_smtp: EchoingSmtp, gateway: GatewaySink
) -> None:
    server = serve(message_settings(["email", "sms"], smtp_port=echoing_smtp.port, sms_url=gateway.url))
    locker = Locker(server)
    resident = fleet_db.Resident("Anna Peeters", "anna@example.org", "+32470123456", "nl", "K-1")
    number, code = _loaded(server, locker, resident)
    echoing_smtp.echo = words.grouped(code)  # the e-mail's refusal quotes the code as the e-mail shows it
    _send(server, _plan(server))
    with server.connect() as conn:
        states = dict(conn.execute("SELECT channel, state FROM resident_messages").fetchall())
    assert states == {"email": "failed", "sms": "sent"}
    client = _client(server)
    page = client.get(f"/deliveries/{number}")
    assert page.status == 200
    rows = table_rows(page.text, 'id="messages"')  # channel, message, state, tries, queued, sent, next, error
    assert [r[:4] for r in rows] == [
        ["e-mail", "new code", "failed", "1"],
        ["text message", "new code", "sent", "1"],
        ["notification hook", "new code", "waiting", "0"],  # the hook's notification, queued
    ]
    assert "550 5.7.1 refused as spam" in rows[0][7] and "[code]" in rows[0][7]
    assert rows[0][6] != "" and rows[1][5] != "" and rows[1][6] == ""  # a failed one's next try; a sent one's time
    assert 'id="reach">Reaches the resident by: e-mail, text message<' in page.text
    assert 'id="hand-over"' not in page.text  # e-mail and SMS reach this resident
    for language in i18n.LANGUAGES:
        client.get(f"/language/{language}?next=/lockers")
        for path in (f"/deliveries/{number}", "/messages/failed", "/messages/letters", "/deliveries", "/lockers"):
            reply = client.get(path)
            assert reply.status == 200, path
            _no_code(reply, code, f"{language} {path}")
    failed = _client(server).get("/messages/failed")
    assert "refused as spam" in failed.text and f'href="/deliveries/{number}"' in failed.text


def test_the_letter_for_a_resident_no_channel_reaches(serve: Serve, tmp_path: Path) -> None:
    server = serve(message_settings(["email"], smtp_port=free_port()))
    locker = Locker(server)
    client = _client(server)
    form = {"locker": LOCKER, "item": "document", "size": "L", "language": "fr", "days": "5", "name": "Élise"}
    created = client.post("/deliveries/new", form)
    number_found, code_found = _NUMBER.search(created.text), _CODE.search(created.text)
    assert created.status == 200 and number_found and code_found
    number, code = int(number_found.group(1)), code_found.group(1)
    assert 'id="hand-over"' in created.text and f'href="/deliveries/{number}/letter"' in created.text
    early = client.get(f"/deliveries/{number}/letter")  # not loaded yet: nothing to print
    assert early.status == 404 and f"Delivery {number} has no letter" in early.text
    assert "The letter can be printed here once the item is loaded." in client.get(f"/deliveries/{number}").text
    locker.event("loaded", "4", id=number)
    _plan(server)
    for language, heading in (("nl", "Geef de brief af"), ("fr", "Remettre la lettre"), ("en", "Hand over the letter")):
        client.get(f"/language/{language}?next=/lockers")
        page = client.get(f"/deliveries/{number}")
        assert page.status == 200
        assert f'<h2 id="hand-over-title">{heading}</h2>' in page.text
        assert i18n.translator(language)("Print the letter (PDF)") in page.text
        assert i18n.translator(language)("hand over the letter") in table_rows(page.text, 'id="messages"')[0][2]
        _no_code(page, code, language)
    letter = client.get(f"/deliveries/{number}/letter")
    assert letter.status == 200 and letter.headers["Content-Type"] == "application/pdf"
    assert letter.headers["Cache-Control"] == "no-store"
    text, pages = _pdf_text(letter, tmp_path)
    assert pages == 1 and words.grouped(code) in text
    for step in STEPS_FR:  # in the resident's language
        assert step in text
    (printed,) = _trail(server, "letter.print")
    assert (printed["account_name"], printed["target"]) == ("desk1", str(number))
    assert code not in str(printed)
    stranger = DeskClient(server).get(f"/deliveries/{number}/letter")  # no session: the login page, no letter
    assert stranger.status == 303 and stranger.location and stranger.location.startswith("/login")
    assert b"%PDF" not in stranger.body
    assert len(_trail(server, "letter.print")) == 1


def test_letters_to_print_per_locker_as_one_pdf_then_marked_printed(serve: Serve, tmp_path: Path) -> None:
    server = serve(message_settings(["email"], smtp_port=free_port()))
    here = Locker(server)
    there = Locker(server, "hall-2")
    first, first_code = _loaded(server, here, fleet_db.Resident("Jan", language="nl", case_ref="C-1"))
    second, second_code = _loaded(server, there, fleet_db.Resident("Rita", language="en"))
    _loaded(server, here, fleet_db.Resident("Ann", email="ann@example.org"), door="3")  # e-mail: no letter
    picked, _code = _loaded(server, here, fleet_db.Resident("Piet", language="fr"), door="2")
    _plan(server)
    here.event("pickup", "2", id=picked)  # the code was handed over at the counter: no letter to print now
    client = _client(server)
    page = client.get("/messages/letters")
    assert [r[:4] for r in table_rows(page.text, 'id="letters"')] == [
        [str(first), LOCKER, "Jan", "C-1"],
        [str(second), "hall-2", "Rita", ""],
    ]
    assert re.search(r'href="/messages/letters"[^>]*>Letters to print <span class="count">2</span>', page.text)
    only_here = client.get(f"/messages/letters?locker={LOCKER}")
    assert [r[0] for r in table_rows(only_here.text, 'id="letters"')] == [str(first)]
    for reply in (page, only_here):
        _no_code(reply, first_code, "letters")
        _no_code(reply, second_code, "letters")
    one = client.get(f"/messages/letters.pdf?locker={LOCKER}")
    assert one.status == 200 and one.headers["Cache-Control"] == "no-store"
    text, pages = _pdf_text(one, tmp_path)
    assert pages == 1 and words.grouped(first_code) in text and words.grouped(second_code) not in text
    both = client.get("/messages/letters.pdf")
    text, pages = _pdf_text(both, tmp_path)
    assert pages == 2 and words.grouped(first_code) in text and words.grouped(second_code) in text
    assert "Typ de code." in text and "Type the code." in text  # each in its resident's language
    assert [r["target"] for r in _trail(server, "letter.print")] == [str(first), str(first), str(second)]
    # marked printed: a form with the session's token, for the letters the page listed
    with server.connect() as conn:
        (first_letter,) = conn.execute(
            "SELECT id FROM resident_messages WHERE code_id = ? AND channel = 'letter'", (first,)
        ).fetchone()
    fields = {"letter": str(first_letter), "next": f"/messages/letters?locker={LOCKER}"}
    assert client.post("/messages/letters/printed", fields, csrf=None).status == 403
    assert client.post("/messages/letters/printed", fields, csrf="forged").status == 403
    with server.connect() as conn:
        assert conn.execute("SELECT state FROM resident_messages WHERE id = ?", (first_letter,)).fetchone()[0] == (
            "to_print"
        )
    marked = client.post("/messages/letters/printed", fields)
    assert marked.status == 303 and marked.location == f"/messages/letters?locker={LOCKER}"
    after = client.get("/messages/letters")
    assert "1 letter(s) marked printed." in after.text
    assert [r[0] for r in table_rows(after.text, 'id="letters"')] == [str(second)]
    with server.connect() as conn:
        state = conn.execute("SELECT state FROM resident_messages WHERE id = ?", (first_letter,)).fetchone()[0]
        held = conn.execute("SELECT count(*) FROM held_codes WHERE code_id = ?", (first,)).fetchone()[0]
    assert state == "printed" and held == 0  # the letter went out: the plain code goes
    (done,) = _trail(server, "letter.printed")
    assert (done["account_name"], done["target"]) == ("desk1", str(first))
    gone = client.get(f"/deliveries/{first}/letter")
    assert gone.status == 404 and "can no longer be printed" in gone.text
    assert client.post("/messages/letters/printed", {"letter": "nope"}).status == 303  # refused, nothing marked
    assert len(_trail(server, "letter.printed")) == 1


def test_failed_messages_are_listed_and_retried(serve: Serve) -> None:
    port = free_port()  # nothing listens there yet: the e-mail fails
    server = serve(message_settings(["email"], smtp_port=port))
    locker = Locker(server)
    number, code = _loaded(server, locker, fleet_db.Resident("Jan", email="jan@example.org"))
    outbox = _plan(server)
    _send(server, outbox)
    later = time.time() + 3600
    with server.connect() as conn, db.transaction(conn):
        conn.execute("UPDATE resident_messages SET next_at = ? WHERE state = 'failed'", (later,))
        conn.execute(
            "UPDATE notifications SET state = 'failed', attempts = 1, error = 'the hook exited with status 1',"
            " next_at = ? WHERE code_id = ?",
            (later, number),
        )
        (email_id,) = conn.execute("SELECT id FROM resident_messages WHERE channel = 'email'").fetchone()
    client = _client(server)
    page = client.get("/messages/failed")
    rows = table_rows(page.text, 'id="failed"')  # locker, delivery, channel, message, tries, error, ...
    assert sorted(r[:5] for r in rows) == [
        [LOCKER, str(number), "e-mail", "new code", "1"],
        [LOCKER, str(number), "notification hook", "new code", "1"],
    ]
    assert any("SMTP server 127.0.0.1" in r[5] for r in rows) and any("status 1" in r[5] for r in rows)
    assert re.search(r'href="/messages/failed"[^>]*>Failed messages <span class="count">2</span>', page.text)
    _no_code(page, code, "failed")
    assert "No failed messages." in client.get("/messages/failed?locker=elsewhere").text
    # the incident the service opens for the hook's failure links here
    with server.connect() as conn, db.transaction(conn):
        incidents.check(conn, time.time())
    with server.connect() as conn:
        (incident,) = incidents.list_incidents(conn, cause="notify_failed")
    assert f'href="/messages/failed?locker={LOCKER}"' in client.get(f"/incidents/{incident.id}").text
    # retry: a form with the session's token; the outbox then sends it at its next round
    fields = {"channel": "email", "message": str(email_id)}
    assert client.post("/messages/failed/retry", fields, csrf=None).status == 403
    sink = SmtpSink(port)
    sink.start()
    try:
        _send(server, outbox)
        assert sink.received == []  # not due: its back-off runs for another hour
        retried = client.post("/messages/failed/retry", fields)
        assert retried.status == 303 and retried.location == "/messages/failed"
        assert "The message will be sent again in a moment." in client.get("/messages/failed").text
        _send(server, outbox)
        assert len(sink.received) == 1
    finally:
        sink.stop()
    with server.connect() as conn:
        assert conn.execute("SELECT state FROM resident_messages WHERE id = ?", (email_id,)).fetchone()[0] == "sent"
    (action,) = _trail(server, "message.retry")
    assert action["target"] == str(number) and action["detail"]["channel"] == "email"
    again = client.post("/messages/failed/retry", fields)  # sent meanwhile: nothing to retry
    assert again.status == 303
    assert "That message is not failed any more" in client.get("/messages/failed").text
    hook = client.post("/messages/failed/retry", {"channel": "hook", "message": "999999"})
    assert hook.status == 303 and "That message is not failed any more" in client.get("/messages/failed").text
    assert len(_trail(server, "message.retry")) == 1
    with server.connect() as conn:
        hook_row = conn.execute("SELECT id FROM notifications WHERE code_id = ? AND state = 'failed'", (number,))
        (hook_id,) = hook_row.fetchone()
    assert client.post("/messages/failed/retry", {"channel": "hook", "message": str(hook_id)}).status == 303
    with server.connect() as conn:
        due = conn.execute("SELECT next_at FROM notifications WHERE id = ?", (hook_id,)).fetchone()[0]
    assert due <= time.time() + 1 and len(_trail(server, "message.retry")) == 2


def test_the_messages_pages_speak_dutch_and_french(serve: Serve) -> None:
    server = serve(message_settings(["email"], smtp_port=free_port()))
    locker = Locker(server)
    letter, _code = _loaded(server, locker, fleet_db.Resident("Jan", language="nl"), door="1")
    failed, _code = _loaded(server, locker, fleet_db.Resident(email="jan@example.org"), door="3")
    _send(server, _plan(server))  # nothing listens on the SMTP port: the e-mail fails
    paths = ["/messages/letters", "/messages/failed", f"/deliveries/{letter}", f"/deliveries/{failed}"]
    # each English text of these pages of two words or more (up to its first field) that the language
    # says otherwise
    for language, catalogue in (("nl", i18n_messages.NL), ("fr", i18n_messages.FR)):
        english = {k.split("{")[0].strip() for k, v in catalogue.items() if k != v}
        english = {t for t in english if " " in t}
        client = _client(server, language=language)
        for path in paths:
            page = client.get(path)
            assert page.status == 200 and f'<html lang="{language}">' in page.text, path
            shown = " ".join(_TAGS.sub(" ", page.text).split())
            left = sorted(t for t in english if t in shown)
            assert not left, (language, path, left)
            assert catalogue["Letters to print"] in shown and catalogue["Failed messages"] in shown


def test_a_printed_letter_s_code_waits_for_the_hook_when_there_is_one(serve: Serve) -> None:
    hooked = dataclasses.replace(
        message_settings(["email"], smtp_port=free_port()), notify=NotifySettings(command="/bin/true")
    )
    server = serve(hooked)
    number, _code = _loaded(server, Locker(server), fleet_db.Resident("Jan"))
    _plan(server)
    with server.connect() as conn:
        (letter,) = conn.execute("SELECT id FROM resident_messages WHERE channel = 'letter'").fetchone()
    assert _client(server).post("/messages/letters/printed", {"letter": str(letter)}).status == 303
    with server.connect() as conn:
        state = conn.execute("SELECT state FROM resident_messages WHERE id = ?", (letter,)).fetchone()[0]
        held = conn.execute("SELECT count(*) FROM held_codes WHERE code_id = ?", (number,)).fetchone()[0]
    assert state == "printed" and held == 1  # the hook has not taken its `loaded` notification yet
