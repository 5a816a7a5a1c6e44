"""lockertools.broker without a running broker: password hashes, the files it writes, the CLI."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from lockertools import broker as broker_mod
from lockertools.broker import BrokerError, BrokerSetup, check_lid, hash_password, verify_password
from lockertools.cli import broker as broker_cli_mod
from lockertools.cli import main
from lockertools.cli.broker import broker_cli


def test_hash_format_matches_mosquitto_passwd(tmp_path: Path) -> None:
    encoded = hash_password("s3cret")
    kind, iterations, salt, digest = encoded.split("$")[1:]
    assert (kind, iterations) == ("7", "101")
    assert len(salt) == 16 and len(digest) == 88  # base64 of 12 and 64 bytes
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded)
    assert hash_password("s3cret") != encoded  # a fresh salt each time

    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed")
    pwfile = tmp_path / "pw"
    subprocess.run([tool, "-b", "-c", str(pwfile), "alice", "s3cret"], check=True)
    user, theirs = pwfile.read_text().strip().split(":", 1)
    assert user == "alice"
    assert theirs.split("$")[1:3] == ["7", "101"]
    assert verify_password("s3cret", theirs) and not verify_password("other", theirs)
    # Same salt and password: byte for byte what mosquitto_passwd wrote.
    assert hash_password("s3cret", salt=base64.b64decode(theirs.split("$")[3])) == theirs


@pytest.mark.parametrize("lid", ["hall-1", "A", "x" * 32, "Door_7-b"])
def test_good_locker_ids(lid: str) -> None:
    assert check_lid(lid) == lid


@pytest.mark.parametrize("lid", ["", "x" * 33, "a/b", "a+b", "+", "#", "a#", "hall 1", "bé", "a\n", "%u"])
def test_bad_locker_ids_refused(tmp_path: Path, lid: str) -> None:
    setup = BrokerSetup(tmp_path / "b")
    with pytest.raises(BrokerError, match="bad locker id"):
        setup.add_locker(lid)
    assert not (tmp_path / "b" / "passwd").exists()


def test_files_and_modes(tmp_path: Path) -> None:
    setup = BrokerSetup(tmp_path / "b", port=0, tls_port=0)
    host_pw = setup.add_host()
    pw = setup.add_locker("hall-1")
    conf = setup.write()
    text = conf.read_text()
    lines = text.splitlines()
    for want in (
        "allow_anonymous false",
        "per_listener_settings false",
        f"password_file {setup.passwd_path}",
        f"acl_file {setup.acl_path}",
        "persistence true",
        f"persistence_location {setup.persistence_dir}/",
        "autosave_on_changes false",  # a save every 30 s and at shutdown, not on every message
        "autosave_interval 30",
        "max_queued_messages 100000",
        "max_queued_bytes 33554432",
        "max_packet_size 12288",
        "max_inflight_messages 20",
        f"listener {setup.port} 127.0.0.1",
        f"listener {setup.tls_port} 127.0.0.1",
        f"cafile {setup.ca_path}",
    ):
        assert want in lines, want
    # Listener settings only after a listener: before one, mosquitto would open its default on 1883.
    first_listener = next(i for i, ln in enumerate(lines) if ln.startswith("listener "))
    assert all(not ln.startswith("use_username_as_clientid") for ln in lines[:first_listener])
    assert lines.count("use_username_as_clientid true") == 2

    acl = [ln for ln in setup.acl_path.read_text().splitlines() if ln and not ln.startswith("#")]
    assert acl == [
        "user host",
        "topic read lockers/+/#",
        "topic write lockers/+/cmd",
        "pattern write lockers/%u/status",
        "pattern write lockers/%u/doors",
        "pattern write lockers/%u/events",
        "pattern write lockers/%u/reply",
        "pattern read lockers/%u/cmd",
    ]
    for secret in (setup.passwd_path, setup.acl_path, setup.conf_path, setup.ca_key_path, setup.server_key_path):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    # Passwords are stored hashed only.
    for path in setup.directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert pw.encode() not in data and host_pw.encode() not in data, path
    assert setup.check_password("hall-1", pw) and not setup.check_password("hall-1", host_pw)


def test_rerun_keeps_users_ca_and_ports(tmp_path: Path) -> None:
    d = tmp_path / "b"
    first = BrokerSetup(d, port=0, tls_port=0)
    pw = first.add_locker("hall-1")
    host_pw = first.add_host()
    ca = first.ca_path.read_bytes()
    server = first.server_cert_path.read_bytes()

    again = BrokerSetup(d, port=0, tls_port=0)
    again.write()
    assert (again.port, again.tls_port) == (first.port, first.tls_port)
    assert again.lockers == ["hall-1"] and again.host_users == ["host"]
    assert again.check_password("hall-1", pw) and again.check_password("host", host_pw)
    assert again.ca_path.read_bytes() == ca
    assert again.server_cert_path.read_bytes() == server  # nothing changed: not reissued

    opened = BrokerSetup.open(d)
    assert (opened.port, opened.tls_port, opened.lockers) == (first.port, first.tls_port, ["hall-1"])
    with pytest.raises(BrokerError, match="exists already"):
        opened.add_locker("hall-1")
    new_pw = opened.add_locker("hall-1", rotate=True)
    assert new_pw != pw and BrokerSetup.open(d).check_password("hall-1", new_pw)


def test_new_name_reissues_server_certificate_from_the_same_ca(tmp_path: Path) -> None:
    d = tmp_path / "b"
    BrokerSetup(d, port=None, tls_port=0).write()
    ca = (d / "ca.crt").read_bytes()
    BrokerSetup(d, port=None, tls_port=0, names=["broker.example.org", "10.1.2.3"]).write()
    assert (d / "ca.crt").read_bytes() == ca
    cert = x509.load_pem_x509_certificate((d / "server.crt").read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example.org"]
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.1.2.3"}
    # Valid from 2000-01-01: a board whose clock is not set yet still accepts it.
    assert cert.not_valid_before_utc.year == 2000


def test_host_and_locker_names_do_not_mix(tmp_path: Path) -> None:
    setup = BrokerSetup(tmp_path / "b")
    setup.add_host("svc")
    setup.add_locker("hall-1")
    with pytest.raises(BrokerError, match="host user"):
        setup.add_locker("svc")
    with pytest.raises(BrokerError, match="is a locker"):
        setup.add_host("hall-1")
    with pytest.raises(BrokerError, match="bad user name"):
        setup.add_host("a/#")


def test_directory_with_space_refused(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="spaces"):
        BrokerSetup(tmp_path / "my broker")


# -- the CLI


def test_cli_is_registered() -> None:
    result = CliRunner().invoke(main, ["broker", "--help"])
    assert result.exit_code == 0
    for sub in ("init", "add-locker", "add-host", "run"):
        assert sub in result.output


def test_cli_init_and_users(tmp_path: Path) -> None:
    d = tmp_path / "b"
    runner = CliRunner()
    result = runner.invoke(broker_cli, ["init", str(d), "--tls", "--tls-port", "0", "--name", "broker.lan"])
    assert result.exit_code == 0, result.output
    assert str(d / "ca.crt") in result.output
    setup = BrokerSetup.open(d)
    assert setup.port is None and setup.tls_port and setup.names == ["127.0.0.1", "broker.lan"]

    result = runner.invoke(broker_cli, ["add-locker", str(d), "hall-1"])
    assert result.exit_code == 0, result.output
    password = result.output.split("store it now): ", 1)[1].split()[0]
    assert BrokerSetup.open(d).check_password("hall-1", password)

    pwfile = tmp_path / "hall-2.pw"
    result = runner.invoke(broker_cli, ["add-locker", str(d), "hall-2", "--password-file", str(pwfile)])
    assert result.exit_code == 0, result.output
    password2 = pwfile.read_text().strip()
    assert password2 not in result.output
    assert stat.S_IMODE(pwfile.stat().st_mode) == 0o600
    assert BrokerSetup.open(d).check_password("hall-2", password2)

    result = runner.invoke(broker_cli, ["add-host", str(d)])
    assert result.exit_code == 0, result.output
    assert BrokerSetup.open(d).host_users == ["host"]

    result = runner.invoke(broker_cli, ["add-locker", str(d), "hall-1"])
    assert result.exit_code != 0 and "exists already" in result.output


def test_cli_init_is_tls_unless_plain_is_asked_for(tmp_path: Path) -> None:
    runner = CliRunner()
    d = tmp_path / "tls"
    result = runner.invoke(broker_cli, ["init", str(d)])
    assert result.exit_code == 0, result.output
    setup = BrokerSetup.open(d)
    assert (setup.port, setup.tls_port) == (None, broker_mod.DEFAULT_TLS_PORT) and setup.ca_path.exists()
    listeners = [ln for ln in setup.conf_path.read_text().splitlines() if ln.startswith("listener ")]
    assert listeners == ["listener 8883 127.0.0.1"]
    assert "PLAIN" not in result.output

    result = runner.invoke(broker_cli, ["init", str(tmp_path / "p"), "--port", "1884"])
    assert result.exit_code != 0 and "--plain" in result.output
    assert not (tmp_path / "p").exists()

    result = runner.invoke(broker_cli, ["init", str(tmp_path / "plain"), "--plain"])
    assert result.exit_code == 0, result.output
    plain = BrokerSetup.open(tmp_path / "plain")
    assert (plain.port, plain.tls_port) == (broker_mod.DEFAULT_PORT, None) and not plain.ca_path.exists()
    assert "PLAIN MQTT on 127.0.0.1:1883" in result.output and "in clear" in result.output

    result = runner.invoke(broker_cli, ["init", str(tmp_path / "both"), "--plain", "--port", "0", "--tls"])
    assert result.exit_code == 0, result.output
    both = BrokerSetup.open(tmp_path / "both")
    assert both.port and both.tls_port == broker_mod.DEFAULT_TLS_PORT


def test_cli_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(broker_cli, ["add-locker", str(tmp_path / "nope"), "hall-1"])
    assert result.exit_code != 0
    assert "not a broker directory" in result.output and "lockerctl broker init" in result.output

    d = tmp_path / "b"
    assert runner.invoke(broker_cli, ["init", str(d), "--tls-port", "0"]).exit_code == 0
    for bad in ("a/b", "lockers+", "#"):
        result = runner.invoke(broker_cli, ["add-locker", str(d), bad])
        assert result.exit_code != 0 and "bad locker id" in result.output
    assert BrokerSetup.open(d).lockers == []


def test_cli_run_execs_mosquitto_or_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "b"
    runner = CliRunner()
    assert runner.invoke(broker_cli, ["init", str(d), "--tls-port", "0"]).exit_code == 0
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(os, "execv", lambda exe, argv: calls.append((exe, argv)))
    monkeypatch.setattr(broker_cli_mod, "find_mosquitto", lambda: "/opt/mosquitto")
    result = runner.invoke(broker_cli, ["run", str(d)])
    assert result.exit_code == 0, result.output
    assert calls == [("/opt/mosquitto", ["/opt/mosquitto", "-c", str(d.resolve() / "mosquitto.conf")])]
    assert (d / "broker.pid").read_text() == f"{os.getpid()}\n"  # exec keeps the pid: mosquitto's

    monkeypatch.setattr(broker_cli_mod, "find_mosquitto", broker_mod.find_mosquitto)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(broker_mod, "MOSQUITTO_PATHS", ())
    result = runner.invoke(broker_cli, ["run", str(d)])
    assert result.exit_code != 0
    assert "apt-get install -y mosquitto" in result.output
    assert calls == [calls[0]]
    result = runner.invoke(broker_cli, ["run", str(tmp_path / "nope")])
    assert result.exit_code != 0 and "not a broker directory" in result.output


def test_reload_sends_nothing_to_a_process_that_is_not_this_broker(tmp_path: Path) -> None:
    setup = BrokerSetup(tmp_path / "b", host="127.0.0.1", port=0, tls_port=None)
    setup.write()
    assert setup.reload_running() is None  # no pid file
    setup.pid_path.write_text(f"{os.getpid()}\n")  # this test's own process: a python, not mosquitto
    assert setup.reload_running() is None  # (a SIGHUP would have ended this test run)
    setup.pid_path.write_text("not a pid\n")
    assert setup.reload_running() is None


def test_a_locker_added_while_broker_run_serves_can_log_in_at_once(tmp_path: Path) -> None:
    """`lockerctl broker run` leaves its pid; `broker add-locker` then reloads that mosquitto, and the new
    locker's password works without a restart."""
    from tests.support.mosquitto import MqttClient, wait_until

    d = tmp_path / "b"
    setup = BrokerSetup(d, host="127.0.0.1", port=0, tls_port=None)
    host_password = setup.add_host("host")
    setup.write()
    lockerctl = [sys.executable, "-c", "from lockertools.cli import main; main()"]
    proc = subprocess.Popen([*lockerctl, "broker", "run", str(d)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert setup.port is not None

        def host_in() -> bool:
            with MqttClient("127.0.0.1", setup.port or 0, "host", host_password, client_id="host") as c:
                try:
                    return c.connect(timeout=2) == 0
                except OSError:  # not listening yet
                    return False

        wait_until(host_in, 20, "`lockerctl broker run` to serve", poll=0.2)
        assert setup.reload_running() == proc.pid
        result = CliRunner().invoke(
            broker_cli, ["add-locker", str(d), "hall-9", "--password-file", str(tmp_path / "pw")]
        )
        assert result.exit_code == 0, result.output
        assert f"the running broker (pid {proc.pid}) reloaded its users" in result.output
        password = (tmp_path / "pw").read_text().strip()

        def locker_in() -> bool:
            with MqttClient("127.0.0.1", setup.port or 0, "hall-9", password, client_id="hall-9") as c:
                return c.connect(timeout=2) == 0

        wait_until(locker_in, 10, "the new locker to be let in", poll=0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
