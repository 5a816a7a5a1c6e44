"""The host's configuration file (lockertools.config, `lockerctl config check`, --config defaults)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from lockertools import BOARDS_DIR
from lockertools.cli import main
from lockertools.config import ENV_VAR, Secret, load, sections
from tests.support import REPO_ROOT

EXAMPLE = REPO_ROOT / "packaging" / "lockertools.example.toml"
PASSWORD = "correct-horse-battery-staple"


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


def _secret_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "host.password"
    path.write_text(PASSWORD + "\n")
    path.chmod(mode)
    return path


def _write(tmp_path: Path, text: str, name: str = "lockertools.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _good(tmp_path: Path) -> Path:
    _secret_file(tmp_path)
    return _write(
        tmp_path,
        f"""
[service]
db = "{tmp_path / "fleet.db"}"
broker_host = "broker.town.example"
broker_port = 8884
password_file = "host.password"
plain = true

[notify]
url = "https://hooks.town.example/code?token=s3cr3t-token"
""",
    )


def test_a_good_file_passes_and_shows_the_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
    path = _good(tmp_path)
    code, output = _run("config", "check", str(path))
    assert code == 0, output
    assert f"{path}: ok" in output
    assert 'broker_host = "broker.town.example"' in output and "broker_port = 8884" in output
    assert f"password = ****** (file {tmp_path / 'host.password'})" in output
    assert 'client_id = "host"' in output  # a default, shown as in effect
    assert PASSWORD not in output and "s3cr3t-token" not in output
    settings = load(path)
    assert settings.service.password == Secret(PASSWORD, f"file {tmp_path / 'host.password'}")
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.service.password)


def test_the_file_comes_from_the_option_or_the_environment(tmp_path: Path) -> None:
    path = _good(tmp_path)
    code, output = _run("--config", str(path), "config", "check")
    assert code == 0 and f"{path}: ok" in output, output
    code, output = _run("config", "check", env={ENV_VAR: str(path)})
    assert code == 0 and f"{path}: ok" in output, output
    code, output = _run("config", "check", env={ENV_VAR: ""})
    assert code == 2 and "no configuration file" in output


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[service]\ncolour = 'red'\n", r"service\.colour: unknown key \(known: db, .*password_file, password_env"),
        ("[metrics]\nport = 9100\n", r"metrics: unknown section \(known: service, broker, notify, [a-z, ]+\)"),
        ("[service]\nbroker_port = '8883'\n", r"service\.broker_port: an integer, not the string '8883'"),
        ("[service]\nplain = 1\n", r"service\.plain: true or false, not the integer 1"),
        ("[broker]\nnames = 'lockers.example'\n", r"broker\.names: a list of strings, not the string"),
        ("[service]\nbroker_port = 70000\n", r"service\.broker_port: port 70000 is out of range \(1-65535\)"),
        ("[broker]\nplain = true\nport = 0\n", r"broker\.port: port 0 is out of range"),
        ("[service]\npassword = 'x'\n", r"service\.password: a secret is not written in the file: use password_file"),
        ("[service]\npassword_file = 'nowhere'\n", r"service\.password_file: .*nowhere: No such file or directory"),
        (
            "[service]\npassword_env = 'LOCKER_TEST_UNSET_VAR'\n",
            r"service\.password_env: the environment variable LOCKER_TEST_UNSET_VAR is not set",
        ),
        ("[service]\nplain = true\ntls_ca = 'ca.crt'\n", r"service\.plain: plain = true and tls_ca: choose one"),
        ("[notify]\ncommand = 'a'\nurl = 'https://b'\n", r"notify: command and url: choose one"),
        ("[incidents]\noffline_after_min = 0\n", r"incidents\.offline_after_min: a number of minutes above 0"),
        # The lockers' help line ([town]): the entry of desk_hours that cannot be read is named.
        (
            '[town]\nhelp_phone = "09 210 10 10"\ndesk_hours = ["mon-fri 09:00-12:30", "mon-fri 9-17"]\n',
            r"town\.desk_hours: 'mon-fri 9-17': write it as 'mon-fri 09:00-17:00'",
        ),
        (
            '[town]\nhelp_phone = "09 210 10 10"\ndesk_hours = ["fri-mon 09:00-17:00"]\n',
            r"town\.desk_hours: 'fri-mon 09:00-17:00': the days run from monday to sunday",
        ),
        (
            '[town]\nhelp_phone = "09 210 10 10"\ndesk_hours = ["mon 17:00-09:00"]\n',
            r"town\.desk_hours: 'mon 17:00-09:00': the desk closes after it opens",
        ),
        ('[town]\nhelp_phone = "09 210 10 10 10"\n', r"town\.help_phone: '09 210 10 10 10': 1-12 characters"),
        ('[town]\nhelp_phone = "call us"\n', r"town\.help_phone: 'call us'"),
        ('[town]\ntimezone = "Mars/Olympus"\n', r"town\.timezone: 'Mars/Olympus' is not a time zone"),
        ('[town]\ndesk_hours = ["mon 09:00-17:00"]\n', r"town\.desk_hours: without help_phone"),
        ('[town]\ndesk_hours = "mon 09:00-17:00"\n', r"town\.desk_hours: a list of strings, not the string"),
        ("[service\n", r"not valid TOML"),
    ],
)
def test_each_error_names_the_file_and_the_field(tmp_path: Path, text: str, problem: str) -> None:
    path = _write(tmp_path, text)
    env = {"LOCKER_TEST_UNSET_VAR": ""}
    code, output = _run("config", "check", str(path), env=env)
    assert code == 1, output
    assert re.search(re.escape(f"{path}: ") + problem, output), output
    # every other command refuses the broken file too, and says where to look
    code, output = _run("--config", str(path), "lockers", env=env)
    assert code == 1 and "configuration file has errors" in output and str(path) in output, output


def test_the_help_lines_fields_load_in_the_town_section(tmp_path: Path) -> None:
    hours = ["mon-fri 09:00-12:30", "sat 10:00-12:00"]
    path = _write(
        tmp_path,
        '[town]\nhelp_phone = "09 210 10 10"\nhelp_hours = "ma-vr 9-17 uur"\n'
        f'desk_hours = ["{hours[0]}", "{hours[1]}"]\ntimezone = "Europe/Paris"\n',
    )
    code, output = _run("config", "check", str(path))
    assert code == 0, output
    town = load(path).town
    assert (town.help_phone, town.help_hours, town.desk_hours, town.timezone) == (
        "09 210 10 10",
        "ma-vr 9-17 uur",
        hours,
        "Europe/Paris",
    )
    assert load(_write(tmp_path, "", name="empty.toml")).town.timezone == "Europe/Brussels"


def test_a_world_readable_secret_file_is_refused_and_never_shown(tmp_path: Path) -> None:
    _secret_file(tmp_path, 0o644)
    path = _write(tmp_path, "[service]\npassword_file = 'host.password'\n")
    code, output = _run("config", "check", str(path))
    assert code == 1
    assert f"{path}: service.password_file: {tmp_path / 'host.password'} is readable by every user" in output
    assert PASSWORD not in output


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "[service]\ncolour = 1\nbroker_port = 0\n[broker]\nnames = 3\n")
    code, output = _run("config", "check", str(path))
    assert code == 1
    assert "service.colour" in output and "service.broker_port" in output and "broker.names" in output


def test_a_secret_from_the_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, "[service]\npassword_env = 'LOCKER_TEST_PASSWORD'\n")
    code, output = _run("config", "check", str(path), env={"LOCKER_TEST_PASSWORD": PASSWORD})
    assert code == 0, output
    assert "password = ****** (environment variable LOCKER_TEST_PASSWORD)" in output and PASSWORD not in output


def test_the_file_fills_in_options_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    path = _good(tmp_path)
    key = tmp_path / "locker.key"
    key.write_text(bytes(range(32)).hex())
    board = str(BOARDS_DIR / "esp32-4door.json")
    env = {"LOCKER_DB": ""}
    code, output = _run("--config", str(path), "locker", "add", "hall-1", "--board", board, "--key-file", str(key),
                        env=env)  # fmt: skip
    assert code == 0, output
    assert (tmp_path / "fleet.db").exists()  # the file's service.db
    code, output = _run("--config", str(path), "delivery", "prepare", "hall-1", env=env)
    assert code == 0 and re.search(r"delivery \d+ for hall-1", output), output
    other = tmp_path / "other.db"
    code, output = _run("--config", str(path), "codes", "issue", "--db", str(other), "--locker", "hall-1",
                        "--door", "1", env=env)  # fmt: skip
    assert code == 1 and str(other) in output, output  # --db wins over the file: that database is not there
    assert not other.exists()


def test_service_run_takes_the_broker_from_the_file(tmp_path: Path) -> None:
    """`service run` checks its options before it connects: the file's plain = true and broker pass
    those checks; --tls-ca on the command line (with the file's plain = true) is refused as a pair."""
    path = _good(tmp_path)
    ca = tmp_path / "ca.crt"
    ca.write_text("not used\n")
    code, output = _run("--config", str(path), "service", "run", "--tls-ca", str(ca), env={"LOCKER_DB": ""})
    assert code == 2 and "--plain and --tls-ca: choose one" in output, output


def test_the_shipped_example_passes(tmp_path: Path) -> None:
    env = {"LOCKERTOOLS_HOST_PASSWORD": PASSWORD, "LOCKERTOOLS_SMTP_PASSWORD": "smtp-" + PASSWORD}
    code, output = _run("config", "check", str(EXAMPLE), env=env)
    assert code == 0, output
    assert PASSWORD not in output


def test_every_field_is_documented() -> None:
    doc = (REPO_ROOT / "docs" / "configuration.md").read_text()
    for name, cls in sections().items():
        assert f"[{name}]" in doc, name
        for f in dataclasses.fields(cls):
            key = f"{f.name}_file" if f.name == "password" else f.name
            assert f"`{key}`" in doc, f"{name}.{key}"


def test_no_secret_option_on_a_command_line() -> None:
    """Secrets come from files or the environment: no command takes one as an option's value."""
    names = {"--password", "--secret", "--token"}
    stack = [main]
    while stack:
        command = stack.pop()
        for param in command.params:
            assert not names & set(getattr(param, "opts", [])), (command.name, param.opts)
        stack.extend(getattr(command, "commands", {}).values())
