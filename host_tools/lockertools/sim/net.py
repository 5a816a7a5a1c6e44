"""What `lockerctl sim net` (lockertools.cli.sim) runs: the networked demo in one command.

In a work directory (kept between runs, so a second run picks up where the first stopped) it sets up
what docs/operation.md has staff set up by hand: a mosquitto directory (`BrokerSetup`, loopback, a
free port, a user per locker and one for the host service), a fleet database with the simulated
lockers registered under the key their flash holds, and each locker's flash with a net.json naming
the broker. It then runs mosquitto and `lockerctl service run` as child processes, boots the lockers
(real firmware, `VirtualBoard`) and hands the first one to the same `locker>` terminal as
`lockerctl sim run`, with a line printed whenever its network status changes.

Whatever happens (quit, Ctrl-C, SIGTERM, an error), every process started here is stopped: the
lockers first (the broker publishes their last will), then the service, then the broker (SIGTERM:
it saves its database).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import click

from lockertools.boards import door_sizes
from lockertools.broker import BrokerError, BrokerSetup, find_mosquitto, free_port
from lockertools.sim.board import Event, VirtualBoard

LOOPBACK = "127.0.0.1"
HOST_USER = "host"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
STATUS_POLL_S = 0.2  # the database is another process's: there is nothing to wait on but a poll


@dataclass(frozen=True)
class Locker:
    lid: str
    flash: Path
    labels: list[str]


@dataclass(frozen=True)
class NetStatus:
    """One locker as the host sees it (fleet database) and its outbox on flash."""

    online: bool
    locker_rev: int | None  # as the locker last reported it
    host_rev: int
    outbox: int

    @property
    def synced(self) -> bool:
        return self.online and self.locker_rev == self.host_rev

    def line(self, lid: str) -> str:
        rev = "-" if self.locker_rev is None else str(self.locker_rev)
        sync = "in sync" if self.locker_rev == self.host_rev else "not in sync"
        return (
            f"[net] {lid} {'online' if self.online else 'OFFLINE'} | codes: locker rev {rev}, "
            f"host rev {self.host_rev} ({sync}) | outbox {self.outbox}"
        )


# --- the work directory ----------------------------------------------------------------------------


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def prepare_workdir(workdir: Path, board: Path, n_lockers: int) -> tuple[BrokerSetup, list[Locker]]:
    """Broker directory, fleet database and flash folders; what exists is kept (users, keys, codes,
    outbox), what must match is checked. The host's password is in workdir/host.pw."""
    from lockertools import flash
    from lockertools.service import db, fleet_db

    workdir.mkdir(parents=True, exist_ok=True)
    broker_dir = workdir / "broker"
    try:
        setup = BrokerSetup(broker_dir, host=LOOPBACK, port=0, tls_port=None)  # 0: the port of the last run, if any
        if setup.port is None or not _port_free(LOOPBACK, setup.port):
            setup = BrokerSetup(broker_dir, host=LOOPBACK, port=free_port(LOOPBACK), tls_port=None)
        # Passwords are shown once and only hashed in the broker's files: keep ours beside them.
        host_pw_file = workdir / "host.pw"
        host_pw = _read_text(host_pw_file)
        if HOST_USER not in setup.host_users:
            host_pw = setup.add_host(HOST_USER)
        elif not host_pw or not setup.check_password(HOST_USER, host_pw):
            host_pw = setup.add_host(HOST_USER, rotate=True)
        _write_secret(host_pw_file, host_pw)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None

    board_bytes = board.read_bytes()
    labels = flash.board_labels(json.loads(board_bytes))
    conn = db.connect(workdir / "fleet.db", create=True)
    lockers = []
    try:
        for n in range(1, n_lockers + 1):
            lid = f"sim-{n}"
            flash_dir = workdir / lid / "flash"
            row = conn.execute("SELECT key_hex FROM lockers WHERE id = ?", (lid,)).fetchone()
            key_file = flash_dir / "locker.key"
            if key_file.exists():
                if (flash_dir / "board.json").read_bytes() != board_bytes:
                    raise click.ClickException(
                        f"{flash_dir} holds another board than {board}: use another --workdir, or delete {workdir}"
                    )
                key = bytes.fromhex(key_file.read_text().strip())
            else:
                # Revision 0, no codes: everything the locker will hold comes from the host.
                key = bytes.fromhex(row["key_hex"]) if row else secrets.token_bytes(32)
                flash.prepare(flash_dir, board, codes=[], locker_id=lid, key=key, revision=0)
            if row is None:
                fleet_db.add_locker(conn, lid, key, labels, door_sizes(json.loads(board_bytes)))
            elif bytes.fromhex(row["key_hex"]) != key:
                raise click.ClickException(
                    f"{lid}: the fleet database and the flash hold different keys; delete {workdir}"
                )
            net_file = flash_dir / "net.json"
            old = json.loads(net_file.read_text()) if net_file.exists() else {}
            password = str(old.get("broker", {}).get("password") or "")
            try:
                if lid not in setup.lockers:
                    password = setup.add_locker(lid)
                elif not password or not setup.check_password(lid, password):
                    password = setup.add_locker(lid, rotate=True)
            except BrokerError as exc:
                raise click.ClickException(str(exc)) from None
            # Written every run: the broker's port may have changed.
            broker = {"host": LOOPBACK, "port": setup.port, "tls": False, "user": lid, "password": password}
            flash.write_net(flash_dir, {"broker": broker, "keepalive": 10})
            lockers.append(Locker(lid, flash_dir, labels))
        # Nothing of this demo runs now: an `online` left by a run that ended before the service saw
        # the lockers' last will would make the status line (and `wait online`) lie until they connect.
        with db.transaction(conn):
            conn.execute("UPDATE lockers SET online = 0")
    finally:
        conn.close()
    return setup, lockers


# --- child processes -------------------------------------------------------------------------------


def _die_with_parent() -> None:
    # In the child, before exec: if this process is killed outright (SIGKILL), the kernel sends the
    # child SIGTERM, so no broker or service outlives the demo.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches us only, and we stop the children in order.
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _log_tail(log: Path, start: int, lines: int = 20) -> str:
    try:
        data = log.read_bytes()[start:].decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _wait_started(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, log: Path, start: int) -> None:
    """Until `ready()`; ClickException with the log's tail if the process exits or takes too long.
    Polled: a port or a log file gives nothing to block on."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            raise click.ClickException(f"{what} exited with status {proc.returncode}:\n{_log_tail(log, start)}")
        if time.monotonic() > deadline:
            raise click.ClickException(f"{what} not ready after {START_TIMEOUT_S:g} s:\n{_log_tail(log, start)}")
        time.sleep(0.05)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def lockerctl_argv() -> list[str]:
    """How to run lockerctl: the script beside this Python (the venv's), else through the module."""
    script = Path(sys.executable).with_name("lockerctl")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from lockertools.cli import main; main()"]


def shown(path: Path) -> str:
    """A path as short as it can be for commands typed in another terminal in the same directory."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())


# --- status ----------------------------------------------------------------------------------------


class StatusMonitor:
    """Follows each locker's status (fleet database, outbox on flash) on a thread; calls `on_change`
    with the first locker's status when it changes, and lets the terminal wait for a condition."""

    def __init__(self, db_path: Path, lockers: list[Locker], on_change: Callable[[NetStatus], None]) -> None:
        self.db_path = db_path
        self.lockers = lockers
        self.on_change = on_change
        self.status: dict[str, NetStatus] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-net-status", daemon=True)

    def start(self) -> StatusMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _read(self, conn: sqlite3.Connection) -> dict[str, NetStatus]:
        rows = {r[0]: r for r in conn.execute("SELECT id, online, host_rev, locker_rev FROM lockers")}
        out = {}
        for lk in self.lockers:
            r = rows.get(lk.lid)
            outbox = len(list((lk.flash / "outbox").glob("*.ev")))
            if r is not None:
                out[lk.lid] = NetStatus(bool(r[1]), None if r[3] is None else int(r[3]), int(r[2]), outbox)
        return out

    def _run(self) -> None:
        conn = sqlite3.connect(self.db_path, timeout=1.0)
        try:
            while True:
                try:
                    now = self._read(conn)
                except (sqlite3.Error, OSError):
                    now = self.status  # busy or mid-write: next round
                first = self.lockers[0].lid
                changed = now.get(first) != self.status.get(first)
                if changed and first in now:
                    self.on_change(now[first])  # before the waiters wake: the line comes before their report
                with self._cond:
                    self.status = now
                    self._cond.notify_all()
                if self._stop.wait(STATUS_POLL_S):
                    return
        finally:
            conn.close()

    def wait(self, lid: str, pred: Callable[[NetStatus], bool], timeout: float) -> NetStatus | None:
        with self._cond:
            ok = self._cond.wait_for(lambda: lid in self.status and pred(self.status[lid]), timeout)
            return self.status[lid] if ok else None


# --- start-up, shared by `sim net` and `sim web` -----------------------------------------------------


@dataclass(frozen=True)
class Running:
    """The broker and the host service started for a work directory."""

    broker_pid: int
    service_pid: int
    port: int
    db_path: Path


def find_broker() -> str | None:
    """mosquitto's path; None when it is missing and the embedded broker (amqtt) can stand in."""
    try:
        return find_mosquitto()
    except BrokerError as exc:
        import importlib.util

        if importlib.util.find_spec("lockertools.sim.embedded_broker") is None:
            raise click.ClickException(str(exc)) from None
        return None


def start_broker_and_service(
    stack: contextlib.ExitStack,
    workdir: Path,
    setup: BrokerSetup,
    mosquitto: str | None,
    report: Callable[[str], None],
    service_args: list[str] | None = None,
) -> Running:
    """mosquitto, then `lockerctl service run` (with `service_args` added), each waited for; their stop
    is registered on `stack` (the service stops before the broker)."""
    port = setup.port
    assert port is not None  # prepare_workdir sets up a plain listener
    db_path = workdir / "fleet.db"
    broker_log = workdir / "broker.log"
    start = broker_log.stat().st_size if broker_log.exists() else 0
    conf = setup.write()
    if mosquitto is None:
        broker_pid = _start_embedded_broker(stack, setup, broker_log)
        report(f"broker: embedded amqtt (mosquitto is not installed) on {LOOPBACK}:{port}, log {shown(broker_log)}")
    else:
        broker = _spawn([mosquitto, "-c", str(conf)], broker_log)
        stack.callback(_stop, broker)
        _wait_started(broker, lambda: _accepts(LOOPBACK, port), "mosquitto", broker_log, start)
        report(f"broker: mosquitto on {LOOPBACK}:{port} (pid {broker.pid}, log {shown(broker_log)})")
        broker_pid = broker.pid

    service_log = workdir / "service.log"
    start = service_log.stat().st_size if service_log.exists() else 0
    argv = [*lockerctl_argv(), "service", "run", "--db", str(db_path), "--broker", f"{LOOPBACK}:{port}", "--plain"]
    argv += ["--user", HOST_USER, "--password-file", str(workdir / "host.pw"), "-v", *(service_args or [])]
    argv += ["--metrics", f"{LOOPBACK}:0"]  # any free port (several simulators may run): the log names it
    argv += ["--log-format", "text"]  # the simulator's log is read by people
    service = _spawn(argv, service_log)
    stack.callback(_stop, service)

    def connected() -> bool:
        return "connected to " in _log_tail(service_log, start, 1000)

    _wait_started(service, connected, "the host service", service_log, start)
    report(f"host service: pid {service.pid}, log {shown(service_log)}")
    return Running(broker_pid, service.pid, port, db_path)


def _start_embedded_broker(stack: contextlib.ExitStack, setup: BrokerSetup, log: Path) -> int:
    """The embedded broker (lockertools.sim.embedded_broker, amqtt, in a thread of this process) for
    machines without mosquitto; stopped by `stack`. Returns the pid serving it (this one)."""
    from lockertools.sim.embedded_broker import start_embedded_broker

    try:
        broker = start_embedded_broker(setup, log_path=log)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    stack.callback(broker.stop)
    return broker.pid


def make_boards(
    stack: contextlib.ExitStack,
    lockers: list[Locker],
    heap: str,
    on_event: Callable[[int, Locker], Callable[[Event], None] | None],
) -> list[VirtualBoard]:
    """A VirtualBoard per locker (not booted yet), a parcel behind every door; closed by `stack`."""
    boards = []
    for n, lk in enumerate(lockers):
        vb = VirtualBoard(lk.flash, heap=heap, on_event=on_event(n, lk), auto_reboot=True)
        stack.callback(vb.close)
        vb.parcels.update(range(len(lk.labels)))  # a parcel waits behind every door
        boards.append(vb)
    return boards


# --- leaving through every clean-up ------------------------------------------------------------------


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-up below


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (terminal closed) leave like Ctrl-C does: through every clean-up."""
    old = {sig: signal.signal(sig, _raise_exit) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
