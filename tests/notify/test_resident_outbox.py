"""The outbox on both databases, against real servers on loopback: an SMTP server (aiosmtpd) gets
the e-mail, an HTTP sink the SMS gateway's request; a channel that is down is retried and delivers
once; the plain code is kept only until every channel accepted the message."""

from __future__ import annotations

import asyncio
import logging
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from notify_helpers import (
    ADDRESS,
    GatewaySink,
    SmtpSink,
    fleet,
    free_port,
    loaded_delivery,
    run_until,
    settings,
)

from lockertools.notify import (
    Outbox,
    TemplateError,
    delivery_reach,
    failed_messages,
    letter_pdf,
    letters_to_print,
    mark_letters_printed,
    messages_of_delivery,
    purge_contacts,
    words,
)
from lockertools.service import db, fleet_db


@pytest.fixture(autouse=True)
def _on_both_databases(database: str) -> str:
    return database


def _held(conn: db.Connection, number: int) -> str | None:
    row = conn.execute("SELECT code FROM held_codes WHERE code_id = ?", (number,)).fetchone()
    return None if row is None else str(row[0])


def _text_and_html(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def test_the_resident_gets_an_email_in_french_with_code_item_deadline_address_and_help(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    conn = fleet(tmp_path / "fleet.db")
    resident = fleet_db.Resident(name="Anne Dubois", email="anne@example.org", language="fr")
    issued = loaded_delivery(conn, resident, item="document")
    outbox = Outbox(settings(["email"], smtp_port=smtp_sink.port))
    run_until(outbox, conn, lambda: len(smtp_sink.received) == 1, "the e-mail")
    message = smtp_sink.received[0]
    assert message["To"] == "anne@example.org"
    assert message["Content-Language"] == "fr"
    assert "Gent" in str(message["From"]) and "votre document" in str(message["Subject"])
    text, html = _text_and_html(message)
    expires = conn.execute("SELECT expires FROM codes WHERE id = ?", (issued.number,)).fetchone()[0]
    grouped = words.grouped(issued.code)
    for part in (text, html):
        assert grouped in part
        assert words.date_words(expires, "fr") in part
        assert "votre document" in part
        assert ADDRESS in part
        assert "09 210 10 10" in part
        assert "Tapez le code." in part
    assert "font-size:40px" in html.split(grouped)[0].rsplit("<p", 1)[1]  # the code in large digits
    assert "Typ de code" not in text  # French only
    # Accepted by the only channel: the plain code is gone, the message recorded as sent.
    assert _held(conn, issued.number) is None
    [view] = messages_of_delivery(conn, issued.number)
    assert (view.channel, view.state, view.kind, view.attempts) == ("email", "sent", "loaded", 1)


def test_the_sms_gateway_gets_the_configured_request(tmp_path: Path, gateway: GatewaySink) -> None:
    conn = fleet(tmp_path / "fleet.db")
    issued = loaded_delivery(conn, fleet_db.Resident(phone="+32 470 12 34 56", language="en"), item="waste bags")
    configured = settings(["sms"], sms_url=gateway.url)
    configured = configured.__class__(
        town=configured.town,
        messages=configured.messages,
        email=configured.email,
        sms=configured.sms.__class__(**{**configured.sms.__dict__, "token": _secret("s3cret")}),
    )
    outbox = Outbox(configured)
    run_until(outbox, conn, lambda: len(gateway.requests) == 1, "the gateway's request")
    request = gateway.requests[0]
    assert request["method"] == "POST" and request["path"] == "/v1/messages"
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["body"]
    assert body["to"] == "+32470123456"
    assert words.grouped(issued.code) in body["text"] and "your waste bags" in body["text"]
    [view] = messages_of_delivery(conn, issued.number)
    assert body["ref"] and view.state == "sent"
    assert _held(conn, issued.number) is None


def _secret(value: str) -> object:
    from lockertools.config import Secret

    return Secret(value, "test")


def test_a_refusing_gateway_is_a_failure_without_the_code(tmp_path: Path, gateway: GatewaySink) -> None:
    conn = fleet(tmp_path / "fleet.db")
    gateway.status = 200  # the success condition says 201
    issued = loaded_delivery(conn, fleet_db.Resident(phone="0470123456", language="nl"))
    outbox = Outbox(settings(["sms"], sms_url=gateway.url))
    run_until(outbox, conn, lambda: bool(failed_messages(conn)), "the failure")
    [view] = failed_messages(conn)
    assert view.error is not None and "HTTP 200 from the SMS gateway" in view.error
    assert issued.code not in view.error and words.grouped(issued.code) not in view.error
    assert _held(conn, issued.number) == issued.code  # kept: no channel accepted it yet


def test_a_channel_that_is_down_is_retried_and_delivers_exactly_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lockertools")
    conn = fleet(tmp_path / "fleet.db")
    issued = loaded_delivery(conn, fleet_db.Resident(email="jan@example.org", phone="0470123456", language="nl"))
    port = free_port()
    gateway = GatewaySink()
    sink = SmtpSink(port)
    try:
        outbox = Outbox(settings(["email", "sms"], smtp_port=port, sms_url=gateway.url))
        # The SMTP server is down: the e-mail fails (the desk sees it), the text message goes.
        run_until(outbox, conn, lambda: any(v.attempts >= 3 for v in failed_messages(conn)), "three failed tries")
        [failed] = failed_messages(conn)
        assert failed.channel == "email" and failed.error is not None and "SMTP server 127.0.0.1" in failed.error
        assert len(gateway.requests) == 1
        assert _held(conn, issued.number) == issued.code  # the e-mail channel has not accepted it yet
        sink.start()
        run_until(outbox, conn, lambda: len(sink.received) == 1, "the e-mail once the server is back")
        for _ in range(5):  # more rounds: nothing goes twice
            asyncio.run(outbox.run_once(conn))
        assert len(sink.received) == 1 and len(gateway.requests) == 1
        states = {v.channel: v.state for v in messages_of_delivery(conn, issued.number)}
        assert states == {"email": "sent", "sms": "sent"}
        assert failed_messages(conn) == []
        assert _held(conn, issued.number) is None  # both accepted: the plain code is gone
        assert sorted(delivery_reach(conn, outbox.settings, issued.number)) == ["email", "sms"]
    finally:
        sink.stop()
        gateway.close()
    assert issued.code not in caplog.text and words.grouped(issued.code) not in caplog.text


def test_a_send_interrupted_by_a_restart_goes_once_with_the_same_message_id(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    conn = fleet(tmp_path / "fleet.db")
    issued = loaded_delivery(conn, fleet_db.Resident(email="jan@example.org", language="en"))
    first = Outbox(settings(["email"], smtp_port=smtp_sink.port))
    first.plan(conn, time.time())
    [row] = conn.execute("SELECT id, ref FROM resident_messages").fetchall()
    # The service stopped after committing the attempt and before the server answered.
    with db.transaction(conn):
        conn.execute("UPDATE resident_messages SET state = 'sending', attempts = 1 WHERE id = ?", (row["id"],))
    conn.close()
    conn = db.connect(tmp_path / "fleet.db")
    restarted = Outbox(settings(["email"], smtp_port=smtp_sink.port))
    assert restarted.recover(conn) == 1
    run_until(restarted, conn, lambda: len(smtp_sink.received) == 1, "the e-mail after the restart")
    for _ in range(3):
        asyncio.run(restarted.run_once(conn))
    assert len(smtp_sink.received) == 1
    assert smtp_sink.received[0]["Message-ID"] == row["ref"]
    [view] = messages_of_delivery(conn, issued.number)
    assert (view.state, view.attempts) == ("sent", 2)


def test_a_resident_without_email_or_phone_gets_the_letter(tmp_path: Path) -> None:
    conn = fleet(tmp_path / "fleet.db")
    issued = loaded_delivery(conn, fleet_db.Resident(name="Jef Peeters", language="nl"), item="permit")
    configured = settings(["email", "sms"], sms_url="http://127.0.0.1:9/unused")
    assert delivery_reach(conn, configured, issued.number) == ["letter"]
    outbox = Outbox(configured)
    asyncio.run(outbox.run_once(conn))
    [letter] = letters_to_print(conn)
    assert letter.hand_over_letter and letter.delivery == issued.number
    pdf = letter_pdf(conn, configured, [letter.id])
    assert pdf.startswith(b"%PDF")
    assert _held(conn, issued.number) == issued.code  # kept until the letter is printed
    assert mark_letters_printed(conn, [letter.id]) == 1
    assert _held(conn, issued.number) is None
    assert [v.state for v in messages_of_delivery(conn, issued.number)] == ["printed"]
    # A letter never printed before the delivery ended is not one to print any more.
    other = loaded_delivery(conn, fleet_db.Resident(language="en"), door="A3")
    asyncio.run(outbox.run_once(conn))
    assert [m.delivery for m in letters_to_print(conn)] == [other.number]
    with db.transaction(conn):
        conn.execute("DELETE FROM held_codes WHERE code_id = ?", (other.number,))  # as a pickup does
    asyncio.run(outbox.run_once(conn))
    assert letters_to_print(conn) == []
    [moot] = messages_of_delivery(conn, other.number)
    assert moot.state == "skipped" and moot.error == "the delivery ended before the letter was printed"


def test_reminders_and_thank_you_go_by_the_residents_channel(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    conn = fleet(tmp_path / "fleet.db")
    issued = loaded_delivery(conn, fleet_db.Resident(email="jan@example.org", language="nl"))
    outbox = Outbox(settings(["email"], smtp_port=smtp_sink.port, thank_you=True))
    run_until(outbox, conn, lambda: len(smtp_sink.received) == 1, "the first e-mail")
    now = time.time()
    with db.transaction(conn):  # a day before the deadline
        conn.execute(
            "UPDATE codes SET expires = ?, loaded_at = ? WHERE id = ?", (now + 3600, now - 90000, issued.number)
        )
        assert fleet_db.queue_reminders(conn, now) == 1
    run_until(outbox, conn, lambda: len(smtp_sink.received) == 2, "the reminder")
    reminder = smtp_sink.received[1]
    assert "vóór" in str(reminder["Subject"])
    assert words.grouped(issued.code) not in _text_and_html(reminder)[0]
    with db.transaction(conn):
        conn.execute("UPDATE codes SET state = 'used', used_at = ? WHERE id = ?", (now, issued.number))
    run_until(outbox, conn, lambda: len(smtp_sink.received) == 3, "the thank-you")
    assert "bedankt" in str(smtp_sink.received[2]["Subject"])
    kinds = [(v.kind, v.state) for v in messages_of_delivery(conn, issued.number)]
    assert kinds == [("loaded", "sent"), ("reminder", "sent"), ("picked_up", "sent")]


def test_contact_details_are_deleted_after_the_retention(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    conn = fleet(tmp_path / "fleet.db")
    resident = fleet_db.Resident(name="Jan Janssens", email="jan@example.org", phone="0470123456", language="nl")
    done = loaded_delivery(conn, resident)
    waiting = loaded_delivery(conn, resident, door="A3")
    outbox = Outbox(settings(["email"], smtp_port=smtp_sink.port))
    run_until(outbox, conn, lambda: len(smtp_sink.received) == 2, "both e-mails")
    now = time.time()
    with db.transaction(conn):
        conn.execute("UPDATE codes SET state = 'used', used_at = ? WHERE id = ?", (now - 31 * 86400, done.number))
    assert purge_contacts(conn, now, 30) == 1
    assert fleet_db.delivery_resident(conn, done.number) == fleet_db.Resident(language="nl")
    assert fleet_db.delivery_resident(conn, waiting.number) == resident.checked()  # not ended: kept
    # Nothing in the database names the resident of the ended delivery any more.
    for table in ("delivery_details", "resident_messages", "codes", "notifications", "events"):
        for row in conn.execute(f"SELECT * FROM {table}").fetchall():
            values = dict(row)
            if values.get("code_id", values.get("id")) == waiting.number:
                continue
            text = " ".join(str(v) for v in values.values())
            if table in ("events", "notifications") or values.get("code_id", values.get("id")) == done.number:
                for personal in ("Jan Janssens", "jan@example.org", "0470123456"):
                    assert personal not in text, (table, values)


def test_templates_are_checked_when_the_outbox_starts(tmp_path: Path) -> None:
    (tmp_path / "own" / "nl").mkdir(parents=True)
    (tmp_path / "own" / "nl" / "loaded.txt").write_text(
        "{% block subject %}x{% endblock %}\n{% block body %}\n{{ straat }}\n{% endblock %}"
        "{% block sms %}{% endblock %}"
    )
    with pytest.raises(TemplateError, match=r"own/nl/loaded\.txt:3: unknown field 'straat'"):
        Outbox(settings(["email"], templates=tmp_path / "own"))


def test_an_error_loses_the_code_in_whatever_form_a_server_echoes_it() -> None:
    from lockertools.notify.channels import scrubbed

    for echoed in ("12345678", "1234 5678", "1234-5678", "1234.5678"):
        assert scrubbed(f"550 refused:  code {echoed} looks like spam", "12345678") == (
            "550 refused: code [code] looks like spam"
        )
    cut = scrubbed("x" * 295 + " 1234 5678", "12345678")  # bounded after the code is out: no digits left
    assert len(cut) == 300 and "1234" not in cut
    assert scrubbed("HTTP 503 from the gateway", None) == "HTTP 503 from the gateway"
