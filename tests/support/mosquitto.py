"""A real mosquitto for tests, run from a `lockertools.broker.BrokerSetup` directory, and a small
paho-mqtt client that records what it receives.

`Mosquitto(setup)` starts the broker with the set-up's configuration (loopback only) and keeps its log
in the set-up directory (`mosquitto.log`); `start()` returns once the broker logged that it runs and
every listener accepts connections. `kill()` is SIGKILL (what a crash or power cut leaves),
`stop()` SIGTERM (the broker saves its database), `reload()` SIGHUP (rereads users and ACL), `save()`
SIGUSR1 (writes the database now).

`MqttClient` wraps paho-mqtt (MQTT 3.1.1, its own network thread): every call waits for the broker's
answer (CONNACK, SUBACK, PUBACK) and every wait is a condition wait with a deadline.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from lockertools.broker import BrokerSetup, find_mosquitto, free_port

START_TIMEOUT = 10.0
WAIT = 5.0
SAVE_LINE = "Saving in-memory database"  # an "information" line, logged by mosquitto-test.conf


class MosquittoError(Exception):
    pass


def wait_until(cond: Callable[[], bool], timeout: float, what: str, poll: float = 0.01) -> None:
    """Polls `cond` until it holds; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Mosquitto:
    """One mosquitto process for `setup`: its files are written on every start, and the broker runs with
    its configuration plus the "information" log level (`mosquitto-test.conf` beside it)."""

    def __init__(self, setup: BrokerSetup, *, start_timeout: float = START_TIMEOUT) -> None:
        if not ipaddress.ip_address(setup.host).is_loopback:
            raise MosquittoError(f"tests run the broker on loopback only, not {setup.host}")
        self.setup = setup
        self.exe = find_mosquitto()
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0
        self._started_once = False

    @property
    def host(self) -> str:
        return self.setup.host

    @property
    def port(self) -> int:
        if self.setup.port is None:
            raise MosquittoError("this broker has no plain listener")
        return self.setup.port

    @property
    def tls_port(self) -> int:
        if self.setup.tls_port is None:
            raise MosquittoError("this broker has no TLS listener")
        return self.setup.tls_port

    @property
    def log_path(self) -> Path:
        return self.setup.log_path

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, *, this_run: bool = False) -> str:
        """The broker's log (of every run in this directory, or only the current one)."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return data[self._log_start if this_run else 0 :].decode("utf-8", "replace")

    def start(self) -> Mosquitto:
        if self.running:
            raise MosquittoError("already running")
        # The first start may find a port taken since BrokerSetup picked it: pick again, a few times.
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            try:
                self._start_once()
                self._started_once = True
                return self
            except MosquittoError:
                in_use = "Address already in use" in self.log(this_run=True)
                if not in_use or attempt == attempts - 1:
                    raise
                if self.setup.port is not None:
                    self.setup.port = free_port(self.host)
                if self.setup.tls_port is not None:
                    self.setup.tls_port = free_port(self.host)
        raise AssertionError("unreachable")

    def _start_once(self) -> None:
        self.setup.write()
        # The set-up's configuration, plus the "information" log level: it has the "running" line waited
        # for below (and one line per database save, which shows when persistence happened).
        conf = self.setup.directory / "mosquitto-test.conf"
        conf.write_text(self.setup.conf_text() + "log_type information\n")
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        ports = [p for p in (self.setup.port, self.setup.tls_port) if p is not None]
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                self.proc = None
                raise MosquittoError(f"mosquitto exited at start:\n{self.log(this_run=True)}")
            if " running" in self.log(this_run=True) and all(_accepts(self.host, p) for p in ports):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise MosquittoError(f"mosquitto not up after {self.start_timeout} s:\n{self.log(this_run=True)}")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: the broker saves its database and closes every connection."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: nothing is saved beyond what autosave already wrote."""
        self._signal_and_wait(signal.SIGKILL, 10.0)

    def restart(self) -> Mosquitto:
        self.stop()
        return self.start()

    def save(self) -> None:
        """SIGUSR1: the broker writes its database now. Returns once its log says the save began; the
        broker saves in its one thread, so its next answer to any client comes after the file is written."""
        if not self.running or self.proc is None:
            raise MosquittoError("not running")
        saves = self.log(this_run=True).count(SAVE_LINE)
        self.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: self.log(this_run=True).count(SAVE_LINE) > saves, WAIT, "the broker to save its database")

    def reload(self) -> None:
        """SIGHUP: the broker rereads the password file and the ACL."""
        if not self.running or self.proc is None:
            raise MosquittoError("not running")
        self.proc.send_signal(signal.SIGHUP)

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise MosquittoError(f"mosquitto ignored {sig.name} for {timeout} s") from None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttClient:
    """A paho-mqtt client (MQTT 3.1.1) that waits for the broker's answers and records messages."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        *,
        client_id: str = "",
        clean_session: bool = True,
        ca: Path | None = None,
        tls_check_hostname: bool = True,
        keepalive: int = 30,
        reconnect: bool = False,
        will: tuple[str, bytes, int, bool] | None = None,
    ) -> None:
        self.host, self.port, self.keepalive = host, port, keepalive
        self._cond = threading.Condition()
        self.messages: list[Message] = []
        self.connacks: list[int] = []
        self.disconnects = 0
        self.connected = False
        self._subacks: dict[int, list[int]] = {}
        self._subscriptions: dict[str, int] = {}  # topic -> qos, renewed on a reconnect without a session
        self._pending_resub: list[int] = []
        self.resubscribed = 0
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
            reconnect_on_failure=reconnect,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        if will is not None:
            self._client.will_set(*will)
        if ca is not None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
            ctx.check_hostname = tls_check_hostname
            ctx.verify_mode = ssl.CERT_REQUIRED
            self._client.tls_set_context(ctx)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._started = False

    # paho callbacks (its network thread)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        with self._cond:
            self.connacks.append(int(rc.value))
            self.connected = not rc.is_failure
            subscriptions = dict(self._subscriptions)
        # paho does not resubscribe: a broker that lost our session (killed before it saved) would
        # silently deliver nothing. Counted once the broker has granted them all again.
        if self.connected and subscriptions and not getattr(flags, "session_present", False):
            mids = [client.subscribe(topic, qos)[1] for topic, qos in subscriptions.items()]
            with self._cond:
                self._pending_resub = [m for m in mids if m is not None]
        with self._cond:
            self._cond.notify_all()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        with self._cond:
            self.connected = False
            self.disconnects += 1
            self._cond.notify_all()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
            self._cond.notify_all()

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._cond:
            self._subacks[mid] = [int(c.value) for c in codes]
            pending = self._pending_resub
            if mid in pending:
                pending.remove(mid)
                if not pending:
                    self.resubscribed += 1
            self._cond.notify_all()

    # calls

    def wait(self, cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        with self._cond:
            if not self._cond.wait_for(cond, timeout):
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def connect(self, timeout: float = WAIT) -> int:
        """Connects and returns the CONNACK code as paho reports it (0: accepted; 134 bad user name or
        password, 135 not authorised: paho maps MQTT 3.1.1's 4 and 5 to the MQTT 5 codes; -1: the broker
        closed the connection without a CONNACK).
        Raises what the TLS handshake raises (ssl.SSLError) when the certificate is refused."""
        n, d = len(self.connacks), self.disconnects
        if self._started:  # a previous connection's network thread (it ends when that connection does)
            self._client.loop_stop()
        self._client.connect(self.host, self.port, self.keepalive)
        self._client.loop_start()
        self._started = True
        self.wait(lambda: len(self.connacks) > n or self.disconnects > d, "CONNACK", timeout)
        with self._cond:
            return self.connacks[n] if len(self.connacks) > n else -1

    def subscribe(self, topic: str, qos: int = 1) -> int:
        """Subscribes and returns the granted QoS (128: refused)."""
        rc, mid = self._client.subscribe(topic, qos)
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            raise AssertionError(f"subscribe {topic}: {paho.error_string(rc)}")
        self.wait(lambda: mid in self._subacks, f"SUBACK for {topic}")
        granted = self._subacks[mid][0]
        if granted != 128:
            with self._cond:
                self._subscriptions[topic] = qos
        return granted

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Publishes and, for QoS 1, waits for the broker's PUBACK."""
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise AssertionError(f"publish {topic}: {paho.error_string(info.rc)}")
        info.wait_for_publish(WAIT)
        if not info.is_published():
            raise AssertionError(f"no PUBACK for {topic} within {WAIT} s")

    def send(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Publishes without waiting for the broker's answer (one it may never give: it drops a client
        whose packet is too large, possibly while this call is still writing it: no error then)."""
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN, paho.MQTT_ERR_CONN_LOST):
            raise AssertionError(f"publish {topic}: {paho.error_string(info.rc)}")

    def wait_message(self, topic: str, payload: bytes | None = None, timeout: float = WAIT) -> Message:
        def match(m: Message) -> bool:
            return m.topic == topic and (payload is None or m.payload == payload)

        self.wait(lambda: any(match(m) for m in self.messages), f"a message on {topic}", timeout)
        return next(m for m in self.messages if match(m))

    def received(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def disconnect(self) -> None:
        """A clean DISCONNECT (the broker drops the will and keeps a persistent session)."""
        if self.connected:
            self._client.disconnect()
            self.wait(lambda: not self.connected, "the disconnect")

    def close(self) -> None:
        try:
            self.disconnect()
        except AssertionError:
            pass
        self._client.disconnect()
        if self._started:
            self._client.loop_stop()
            self._started = False
        try:
            sock = self._client.socket()
            if sock is not None:
                sock.close()
        except OSError:
            pass

    def __enter__(self) -> MqttClient:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
