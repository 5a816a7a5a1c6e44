"""The systemd units in packaging/systemd/: `systemd-analyze verify` finds nothing to say about them
(with ExecStart pointing at this venv's lockerctl, which verify wants to exist), the host service is
Type=notify with a watchdog and hardened, and its ExecStart command line is one lockerctl accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lockertools.cli import main

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "packaging" / "systemd"
SHIPPED_LOCKERCTL = "/opt/lockertools/venv/bin/lockerctl"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _settings(unit: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", unit.read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def _rendered(tmp_path: Path) -> list[Path]:
    lockerctl = Path(sys.executable).parent / "lockerctl"
    assert lockerctl.exists(), lockerctl
    out = []
    for unit in sorted(UNITS.glob("*.service")) + sorted(UNITS.glob("*.timer")):
        text = unit.read_text()
        if unit.suffix == ".service":
            assert SHIPPED_LOCKERCTL in text, unit
        path = tmp_path / unit.name
        path.write_text(text.replace(SHIPPED_LOCKERCTL, str(lockerctl)))
        out.append(path)
    return out


def _verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "verify", "--man=no", *map(str, paths)], capture_output=True, text=True, check=False, timeout=60
    )


@needs_analyze
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    units = _rendered(tmp_path)
    assert {p.name for p in units} >= {"lockertools-host.service", "lockertools-backup.service"}
    done = _verify(units)
    # verify exits 0 on unknown keys and other warnings: anything it prints is a defect too.
    assert done.returncode == 0 and done.stderr.strip() == "" and done.stdout.strip() == "", done.stderr


@needs_analyze
def test_verify_would_catch_a_mistyped_key_or_a_missing_binary(tmp_path: Path) -> None:
    """The check above can fail: a mistyped key is printed, a missing ExecStart binary fails."""
    host = next(p for p in _rendered(tmp_path) if p.name == "lockertools-host.service")
    typo = tmp_path / "typo.service"
    typo.write_text(host.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    assert "Unknown key" in _verify([typo]).stderr
    missing = tmp_path / "missing.service"
    missing.write_text(re.sub(r"ExecStart=\S+", "ExecStart=/nonexistent/lockerctl", host.read_text()))
    assert _verify([missing]).returncode != 0


@needs_analyze
def test_the_host_service_is_hardened(tmp_path: Path) -> None:
    host = next(p for p in _rendered(tmp_path) if p.name == "lockertools-host.service")
    done = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(host)], capture_output=True, text=True, timeout=60
    )
    exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout + done.stderr)
    assert exposure is not None, done.stdout + done.stderr
    # systemd rates 0-10; below 2 is its best band ("OK"); a unit with no hardening scores 9.6.
    assert float(exposure.group(1)) < 2.0, done.stdout


def test_host_unit_notifies_and_keeps_a_watchdog() -> None:
    s = _settings(UNITS / "lockertools-host.service")
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert int(s["WatchdogSec"][0]) >= 10
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "User": "lockertools",
        "StateDirectory": "lockertools",
        "PrivateTmp": "yes",
    }.items():
        assert s[key] == [value], key
    assert s["User"] == _settings(UNITS / "lockertools-backup.service")["User"]  # one owner of the database
    sysusers = (UNITS / "lockertools.sysusers.conf").read_text()
    assert re.search(r"^u lockertools - .* /var/lib/lockertools$", sysusers, re.M)  # the user the units name


def test_host_unit_command_line_is_one_lockerctl_accepts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lockertools.service import db, runner

    argv = shlex.split(_settings(UNITS / "lockertools-host.service")["ExecStart"][0])
    assert argv[0] == SHIPPED_LOCKERCTL
    # What systemd fills in: the environment file's settings, the credentials directory, real files.
    ca, password, fleet = tmp_path / "ca.crt", tmp_path / "mqtt-password", tmp_path / "fleet.db"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    password.write_text("secret\n")
    db.connect(fleet, create=True).close()
    subs = {
        "${LOCKER_BROKER}": "lockers.example.org:8883",
        "${LOCKER_MQTT_USER}": "host",
        "%d/mqtt-password": str(password),
        "/etc/lockertools/broker-ca.crt": str(ca),
        "/var/lib/lockertools/fleet.db": str(fleet),
    }
    args = [subs.get(a, a) for a in argv[1:]]
    configs: list[runner.ServiceConfig] = []
    monkeypatch.setattr(runner, "run_service", configs.append)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (config,) = configs
    assert (config.host, config.port, config.username) == ("lockers.example.org", 8883, "host")
    assert config.password == "secret"
    assert (config.metrics_host, config.metrics_port, config.watchdog) == ("127.0.0.1", 9466, True)
