"""Staff alerts of incidents on both databases, against real servers on loopback: an SMTP server
(aiosmtpd) and an HTTP sink for the SMS gateway. The alert sender's rounds are given their time
(`now`), so a batch window is passed or not by the test's clock, never by a sleep."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from alert_helpers import DESK, alert_settings, door_event, text_of
from notify_helpers import GatewaySink, SmtpSink, fleet, free_port, loaded_delivery

from lockertools.config import Settings
from lockertools.notify.alerts import KEEP_S, AlertError, AlertSender, contacts_of, set_contacts, staff_alerts
from lockertools.service import db, fleet_db, incidents

T0 = 2_000_000_000.0  # the alert sender's clock in these tests


@pytest.fixture(autouse=True)
def _on_both_databases(database: str) -> str:
    return database


def round_at(sender: AlertSender, conn: db.Connection, now: float) -> int:
    return asyncio.run(sender.run_once(conn, now))


def started(conn: db.Connection, s: Settings, now: float = T0) -> AlertSender:
    sender = AlertSender(s)
    sender.start(conn, now)
    return sender


def forced_incident(conn: db.Connection, door: str, among: int = 1) -> incidents.Incident:
    found = incidents.list_incidents(conn, state="open", locker="hall-1", cause="forced")
    assert len(found) == among
    [incident] = [i for i in found if i.door == door]
    return incident


# --- the messages ----------------------------------------------------------------------------------


def test_a_forced_door_sends_one_email_naming_locker_door_cause_and_the_desks_link(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    conn = fleet(tmp_path / "fleet.db")
    resident = fleet_db.Resident(name="Anne Dubois", email="anne@example.org", phone="0470123456", language="fr")
    issued = loaded_delivery(conn, resident, door="A2")
    set_contacts(conn, "hall-1", ["ops@gent.example"], [])
    sender = started(conn, alert_settings(smtp_sink.port))
    door_event(conn, "forced", "A2")
    round_at(sender, conn, T0)
    [message] = smtp_sink.received
    incident = forced_incident(conn, "A2")
    assert message["To"] == "ops@gent.example"
    assert message["Subject"] == "[Gent] Incident: hall-1, door A2: the door was forced open"
    text = text_of(message)
    assert "hall-1, door A2: the door was forced open" in text
    assert "still open" in text
    assert f"On the desk: {DESK}/incidents/{incident.id}" in text
    # Never the code nor anything of the resident whose item is behind that door.
    whole = message.as_string()
    for private in (issued.code, "Anne", "Dubois", "anne@example.org", "0470123456"):
        assert private not in whole and private not in text
    for _ in range(3):  # later rounds send nothing more
        round_at(sender, conn, T0 + 60)
    assert len(smtp_sink.received) == 1
    assert [a.state for a in staff_alerts(conn)] == ["sent"]


def test_without_the_desks_url_the_alert_has_no_link_and_the_default_contact_gets_it(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    conn = fleet(tmp_path / "fleet.db")
    s = alert_settings(smtp_sink.port, desk_url=None, default_email=["wacht@gent.example"])
    sender = started(conn, s)
    door_event(conn, "forced", "A1")
    round_at(sender, conn, T0)
    [message] = smtp_sink.received
    assert message["To"] == "wacht@gent.example"  # hall-1 has no contacts of its own
    assert "door A1" in str(message["Subject"])
    assert "/incidents/" not in text_of(message)


def test_a_flapping_door_within_the_window_sends_one_message_with_the_counts(
    tmp_path: Path, smtp_sink: SmtpSink, gateway: GatewaySink
) -> None:
    conn = fleet(tmp_path / "fleet.db")
    set_contacts(conn, "hall-1", ["ops@gent.example"], ["+32 470 12 34 56"])
    sender = started(conn, alert_settings(smtp_sink.port, gateway.url, language="nl", window_min=5))
    for i in range(100):  # A2 forced and closed again, a hundred times: a hundred incidents
        door_event(conn, "forced", "A2")
        door_event(conn, "closed", "A2")
        door_event(conn, "forced", "A3")  # A3 forced a hundred times, never closed: one incident, bumped
        if i % 10 == 0:
            round_at(sender, conn, T0 + i)  # rounds within the window: nothing goes yet
    round_at(sender, conn, T0 + 299)
    assert smtp_sink.received == [] and gateway.requests == []
    round_at(sender, conn, T0 + 300)
    for later in (301, 400, 1000):
        round_at(sender, conn, T0 + later)
    [message] = smtp_sink.received
    [request] = gateway.requests
    text = text_of(message)
    assert message["Subject"] == "[Gent] 2 incidenten: hall-1"
    a2, a3 = text.split("\n\n")[1:]
    assert a2.startswith("hall-1, deur A2: de deur is opengebroken\n100 keer gebeurd, van ")
    assert "(100 incidenten)" in a2 and "opgelost om " in a2 and ": de deur is gesloten" in a2
    assert a3.startswith("hall-1, deur A3: de deur is opengebroken\n100 keer gebeurd, van ")
    assert "incidenten)" not in a3 and "nog open" in a3
    assert request["body"]["to"] == "+32470123456"
    sms = request["body"]["text"]
    assert "deur A2: de deur is opengebroken x100, opgelost" in sms
    assert "deur A3: de deur is opengebroken x100, open" in sms
    assert [a.state for a in staff_alerts(conn)] == ["sent", "sent"]


def test_a_clear_sends_resolved_and_a_staff_resolution_names_who_without_the_note(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    conn = fleet(tmp_path / "fleet.db")
    set_contacts(conn, "hall-1", ["ops@gent.example"], [])
    sender = started(conn, alert_settings(smtp_sink.port, language="fr"))
    door_event(conn, "forced", "A2")
    round_at(sender, conn, T0)
    incident = forced_incident(conn, "A2")
    door_event(conn, "closed", "A2")
    round_at(sender, conn, T0 + 10)
    first, resolved = smtp_sink.received
    assert str(first["Subject"]) == "[Gent] Incident: hall-1, porte A2: la porte a été forcée"
    assert str(resolved["Subject"]) == "[Gent] Résolu: hall-1, porte A2: la porte a été forcée"
    text = text_of(resolved)
    assert "résolu à " in text and ": la porte a été fermée" in text
    assert f"{DESK}/incidents/{incident.id}" in text
    # Resolved by staff: who did it, never what they wrote (a note may name a resident).
    jammed = incidents.open_or_bump(conn, "hall-1", "jammed", time.time(), door="A1")
    round_at(sender, conn, T0 + 20)
    incidents.resolve(conn, jammed.id, "marie", "called Anne Dubois on 0470 12 34 56", time.time())
    round_at(sender, conn, T0 + 30)
    assert len(smtp_sink.received) == 4
    staff = smtp_sink.received[3]
    assert str(staff["Subject"]) == "[Gent] Résolu: hall-1, porte A1: le pêne ne s'est pas ouvert"
    assert " par marie" in text_of(staff)
    assert "Anne" not in staff.as_string() and "0470" not in staff.as_string()


def test_a_channel_down_then_up_delivers_exactly_once(tmp_path: Path, gateway: GatewaySink) -> None:
    conn = fleet(tmp_path / "fleet.db")
    port = free_port()  # nothing listens there yet
    set_contacts(conn, "hall-1", ["ops@gent.example"], ["+32470123456"])
    sender = started(conn, alert_settings(port, gateway.url))
    gateway.status = 503
    door_event(conn, "forced", "A2")
    round_at(sender, conn, T0)
    alerts = {a.channel: a for a in staff_alerts(conn)}
    assert alerts["email"].state == "failed" and f"127.0.0.1:{port}" in (alerts["email"].error or "")
    assert alerts["sms"].state == "failed" and "HTTP 503" in (alerts["sms"].error or "")
    round_at(sender, conn, T0 + 5)  # before the retry's time: not tried again
    assert len(gateway.requests) == 1
    assert {a.attempts for a in staff_alerts(conn)} == {1}
    sink = SmtpSink(port)
    sink.start()
    try:
        gateway.status = 201
        round_at(sender, conn, T0 + 10)
        for later in (20, 60, 600):
            round_at(sender, conn, T0 + later)
        assert len(sink.received) == 1
        assert "door A2" in str(sink.received[0]["Subject"])
    finally:
        sink.stop()
    assert len(gateway.requests) == 2  # the refused one and the accepted one, with the same reference
    assert gateway.requests[0]["body"]["ref"] == gateway.requests[1]["body"]["ref"]
    assert [(a.state, a.attempts) for a in staff_alerts(conn)] == [("sent", 2), ("sent", 2)]


def test_the_retries_wait_longer_each_time_up_to_the_most(tmp_path: Path) -> None:
    conn = fleet(tmp_path / "fleet.db")
    set_contacts(conn, "hall-1", ["ops@gent.example"], [])
    sender = started(conn, alert_settings(free_port()))
    door_event(conn, "forced", "A2")
    tries = []
    now = T0
    for _ in range(5):
        round_at(sender, conn, now)
        row = conn.execute("SELECT attempts, next_at FROM staff_alerts").fetchone()
        tries.append(float(row["next_at"]) - now)
        now = float(row["next_at"])
    assert tries == [10.0, 20.0, 40.0, 40.0, 40.0]


# --- across restarts ---------------------------------------------------------------------------------


def _alerted_entries(conn: db.Connection) -> list[int]:
    return [int(r[0]) for r in conn.execute("SELECT log_id FROM alert_items ORDER BY log_id").fetchall()]


def _alertable_entries(conn: db.Connection, after: int) -> list[int]:
    rows = conn.execute(
        "SELECT id FROM incident_log WHERE id > ? AND action IN ('opened', 'resolved') ORDER BY id", (after,)
    ).fetchall()
    return [int(r[0]) for r in rows]


def test_a_restart_mid_batch_misses_no_incident_and_alerts_none_twice(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    path = tmp_path / "fleet.db"
    conn = fleet(path)
    set_contacts(conn, "hall-1", ["ops@gent.example"], [])
    before = int(conn.execute("SELECT coalesce(max(id), 0) FROM incident_log").fetchone()[0])
    s = alert_settings(smtp_sink.port, window_min=5)
    sender = started(conn, s)
    for _ in range(30):
        door_event(conn, "forced", "A2")
        door_event(conn, "closed", "A2")
    round_at(sender, conn, T0 + 1)  # followed, waiting in the batch
    conn.close()  # the service stops mid-batch; incidents go on meanwhile
    conn = db.connect(path)
    for _ in range(20):
        door_event(conn, "forced", "A2")
        door_event(conn, "closed", "A2")
    sender = started(conn, s, T0 + 100)
    round_at(sender, conn, T0 + 100)
    assert smtp_sink.received == []
    round_at(sender, conn, T0 + 301)  # the window opened by the first item is over
    [message] = smtp_sink.received
    assert "happened 50 times" in text_of(message) and "(50 incidents)" in text_of(message)
    conn.close()
    conn = db.connect(path)  # another restart, after the message went: nothing is sent again
    sender = started(conn, s, T0 + 400)
    round_at(sender, conn, T0 + 400)
    round_at(sender, conn, T0 + 1000)
    assert len(smtp_sink.received) == 1
    door_event(conn, "forced", "A2")
    round_at(sender, conn, T0 + 1001)
    round_at(sender, conn, T0 + 1301)
    assert len(smtp_sink.received) == 2
    assert "happened at " in text_of(smtp_sink.received[1])
    assert _alerted_entries(conn) == _alertable_entries(conn, before)  # each once, none missed


def test_a_send_interrupted_by_a_crash_goes_again_with_the_same_message_id(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    path = tmp_path / "fleet.db"
    conn = fleet(path)
    set_contacts(conn, "hall-1", ["ops@gent.example"], [])
    s = alert_settings(smtp_sink.port)
    sender = started(conn, s)
    door_event(conn, "forced", "A2")
    sender.plan(conn, T0)
    sender.close_batches(conn, T0)
    rows = conn.execute("SELECT * FROM staff_alerts").fetchall()
    sender._sending(conn, rows)  # committed as sending; then the process dies before the outcome
    conn.close()
    conn = db.connect(path)
    sender = started(conn, s, T0 + 5)
    round_at(sender, conn, T0 + 5)
    [message] = smtp_sink.received
    assert message["Message-ID"] == rows[0]["ref"]
    assert [(a.state, a.attempts) for a in staff_alerts(conn)] == [("sent", 2)]


def test_an_entry_committed_after_a_later_one_is_not_missed(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    conn = fleet(tmp_path / "fleet.db")
    set_contacts(conn, "hall-1", ["ops@gent.example"], [])
    sender = started(conn, alert_settings(smtp_sink.port))
    for door in ("A1", "A2", "A3"):
        door_event(conn, "forced", door)
    late = conn.execute("SELECT * FROM incident_log ORDER BY id").fetchall()[1]
    with db.transaction(conn):  # as if its transaction had not committed yet (PostgreSQL)
        conn.execute("DELETE FROM incident_log WHERE id = ?", (late["id"],))
    round_at(sender, conn, T0)
    assert len(smtp_sink.received) == 1
    with db.transaction(conn):  # it commits now, below the cursor
        conn.execute(
            'INSERT INTO incident_log(id, incident_id, at, action, state, "by", note) VALUES (?, ?, ?, ?, ?, ?, ?)',
            tuple(late),
        )
    round_at(sender, conn, T0 + 1)
    assert len(smtp_sink.received) == 2
    assert "door A2" in str(smtp_sink.received[1]["Subject"])
    round_at(sender, conn, T0 + 2)
    assert len(smtp_sink.received) == 2


def test_incidents_before_the_first_start_are_not_alerted(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    conn = fleet(tmp_path / "fleet.db")
    set_contacts(conn, "hall-1", ["ops@gent.example"], [])
    door_event(conn, "forced", "A1")  # history, from before the service alerted anyone
    sender = started(conn, alert_settings(smtp_sink.port))
    round_at(sender, conn, T0)
    assert smtp_sink.received == []
    door_event(conn, "forced", "A2")
    round_at(sender, conn, T0 + 1)
    [message] = smtp_sink.received
    assert "door A2" in str(message["Subject"])


def test_sent_alerts_are_pruned_after_a_month_and_their_incidents_not_alerted_again(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    conn = fleet(tmp_path / "fleet.db")
    set_contacts(conn, "hall-1", ["ops@gent.example"], [])
    sender = started(conn, alert_settings(smtp_sink.port))
    door_event(conn, "forced", "A2")
    round_at(sender, conn, T0)
    door_event(conn, "closed", "A2")
    round_at(sender, conn, T0 + KEEP_S - 1)  # the resolution, a month later
    assert len(smtp_sink.received) == 2
    assert sender.prune(conn, T0 + KEEP_S + 1) == 1  # the first one only
    assert [a.sent_at for a in staff_alerts(conn)] == [T0 + KEEP_S - 1]
    assert conn.execute("SELECT count(*) FROM alert_items").fetchone()[0] == 1
    round_at(sender, conn, T0 + KEEP_S + 3600)
    assert len(smtp_sink.received) == 2


def test_an_incident_deleted_by_hand_before_its_batch_closed_is_left_out(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    conn = fleet(tmp_path / "fleet.db")
    set_contacts(conn, "hall-1", ["ops@gent.example"], [])
    sender = started(conn, alert_settings(smtp_sink.port, window_min=5))
    door_event(conn, "forced", "A1")
    door_event(conn, "forced", "A3")
    round_at(sender, conn, T0)
    gone = forced_incident(conn, "A1", among=2)
    with db.transaction(conn):
        conn.execute("DELETE FROM incident_log WHERE incident_id = ?", (gone.id,))
        conn.execute("DELETE FROM incidents WHERE id = ?", (gone.id,))
    round_at(sender, conn, T0 + 300)
    [message] = smtp_sink.received
    assert "door A3" in str(message["Subject"]) and "door A1" not in text_of(message)


# --- contacts ------------------------------------------------------------------------------------------


def test_contacts_are_validated_and_a_bad_one_changes_nothing(tmp_path: Path) -> None:
    conn = fleet(tmp_path / "fleet.db")
    contacts = set_contacts(conn, "hall-1", ["ops@gent.example", "wacht@gent.example"], ["+32 470 12.34.56"])
    assert [(c.channel, c.address) for c in contacts] == [
        ("email", "ops@gent.example"),
        ("email", "wacht@gent.example"),
        ("sms", "+32470123456"),
    ]
    with pytest.raises(AlertError, match="not an e-mail address"):
        set_contacts(conn, "hall-1", ["ops.gent.example"], [])
    with pytest.raises(AlertError, match="8 to 15 digits"):
        set_contacts(conn, "hall-1", [], ["12"])
    with pytest.raises(AlertError, match="unknown locker 'hall-9'"):
        set_contacts(conn, "hall-9", ["ops@gent.example"], [])
    assert contacts_of(conn, "hall-1") == contacts
    assert set_contacts(conn, "hall-1", [], []) == []


def test_the_service_refuses_a_bad_default_contact(tmp_path: Path) -> None:
    with pytest.raises(AlertError, match="not an e-mail address"):
        AlertSender(alert_settings(default_email=["nobody"]))
