"""Staff alerts around the sender: the service's `alerts` task sends them (real SMTP on loopback),
`lockerctl incidents alerts` sets each locker's contacts, the configuration file's [alerts] is
checked, and revision 0007_alerts gives a database before it the tables (on both databases)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alert_helpers import alert_settings, door_event, text_of
from click.testing import CliRunner
from notify_helpers import SmtpSink, fleet, free_port

from lockertools.cli import main
from lockertools.config import ConfigError, load
from lockertools.notify.alerts import AlertSender, contacts_of, set_contacts, staff_alerts
from lockertools.service import db, incidents
from lockertools.service.runner import Service, ServiceConfig, ServiceError


@pytest.fixture(autouse=True)
def _on_both_databases(database: str) -> str:
    return database


def test_the_service_alerts_staff_of_an_incident_and_of_its_resolution(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    path = tmp_path / "fleet.db"
    conn = fleet(path)
    set_contacts(conn, "hall-1", ["ops@gent.example"], [])

    async def main() -> None:
        service = Service(
            ServiceConfig(db_path=path, port=free_port(), messages=alert_settings(smtp_sink.port), alerts_poll_s=0.01)
        )
        task = asyncio.create_task(service.run())

        async def until(count: int) -> None:
            for _ in range(2000):
                if len(smtp_sink.received) >= count or task.done():
                    break
                await asyncio.sleep(0.01)
            if task.done():
                task.result()
            assert len(smtp_sink.received) >= count, "the alert did not come while the service ran"

        try:
            while service.alerts is None or not service.lease_held.is_set():
                await asyncio.sleep(0.01)  # started: what happens from now on is alerted
            incident = incidents.open_or_bump(conn, "hall-1", "jammed", time.time(), door="A3")
            await until(1)
            incidents.resolve(conn, incident.id, "marie", "spring replaced", time.time())
            await until(2)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(main())
    opened, resolved = smtp_sink.received
    assert str(opened["Subject"]) == "[Gent] Incident: hall-1, door A3: the latch did not open"
    assert str(resolved["Subject"]) == "[Gent] Resolved: hall-1, door A3: the latch did not open"
    assert "by marie" in text_of(resolved) and "spring" not in text_of(resolved)
    assert [a.state for a in staff_alerts(conn)] == ["sent", "sent"]


def test_the_service_refuses_to_start_with_a_bad_default_contact(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    fleet(path).close()
    service = Service(ServiceConfig(db_path=path, port=free_port(), messages=alert_settings(default_email=["nobody"])))
    with pytest.raises(ServiceError, match="staff alerts: e-mail: 'nobody' is not an e-mail address"):
        asyncio.run(service.run())


def test_alert_contacts_from_the_command_line(tmp_path: Path) -> None:
    db_path = tmp_path / "fleet.db"
    conn = fleet(db_path)
    config = tmp_path / "lockertools.toml"
    config.write_text('[alerts]\ndefault_email = ["wacht@gent.example"]\n\n[email]\nhost = "127.0.0.1"\n'
                      'sender = "loket@gent.example"\n')  # fmt: skip
    runner = CliRunner()
    alerts = ["--config", str(config), "incidents", "alerts"]
    listed = runner.invoke(main, [*alerts, "list", "--db", str(db_path)])
    assert listed.exit_code == 0, listed.output
    assert "hall-1  default   email wacht@gent.example" in listed.output
    done = runner.invoke(main, [*alerts, "set", "hall-1", "--db", str(db_path), "--email", "ops@gent.example",
                                "--email", "techniek@gent.example", "--sms", "+32 470 12 34 56"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "email ops@gent.example, email techniek@gent.example, sms +32470123456" in done.output
    assert "warning: no [sms] url is configured: SMS alerts wait until it is" in done.output
    assert "no [email] host" not in done.output
    listed = runner.invoke(main, [*alerts, "list", "--db", str(db_path)])
    assert "hall-1  own       email ops@gent.example, email techniek@gent.example, sms +32470123456" in listed.output
    before = contacts_of(conn, "hall-1")
    bad = runner.invoke(main, [*alerts, "set", "hall-1", "--db", str(db_path), "--email", "ops@gent.example",
                               "--sms", "call me"])  # fmt: skip
    assert bad.exit_code != 0 and "phone: 8 to 15 digits" in bad.output
    unknown = runner.invoke(main, [*alerts, "set", "hall-9", "--db", str(db_path), "--email", "ops@gent.example"])
    assert unknown.exit_code != 0 and "unknown locker 'hall-9'" in unknown.output
    neither = runner.invoke(main, [*alerts, "set", "hall-1", "--db", str(db_path)])
    assert neither.exit_code != 0 and "give --email and/or --sms" in neither.output
    assert contacts_of(conn, "hall-1") == before  # the refused commands changed nothing
    cleared = runner.invoke(main, [*alerts, "clear", "hall-1", "--db", str(db_path)])
    assert cleared.exit_code == 0, cleared.output
    assert contacts_of(conn, "hall-1") == []


@pytest.mark.sqlite_only
def test_the_configuration_files_alerts_section_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "lockertools.toml"
    config.write_text('[alerts]\ndefault_email = ["wacht@gent.example"]\ndefault_sms = ["+32470123456"]\n'
                      'window_min = -1\ndesk_url = "balie.gent.example"\nretry_min_s = 0\n')  # fmt: skip
    with pytest.raises(ConfigError) as raised:
        load(config)
    problems = "\n".join(raised.value.problems)
    for wanted in (
        "email: staff alerts by e-mail need host and sender",
        "sms: staff alerts by SMS need url",
        "alerts.window_min: zero or more minutes",
        "alerts.desk_url: must start with http:// or https://",
        "alerts.retry_min_s: positive, at most retry_max_s",
    ):
        assert wanted in problems
    config.write_text('[alerts]\nwindow_min = 2.5\ndesk_url = "https://balie.gent.example"\n')
    assert load(config).alerts.window_min == 2.5


def test_a_database_before_the_alerts_gets_their_tables(tmp_path: Path) -> None:
    conn = fleet(tmp_path / "fleet.db")
    with db.transaction(conn):  # as the program before this revision left it
        conn.execute("UPDATE alembic_version SET version_num = '0006_notify'")
    for table in ("alert_items", "staff_alerts", "alert_seen", "alert_contacts"):
        conn.execute(f"DROP TABLE {table}")
    conn.close()
    again = db.connect(tmp_path / "fleet.db")
    assert db.schema_revision(again) == db.schema_head()
    set_contacts(again, "hall-1", ["ops@gent.example"], [])
    assert [c.address for c in contacts_of(again, "hall-1")] == ["ops@gent.example"]
    sender = AlertSender(alert_settings())
    sender.start(again, time.time())
    door_event(again, "forced", "A1")
    assert sender.plan(again, time.time()) == 1  # one item, for hall-1's contact
    again.close()


WITHOUT_JINJA2 = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("jinja2", "fpdf"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocked())
from lockertools.config import Settings
from lockertools.notify.alerts import AlertSender
sender = AlertSender(Settings())
print("channels", sender.email, sender.sms)
"""


@pytest.mark.sqlite_only
def test_the_alert_sender_starts_without_jinja2_when_no_channel_is_configured() -> None:
    # The simulator's service has neither Jinja2 nor channels: its alerts wait, and it runs.
    done = subprocess.run([sys.executable, "-c", WITHOUT_JINJA2], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "channels None None"
