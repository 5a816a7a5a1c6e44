"""Running the host service in production: systemd's notification protocol (READY=1 once connected
and subscribed, WATCHDOG=1 while the loops are healthy, STOPPING=1), the health endpoint and
Prometheus metrics, and structured log lines that never hold a code or a password. Against a real
mosquitto, `lockerctl service run` as its own process where the process is what is tested."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from service_helpers import DeliverySim, Rig

from lockertools.service import db, fleet_db, sdnotify
from tests.support.fixtures import Broker
from tests.support.mosquitto import wait_until

LOCKERCTL = [sys.executable, "-c", "from lockertools.cli import main; main()"]


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET (abstract, or a path)."""

    def __init__(self, path: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            name = f"lockertools-test-{secrets.token_hex(6)}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            self.sock.bind(str(path))
            self.env = str(path)
        self.sock.settimeout(0.05)
        self.received: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.received

    def fields(self) -> list[str]:
        return [f for datagram in self.drain() for f in datagram.split("\n")]

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("abstract", [True, False])
def test_sd_notify_datagram_reaches_an_abstract_or_a_path_socket(tmp_path: Path, abstract: bool) -> None:
    listener = NotifySocket(None if abstract else tmp_path / "notify")
    try:
        notifier = sdnotify.Notifier({"NOTIFY_SOCKET": listener.env, "WATCHDOG_USEC": "3000000"})
        assert notifier.enabled and notifier.watchdog_s == 3.0
        assert notifier.send("READY=1", "STATUS=up")
        wait_until(lambda: listener.drain() == ["READY=1\nSTATUS=up"], 5, "the datagram")
    finally:
        listener.close()
    assert not sdnotify.Notifier({}).send("READY=1")  # not under systemd: nothing, no error
    # WATCHDOG_PID names another process: its watchdog is not ours to feed.
    assert sdnotify.Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_s is None


def _service(rig: Rig, tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    password_file = tmp_path / "host.pw"
    password_file.write_text(rig.broker.passwords[rig.broker.host_user])
    args = ["service", "run", "--db", str(rig.db_path), "--broker", f"{rig.broker.host}:{rig.broker.port}", "--plain"]
    args += ["--user", rig.broker.host_user, "--password-file", str(password_file), *extra]
    return subprocess.Popen([*LOCKERCTL, *args], env={**os.environ, **(env or {})}, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def rig(broker: Broker, tmp_path: Path) -> Iterator[Rig]:
    made = Rig(broker, tmp_path, sim_class=DeliverySim)
    try:
        yield made
    finally:
        made.close()


@pytest.mark.sqlite_only  # `lockerctl service run` as a process, on the rig's database file
def test_service_under_systemd_says_ready_then_feeds_the_watchdog_then_stopping(rig: Rig, tmp_path: Path) -> None:
    listener = NotifySocket()
    service = _service(
        rig, tmp_path, "--metrics", "off", env={"NOTIFY_SOCKET": listener.env, "WATCHDOG_USEC": "400000"}
    )
    try:
        wait_until(lambda: "READY=1" in listener.fields(), 20, "READY=1")
        # READY=1 came once the subscriptions were granted: the session exists on the broker.
        wait_until(lambda: listener.fields().count("WATCHDOG=1") >= 3, 20, "WATCHDOG=1 again and again")
        fields = listener.fields()
        assert fields.index("READY=1") < fields.index("WATCHDOG=1")
        service.terminate()
        wait_until(lambda: "STOPPING=1" in listener.fields(), 20, "STOPPING=1")
        _, err = service.communicate(timeout=20)
        fields = listener.fields()
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
        listener.close()
    assert service.returncode == 0, err
    assert fields.count("READY=1") == 1 and fields.index("STOPPING=1") > fields.index("WATCHDOG=1")


def test_a_stalled_loop_is_reported_and_starves_the_watchdog(rig: Rig, tmp_path: Path) -> None:
    """A notification hook that hangs holds the notifier loop: health says which loop stalled, and
    the watchdog is not fed (systemd restarts the service once WatchdogSec passes)."""
    listener = NotifySocket()
    gate = tmp_path / "release"
    hang = f'{sys.executable} -c "import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)"'
    rig.config.update(notify_command=hang, notify_timeout_s=120, loop_stall_s=0.5, webhook_poll_s=0.05, metrics_port=0)
    prev = os.environ.get("NOTIFY_SOCKET"), os.environ.get("WATCHDOG_USEC")
    os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"] = listener.env, "200000"
    try:
        service = rig.start_service()
    finally:
        for name, value in zip(("NOTIFY_SOCKET", "WATCHDOG_USEC"), prev, strict=True):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        wait_until(lambda: "WATCHDOG=1" in listener.fields(), 10, "the watchdog fed while healthy")
        assert _get(service.metrics_port, "/healthz")[0] == 200
        with db.transaction(rig.conn):  # the hook hangs on it
            fleet_db.enqueue_notification(rig.conn, "hall-1", None, "returned", "A1", {"item": "book"})
        wait_until(lambda: not service.healthy(), 10, "the notifier loop to count as stalled")
        status, body = _get(service.metrics_port, "/healthz")
        assert status == 503 and json.loads(body)["loops"] == "stalled: notifier", body
        assert _metric(service.metrics_port, "lockerhost_up") == 0
        # No WATCHDOG=1 goes while it is stalled: the loop says so instead (each skipped feed is logged).
        listener.drain()
        listener.received.clear()
        skipped = service.watchdog_skipped
        wait_until(lambda: service.watchdog_skipped >= skipped + 3, 10, "three feeds skipped")
        assert "WATCHDOG=1" not in listener.fields()
        gate.write_text("")
        wait_until(service.healthy, 20, "the notifier loop going round again")
        wait_until(lambda: "WATCHDOG=1" in listener.fields(), 10, "the watchdog fed again")
    finally:
        gate.write_text("")
        listener.close()


def _get(port: int | None, path: str) -> tuple[int, str]:
    assert port is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(port: int | None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = _get(port, "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _metric(port: int | None, name: str, **labels: str) -> float | None:
    return _samples(port).get((name, tuple(sorted(labels.items()))))


def test_metrics_and_health_follow_what_the_service_does(rig: Rig) -> None:
    rig.config.update(metrics_port=0)
    service = rig.start_service()
    port = service.metrics_port
    assert _metric(port, "lockerhost_lockers_online") == 0
    assert _get(port, "/healthz")[0] == 200
    sim = rig.start_locker()
    rig.wait(lambda: _metric(port, "lockerhost_lockers_online") == 1, "the locker online in the metrics")
    issued = fleet_db.issue_code(rig.conn, "hall-1", "A2")
    rig.wait(lambda: sim.lookup("A2", issued.code) == issued.code_id, "the code on the locker")
    rig.call(sim.event("pickup", repeat=2, d="A2", id=issued.code_id))  # one duplicate
    rig.call(sim.event("forced", d="A1"))
    rig.call(sim.event("jammed", d="A3"))
    rig.call(sim.event("refused", r="bad_signature", n=3))
    rig.call(sim.event("refused", r="replay", op="codes.apply", n=1))
    # A message no key signed: the host refuses it (by reason) and records nothing.
    rig.call(sim.publish("events", b'{"v": 1, "lid": "hall-1", "seq": 99, "ev": {"k": "pickup"}}.' + b"0" * 64))
    rig.wait(lambda: service.counters.events == 5 and service.counters.rejected, "the events")
    m = _samples(port)
    assert m[("lockerhost_events_ingested_total", ())] == 5
    assert m[("lockerhost_event_duplicates_total", ())] == 1
    assert m[("lockerhost_locker_refusals_total", (("reason", "bad_signature"),))] == 3
    assert m[("lockerhost_locker_refusals_total", (("reason", "replay"),))] == 1
    assert sum(v for (name, _), v in m.items() if name == "lockerhost_messages_rejected_total") >= 1
    assert m[("lockerhost_incidents_open", (("kind", "forced"),))] == 1
    assert m[("lockerhost_incidents_open", (("kind", "jammed"),))] == 1
    assert m[("lockerhost_incidents_open", (("kind", "left_open"),))] == 0
    assert m[("lockerhost_broker_connected", ())] == 1 and m[("lockerhost_up", ())] == 1
    # The forced door is closed again: its incident is over; a door left open is one.
    rig.call(sim.event("closed", d="A1"))
    rig.call(sim.event("opened", d="A2"))
    rig.call(sim.event("left_open", d="A2"))
    rig.wait(lambda: _metric(port, "lockerhost_incidents_open", kind="left_open") == 1, "left_open counted")
    assert _metric(port, "lockerhost_incidents_open", kind="forced") == 0
    # A door request nobody answers waits, and ages.
    rig.stop_locker(crash=True)  # a power cut: the broker publishes its will
    rig.wait(lambda: _metric(port, "lockerhost_lockers_online") == 0, "the locker offline")
    fleet_db.queue_request(rig.conn, "hall-1", "door.open", {"door": "A1", "by": "Bea"}, "Bea")
    rig.wait(lambda: _metric(port, "lockerhost_commands_waiting", what="request") == 1, "the request waiting")
    assert (_metric(port, "lockerhost_commands_oldest_wait_seconds", what="request") or 0) >= 0
    status, body = _get(port, "/healthz")
    assert status == 200 and json.loads(body)["broker"] == "connected"
    # Every metric the shipped alert rules use is one the service exports.
    exported = {name for name, _ in _samples(port)}
    rules = (Path(__file__).resolve().parents[2] / "packaging" / "prometheus" / "lockertools-alerts.yml").read_text()
    used = set(re.findall(r"\b(lockerhost_\w+)", rules))
    assert used and used <= exported, used - exported


@pytest.mark.sqlite_only  # `lockerctl service run` as a process, on the rig's database file
def test_log_lines_are_json_with_the_locker_and_never_a_code_or_a_password(rig: Rig, tmp_path: Path) -> None:
    """The whole flow through `lockerctl service run -v`: a staff PIN, a delivery loaded and picked up, a
    resident code, a failing notification hook that holds the code, a wrong code, a refused command;
    its log (stderr) has no code, PIN, key or password in it, and each line is one JSON object."""
    (staff_pin,) = fleet_db.add_staff(rig.conn, "Bea", ["hall-1"])[1]
    delivery = fleet_db.prepare_delivery(rig.conn, "hall-1", size="M", contact="ann@example.org", item="document")
    resident = fleet_db.issue_code(rig.conn, "hall-1", "A3", recipient="bob@example.org")
    failing_hook = f'{sys.executable} -c "import sys; sys.stderr.write(sys.stdin.read()); sys.exit(3)"'
    service = _service(rig, tmp_path, "-v", "--metrics", "127.0.0.1:0", "--notify-command", failing_hook)
    try:
        sim = rig.sims["hall-1"]
        assert isinstance(sim, DeliverySim)
        rig.start_locker()
        rig.wait(lambda: sim.lookup("A3", resident.code) == resident.code_id, "the resident code on the locker", 30)
        rig.wait(lambda: sim.lookup_any(delivery.code) is not None, "the delivery on the locker")
        rig.call(sim.event("staff_in", staff=staff_pin.code_id))
        sim.load(delivery.number, "A2")
        rig.call(sim.event("loaded", d="A2", id=delivery.number, staff=staff_pin.code_id))
        rig.call(sim.event("staff_out", staff=staff_pin.code_id, r="done"))
        rig.call(sim.event("denied", d="A1", r="wrong", n=1))
        rig.call(sim.event("pickup", d="A3", id=resident.code_id))
        rig.call(sim.event("refused", r="bad_signature", n=1))
        rig.wait(
            lambda: rig.query("SELECT count(*) FROM notifications WHERE state = 'failed'")[0][0] >= 1,
            "the hook's failure recorded",
        )
        rig.wait(lambda: not sim.outbox, "every event acknowledged")
    finally:
        service.terminate()
        _, err = service.communicate(timeout=20)
    assert service.returncode == 0, err
    lines = [line for line in err.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    assert any(r["msg"].startswith("connected to") for r in records)
    assert any(r.get("locker") == "hall-1" and "notification" in r["msg"] for r in records), err
    assert any(r.get("locker") == "hall-1" and r["msg"].startswith("sync hall-1") for r in records), err
    # Every line but the banner is structured.
    assert [line for line in err.splitlines() if not line.startswith("{")] == [
        line for line in err.splitlines() if line.startswith("serving ")
    ]
    secrets_ = {
        "resident code": resident.code,
        "delivery code": delivery.code,
        "staff PIN": staff_pin.pin,
        "host password": rig.broker.passwords[rig.broker.host_user],
        "locker password": rig.broker.passwords["hall-1"],
        "locker key": rig.keys["hall-1"].hex(),
    }
    leaked = {what: value for what, value in secrets_.items() if value in err}
    assert leaked == {}, f"in the service's log: {sorted(leaked)}"
    assert re.search(r"\b\d{8}\b", "".join(r["msg"] for r in records)) is None  # no 8-digit code at all


def test_a_metrics_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lockertools.cli import main

    path = tmp_path / "fleet.db"
    db.connect(path, create=True).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["service", "run", "--db", str(path), "--plain", "--broker", "127.0.0.1:1"]
        result = CliRunner().invoke(main, [*args, "--metrics", f"127.0.0.1:{port}"])
    assert result.exit_code == 1, result.output
    assert f"cannot serve metrics on 127.0.0.1:{port}: Address already in use" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # a message, no traceback
    result = CliRunner().invoke(main, [*args, "--metrics", "9466"])
    assert result.exit_code == 2 and "HOST:PORT" in result.output
