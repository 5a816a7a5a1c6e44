"""`lockerctl api`: serve (alone, on loopback, its port from the configuration file), token
create|list|revoke (the secret printed once, stored hashed), webhook add|list|remove|failures."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from api_support import Answer, Contract
from click.testing import CliRunner

from lockertools.api import tokens, webhooks
from lockertools.cli import main
from lockertools.service import db, fleet_db
from tests.service.service_helpers import free_port
from tests.support.mosquitto import wait_until


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _get(port: int, path: str) -> Answer:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/api/v1" + path)
        response = c.getresponse()
        return Answer(response.status, response.headers, response.read().decode())
    finally:
        c.close()


def _fleet(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.db"
    conn = db.connect(path, create=True)
    fleet_db.add_locker(conn, "hall-1", secrets.token_bytes(32), ["1", "2"])
    conn.close()
    return path


def test_tokens_created_listed_and_revoked(tmp_path: Path) -> None:
    path = str(_fleet(tmp_path))
    code, out, err = _run("api", "token", "create", "--db", path, "e-loket", "--scope", "deliveries", "--by", "Tom")
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("lkr_") and "shown this once" in err
    conn = db.connect(path)
    try:
        stored = conn.execute("SELECT token_sha256, scopes FROM api_tokens").fetchall()
        assert [(r[0], r[1]) for r in stored] == [(tokens.token_hash(secret), "deliveries")]
        assert secret not in json.dumps([list(r) for r in conn.execute("SELECT * FROM api_tokens").fetchall()])
        code, out, _ = _run("api", "token", "list", "--db", path)
        assert code == 0 and "e-loket" in out and "deliveries" in out and secret not in out
        code, _, err = _run("api", "token", "create", "--db", path, "e-loket", "--scope", "read")
        assert code != 0 and "already" in err
        assert _run("api", "token", "revoke", "--db", path, "e-loket")[0] == 0
        assert tokens.authenticate(conn, secret) is None
        assert "no API tokens" in _run("api", "token", "list", "--db", path)[1]
        assert "e-loket" in _run("api", "token", "list", "--db", path, "--all")[1]
        code, _, err = _run("api", "token", "revoke", "--db", path, "e-loket")
        assert code != 0 and "revoked already" in err
    finally:
        conn.close()


def test_webhooks_added_listed_failures_and_removed(tmp_path: Path) -> None:
    path = str(_fleet(tmp_path))
    code, out, err = _run(
        "api", "webhook", "add", "--db", path, "https://town.example/hooks", "--description", "e-loket"
    )
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("whsec_")
    code, out, _ = _run("api", "webhook", "list", "--db", path)
    assert code == 0 and "https://town.example/hooks" in out and secret not in out
    code, _, err = _run("api", "webhook", "add", "--db", path, "ftp://town.example/")
    assert code != 0 and "url" in err
    conn = db.connect(path)
    try:
        number = fleet_db.prepare_delivery(conn, "hall-1").number
        fleet_db.cancel_delivery(conn, number)
        with db.transaction(conn):
            conn.execute("UPDATE webhook_deliveries SET attempts = 12, state = 'failed', last_error = 'HTTP 503'")
        code, out, _ = _run("api", "webhook", "failures", "--db", path)
        assert code == 0 and "cancelled" in out and str(number) in out and "HTTP 503" in out and "given up" in out
        code, out, _ = _run("api", "webhook", "failures", "--db", path, "--retry")
        assert code == 0 and out.startswith("1 event")
        assert webhooks.webhook_failures(conn) == []
        (hook,) = webhooks.list_webhooks(conn)
        assert _run("api", "webhook", "remove", "--db", path, str(hook.id))[0] == 0
        assert "no webhooks" in _run("api", "webhook", "list", "--db", path)[1]
        assert _run("api", "webhook", "remove", "--db", path, str(hook.id))[0] != 0
    finally:
        conn.close()


def test_api_serve_answers_on_loopback_at_the_configured_port(tmp_path: Path) -> None:
    path = _fleet(tmp_path)
    port = free_port()
    config = tmp_path / "lockers.toml"
    config.write_text(f"[api]\nport = {port}\n")
    url = db.database_url(path).render_as_string(hide_password=False)
    env = os.environ | {"LOCKER_DB": url, "LOCKERTOOLS_CONFIG": str(config)}
    proc = subprocess.Popen([sys.executable, "-c", "from lockertools.cli import main; main()", "api", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:

        def answers() -> bool:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/api/v1/openapi.json")
                return c.getresponse().status == 200
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                return False

        wait_until(answers, 30, "lockerctl api serve to answer")
        contract = Contract(_get(port, "/openapi.json").json)
        for path, status in (("/openapi.json", 200), ("/lockers", 401)):
            answer = _get(port, path)
            assert answer.status == status
            contract.check("GET", path, answer)
    finally:
        proc.terminate()
        proc.wait(10)
