"""An embedded MQTT broker (amqtt, pure Python) for machines without mosquitto: the simulator's broker.

    broker = start_embedded_broker(setup)        # setup: a lockertools.broker.BrokerSetup (written)
    ...                                          # clients connect to setup.host:setup.port
    broker.stop()

It serves the same users as mosquitto would for that set-up: it reads the set-up's own files (the
``passwd`` file of ``$7$`` PBKDF2 hashes, checked with `lockertools.broker.verify_password`, and the
host users listed in ``broker.json``), again whenever they change, so `BrokerSetup.add_locker()` /
`add_host()` work on a running broker as they do on mosquitto after a SIGHUP (`reload()` exists for
the same call sites and only drops the cache). The topic ACL is mosquitto's (docs/protocol.md,
"Broker"): a host user reads ``lockers/+/#`` and writes ``lockers/+/cmd``; any other user is a locker
that writes ``lockers/<user>/{status,doors,events,reply}`` and reads ``lockers/<user>/cmd``. As with
mosquitto, subscriptions are granted and what the ACL forbids is simply not delivered; a client id
other than the user name (or empty: amqtt then makes one, `amqtt/...`) and a last will on a topic the
user may not write are refused.

What it is NOT: use mosquitto for anything but the simulator on loopback. amqtt 0.12.1 as found
(tests/broker/test_embedded_broker.py shows each; the xfail tests are the ones mosquitto passes):

- no TLS listener here: plain MQTT on `setup.host` (loopback only; other addresses are refused);
- nothing persists: sessions, queued messages and retained messages live in memory and are gone
  after `stop()` (the protocol copes: lockers resend unacknowledged events and republish their
  retained status when they reconnect; the service subscribes again);
- a client that goes silent (no FIN/RST: a Wi-Fi drop, a real power cut) is never dropped: the
  broker's keepalive timeout handler is a no-op, so its last will is never sent and the host keeps
  the locker "online". (A simulated power cut kills the process: the kernel closes the socket and
  the will goes out as it should.)
- messages queued for an offline persistent session (the host service's) are sent when it comes
  back with the RETAIN flag set, not necessarily in order (concurrent tasks), and a QoS 0 message at
  the subscriber's QoS; a reconnecting persistent session is also sent the retained messages of its
  subscriptions again. The service is indifferent to all four: events carry their seq, and the last
  status it gets is the current retained one.
- the keepalive is 1 x the client's value (MQTT says 1.5 x), moot given the point above.

Two amqtt behaviours are corrected here (`_FleetBroker`):

- amqtt looks a CONNECT's client id up before it checks the password: a refused clean CONNECT with
  the host service's (or a locker's) client id deleted that client's subscriptions (it stayed
  connected and received nothing more), a refused persistent one took its connection over. Any
  local user who knew a client id could knock the service off. Here the password (and the rest of
  `FleetAuthPlugin`'s checks) comes first: a refused CONNECT gets its CONNACK and is closed without
  the session table being read.
- when any client connects, amqtt sends it the retained messages matching *every* subscription in
  the broker, its own or not, past the ACL; so a locker would receive every other locker's retained
  status. We send a client only the retained messages of its own subscriptions that the ACL lets it
  read.

Command line (foreground, until SIGTERM/SIGINT): ``python -m lockertools.sim.embedded_broker DIRECTORY``
with a directory `lockerctl broker init` (or `BrokerSetup.write()`) made, plain listener.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter  # type: ignore[import-untyped]
from amqtt.broker import Broker  # type: ignore[import-untyped]
from amqtt.contexts import Action, BaseContext  # type: ignore[import-untyped]
from amqtt.errors import MQTTError  # type: ignore[import-untyped]
from amqtt.events import MQTTEvents  # type: ignore[import-untyped]
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket  # type: ignore[import-untyped]
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler  # type: ignore[import-untyped]
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin  # type: ignore[import-untyped]
from amqtt.session import Session  # type: ignore[import-untyped]
from amqtt.utils import gen_client_id  # type: ignore[import-untyped]

from lockertools.broker import ACL_LOCKER_READ, ACL_LOCKER_WRITE, BrokerError, BrokerSetup, verify_password

__all__ = ["EmbeddedBroker", "start_embedded_broker", "main"]

START_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 5.0
LOGGER_NAMES = ("amqtt", "lockertools.sim.embedded_broker")
log = logging.getLogger("lockertools.sim.embedded_broker")


# --- users and ACL, from the BrokerSetup's files --------------------------------------------------


class _Users:
    """The set-up's passwd file and host users, reread when either file changes (inode, size, mtime:
    BrokerSetup replaces its files whole)."""

    _cache: dict[str, tuple[tuple[int, ...], dict[str, str], frozenset[str]]] = {}
    _lock = threading.Lock()

    @classmethod
    def load(cls, directory: str) -> tuple[dict[str, str], frozenset[str]]:
        d = Path(directory)
        passwd, settings = d / "passwd", d / "broker.json"
        stamp = (*_stamp(passwd), *_stamp(settings))
        with cls._lock:
            hit = cls._cache.get(directory)
            if hit is not None and hit[0] == stamp:
                return hit[1], hit[2]
        users: dict[str, str] = {}
        try:
            for line in passwd.read_text(encoding="utf-8").splitlines():
                user, sep, encoded = line.partition(":")
                if sep and not line.startswith("#"):
                    users[user] = encoded.strip()
        except FileNotFoundError:
            pass
        hosts: frozenset[str] = frozenset()
        try:
            data = json.loads(settings.read_text(encoding="utf-8"))
            hosts = frozenset(str(u) for u in data.get("hosts", []))
        except (FileNotFoundError, ValueError, AttributeError):
            pass
        with cls._lock:
            cls._cache[directory] = (stamp, users, hosts)
        return users, hosts

    @classmethod
    def forget(cls, directory: str) -> None:
        with cls._lock:
            cls._cache.pop(directory, None)


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return (-1, -1, -1)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def topic_matches(topic: str, pattern: str) -> bool:
    """MQTT matching of a topic name against a filter (``+`` one level, ``#`` the rest, parent included)."""
    t, p = topic.split("/"), pattern.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(t) == len(p)


def may(user: str | None, hosts: frozenset[str], topic: str, write: bool) -> bool:
    """mosquitto's ACL for the fleet (BrokerSetup.acl_text): may `user` write (or read) `topic`?"""
    if not user:
        return False
    if user in hosts:
        return topic_matches(topic, "lockers/+/cmd" if write else "lockers/+/#")
    leaves = ACL_LOCKER_WRITE if write else ACL_LOCKER_READ
    return any(topic == f"lockers/{user}/{leaf}" for leaf in leaves)


@dataclass
class _PluginConfig:
    directory: str = ""
    """The BrokerSetup's directory (passwd, broker.json)."""


class FleetAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """User name and password against the set-up's passwd file (mosquitto's $7$/$6$ hashes)."""

    Config = _PluginConfig

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.directory = str(self._get_config_option("directory", ""))

    async def authenticate(self, *, session: Session) -> bool | None:
        users, hosts = _Users.load(self.directory)
        user = session.username
        encoded = users.get(user) if user else None
        who = f"client {session.client_id!r} (user {user!r})"
        if encoded is None or not verify_password(session.password or "", encoded):
            log.warning("%s refused: bad user name or password", who)
            return False
        if session.client_id not in ("", user) and not session.client_id.startswith("amqtt/"):
            # mosquitto's use_username_as_clientid: one session per user, none can take another's.
            log.warning("%s refused: the client id must be the user name", who)
            return False
        if session.will_flag and not may(user, hosts, session.will_topic or "", write=True):
            log.warning("%s refused: last will on %r, a topic it may not write", who, session.will_topic)
            return False
        return True


class FleetAclPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """mosquitto's ACL for the fleet: publish needs write access, delivery read access."""

    Config = _PluginConfig

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.directory = str(self._get_config_option("directory", ""))

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        if session is None or not topic:
            return False
        if action == Action.SUBSCRIBE:
            return True  # as mosquitto: granted, and only what the user may read is delivered
        _, hosts = _Users.load(self.directory)
        allowed = may(session.username, hosts, topic, write=action == Action.PUBLISH)
        if not allowed and action == Action.PUBLISH:
            log.info("client %r (user %r) may not publish to %r: dropped", session.client_id, session.username, topic)
        return allowed


class _FleetBroker(Broker):  # type: ignore[misc]
    """amqtt's Broker, with the password checked before a CONNECT touches any session, and retained
    messages sent only for the client's own, readable subscriptions."""

    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        """amqtt 0.12.1's, with authentication first. amqtt looks the client id up before it checks
        the password: a clean CONNECT deletes the existing session's subscriptions, a persistent one
        overwrites its will and credentials and then takes its connection over, and only then is the
        CONNACK refused. Here a refused CONNECT is answered and closed before the session table is
        read, so whoever holds that client id notices nothing."""
        try:
            connect = BrokerProtocolHandler.init_from_connect
            handler, client_session = await connect(reader, writer, self.plugins_manager)
        except MQTTError:
            await writer.close()
            raise  # _client_connected logs it and frees the connection slot
        if not await self._authenticate(client_session, None):  # the listener argument is unused
            connack = ConnackPacket.build(0, NOT_AUTHORIZED)
            await self.plugins_manager.fire_event(MQTTEvents.PACKET_SENT, packet=connack)
            await connack.to_stream(writer)
            await writer.close()
            raise MQTTError(f"client {client_session.client_id!r} refused; no session touched")
        # From here on amqtt's own code, for an authenticated client.
        if client_session.clean_session:
            if client_session.client_id:
                await self._delete_session(client_session.client_id)
            else:
                client_session.client_id = gen_client_id()
            client_session.parent = 0
        elif client_session.client_id in self._sessions:
            # The reconnecting client brings its current will, keepalive and credentials.
            existing, _ = self._sessions[client_session.client_id]
            for name in ("will_flag", "will_message", "will_topic", "will_qos", "keep_alive", "username", "password"):
                setattr(existing, name, getattr(client_session, name))
            client_session = existing
            client_session.parent = 1
        else:
            client_session.parent = 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if client_session.keep_alive > 0 and isinstance(delay, int):
            client_session.keep_alive += delay
        return handler, client_session

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter, qos = subscription
        mine = [q for s, q in self._subscriptions.get(topic_filter, []) if s.client_id == session.client_id]
        if not mine:
            return  # amqtt calls this for every filter in the broker when a client connects
        handler = self._get_handler(session)
        if handler is None:
            return
        tasks = []
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter):
                continue
            if not await self._topic_filtering(session, topic, Action.RECEIVE):
                continue
            out_qos = min(mine[0], retained.qos if retained.qos is not None else mine[0])
            tasks.append(asyncio.ensure_future(handler.mqtt_publish(topic, retained.data, out_qos, retain=True)))
        if tasks:
            await asyncio.wait(tasks)


# --- the broker -------------------------------------------------------------------------------------


def broker_config(setup: BrokerSetup) -> dict[str, Any]:
    """amqtt's configuration for `setup`: its plain listener, our auth and ACL plugins only."""
    if setup.port is None:
        raise BrokerError("the embedded broker needs a plain listener (the set-up has TLS only)")
    host = setup.host
    bind = f"[{host}]:{setup.port}" if ":" in host else f"{host}:{setup.port}"
    plugin = {"directory": str(setup.directory)}
    return {
        "listeners": {"default": {"type": "tcp", "bind": bind}},
        "plugins": {
            f"{__name__}.FleetAuthPlugin": plugin,
            f"{__name__}.FleetAclPlugin": plugin,
        },
    }


class EmbeddedBroker:
    """amqtt serving a BrokerSetup's plain listener, in a background thread with its own event loop.

    `start()` returns once the port accepts connections (BrokerError if it cannot start); `stop()`
    closes every connection and the listener and forgets all sessions and retained messages; both
    may be called again. With `log_path`, the broker's log (connections, refusals) goes to that file
    only (the "amqtt" and "lockertools.sim.embedded_broker" loggers stop propagating while it runs);
    without, it goes wherever the process's logging sends it.
    """

    def __init__(self, setup: BrokerSetup, log_path: Path | None = None) -> None:
        if not ipaddress.ip_address(setup.host).is_loopback:
            raise BrokerError(f"the embedded broker is for the simulator on loopback only, not {setup.host}")
        self.setup = setup
        self.log_path = Path(log_path) if log_path is not None else None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._handler: logging.Handler | None = None
        self._saved: list[tuple[logging.Logger, int, bool]] = []
        self._hard = False
        self.broker: Broker | None = None

    @property
    def host(self) -> str:
        return self.setup.host

    @property
    def port(self) -> int:
        assert self.setup.port is not None
        return self.setup.port

    @property
    def pid(self) -> int:
        """The process serving the broker: this one (it runs in a thread)."""
        return os.getpid()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set() and self._error is None

    def start(self, timeout: float = START_TIMEOUT) -> EmbeddedBroker:
        if self._thread is not None and self._thread.is_alive():
            raise BrokerError("the embedded broker is running already")
        config = broker_config(self.setup)
        _Users.forget(str(self.setup.directory))
        self._attach_log()
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(config,), name=f"amqtt:{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise BrokerError(f"the embedded broker did not start within {timeout} s")
        if self._error is not None:
            error = self._error
            self.stop()
            raise BrokerError(f"the embedded broker did not start on {self.host}:{self.port}: {error}") from error
        log.info("embedded broker (amqtt) on %s:%d, users from %s", self.host, self.port, self.setup.directory)
        return self

    def _run(self, config: dict[str, Any]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(config))
        except BaseException as exc:  # noqa: BLE001 - reported to start() / logged
            if not self._ready.is_set():
                self._error = exc
            else:
                log.exception("embedded broker stopped by an error")
        finally:
            self._ready.set()
            try:
                # amqtt's shutdown leaves its connection tasks pending: end them before the loop goes.
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _serve(self, config: dict[str, Any]) -> None:
        self._stop = asyncio.Event()
        broker = _FleetBroker(config)
        self.broker = broker
        await broker.start()  # listening once this returns
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            # amqtt's shutdown closes each connection gracefully (it drains what is queued): a client
            # that stopped reading can hold it up. Bounded; then the sockets are closed hard.
            if self._hard:
                _close_hard(broker)
            try:
                await asyncio.wait_for(broker.shutdown(), SHUTDOWN_TIMEOUT)
            except TimeoutError:
                log.warning("amqtt's shutdown took more than %s s: closing its sockets", SHUTDOWN_TIMEOUT)
                _close_hard(broker)
            self.broker = None

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving (idempotent): connections closed, sessions and retained messages gone."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is not None:
            if loop is not None and stop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(stop.set)
                except RuntimeError:  # the loop closed in the meantime
                    pass
            thread.join(timeout)
            if thread.is_alive():
                raise BrokerError(f"the embedded broker did not stop within {timeout} s")
        self._thread = self._loop = self._stop = None
        self._detach_log()

    def kill(self) -> None:
        """As a crash (for tests written against mosquitto's kill()): every socket closed at once, no
        graceful close; everything in memory is gone, as after `stop()`."""
        self._hard = True
        try:
            self.stop()
        finally:
            self._hard = False

    def restart(self) -> EmbeddedBroker:
        self.stop()
        return self.start()

    def reload(self) -> None:
        """Reread users and host users now (they are reread anyway when their files change)."""
        _Users.forget(str(self.setup.directory))

    def log(self, *, this_run: bool = False) -> str:
        """The broker's log file (`this_run` is accepted for tests.support's Mosquitto's signature)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def _attach_log(self) -> None:
        if self.log_path is None or self._handler is not None:
            return
        handler = logging.FileHandler(self.log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        self._saved = []
        for name in LOGGER_NAMES:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.level, logger.propagate))
            logger.addHandler(handler)
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
            # The file has it all: nothing of the broker's on the terminal of the simulator using it.
            logger.propagate = False
        self._handler = handler

    def _detach_log(self) -> None:
        if self._handler is None:
            return
        for logger, level, propagate in self._saved:
            logger.removeHandler(self._handler)
            logger.setLevel(level)
            logger.propagate = propagate
        self._saved = []
        self._handler.close()
        self._handler = None

    def __enter__(self) -> EmbeddedBroker:
        return self if self.running else self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _close_hard(broker: Any) -> None:
    """Close amqtt's listeners and every client socket it still has (its private attributes, checked)."""
    for server in list(getattr(broker, "_servers", {}).values()):
        instance = getattr(server, "instance", None)
        if instance is not None:
            instance.close()
    for _session, handler in list(getattr(broker, "_sessions", {}).values()):
        stream = getattr(getattr(handler, "writer", None), "_writer", None)
        transport = getattr(stream, "transport", None)
        if transport is not None:
            transport.abort()


def start_embedded_broker(setup: BrokerSetup, log_path: Path | None = None) -> EmbeddedBroker:
    """Start amqtt on `setup.host`:`setup.port` (loopback, plain MQTT) with the set-up's users and ACL.

    `setup` is a `lockertools.broker.BrokerSetup` whose files are written (`setup.write()`, which
    `add_locker()` / `add_host()` do); users added later are accepted as soon as their files change.
    Returns the running broker once it accepts connections; call `.stop()` (or use it as a context
    manager) to stop it. Raises `lockertools.broker.BrokerError` if it cannot start (port taken...).
    It runs in a thread of the calling process (`.pid` is this process's id). E.g. in the simulator:

        broker = start_embedded_broker(setup, workdir / "broker.log")   # BrokerError -> ClickException
        stack.callback(broker.stop)

    To run it as a process of its own instead: ``python -m lockertools.sim.embedded_broker DIRECTORY
    [--log FILE]`` (prints "embedded broker (amqtt) running on HOST:PORT" on stderr once it listens;
    SIGTERM stops it).
    """
    return EmbeddedBroker(setup, log_path).start()


def main(argv: list[str] | None = None) -> int:
    """``python -m lockertools.sim.embedded_broker DIRECTORY``: serve a set-up until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m lockertools.sim.embedded_broker", description=main.__doc__)
    parser.add_argument("directory", type=Path, help="a broker directory (lockerctl broker init)")
    parser.add_argument("--log", type=Path, default=None, help="log file (default: standard error)")
    args = parser.parse_args(argv)
    if args.log is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        setup = BrokerSetup.open(args.directory)
        setup.write()
        broker = start_embedded_broker(setup, args.log)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(f"embedded broker (amqtt) running on {setup.host}:{setup.port}", file=sys.stderr, flush=True)
    done.wait()
    broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
