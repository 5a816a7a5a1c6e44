"""`lockerctl user ...` and `lockerctl desk run`, as an operator runs them."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from click.testing import CliRunner
from desk_support import DeskClient, DeskServer

from lockertools.cli import main
from lockertools.desk import audit, auth
from lockertools.service import db
from tests.support import REPO_ROOT
from tests.support.mosquitto import wait_until


def _run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)
    return result.exit_code, result.output


def test_the_first_admin_is_made_from_the_shell(desk_db: str) -> None:
    code, out = _run(
        "user", "add", "chief", "--role", "admin", "--db", desk_db, "--password-stdin", stdin="chief-password-1\n"
    )
    assert code == 0, out
    assert "account chief added (admin)" in out
    server = DeskServer(desk_db).start()
    try:
        assert DeskClient(server).login("chief", "chief-password-1").status == 303
    finally:
        server.stop()
    code, out = _run("user", "list", "--db", desk_db)
    assert code == 0 and re.search(r"chief\s+admin\s+active", out), out


def test_a_password_is_asked_twice_when_not_piped(desk_db: str) -> None:
    code, out = _run("user", "add", "bob", "--role", "desk", "--db", desk_db, stdin="bob-password-1\nbob-password-1\n")
    assert code == 0, out
    assert "bob-password-1" not in out  # hidden input
    with db.connect(desk_db) as conn:
        assert auth.login(conn, "bob", "bob-password-1", "local", time.time()).account is not None


def test_bad_input_gets_a_clear_error_and_changes_nothing(desk_db: str) -> None:
    code, out = _run("user", "add", "shorty", "--role", "desk", "--db", desk_db, "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 10 characters" in out
    code, out = _run(
        "user", "add", "desk1", "--role", "desk", "--db", desk_db, "--password-stdin", stdin="x" * 12 + "\n"
    )
    assert code == 1 and "exists already" in out
    code, out = _run("user", "add", "two words", "--role", "desk", "--db", desk_db, "--password-stdin", stdin="x" * 12)
    assert code == 1 and "without spaces" in out
    code, out = _run("user", "disable", "nobody", "--db", desk_db)
    assert code == 1 and "no account 'nobody'" in out
    code, out = _run("user", "add", "x", "--role", "root", "--db", desk_db)
    assert code == 2 and "root" in out
    with db.connect(desk_db) as conn:
        assert {a["name"] for a in auth.accounts(conn)} == {"desk1", "manager1", "admin1"}


def test_disable_and_reset_password_from_the_shell(desk_db: str) -> None:
    assert _run("user", "disable", "desk1", "--db", desk_db)[0] == 0
    with db.connect(desk_db) as conn:
        assert auth.login(conn, "desk1", "desk-password-1", "local", time.time()).reason == "disabled"
    assert _run("user", "enable", "desk1", "--db", desk_db)[0] == 0
    code, out = _run("user", "reset-password", "desk1", "--db", desk_db, "--password-stdin", stdin="a-new-password\n")
    assert code == 0, out
    assert _run("user", "role", "desk1", "manager", "--db", desk_db)[0] == 0
    with db.connect(desk_db) as conn:
        now = time.time() + 3600  # past any throttle the disabled attempt left
        assert auth.login(conn, "desk1", "desk-password-1", "elsewhere", now).account is None
        account = auth.login(conn, "desk1", "a-new-password", "elsewhere", now + 3600).account
        assert account is not None and account.role == "manager"
        actions = [(r["action"], r["target"], r["address"]) for r in reversed(audit.trail(conn))]
    assert actions == [
        ("account.disable", "desk1", "local"),
        ("account.enable", "desk1", "local"),
        ("account.password", "desk1", "local"),
        ("account.role", "desk1", "local"),
    ]


def test_desk_run_serves_the_login_page_on_loopback(desk_db: str, tmp_path: Path) -> None:
    from lockertools.broker import free_port

    port = free_port()
    url = db.database_url(desk_db).render_as_string(hide_password=False)  # PostgreSQL: the test's database
    proc = subprocess.Popen(
        [str(REPO_ROOT / ".venv" / "bin" / "lockerctl"), "desk", "run", "--db", url, "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"staff desk on http://127.0.0.1:{port}/" in first, first
        server = DeskServer.__new__(DeskServer)
        server.port = port

        def serving() -> bool:
            try:
                return DeskClient(server).get("/login").status == 200
            except OSError:
                return False

        wait_until(serving, 30.0, "the desk to serve its login page")
        reply = DeskClient(server).get("/lockers")
        assert reply.status == 303 and reply.location == "/login?next=/lockers"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out


def test_locker_add_keeps_the_doors_sizes_for_the_desk(desk_db: str, tmp_path: Path) -> None:
    from lockertools import BOARDS_DIR

    key = tmp_path / "key.hex"
    key.write_text("ab" * 32)
    code, out = _run("locker", "add", "hall-2", "--db", desk_db, "--board", str(BOARDS_DIR / "esp32-4door.json"),
                     "--key-file", str(key))  # fmt: skip
    assert code == 0, out
    with db.connect(desk_db) as conn:
        rows = conn.execute("SELECT label, size, low FROM door_sizes WHERE locker_id = 'hall-2' ORDER BY label")
        assert [tuple(r) for r in rows] == [("1", "S", 1), ("2", "S", 1), ("3", "M", 0), ("4", "L", 0)]


def test_the_first_admin_of_a_new_installation_creates_the_database(tmp_path: Path) -> None:
    target = str(tmp_path / "new-fleet.db")
    code, out = _run(
        "user", "add", "chief", "--role", "admin", "--db", target, "--password-stdin", stdin="chief-password-1\n"
    )
    assert code == 0, out
    with db.connect(target) as conn:
        assert auth.find_account(conn, "chief").role == "admin"
