"""lockerctl diag and update push through a real mosquitto to a networked VirtualBoard (signed
commands as the host service sends them; the locker's signed replies)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from lockertools import BOARDS_DIR, FIRMWARE_DIR
from lockertools.cli import main
from lockertools.flash import prepare
from lockertools.maint.bundle import build_app, install_app
from lockertools.sim import NET_HEAP, VirtualBoard
from tests.support.fixtures import Broker
from tests.support.settings import FAST_TIMINGS

pytestmark = pytest.mark.scenario
BOARD = BOARDS_DIR / "esp32-4door.json"
LID = "M1"


@pytest.fixture
def online(tmp_path: Path, broker: Broker) -> Iterator[tuple[VirtualBoard, list[str]]]:
    password = broker.add_locker(LID)
    net = {"broker": {"host": "127.0.0.1", "port": broker.port, "tls": False, "user": LID, "password": password}}
    flash = tmp_path / "flash"
    prepare(flash, BOARD, locker_id=LID, config_overrides=FAST_TIMINGS, net=net)
    install_app(flash, build_app(version="1.0.0"))
    pw = tmp_path / "host.pw"
    pw.write_text(broker.passwords[broker.host_user])
    board = VirtualBoard(flash, heap=NET_HEAP, auto_reboot=True, app_on_flash=True)
    try:
        board.boot()
        board.wait_log("net up", 20)
        link = ["--broker", f"127.0.0.1:{broker.port}", "--user", broker.host_user, "--password-file", str(pw)]
        yield board, [*link, "--flash", str(flash)]
    finally:
        board.close()


def test_diag_over_mqtt_prints_the_table_and_json(online: tuple[VirtualBoard, list[str]]) -> None:
    board, opts = online
    r = CliRunner().invoke(main, ["diag", LID, *opts])
    assert r.exit_code == 0, r.output
    for text in ("application", "1.0.0", "last reset", "power_on", "door 4", "locked", "outbox"):
        assert text in r.output, r.output
    r = CliRunner().invoke(main, ["diag", LID, *opts, "--json"])
    d = json.loads(r.output)
    assert d["app"]["v"] == "1.0.0" and d["safe"] is None and len(d["doors"]) == 4 and d["heap_free"] > 0


def test_diag_with_the_wrong_key_gets_no_answer(online: tuple[VirtualBoard, list[str]], tmp_path: Path) -> None:
    board, opts = online
    wrong = tmp_path / "wrong.key"
    wrong.write_text("22" * 32)
    opts = [*opts[: opts.index("--flash")], "--key-file", str(wrong)]
    r = CliRunner().invoke(main, ["diag", LID, *opts, "--timeout", "2"])
    assert r.exit_code == 1 and "no reply" in r.output and "is the key right" in r.output
    board.wait_log('"bad_signature"')  # the locker recorded the refusal


def test_update_push_over_mqtt_until_healthy(online: tuple[VirtualBoard, list[str]]) -> None:
    board, opts = online
    args = ["update", "push", LID, "--app", str(FIRMWARE_DIR), "--version", "2.0.0", "--arch", ""]
    r = CliRunner().invoke(main, [*args, *opts, "--healthy-s", "2", "--timeout", "60"])
    assert r.exit_code == 0, r.output + board.log_tail(30)
    assert "runs 2.0.0: healthy, update kept" in r.output
    r = CliRunner().invoke(main, ["update", "status", LID, *opts])
    assert r.exit_code == 0 and "2.0.0" in r.output
    assert any("app_ok" in ln and "2.0.0" in ln for ln in board.log_lines())
