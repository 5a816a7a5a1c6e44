"""Provisioning end to end on a virtual board: MicroPython's unix port behind a pty (socat), driven by
the real mpremote transport exactly as a board on a USB port. A real mosquitto (the `broker`
fixture, 127.0.0.1) and the host service (in this process) are the fleet it joins.

- the full run: register, stage, copy, verify every hash, boot, online, a pickup served;
- a board that dies halfway through the copy: a clear error, no main.py and no marker (it cannot
  start as a locker), and the next run copies only what is missing and finishes;
- re-runs: nothing copied, the key and the broker password kept; --new-key changes the key only;
- the CLI: no secret in anything it prints or logs;
- bulk: a batch with a bad board in it goes on, and the summary says which failed and why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lockertools import FIRMWARE_DIR
from lockertools.cli import main
from lockertools.cli.provision import Row, run_bulk, summary_table
from lockertools.maint import MaintError
from lockertools.maint.bundle import UPDATE_STATE, build_app, install_app
from lockertools.maint.client import Maint
from lockertools.maint.links import SerialConsole, parse_reply
from lockertools.provision import ProvisionError
from lockertools.provision.link import BoardLink
from lockertools.provision.stage import MARKER
from lockertools.provision.steps import Options, Provisioner, SilentReporter
from lockertools.provision.virtual import VirtualSerialBoard
from lockertools.service import db, fleet_db
from lockertools.service.runner import ServiceConfig
from lockertools.sim import VirtualBoard, default_micropython
from tests.e2e.e2e_chain import ServiceThread
from tests.support.fixtures import Broker
from tests.support.settings import FAST_TIMINGS

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "boards" / "esp32-4door.json"
LID = "hall-1"

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
    pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed (make system-packages)"),
]


@pytest.fixture
def fleet_db_path(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.db"
    db.connect(path, create=True).close()
    return path


@pytest.fixture
def service(broker: Broker, fleet_db_path: Path) -> Iterator[ServiceThread]:
    svc = ServiceThread(
        ServiceConfig(
            db_path=fleet_db_path,
            host=broker.host,
            port=broker.port,
            username=broker.host_user,
            password=broker.passwords[broker.host_user],
            client_id=broker.host_user,
            reconnect_min_s=0.05,
            reconnect_max_s=0.5,
            resend_s=3.0,
        )
    )
    try:
        svc.start()
        yield svc
    finally:
        svc.close()


@pytest.fixture
def boards(tmp_path: Path) -> Iterator[Callable[[str], VirtualSerialBoard]]:
    made: list[VirtualSerialBoard] = []

    def make(name: str) -> VirtualSerialBoard:
        vb = VirtualSerialBoard(tmp_path / name / "flash")
        made.append(vb)
        return vb.power_on()

    try:
        yield make
    finally:
        for vb in made:
            vb.close()


def firmware_src(tmp_path: Path) -> Path:
    """A copy of firmware/ for the whole test: re-runs and updates compare like with like even while
    firmware/ is being edited."""
    src = tmp_path / "firmware-src"
    if not src.exists():
        shutil.copytree(FIRMWARE_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def app_build(tmp_path: Path, version: str = "1.0.0") -> Path:
    """A release folder (boot.py, main.py, app/ with app/app.json), built once for the whole test."""
    app = tmp_path / f"app-{version}"
    if not app.exists():
        install_app(app, build_app(version=version, firmware_dir=firmware_src(tmp_path)))
    return app


def options(broker: Broker, fleet_db_path: Path, tmp_path: Path, **kw: Any) -> Options:
    base = Options(
        app=app_build(tmp_path),
        board=BOARD,
        locker_id=LID,
        db_path=fleet_db_path,
        broker_dir=broker.setup.directory,
        plain=True,  # the `broker` fixture: plain MQTT on loopback
        firmware=False,  # the virtual board runs MicroPython already: no esptool
        install="mpremote",
        arch=None,  # bytecode .mpy: the unix port runs them
        config=FAST_TIMINGS,
        workdir=tmp_path / "work",
        online_timeout_s=60.0,
        broker_reload=broker.server.reload,
    )
    return replace(base, **kw)


def board_files(flash: Path) -> set[str]:
    return {p.relative_to(flash).as_posix() for p in flash.rglob("*") if p.is_file()}


class KillAfter(SilentReporter):
    """Cuts the board's power once `limit` bytes of files went over the port."""

    def __init__(self, vb: VirtualSerialBoard, limit: int) -> None:
        super().__init__()
        self.vb = vb
        self.limit = limit
        self.sent = 0

    def copy_advance(self, path: str, n: int) -> None:
        self.sent += n
        if self.sent >= self.limit and self.vb.proc is not None:
            self.vb.die()


def query(path: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    conn = db.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def wait(cond: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # the database is the service's (another thread's connection): polled
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_dead_board_then_repair_boot_online_and_a_pickup(
    broker: Broker,
    service: ServiceThread,
    fleet_db_path: Path,
    tmp_path: Path,
    boards: Callable[[str], VirtualSerialBoard],
) -> None:
    vb = boards("b1")
    opts = options(broker, fleet_db_path, tmp_path)

    # 1. The board dies a third of the way through the copy.
    with pytest.raises(ProvisionError) as exc:
        Provisioner(opts, vb, KillAfter(vb, 30_000)).run()
    assert exc.value.step == "install" and "stopped answering" in exc.value.message
    assert "run the same command again" in exc.value.message
    left = board_files(vb.flash_dir)
    assert "main.py" not in left and MARKER not in left, "a half-installed board must not boot as a locker"
    snapshot = {p: (vb.flash_dir / p).read_bytes() for p in left}
    assert not list((tmp_path / "work").rglob("locker.key")), "the staging folder (secrets) is deleted"
    key_hex = query(fleet_db_path, "SELECT key_hex FROM lockers WHERE id = ?", LID)[0][0]

    # 2. Power back, the same command: it copies what is missing, verifies, boots, waits online.
    vb.power_on()
    rep = SilentReporter()
    res = Provisioner(opts, vb, rep).run()
    # The key is the host's; the password is kept if the dead board got its net.json, else rotated.
    assert res.registered == "kept" and res.password == ("kept" if "net.json" in left else "rotated"), rep.lines
    assert res.install is not None and not res.install.already
    final = {p: (vb.flash_dir / p).read_bytes() for p in board_files(vb.flash_dir)}
    # Only what the dead board lacked (or held cut short) is copied again, and main.py.
    installed = board_files(app_build(tmp_path)) | {"board.json", "config.json", "locker.key", "net.json"}
    installed |= {"codes.bin", "used.bin"}  # the rest is the firmware's own (audit log, outbox ...)
    lacking = {p for p in installed if p not in snapshot or snapshot[p] != final[p]}
    assert set(res.install.copied) == lacking | {"main.py"}, (sorted(res.install.copied), sorted(lacking))
    assert len(lacking) < len(final) - 10
    assert res.online_s is not None
    assert query(fleet_db_path, "SELECT key_hex FROM lockers WHERE id = ?", LID)[0][0] == key_hex
    assert (vb.flash_dir / "locker.key").read_text().strip() == key_hex
    assert (vb.flash_dir / MARKER).exists() and (vb.flash_dir / "main.py").exists()
    net = json.loads((vb.flash_dir / "net.json").read_text())
    assert net["broker"]["user"] == LID and net["broker"]["port"] == broker.port

    # 3. It serves a pickup: a code issued on the host reaches it, is typed, the host hears of it.
    board = vb.board
    assert board is not None
    conn = db.connect(fleet_db_path)
    try:
        code = fleet_db.issue_code(conn, LID, "2")
    finally:
        conn.close()

    def synced() -> bool:
        row = query(fleet_db_path, "SELECT host_rev, locker_rev FROM lockers WHERE id = ?", LID)[0]
        return bool(row[1] == row[0] == 1)

    wait(synced, "the code to reach the locker")
    i = board.door_index("2")
    board.set_parcel(i, True)
    mark = board.mark()
    board.type_code(code.code)
    board.wait_event("solenoid", 10, since=mark, door=i, on=1)
    board.wait_event("door", 5, since=mark, door=i, open=1)
    board.set_parcel(i, False)
    board.close_door(i)

    def picked_up() -> bool:
        rows = query(fleet_db_path, "SELECT json FROM events WHERE locker_id = ?", LID)
        return any(json.loads(r[0]).get("k") == "pickup" for r in rows)

    wait(picked_up, "the pickup in the host's database")


def test_a_flat_board_is_converted_then_takes_a_field_update_over_mqtt(
    broker: Broker,
    service: ServiceThread,
    fleet_db_path: Path,
    tmp_path: Path,
    boards: Callable[[str], VirtualSerialBoard],
) -> None:
    """A board provisioned before the update layout (the application flat at the root) and left with an
    interrupted update's state: provisioning converts it to exactly the layout `lockerctl update push`
    needs, it boots through boot.py from app/, and a field update then runs it healthy on 2.0.0."""
    vb = boards("b1")
    src = firmware_src(tmp_path)
    old = build_app(version="0.9.0", firmware_dir=src)
    for rel, data in old.files.items():  # the old stage(): the compiled tree copied flat to the root
        if rel != "app/app.json":
            (vb.flash_dir / rel.removeprefix("app/")).parent.mkdir(parents=True, exist_ok=True)
            (vb.flash_dir / rel.removeprefix("app/")).write_bytes(data)
    (vb.flash_dir / "app.new" / "locker").mkdir(parents=True)  # an update that never finished
    (vb.flash_dir / "app.new" / "locker" / "app.mpy").write_bytes(b"half an update")
    (vb.flash_dir / "app.swap").write_text('{"v": "0.9.1"}')  # boot.py would swap app.new in
    (vb.flash_dir / "app.rolled").write_text('{"from": "0.9.1", "to": "0.9.0", "n": 3}')
    assert (vb.flash_dir / "locker" / "app.mpy").exists()
    opts = options(broker, fleet_db_path, tmp_path)
    rep = SilentReporter()
    res = Provisioner(opts, vb, rep).run()
    assert res.install is not None and not res.install.already
    assert sorted(res.install.removed) == ["app.new", "app.rolled", "app.swap", "hal", "locker"], rep.lines
    assert any("removed 5 left over" in line for line in rep.lines), rep.lines
    assert res.app_version == "1.0.0" and res.online_s is not None
    # Exactly the update layout, byte for byte what build_app makes (and update push installs).
    v1 = build_app(version="1.0.0", firmware_dir=src)
    on_board = board_files(vb.flash_dir)
    assert {rel for rel in on_board if rel.startswith("app/")} == {rel for rel in v1.files if rel.startswith("app/")}
    for rel, data in v1.files.items():
        assert (vb.flash_dir / rel).read_bytes() == data, rel
    assert not (vb.flash_dir / "locker").exists() and not (vb.flash_dir / "hal").exists()
    assert not [name for name in UPDATE_STATE if (vb.flash_dir / name).exists()]
    board = vb.board
    assert board is not None and board.app_on_flash  # boot.py, main.py and app/ from the flash folder

    # The technician's field update, through the broker as the host service's commands go. The broker
    # takes the user name as the client id: a technician beside the running service is a host user of
    # their own (with the service's, each connection would close the other's).
    pw = tmp_path / "tech.pw"
    from lockertools.broker import BrokerSetup

    # (read again: the fixture's copy predates the locker provisioning added)
    broker.passwords["tech"] = BrokerSetup.open(broker.setup.directory).add_host("tech")
    pw.write_text(broker.passwords["tech"])
    broker.server.reload()

    def tech_accepted() -> bool:
        with broker.client("tech", track=False) as probe:
            return probe.connect() == 0

    wait(tech_accepted, "the broker to accept the technician's user", 10)
    link = ["--broker", f"127.0.0.1:{broker.port}", "--user", "tech", "--password-file", str(pw)]
    link += ["--db", str(fleet_db_path)]
    status = CliRunner().invoke(main, ["update", "status", LID, *link])
    assert status.exit_code == 0 and "1.0.0" in status.output, status.output
    push = ["update", "push", LID, "--app", str(src), "--version", "2.0.0", "--arch", "", *link]
    r = CliRunner().invoke(main, [*push, "--healthy-s", "2", "--timeout", "90"])
    assert r.exit_code == 0, r.output + board.log_tail(30)
    assert "runs 2.0.0: healthy, update kept" in r.output, r.output
    assert any("app_ok" in ln and "2.0.0" in ln for ln in board.log_lines())
    assert json.loads((vb.flash_dir / "app" / "app.json").read_text())["version"] == "2.0.0"
    assert json.loads((vb.flash_dir / "app.old" / "app.json").read_text())["version"] == "1.0.0"
    # The loader and main.py are provisioning's: an update leaves them as installed.
    assert (vb.flash_dir / "boot.py").read_bytes() == v1.files["boot.py"]
    assert (vb.flash_dir / "main.py").read_bytes() == v1.files["main.py"]

    def app_ok_at_host() -> bool:
        rows = query(fleet_db_path, "SELECT json FROM events WHERE locker_id = ?", LID)
        return any(json.loads(r[0]).get("k") == "app_ok" for r in rows)

    wait(app_ok_at_host, "the locker's app_ok event at the host", 60)


class Technician:
    """The person at the locker during `--selftest`: closes each door once its latch let go, presses
    every key it is asked to (holding it until the locker echoed it, as a finger does)."""

    def __init__(self, vb: VirtualSerialBoard) -> None:
        self.vb = vb
        self.said: list[str] = []

    def say(self, text: str) -> None:
        self.said.append(text)

    def close_door(self, label: str) -> None:
        board = self.vb.board
        assert board is not None
        i = board.door_index(label)
        board.wait_for(lambda: not board.solenoid_on(i), 5.0, f"door {label}'s solenoid off")
        board.close_door(i)

    def press_keys(self, keys: str) -> None:
        board = self.vb.board
        assert board is not None
        for k in keys:
            n = len(board.log_lines())
            board.press(k)

            def echoed(k: str = k, n: int = n) -> bool | None:
                return f"key|{k}" in board.log_lines()[n:] or None

            board.watch(echoed, 1.0)
            board.release(k)


class JammedDoor2(VirtualSerialBoard):
    """A board whose door 2 latch does not let go (its sensor never says open)."""

    def boot(self, **kw: object) -> VirtualBoard:
        board = super().boot(**kw)
        board.jam(board.door_index("2"))
        return board


def test_selftest_after_provisioning_passes_then_finds_a_jammed_door(
    broker: Broker,
    fleet_db_path: Path,
    tmp_path: Path,
    boards: Callable[[str], VirtualSerialBoard],
    capsys: pytest.CaptureFixture[str],
) -> None:
    vb = boards("b1")
    tech = Technician(vb)
    opts = options(broker, fleet_db_path, tmp_path, wait_online=False, selftest=tech)
    rep = SilentReporter()
    res = Provisioner(opts, vb, rep).run()
    assert res.selftest is not None and res.selftest.passed, res.selftest
    assert [(d.door, d.opened, d.closed) for d in res.selftest.doors] == [(x, "ok", "ok") for x in "1234"]
    board = vb.board
    assert board is not None
    assert res.selftest.keys_seen == board.board["keypad"]["keys"] and res.selftest.keys_missing == ""
    assert any(line.startswith("selftest: 4 doors opened and closed") for line in rep.lines), rep.lines
    assert any("door 1 is open: close it now" in t for t in tech.said)
    opened = [ln for ln in board.log_lines() if '"remote_open"' in ln]
    assert len(opened) == 4 and all('"by": "selftest"' in ln for ln in opened)
    vb.close()

    # The same board again, its door 2 jammed: provisioned (nothing copied), the self-test fails.
    jb = JammedDoor2(vb.flash_dir, vb.tty)
    try:
        jb.power_on()
        tech = Technician(jb)
        prov = Provisioner(replace(opts, selftest=tech), jb)
        with pytest.raises(ProvisionError) as exc:
            prov.run()
        assert exc.value.step == "selftest" and "door 2 JAMMED" in exc.value.message, exc.value.message
        assert f"lockerctl selftest {LID} --port {jb.port}" in exc.value.message
        st = prov.result.selftest
        assert st is not None and not st.passed
        assert {d.door: d.opened for d in st.doors} == {"1": "ok", "2": "JAMMED", "3": "ok", "4": "ok"}
        assert prov.result.install is not None and prov.result.install.already
        from lockertools.cli.maint import print_selftest  # the table `provision --selftest` prints

        capsys.readouterr()
        print_selftest(LID, st)
        out = capsys.readouterr().out
        assert "JAMMED" in out and "FAILED" in out and "missing: none" in out, out
    finally:
        jb.close()


def test_rerun_keeps_everything_and_new_key_changes_only_the_key(
    broker: Broker, fleet_db_path: Path, tmp_path: Path, boards: Callable[[str], VirtualSerialBoard]
) -> None:
    vb = boards("b1")
    opts = options(broker, fleet_db_path, tmp_path, wait_online=False)
    first = Provisioner(opts, vb).run()
    assert first.registered == "new" and first.password == "new"
    assert first.install is not None and not first.install.already
    files = board_files(vb.flash_dir)
    before = {p: (vb.flash_dir / p).read_bytes() for p in files}
    vb.close()  # it booted; the technician plugs it in again
    vb.power_on()
    # The mpremote command line agrees with what the install read back.
    mpremote = Path(sys.executable).with_name("mpremote")
    out = subprocess.run(
        [str(mpremote), "connect", vb.port, "resume", "fs", "sha256sum", ":main.py", ":app/locker/app.mpy"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    for rel in ("main.py", "app/locker/app.mpy"):
        assert hashlib.sha256(before[rel]).hexdigest() in out.stdout, (rel, out.stdout)

    again = Provisioner(opts, vb).run()
    assert again.registered == "kept" and again.password == "kept"
    assert again.install is not None and again.install.already and again.install.copied == []
    after = {p: (vb.flash_dir / p).read_bytes() for p in board_files(vb.flash_dir)}
    # boots.bin is the firmware's: it counts every start (counted first thing), mpremote's too.
    assert {p: after[p] for p in before if p != "boots.bin"} == {p: v for p, v in before.items() if p != "boots.bin"}
    from lockertools.broker import BrokerSetup

    assert BrokerSetup.open(broker.setup.directory).lockers.count(LID) == 1
    assert (broker.setup.directory / "passwd").read_text().count(f"{LID}:") == 1
    vb.close()
    vb.power_on()

    new = Provisioner(replace(opts, new_key=True), vb).run()
    assert new.registered == "new-key" and new.password == "kept"
    key = query(fleet_db_path, "SELECT key_hex FROM lockers WHERE id = ?", LID)[0][0]
    assert (vb.flash_dir / "locker.key").read_text().strip() == key != before["locker.key"].decode().strip()
    assert new.install is not None and new.install.copied == ["locker.key", "main.py"]


def test_cli_never_shows_a_secret(
    broker: Broker,
    fleet_db_path: Path,
    tmp_path: Path,
    boards: Callable[[str], VirtualSerialBoard],
    caplog: pytest.LogCaptureFixture,
) -> None:
    vb = boards("b1")
    wifi_pw = tmp_path / "wifi.pw"
    wifi_pw.write_text("Wifi-Secret-8734\n")
    args = ["provision", "--board", str(BOARD), "--port", vb.port, "--locker", LID]
    args += ["--db", str(fleet_db_path), "--broker-dir", str(broker.setup.directory), "--plain", "--no-firmware"]
    args += ["--arch", "bytecode", "--no-wait", "--wifi-ssid", "hall-wifi", "--wifi-pass-file", str(wifi_pw)]
    args += ["--language", "fr", "--workdir", str(tmp_path / "work"), "--app", str(app_build(tmp_path))]
    caplog.set_level(logging.DEBUG)
    runs = [CliRunner().invoke(main, args) for _ in range(2)]
    for r in runs:
        assert r.exit_code == 0, r.output
    net = json.loads((vb.flash_dir / "net.json").read_text())
    key_hex = (vb.flash_dir / "locker.key").read_text().strip()
    secrets = [key_hex, key_hex.upper(), net["broker"]["password"], "Wifi-Secret-8734"]
    assert net["wifi"] == {"ssid": "hall-wifi", "password": "Wifi-Secret-8734"}
    assert json.loads((vb.flash_dir / "config.json").read_text())["language"] == "fr"
    text = "\n".join(r.output for r in runs) + caplog.text
    assert "✓ install" in text and "already installed" in runs[1].output
    flat = "".join(text.split())  # a secret broken over lines is still found
    for s in secrets:
        assert s not in flat
    # A failing run prints no secret either (the broker's password file is gone: register fails).
    (broker.setup.directory / "broker.json").rename(broker.setup.directory / "broker.json.bak")
    bad = CliRunner().invoke(main, args)
    assert bad.exit_code == 1 and "not a broker directory" in bad.output
    for s in secrets:
        assert s not in "".join((bad.output + caplog.text).split())


def test_bad_inputs_fail_with_what_to_do(
    broker: Broker, fleet_db_path: Path, tmp_path: Path, boards: Callable[[str], VirtualSerialBoard]
) -> None:
    bad_board = tmp_path / "bad.json"
    doc = json.loads(BOARD.read_text())
    doc["doors"][0]["solenoid"]["pin"] = 6  # a flash pin
    bad_board.write_text(json.dumps(doc))
    vb = boards("b1")
    opts = options(broker, fleet_db_path, tmp_path, wait_online=False)
    with pytest.raises(ProvisionError) as exc:
        Provisioner(replace(opts, board=bad_board), vb).run()
    assert exc.value.step == "board" and "lockerctl board check" in exc.value.message
    missing = VirtualSerialBoard(tmp_path / "nowhere" / "flash")  # never powered: no port
    with pytest.raises(ProvisionError) as exc:
        Provisioner(opts, missing).run()
    assert exc.value.step == "port" and "does not exist" in exc.value.message
    with pytest.raises(ProvisionError) as exc:
        Provisioner(replace(opts, broker="127.0.0.1:1"), vb).run()
    assert exc.value.step == "broker" and "unreachable" in exc.value.message
    with pytest.raises(ProvisionError) as exc:
        Provisioner(replace(opts, firmware=True, image=tmp_path / "none.bin"), vb).run()
    assert exc.value.step == "image" and "micropython.org/download/ESP32_GENERIC" in exc.value.message
    # A port held by another program (esptool, a console) is busy.
    from lockertools.provision.link import BoardLink

    with BoardLink(vb.port), pytest.raises(ProvisionError) as exc:
        Provisioner(opts, vb).run()
    assert exc.value.step == "port" and "busy" in exc.value.message
    assert query(fleet_db_path, "SELECT COUNT(*) FROM lockers")[0][0] == 0, "nothing registered by a failed check"
    # A board that answers a write with an error (here: a folder where board.json goes).
    (vb.flash_dir / "board.json").mkdir()
    with pytest.raises(ProvisionError) as exc:
        Provisioner(opts, vb).run()
    assert exc.value.step == "install" and "the board refused a write (OSError" in exc.value.message
    assert not (vb.flash_dir / "main.py").exists() and not (vb.flash_dir / MARKER).exists()


def test_bulk_goes_on_past_a_failure_and_sums_up(
    broker: Broker,
    service: ServiceThread,
    fleet_db_path: Path,
    tmp_path: Path,
    boards: Callable[[str], VirtualSerialBoard],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad_board = tmp_path / "bad.json"
    bad_board.write_text("{not json")
    rows = [
        Row("bulk-1", BOARD, "", None, 1),
        Row("bulk-2", bad_board, "", None, 2),
        Row("bulk-3", BOARD, "", "en", 3),
    ]
    vbs = {r.locker_id: boards(r.locker_id) for r in rows}
    rows = [replace(r, port=vbs[r.locker_id].port) for r in rows]
    outcomes = run_bulk(rows, options(broker, fleet_db_path, tmp_path), lambda r: vbs[r.locker_id], jobs=2)
    assert [o.ok for o in outcomes] == [True, False, True], [o.detail for o in outcomes]
    assert "board:" in outcomes[1].detail and "not valid JSON" in outcomes[1].detail
    online = {r[0] for r in query(fleet_db_path, "SELECT id FROM lockers WHERE online = 1")}
    assert online == {"bulk-1", "bulk-3"}
    assert json.loads((vbs["bulk-3"].flash_dir / "config.json").read_text())["language"] == "en"
    summary_table(outcomes)
    out = capsys.readouterr().out
    assert "2 of 3 boards provisioned, 1 failed" in out and "bulk-2" in out


def test_cli_bulk_from_a_csv(
    broker: Broker, fleet_db_path: Path, tmp_path: Path, boards: Callable[[str], VirtualSerialBoard]
) -> None:
    a, b = boards("a"), boards("b")
    csv_file = tmp_path / "boards.csv"
    lines = ["locker_id,board,port,language", f"csv-1,{BOARD},{a.port},nl", f"csv-2,{BOARD},{tmp_path}/ttyNONE,"]
    lines.append(f"csv-3,{BOARD},{b.port},fr")
    csv_file.write_text("\n".join(lines) + "\n")
    args = ["provision", "bulk", str(csv_file), "--db", str(fleet_db_path), "--broker-dir", str(broker.setup.directory)]
    args += ["--plain"]
    args += ["--no-firmware", "--arch", "bytecode", "--no-wait", "--workdir", str(tmp_path / "work"), "--jobs", "2"]
    args += ["--app", str(app_build(tmp_path))]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output  # one board failed
    assert "2 of 3 boards provisioned, 1 failed" in res.output
    assert "ttyNONE does not exist" in "".join(res.output.split("\n"))
    assert "provisioning" in res.output  # the batch's progress bar
    assert json.loads((b.flash_dir / "config.json").read_text())["language"] == "fr"
    assert {r[0] for r in query(fleet_db_path, "SELECT id FROM lockers")} == {"csv-1", "csv-3"}
    dup = tmp_path / "dup.csv"
    dup.write_text(f"x-1,{BOARD},{a.port}\nx-2,{BOARD},{a.port}\n")
    res = CliRunner().invoke(main, ["provision", "bulk", str(dup), "--dry-run"])
    assert res.exit_code == 1 and "dup.csv:2: port" in res.output


def test_esptool_on_a_board_not_in_its_bootloader_says_what_to_do(
    broker: Broker,
    fleet_db_path: Path,
    tmp_path: Path,
    boards: Callable[[str], VirtualSerialBoard],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real esptool run against the pty: no ROM bootloader answers (as a board whose auto-reset
    does not work), and the message says what a technician does about it."""
    from lockertools.provision.esp import supported_version
    from lockertools.provision.stage import mpy_cross_version
    from tests.provision.images import fake_micropython

    monkeypatch.setenv("LOCKER_IMAGE_CACHE", str(tmp_path / "cache"))
    vb = boards("b1")
    version = supported_version(mpy_cross_version()[0]) + ".0"
    image = fake_micropython(tmp_path / f"ESP32_GENERIC-{version}.bin", version=version)
    opts = options(broker, fleet_db_path, tmp_path, firmware=True, image=image, install="littlefs")
    with pytest.raises(ProvisionError) as exc:
        Provisioner(opts, vb).run()
    assert exc.value.step == "firmware" and "hold BOOT while pressing EN" in exc.value.message
    assert not list((tmp_path / "work").rglob("littlefs.img")), "the image with the secrets is deleted"
    assert (tmp_path / "cache" / image.name).read_bytes() == image.read_bytes()  # for `--image cached`


class FlashToVirtual(Provisioner):
    """esptool's write as a virtual board sees it: the flash erased (--erase-all), then MicroPython finds
    the image's filesystem at the vfs offset. Everything else is the real flow."""

    def _run_esptool(self, argv: list[str]) -> tuple[int, str]:
        from lockertools.provision import esp

        vb = self.target
        assert isinstance(vb, VirtualSerialBoard)
        if argv == esp.chip_on_port_argv(vb.port):  # esptool asks the chip what it is: an ESP32, as on a board
            return 0, f"Connected to ESP32 on {vb.port}:\nChip type:          ESP32-D0WD-V3 (revision v3.1)\n"
        assert argv[argv.index("write-flash") + 1 :][:4] == ["--erase-all", "--flash-size", "4MB", "0x1000"]
        fs_image = Path(argv[argv.index(hex(esp.VFS_OFFSET)) + 1])
        vb.power_off()
        shutil.rmtree(vb.flash_dir)
        for rel, data in esp.read_littlefs(fs_image).items():
            (vb.flash_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (vb.flash_dir / rel).write_bytes(data)
        vb.power_on()
        return 0, "Hash of data verified."


def test_littlefs_install_is_verified_on_the_board_and_comes_online(
    broker: Broker,
    service: ServiceThread,
    fleet_db_path: Path,
    tmp_path: Path,
    boards: Callable[[str], VirtualSerialBoard],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lockertools.provision.esp import supported_version
    from lockertools.provision.stage import mpy_cross_version
    from tests.provision.images import fake_micropython

    monkeypatch.setenv("LOCKER_IMAGE_CACHE", str(tmp_path / "cache"))
    version = supported_version(mpy_cross_version()[0]) + ".0"
    image = fake_micropython(tmp_path / f"ESP32_GENERIC-{version}.bin", version=version)
    vb = boards("b1")
    (vb.flash_dir / "stale.txt").write_text("from an earlier life")
    opts = options(broker, fleet_db_path, tmp_path, firmware=True, image=image, install="littlefs")
    rep = SilentReporter()
    res = FlashToVirtual(opts, vb, rep).run()
    assert res.online_s is not None and res.fs_used is not None, rep.lines
    assert any(line.startswith("verify: ") and "every hash matches" in line for line in rep.lines), rep.lines
    assert not (vb.flash_dir / "stale.txt").exists()
    assert (vb.flash_dir / MARKER).exists()
    # A board whose filesystem is not what was written (here: one file altered) fails verification.
    vb.close()

    class Altered(FlashToVirtual):
        def _run_esptool(self, argv: list[str]) -> tuple[int, str]:
            out = super()._run_esptool(argv)
            (self.target.flash_dir / "config.json").write_text("{}")  # type: ignore[attr-defined]
            return out

    vb.power_on()
    with pytest.raises(ProvisionError) as exc:
        Altered(replace(opts, wait_online=False), vb).run()
    assert exc.value.step == "verify" and "config.json" in exc.value.message


# --- a production board: Ctrl-C and the console on the board's own port ----------------------------


def _answering(port: str, key: bytes) -> tuple[SerialConsole, Maint]:
    """The booted locker's console on its USB port, once it answers a signed diag."""
    con = SerialConsole(port)
    m = Maint(con, LID, key)
    deadline = time.monotonic() + 60
    while True:
        try:
            if m.call("diag", {}, timeout=2.0).get("ok"):
                return con, m
        except MaintError:
            pass  # no answer yet: the locker is still booting
        if time.monotonic() > deadline:
            con.close()
            raise AssertionError("the locker never answered on its console")


def _word_reply(con: SerialConsole, word: str) -> dict[str, Any]:
    since = con.mark()
    con.send_line(word)
    got = con.wait(parse_reply, since, 10)
    assert got is not None, f"no reply to {word!r}"
    return dict(got)


def test_a_production_board_keeps_ctrl_c_from_the_repl_until_a_signed_repl_open(
    broker: Broker, fleet_db_path: Path, tmp_path: Path
) -> None:
    with VirtualSerialBoard(tmp_path / "prod" / "flash", usb_console=True) as vb:
        vb.power_on()
        rep = SilentReporter()
        Provisioner(options(broker, fleet_db_path, tmp_path, production=True, wait_online=False), vb, rep).run()
        assert (vb.flash_dir / "production.json").exists(), rep.lines
        key = bytes.fromhex(query(fleet_db_path, "SELECT key_hex FROM lockers WHERE id = ?", LID)[0][0])

        con, _ = _answering(vb.port, key)
        try:
            assert _word_reply(con, "status")["error"] == "signed_only"
        finally:
            con.close()
        # mpremote's Ctrl-C is a byte for the console: no raw REPL, and the locker runs on (its console
        # does not wait for the end of that line with the whole loop, until the watchdog resets it)
        assert vb.board is not None
        boots = vb.board.boot_count
        with pytest.raises(ProvisionError, match="no MicroPython REPL"):
            BoardLink(vb.port).close()
        con, _ = _answering(vb.port, key)  # signed commands still go in, behind what mpremote left
        con.close()
        assert vb.board.running and vb.board.boot_count == boots and not vb.board.events("reset")

        # the technician's way in: a signed repl.open on the USB port, then the REPL on Ctrl-C
        r = CliRunner().invoke(main, ["repl", LID, "--port", vb.port, "--db", str(fleet_db_path)])
        assert r.exit_code == 0, r.output
        with BoardLink(vb.port) as link:
            assert "production.json" in link.exec("import os\nprint(os.listdir())").decode()


def test_without_production_mode_ctrl_c_reaches_the_repl(broker: Broker, fleet_db_path: Path, tmp_path: Path) -> None:
    with VirtualSerialBoard(tmp_path / "dev" / "flash", usb_console=True) as vb:
        vb.power_on()
        (vb.flash_dir / "production.json").write_text("{}")  # an earlier --production run left it
        Provisioner(options(broker, fleet_db_path, tmp_path, wait_online=False), vb).run()
        assert not (vb.flash_dir / "production.json").exists()
        key = bytes.fromhex(query(fleet_db_path, "SELECT key_hex FROM lockers WHERE id = ?", LID)[0][0])
        con, _ = _answering(vb.port, key)
        try:
            assert _word_reply(con, "status")["locker_id"] == LID
        finally:
            con.close()
        with BoardLink(vb.port) as link:  # Ctrl-C stops the application; mpremote has the raw REPL
            assert link.exec("print(6 * 7)").strip() == b"42"
