"""lockerctl's service and staff commands (click's CliRunner; no broker needed)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from service_helpers import Rig

from lockertools import BOARDS_DIR
from lockertools.cli import main
from lockertools.service import db, ingest
from tests.support.fixtures import Broker

BOARD = BOARDS_DIR / "esp32-4door.json"


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "fleet.db"
    monkeypatch.setenv("LOCKER_DB", str(path))
    key = tmp_path / "locker.key"
    key.write_text(bytes(range(32)).hex())
    result = CliRunner().invoke(main, ["locker", "add", "hall-1", "--board", str(BOARD), "--key-file", str(key)])
    assert result.exit_code == 0, result.output
    assert "registered with 4 doors" in result.output
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_issue_shows_the_code_once_and_stores_only_its_tag(fleet: Path, tmp_path: Path, database: str) -> None:
    out = tmp_path / "hook.json"
    hook = f"{sys.executable} -c \"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())\""
    code, output = _run("codes", "issue", "--locker", "hall-1", "--door", "2", "--expires", "2d",
                        "--recipient", "ann@example.org", "--notify-command", hook)  # fmt: skip
    assert code == 0, output
    plain = re.search(r"code (\d{8}) for hall-1 door 2 \(id (\d+)", output)
    assert plain is not None
    note = json.loads(out.read_text())
    assert note["code"] == plain.group(1) and note["code_id"] == int(plain.group(2))
    assert note["recipient"] == "ann@example.org" and note["door"] == "2"
    if database == "sqlite":  # the file and its WAL hold no plain code
        raw = b"".join(p.read_bytes() for p in fleet.parent.glob("fleet.db*"))
        assert plain.group(1).encode() not in raw
    code, listing = _run("codes", "list")
    assert code == 0 and plain.group(2) in listing and "sent" in listing and plain.group(1) not in listing


def test_a_failed_notification_is_recorded(fleet: Path) -> None:
    code, output = _run("codes", "issue", "--locker", "hall-1", "--door", "1", "--notify-command", "false")
    assert code == 1 and "notification failed" in output and "recorded" in output
    conn = db.connect(fleet)
    assert conn.execute("SELECT notify_state FROM codes").fetchone()[0] == "failed"


def test_service_hook_setting_is_used_by_issue(fleet: Path, tmp_path: Path) -> None:
    out = tmp_path / "hook.json"
    conn = db.connect(fleet)
    with db.transaction(conn):
        db.set_setting(
            conn, "notify_command", f"{sys.executable} -c \"import sys; open({str(out)!r}, 'w').write('x')\""
        )
    code, output = _run("codes", "issue", "--locker", "hall-1", "--door", "3")
    assert code == 0, output
    assert out.read_text() == "x"


@pytest.mark.sqlite_only
def test_clear_errors(fleet: Path, tmp_path: Path) -> None:
    code, output = _run("codes", "issue", "--locker", "nope", "--door", "1")
    assert code == 1 and "unknown locker 'nope'" in output and "hall-1" in output
    code, output = _run("codes", "issue", "--locker", "hall-1", "--door", "9")
    assert code == 1 and "no door '9'" in output
    code, output = _run("codes", "issue", "--locker", "hall-1", "--door", "1", "--expires", "soon")
    assert code == 2 and "--expires" in output
    code, output = _run("codes", "revoke", "424242")
    assert code == 1 and "no code with id 424242" in output
    code, output = _run("lockers", "--db", str(tmp_path / "missing.db"))
    assert code == 1 and "no database" in output
    assert not (tmp_path / "missing.db").exists()
    code, output = _run("events", "--locker", "nope")
    assert code == 1 and "unknown locker" in output


def test_db_takes_a_url_as_well_as_a_path(fleet: Path, database: str) -> None:
    url = db.database_url(fleet).render_as_string(hide_password=False)  # sqlite:///PATH, or the test's PostgreSQL
    code, output = _run("lockers", "--db", url)
    assert code == 0 and "hall-1" in output, output
    code, output = _run("lockers", "--db", "mysql://nobody@localhost/fleet")
    assert code == 1 and "unsupported database 'mysql'" in output, output


def test_revoke_lockers_and_events(fleet: Path) -> None:
    code, output = _run("codes", "issue", "--locker", "hall-1", "--door", "1", "--expires", "never")
    code_id = re.search(r"\(id (\d+)", output)
    assert code == 0 and code_id is not None
    code, output = _run("codes", "revoke", code_id.group(1))
    assert code == 0 and "revoked" in output
    code, output = _run("lockers")
    assert code == 0 and re.search(r"hall-1\s+no\s+2/-", output), output
    conn: sqlite3.Connection = db.connect(fleet)
    with db.transaction(conn):
        ingest.apply_event(conn, "hall-1", {"seq": 7, "ev": {"k": "denied", "r": "wrong", "n": 3}}, 1.0e9)
    code, output = _run("events", "--locker", "hall-1")
    assert code == 0 and "hall-1#7  denied" in output and "r=wrong n=3" in output
    # A locker in safe mode, whose outbox overflowed, says so in the fleet table.
    status = {"v": 1, "lid": "hall-1", "online": True, "mode": "safe", "fw": "t", "rev": 0, "snap": False}
    with db.transaction(conn):
        ingest.apply_status(conn, "hall-1", {**status, "outbox": 500, "lost": 12}, 1.0e9)
    code, output = _run("lockers")
    assert code == 0 and re.search(r"hall-1\s+SAFE MODE\s.*500 \(12 lost\)", output), output


def test_service_run_serves_codes_issued_from_the_cli(broker: Broker, tmp_path: Path) -> None:
    """`lockerctl service run` as its own process; `lockerctl codes issue` from another; a SimLocker."""
    rig = Rig(broker, tmp_path)  # the database, the locker and its broker user; not the rig's service
    password_file = tmp_path / "host.pw"
    password_file.write_text(broker.passwords[broker.host_user])
    env = {**os.environ, "LOCKER_DB": rig.db_url}  # another process: the URL (PostgreSQL runs too)
    lockerctl = [sys.executable, "-c", "from lockertools.cli import main; main()"]
    args = ["service", "run", "--broker", f"{broker.host}:{broker.port}", "--plain", "--user", broker.host_user]
    args += ["--metrics", "127.0.0.1:0"]  # tests run side by side: any free port
    service = subprocess.Popen(
        [*lockerctl, *args, "--password-file", str(password_file)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        sim = rig.start_locker()
        rig.wait(lambda: rig.query("SELECT online FROM lockers")[0][0] == 1, "the service to see the locker")
        issued = subprocess.run(
            [*lockerctl, "codes", "issue", "--locker", "hall-1", "--door", "A1"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        code = re.search(r"code (\d{8})", issued.stdout)
        assert code is not None
        rig.wait(lambda: sim.lookup("A1", code.group(1)) is not None, "the code on the locker")
    finally:
        service.terminate()
        _, err = service.communicate(timeout=10)
        rig.close()
    assert service.returncode == 0, err
    assert "serving 1 locker(s)" in err


def test_service_run_speaks_tls_unless_told_plain(fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lockertools.service import runner

    configs: list[runner.ServiceConfig] = []
    monkeypatch.setattr(runner, "run_service", configs.append)
    code, out = _run("service", "run")
    assert code != 0 and "--tls-ca" in out and "--plain" in out and configs == []
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")  # only passed on here
    assert _run("service", "run", "--tls-ca", str(ca))[0] == 0
    assert (configs[-1].port, configs[-1].tls_ca) == (8883, ca)
    assert _run("service", "run", "--broker", "127.0.0.1:1884", "--plain")[0] == 0
    assert (configs[-1].port, configs[-1].tls_ca) == (1884, None)
