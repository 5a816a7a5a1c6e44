"""A resident's e-mail through the whole chain (e2e_chain.Chain: real firmware on a simulated board,
real mosquitto, the host service with residents' messages on): a delivery prepared for a French
speaker, staff load it at the simulated keypad, an SMTP server on loopback receives the French
e-mail with the code, the resident picks up with the code from the e-mail, in French at the
keypad, and the locker's display names the item the host sent with the code (a document)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from e2e_chain import LID, Chain

from lockertools.notify import Outbox, messages_of_delivery, set_locker_place
from lockertools.service import fleet_db
from lockertools.sim import default_micropython
from tests.notify.notify_helpers import SmtpSink, free_port, settings

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(free_port())
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


def test_a_french_resident_gets_the_code_by_email_and_picks_up(
    chain: Callable[..., Chain], smtp_sink: SmtpSink
) -> None:
    # The language the resident picks lasts while they read the screen: the short message_ms of
    # the other e2e tests would turn it back to Dutch before the first digit on a loaded machine.
    c = chain(config={"message_ms": 60_000})
    assert c.service.service is not None
    c.service.service.outbox = Outbox(settings(["email"], smtp_port=smtp_sink.port))  # as [messages] would
    set_locker_place(c.conn, LID, "Grand-Place 1, 1000 Bruxelles")
    (staff_pin,) = fleet_db.add_staff(c.conn, "Bea", [LID])[1]
    resident = fleet_db.Resident(name="Anne Dubois", email="anne@example.org", language="fr")
    delivery = fleet_db.prepare_delivery(c.conn, LID, size="M", item="document", resident=resident)
    c.boot()
    c.wait_synced()

    b = c.board
    b.type_code(staff_pin.pin)
    c.wait_fw("staff_in", 1, staff=staff_pin.code_id)
    b.tap("1")
    mark = b.mark()
    b.type_code(str(delivery.number))
    door = int(b.wait_event("solenoid", 5, since=mark, on=1)["door"])
    label = b.labels[door]
    b.wait_event("door", 5, since=mark, door=door, open=1)
    b.set_parcel(door, True)
    b.close_door(door)
    c.wait_fw("loaded", 1, d=label, id=delivery.number)
    b.tap("*")

    c.wait(lambda: smtp_sink.received, "the resident's e-mail")
    (message,) = smtp_sink.received
    assert message["To"] == "anne@example.org" and message["Content-Language"] == "fr"
    body = message.get_body(("plain",))
    assert body is not None
    text = str(body.get_content())
    assert "Bonjour Anne Dubois," in text and "votre document" in text and "Grand-Place 1, 1000 Bruxelles" in text
    found = re.search(r"^(\d{4}) (\d{4})\s*$", text, re.M)
    assert found is not None, text
    code = found.group(1) + found.group(2)
    assert code == delivery.code
    c.wait(lambda: not c.query("SELECT 1 FROM held_codes"), "the held code deleted once the e-mail went")
    assert [(m.channel, m.state) for m in messages_of_delivery(c.conn, delivery.number)] == [("email", "sent")]

    # At the locker: "*" for French (the idle prompt's French turn says so), then the code as the
    # resident read it in the e-mail. The take screen names the document, in French.
    before = c.fw_count("pickup", d=label)
    b.tap("*")
    b.wait_display("Francais")  # the display's character set has no ç
    mark = b.mark()
    b.type_code(code)
    b.wait_event("solenoid", 5, since=mark, door=door, on=1)
    b.wait_event("door", 5, since=mark, door=door, open=1)

    def screens() -> list[list[str]]:
        return [[line.rstrip() for line in e["lines"]] for e in b.events("display", since=mark)]

    take = ["Prenez le pli", "Fermez la porte"]  # a parcel's: "Prenez le colis"
    b.wait_for(lambda: take in screens(), 10, f"the French take screen for a document (shown: {screens()})")
    assert ["Prenez le colis", "Fermez la porte"] not in screens() and screens()[0] == ["Votre code :", "*"]
    b.set_parcel(door, False)
    b.wait_event("solenoid", 5, since=mark, door=door, on=0)
    b.close_door(door)
    c.wait_fw("pickup", before + 1, 10, d=label)
    c.wait(lambda: c.query("SELECT state FROM codes WHERE id = ?", delivery.number)[0][0] == "used", "recorded")
    c.wait_all_events()
    c.check_codes_consistent()
