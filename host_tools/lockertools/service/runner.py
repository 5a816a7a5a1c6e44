"""The host service: one MQTT connection for the whole fleet, one database (SQLite or PostgreSQL).

One service runs against a database at a time: it holds the database's lease (db.Lease) while it
runs, and a second one started against the same database waits, without connecting to the broker,
until the lease is free (the first one stopped or died), then takes over.

Tasks (one asyncio loop, so database work never interleaves):
- the connection loop: connect (persistent session, fixed client id), subscribe, pump messages into
  the inbox, and run the sender (sender.py: at most `max_inflight` publishes awaiting PUBACK, sync
  commands first, acks coalesced per locker); on any broker trouble, reconnect with backoff, forever;
- the processor: takes messages in batches (up to `batch_max` or `batch_s`), applies them in ONE
  transaction (a savepoint per message, or per run of door events, which is redone one by one if it
  fails: a bad one costs only itself), then, once committed, hands the acks and sync commands that
  came out of it to the sender;
- the poller: woken by a commit that changed a locker's codes (in this process: db.on_change; on
  PostgreSQL from any process: LISTEN/NOTIFY), else every `poll_s`, when `PRAGMA data_version`
  (SQLite) tells whether another process (the CLI) wrote the database; the lockers whose host
  revision moved are synced at once. It also resends a sync
  command after `resend_s` without a reply (new seq, same tx), marks expired codes and queues
  reminders (every 30 s), and sends the requests people queued (door.open, door.service: sent to an
  online locker, resent with the same tx, their reply recorded, dropped after `request_ttl_s`), and
  ends the flag of a locker whose connection stopped flapping (the processor raises it: its status
  went online/offline `flap_changes` times within `flap_window_s`);
- the notifier: hands due notifications to the hook (in a thread), records failures and retries
  them with a growing delay; a `loaded` notification's held plain code is deleted once it went;
- the alert sender (notify/alerts.py): staff alerts of incidents, batched per contact, sent once;
- the webhook sender (api/webhooks.py): POSTs the queued delivery events to the webhooks the town's
  systems registered, signed, one at a time per webhook in order, failures retried with a growing delay;
- the watchdog (under systemd, sdnotify.py): WATCHDOG=1 while every loop above is healthy (each
  checks in as it goes round; the processor only while messages wait), READY=1 once first connected
  and subscribed; and the health endpoint and metrics (metrics.py), when configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import ssl
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt

from lockertools import helpline
from lockertools.api.webhooks import SenderOptions, WebhookSender
from lockertools.config import Settings, TownSettings
from lockertools.notify.held import purge_contacts, release_held_code
from lockertools.service import db, fleet_db, incidents, ingest, sdnotify
from lockertools.service.notify import Notification, Notifier, NotifyError, make_notifier
from lockertools.service.sender import Sender, SenderStats
from lockertools.service.sync import Planned, plan

if TYPE_CHECKING:
    from lockertools.notify.alerts import AlertSender
    from lockertools.notify.outbox import Outbox

log = logging.getLogger("lockertools.service")

MAX_SYNC_FAILURES = 5  # errors in a row before a locker's sync waits for its next status
# A status whose clock is further off than this (or unknown) is answered with a `time` command that
# echoes the status's clock challenge (docs/protocol.md, "The clock"): it sets a clock that runs
# ahead too, which refuses every other command as expired.
CLOCK_SLACK_S = 5
# A message within this long of the last batch's end is taken for part of a burst: the processor
# gathers more for its batch (a millisecond at a time, up to batch_s) instead of committing it alone.
BURST_GAP_S = 0.002


class ServiceError(Exception):
    """The service cannot start as configured (the message says why)."""


@dataclass
class ServiceConfig:
    db_path: str | Path  # a database URL, or a path: SQLite (db.database_url)
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    client_id: str = "locker-host"
    keepalive_s: int = 30
    housekeeping_s: float = 3600.0  # pruning the change log and the command records
    log_keep: int = 5000  # changes kept per locker; a locker further behind gets a snapshot
    commands_keep_s: float = 30 * 86400.0  # finished command records kept this long
    mqtt_timeout_s: float = 10.0  # connect and subscribe (publishes: see max_inflight below)
    resend_s: float = 10.0
    command_ttl_s: int = 60
    batch_s: float = 0.010
    batch_max: int = 200
    poll_s: float = 0.020
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 10.0
    # Publishes awaiting PUBACK at once (paho's in-flight limit too); `reserved_for_sync` of them are
    # for sync commands only. A PUBACK missing for `stall_s` ends the connection; a slower one never
    # does (sender.py).
    max_inflight: int = 32
    reserved_for_sync: int = 4
    stall_s: float = 120.0
    # The notification hook (None: the one `service run` recorded in the database, if any). A failed
    # notification is retried after notify_retry_min_s, doubling up to notify_retry_max_s.
    notify_command: str | None = None
    notify_url: str | None = None
    notify_timeout_s: float = 10.0
    notify_retry_min_s: float = 30.0
    notify_retry_max_s: float = 3600.0
    # Residents' messages (lockertools/notify): the configuration file's settings; None, or no
    # messages.channels: the hook only. The outbox looks for due messages every `messages_poll_s`.
    messages: Settings | None = None
    messages_poll_s: float = 0.2
    # The lockers' help line: [town]'s help_phone and the desk's hours (lockertools.helpline), sent
    # to every locker whose status holds other ones (a `desk` command, renewed daily). None: nothing
    # is sent.
    helpline: TownSettings | None = None
    # Staff alerts of incidents (notify/alerts.py) follow the same file's [alerts] (None: no alerts);
    # the alert sender goes round every `alerts_poll_s` (its loop checks in then: keep it short).
    alerts_poll_s: float = 0.2
    request_ttl_s: float = 300.0  # a door.open nobody could deliver in 5 minutes is dropped, not sent later
    # A locker whose status goes online/offline `flap_changes` times within `flap_window_s` is flagged
    # as flapping: two clients with its password take its session from each other at every login, and
    # a failing link looks the same. Recorded, logged and shown by `lockerctl lockers` until a window
    # passes without a change. A locker that reconnects now and then changes twice per reconnect.
    flap_changes: int = 10
    flap_window_s: float = 600.0
    # A locker offline (its last will) for longer than this since it was last seen opens an incident.
    incident_offline_s: float = incidents.DEFAULT_OFFLINE_S
    # The health endpoint and Prometheus metrics (metrics.py); None: not served.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    # systemd's watchdog (WatchdogSec=): kept fed while every loop checked in within `loop_stall_s`.
    watchdog: bool = True
    loop_stall_s: float = 60.0
    lease_retry_s: float = 1.0  # a service waiting for the database's lease tries again this often
    # The webhooks of the town's API (api/webhooks.py): queued events looked for every webhook_poll_s,
    # a failed request retried after webhook_retry_min_s, doubling up to webhook_retry_max_s, given up
    # after webhook_attempts.
    webhook_poll_s: float = 1.0
    webhook_timeout_s: float = 10.0
    webhook_retry_min_s: float = 30.0
    webhook_retry_max_s: float = 3600.0
    webhook_attempts: int = 12


@dataclass
class Counters(SenderStats):
    """What the service did since it started. From SenderStats: acks_sent (ack commands), acked_seqs,
    commands_published (sync commands, resends included), stalls, requeued_seqs, backlog_most."""

    messages: int = 0
    events: int = 0  # new events recorded
    duplicates: int = 0  # events delivered again (recorded once, acknowledged again)
    commands_sent: int = 0  # sync commands, first attempts
    resends: int = 0
    replies: int = 0
    sync_errors: int = 0
    notifications: int = 0  # handed to the hook
    notify_failures: int = 0
    requests_sent: int = 0  # door.open / door.service, resends included
    errors: int = 0  # messages that raised while being applied (logged, rolled back alone)
    batches: int = 0
    connects: int = 0
    flapping: int = 0  # lockers flagged as flapping
    busy_s: float = 0.0  # time spent applying batches (database and signatures)
    rejected: Counter[str] = field(default_factory=Counter)  # by reason
    locker_refusals: Counter[str] = field(default_factory=Counter)  # commands lockers refused, by reason

    @property
    def bad_signatures(self) -> int:
        return self.rejected["bad_signature"]


@dataclass
class Outstanding:
    """The one sync command in flight for a locker."""

    tx: str
    planned: Planned
    rest: list[Planned]  # the snapshot parts still to send after this one
    seq: int
    sent_at: float
    attempts: int = 1


@dataclass
class LockerSync:
    online: bool = False
    host_rev: int = 0
    outstanding: Outstanding | None = None
    failures: int = 0
    blocked: str | None = None  # an error the locker reported: retried at its next status
    seen_online: bool | None = None  # `online` of its last status since the service started
    changes: deque[float] = field(default_factory=deque)  # when `online` changed, within the flap window
    flapping: bool = False


class Service:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.counters = Counters()
        self.connected = asyncio.Event()
        self.mqtt: aiomqtt.Client | None = None  # the broker connection, while there is one
        self._inbox: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()
        self._last_batch_end = 0.0  # monotonic: when the processor last finished a batch
        self._sync: dict[str, LockerSync] = {}
        self._keys = ingest.KeyRing()
        self._conn: db.Connection | None = None
        self.lease_held = asyncio.Event()  # set while this service holds the database's lease
        self._wake = asyncio.Event()  # a commit changed a locker's codes: the poller looks at once
        self._listener: db.ChangeListener | None = None
        self._seqs = db.CommandSeqs()
        self.notifier: Notifier | None = None
        self.outbox: Outbox | None = None  # residents' messages (lockertools.notify: the service extra)
        self.alerts: AlertSender | None = None  # staff alerts of incidents
        self.systemd = sdnotify.Notifier()
        self._beats: dict[str, float] = {}  # loop name -> when it last went round (monotonic)
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics_port: int | None = None  # the port actually bound (config.metrics_port 0: any)
        self.watchdog_skipped = 0  # WATCHDOG=1 held back because a loop had stalled
        self.webhooks = WebhookSender(
            SenderOptions(
                poll_s=config.webhook_poll_s,
                timeout_s=config.webhook_timeout_s,
                retry_min_s=config.webhook_retry_min_s,
                retry_max_s=config.webhook_retry_max_s,
                attempts=config.webhook_attempts,
            )
        )
        self.sender = Sender(
            self._sign_ack,
            window=config.max_inflight,
            reserved=config.reserved_for_sync,
            stall_s=config.stall_s,
            stats=self.counters,
        )

    # --- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled: once this service holds the database's lease (db.Lease)."""
        lease = db.Lease(self.config.db_path)
        try:
            if not lease.try_acquire():
                log.warning(
                    "another service holds the lease of %s: waiting for it (no broker connection until then)",
                    db.describe(self.config.db_path),
                )
                while not lease.try_acquire():
                    await asyncio.sleep(self.config.lease_retry_s)
                log.info("took over the lease of %s", db.describe(self.config.db_path))
            self.lease_held.set()
            await self._run()
        finally:
            self.lease_held.clear()
            lease.release()

    async def _run(self) -> None:
        self._conn = db.connect(self.config.db_path)
        loop = asyncio.get_running_loop()
        own = self._conn

        def woken(conn: db.Connection) -> None:
            if conn is not own:  # the service's own commits hand their work over themselves
                loop.call_soon_threadsafe(self._wake.set)

        stop_waking = db.on_change(woken)
        if not own.sqlite:
            self._listener = db.ChangeListener(own.url, own.backend_pid())
            listener = self._listener

            def notified() -> None:
                if listener.drain():
                    self._wake.set()

            loop.add_reader(listener.fileno(), notified)
            # The stored seq tops are read again only when another process committed a change (a
            # technician's tool reserving seqs notifies): an ack costs no round trip to the server.
            self._seqs.outside = self._outside_commits
        try:
            self._keys.reload(self._conn)
            for row in self._conn.execute("SELECT id, host_rev FROM lockers"):
                self._sync[row[0]] = LockerSync(host_rev=int(row[1]))
            for lid in fleet_db.flapping(self._conn):
                self.sync_state(lid).flapping = True  # still flagged from the last run: it goes on or ends
            command, url = self.config.notify_command, self.config.notify_url
            if not command and not url:
                command, url = db.get_setting(self._conn, "notify_command"), db.get_setting(self._conn, "notify_url")
            self.notifier = make_notifier(command, url, self.config.notify_timeout_s)
            messages = self.config.messages
            if messages is not None and messages.messages.channels:
                from lockertools.notify.outbox import Outbox
                from lockertools.notify.templates import TemplateError

                try:
                    self.outbox = Outbox(messages, hook=self.notifier is not None)
                except (TemplateError, ValueError) as exc:
                    raise ServiceError(f"residents' messages: {exc}") from None
                self.outbox.recover(self._conn)
            if messages is not None:
                from lockertools.notify.alerts import AlertError, AlertSender

                try:
                    self.alerts = AlertSender(messages)
                except (AlertError, ValueError) as exc:
                    raise ServiceError(f"staff alerts: {exc}") from None
                self.alerts.start(self._conn, time.time())
            web = None
            if self.config.metrics_port is not None:
                from lockertools.service import metrics

                try:
                    web = await metrics.serve(self, self.config.metrics_host, self.config.metrics_port)
                except OSError as exc:
                    where = f"{self.config.metrics_host}:{self.config.metrics_port}"
                    why = os.strerror(exc.errno) if exc.errno else str(exc)
                    raise ServiceError(f"cannot serve metrics on {where}: {why}") from None
                self.metrics_port = web.addresses[0][1]
                log.info("health and metrics on http://%s:%d/", self.config.metrics_host, self.metrics_port)
            try:
                now = time.monotonic()
                self._beats = dict.fromkeys(("poller", "notifier", "processor", "webhooks", "messages", "alerts"), now)
                async with asyncio.TaskGroup() as tasks:
                    self._tasks = [
                        tasks.create_task(self._connection_loop()),
                        tasks.create_task(self._processor()),
                        tasks.create_task(self._poller()),
                        tasks.create_task(self._notifications()),
                        tasks.create_task(self.webhooks.run(self.conn, lambda: self._beat("webhooks"))),
                        tasks.create_task(self._messages()),
                        tasks.create_task(self._alerts()),
                    ]
                    tasks.create_task(self._watchdog())
            finally:
                if web is not None:
                    await web.cleanup()
        finally:
            stop_waking()
            if self._listener is not None:
                loop.remove_reader(self._listener.fileno())
                self._listener.close()
                self._listener = None
                self._seqs.outside = None
            self._conn.close()
            self._conn = None

    def _outside_commits(self) -> int:
        """How many NOTIFYs other processes' commits sent (read from the listener's socket now)."""
        listener = self._listener
        assert listener is not None
        if listener.drain():
            self._wake.set()  # the poller's reader callback will find nothing left to drain
        return listener.count

    @property
    def conn(self) -> db.Connection:
        assert self._conn is not None, "the service is not running"
        return self._conn

    def sync_state(self, locker_id: str) -> LockerSync:
        return self._sync.setdefault(locker_id, LockerSync())

    def sync_states(self) -> list[LockerSync]:
        return list(self._sync.values())

    def inbox_size(self) -> int:
        return self._inbox.qsize()

    # --- health -------------------------------------------------------------------------------------

    def _beat(self, loop: str) -> None:
        self._beats[loop] = time.monotonic()

    def stalled_loops(self) -> list[str]:
        """The loops that have not gone round within `loop_stall_s` (the processor counts only while
        messages wait for it), and any task that ended."""
        if not self._tasks:
            return ["not started"]
        due = time.monotonic() - self.config.loop_stall_s
        stalled = [name for name, at in self._beats.items() if at < due]
        if "processor" in stalled and self._inbox.empty():
            stalled.remove("processor")
        if any(task.done() for task in self._tasks):
            stalled.append("task ended")
        return stalled

    def healthy(self) -> bool:
        return not self.stalled_loops()

    def health(self) -> dict[str, Any]:
        stalled = self.stalled_loops()
        return {
            "loops": "ok" if not stalled else "stalled: " + ", ".join(stalled),
            "broker": "connected" if self.connected.is_set() else "disconnected",
            "lockers_online": sum(1 for s in self._sync.values() if s.online),
            "inbox": self._inbox.qsize(),
            "events": self.counters.events,
        }

    async def _watchdog(self) -> None:
        """READY=1 once connected and subscribed; then WATCHDOG=1 at half systemd's timeout, only while
        every loop is healthy (a hung loop lets systemd restart the service)."""
        systemd = self.systemd
        if not systemd.enabled:
            return
        await self.connected.wait()
        systemd.send("READY=1", "STATUS=connected and subscribed")
        interval = systemd.watchdog_s
        if interval is None or not self.config.watchdog:
            return
        while True:
            stalled = self.stalled_loops()
            if not stalled:
                systemd.send("WATCHDOG=1")
            else:
                self.watchdog_skipped += 1
                log.error("not feeding the watchdog: %s", ", ".join(stalled))
            await asyncio.sleep(interval / 2)

    # --- MQTT ---------------------------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        tls = None
        if self.config.tls_ca is not None:
            tls = ssl.create_default_context(cafile=str(self.config.tls_ca))
        client = aiomqtt.Client(
            self.config.host,
            self.config.port,
            username=self.config.username,
            password=self.config.password,
            identifier=self.config.client_id,
            clean_session=False,  # events published while we are away wait on the broker
            keepalive=self.config.keepalive_s,
            tls_context=tls,
            timeout=self.config.mqtt_timeout_s,  # connect and subscribe; publishes wait as the sender says
            max_inflight_messages=self.config.max_inflight,
            # A command right after a PUBACK (two small writes) would wait for the broker's delayed
            # ACK of the first under Nagle (paho does not set it; the firmware and mosquitto do).
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # The sender bounds the publishes; aiomqtt would warn from 10 pending calls on.
        client.pending_calls_threshold = self.config.max_inflight + 10
        return client

    async def _connection_loop(self) -> None:
        delay = self.config.reconnect_min_s
        while True:
            try:
                async with self._client() as client:
                    self.mqtt = client
                    await client.subscribe([(f"lockers/+/{kind}", 1) for kind in ingest.KINDS])
                    self.counters.connects += 1
                    self.connected.set()
                    log.info("connected to %s:%d", self.config.host, self.config.port)
                    delay = self.config.reconnect_min_s
                    await self._serve_connection(client)
            except aiomqtt.MqttError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None  # leaving: the error came from the cancellation
                log.warning("broker connection: %s; retrying in %.1f s", exc, delay)
            finally:
                self.connected.clear()
                self.mqtt = None
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.config.reconnect_max_s)

    async def _serve_connection(self, client: aiomqtt.Client) -> None:
        pump = asyncio.create_task(self._pump(client))
        sender = asyncio.create_task(self.sender.serve(client))
        try:
            done, _ = await asyncio.wait({pump, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, sender):
                task.cancel()
            await asyncio.gather(pump, sender, return_exceptions=True)
        for task in done:
            task.result()  # re-raises the MqttError that ended the connection

    async def _pump(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self._inbox.put_nowait(message)

    # --- processing -------------------------------------------------------------------------------

    async def _processor(self) -> None:
        while True:
            self._beat("processor")
            batch = [await self._inbox.get()]
            deadline = time.monotonic() + self.config.batch_s
            # Gather while messages keep coming (a burst from many lockers: one commit for all of them),
            # waiting a millisecond at a time for more. A message after a quiet spell (a reply to a
            # sync command) does not wait for the timer: one turn of the loop lets the pump hand over
            # what the broker's connection already holds.
            burst = not self._inbox.empty() or time.monotonic() - self._last_batch_end < BURST_GAP_S
            while len(batch) < self.config.batch_max and time.monotonic() < deadline:
                if self._inbox.empty():
                    await asyncio.sleep(0.001 if burst else 0)
                    if self._inbox.empty():
                        break
                batch.append(self._inbox.get_nowait())
            began = time.perf_counter()
            try:
                self._process(batch)
            except db.Error:
                # Nothing of the batch was committed or acknowledged: the lockers send it again.
                self._seqs.forget()
                log.exception("database error; %d messages dropped unacknowledged", len(batch))
            self.counters.busy_s += time.perf_counter() - began
            self._last_batch_end = time.monotonic()
            self._beat("processor")

    def _process(self, batch: list[aiomqtt.Message]) -> None:
        conn = self.conn
        now = time.time()
        acks: dict[str, list[int]] = {}
        touched: set[str] = set()
        out: list[tuple[str, bytes]] = []
        self.counters.batches += 1
        with db.transaction(conn):
            # Door events (most of what lockers send) are recorded a run at a time: a few statements for
            # the run, one round trip on PostgreSQL. Any other message ends the run first, so the
            # database sees every message in the order it came.
            run: list[tuple[ingest.Incoming, str]] = []
            for message in batch:
                self.counters.messages += 1
                payload = message.payload
                try:
                    if not isinstance(payload, bytes | bytearray):
                        raise ingest.Rejected("malformed", "payload type")
                    incoming = ingest.open_message(self._keys, str(message.topic), bytes(payload))
                except ingest.Rejected as exc:
                    self.counters.rejected[exc.reason] += 1
                    log.warning("rejected message on %s: %s", message.topic, exc, extra=_locker_of(message))
                    continue
                if incoming.kind == "events" and ingest.is_door_event(incoming.msg):
                    run.append((incoming, str(message.topic)))
                    continue
                self._record_run(run, now, acks, touched, out)
                self._apply_alone(incoming, str(message.topic), now, acks, touched, out)
            self._record_run(run, now, acks, touched, out)
            for locker_id in touched:
                out.extend(self._advance(locker_id, now))
        # Committed: now the acks may go (signed when they leave, coalesced per locker) and the commands.
        for locker_id, seqs in acks.items():
            self.sender.ack(locker_id, seqs)
        for topic, wire in out:
            self.sender.command(topic, wire)

    def _apply_alone(
        self,
        incoming: ingest.Incoming,
        topic: str,
        now: float,
        acks: dict[str, list[int]],
        touched: set[str],
        out: list[tuple[str, bytes]],
    ) -> None:
        """One message in a savepoint of its own: one that raises costs only itself (rolled back,
        not acknowledged: the locker sends it again)."""
        conn = self.conn
        conn.send("SAVEPOINT message")
        try:
            self._apply(incoming, now, acks, touched, out)
            conn.execute("RELEASE message")  # with the message's writes that wait (db.Connection.send)
        except Exception:
            conn.rollback_to("message")
            conn.execute("RELEASE message")
            self._seqs.forget()
            self.counters.errors += 1
            log.exception("could not apply a message on %s", topic, extra={"locker": incoming.locker_id})

    def _record_run(
        self,
        run: list[tuple[ingest.Incoming, str]],
        now: float,
        acks: dict[str, list[int]],
        touched: set[str],
        out: list[tuple[str, bytes]],
    ) -> None:
        """Record a run of door events together (ingest.record_door_events), in a savepoint; if that
        fails, each of them alone, as any other message."""
        if not run:
            return
        events = [(incoming.locker_id, incoming.msg) for incoming, _ in run]
        conn = self.conn
        try:
            new = ingest.record_door_events(conn, events, now, savepoint="door_events")
        except db.Error:
            conn.rollback_to("door_events")
            conn.execute("RELEASE door_events")
            log.exception("could not record %d door events together; recording them one by one", len(run))
            for incoming, topic in run:
                self._apply_alone(incoming, topic, now, acks, touched, out)
        else:
            for (lid, msg), was_new in zip(events, new, strict=True):
                self._event_recorded(lid, msg, was_new, acks)
        run.clear()

    def _event_recorded(self, lid: str, msg: dict[str, Any], new: bool, acks: dict[str, list[int]]) -> None:
        """After an event was recorded (new) or found recorded already (a duplicate delivery)."""
        if new:
            self.counters.events += 1
            ev = msg["ev"]
            if ev.get("k") == "refused":  # n: refusals of that reason since the locker's last such event
                n = ev.get("n")
                self.counters.locker_refusals[str(ev.get("r"))] += n if ingest._is_int(n) and n > 0 else 1
        else:
            self.counters.duplicates += 1
        acks.setdefault(lid, []).append(msg["seq"])  # duplicates too: the first ack may be lost

    def _apply(
        self,
        incoming: ingest.Incoming,
        now: float,
        acks: dict[str, list[int]],
        touched: set[str],
        out: list[tuple[str, bytes]],
    ) -> None:
        lid, msg = incoming.locker_id, incoming.msg
        state = self.sync_state(lid)
        if incoming.kind == "events":
            new = ingest.apply_event(self.conn, lid, msg, now)
            if new and not ingest.is_door_event(msg):
                touched.add(lid)  # a pickup deletes its code from the locker's store: sync now, not at the next status
            self._event_recorded(lid, msg, new, acks)
        elif incoming.kind == "status":
            ingest.apply_status(self.conn, lid, msg, now)
            self._seqs.stale(lid)  # its cseq may have moved the stored top
            was_online, state.online = state.online, bool(msg["online"])
            self._watch_connection(lid, state, now)
            if state.online:
                state.blocked, state.failures = None, 0
                if clock_off(msg.get("t"), now):
                    out.append(self._set_clock(lid, msg.get("nonce"), now))
                town = self.config.helpline
                if town is not None and isinstance(msg.get("desk"), str):  # older firmware has no desk
                    args = helpline.command_args(town.help_phone, town.desk_hours, town.timezone, now)
                    if msg["desk"] != args["tag"]:
                        out.append(self._set_desk(lid, args, now))
                if not was_online and state.outstanding is not None:
                    # The locker (re)connected: whatever was in flight may be lost; its status says
                    # where it stands, so plan again from there.
                    self._close_command(lid, state.outstanding.tx, "abandoned", None)
                    state.outstanding = None
                touched.add(lid)
        elif incoming.kind == "doors":
            ingest.apply_doors(self.conn, lid, msg, now)
        elif incoming.kind == "reply":
            self.counters.replies += 1
            self._on_reply(lid, msg, now, out)
            touched.add(lid)

    def _watch_connection(self, lid: str, state: LockerSync, now: float) -> None:
        """Count the locker's online/offline changes (a takeover of its session: the old client's last
        will, then the new one's status); flag it once they pass `flap_changes` within the window."""
        seen, state.seen_online = state.seen_online, state.online
        if seen is None or seen == state.online:
            return
        changes = state.changes
        changes.append(now)
        while changes[0] < now - self.config.flap_window_s:
            changes.popleft()
        if state.flapping:
            fleet_db.flap_seen(self.conn, lid, now)
        elif len(changes) >= self.config.flap_changes:
            state.flapping = True
            fleet_db.flap_begin(self.conn, lid, changes[0], now, len(changes))
            self.counters.flapping += 1
            log.warning(
                "locker %s is flapping: %d online/offline changes in %.0f s. Another client may be logging in"
                " with its password (each login takes the session over), or its link keeps failing",
                lid, len(changes), now - changes[0], extra={"locker": lid},
            )  # fmt: skip

    def _settle_flaps(self, now: float) -> None:
        """End the flags of lockers that had a window without a change."""
        for lid in fleet_db.flaps_end(self.conn, now - self.config.flap_window_s, now):
            self.sync_state(lid).flapping = False
            log.warning("locker %s: its connection is steady again", lid, extra={"locker": lid})

    # --- sync ---------------------------------------------------------------------------------------

    def _on_reply(self, lid: str, msg: dict[str, Any], now: float, out: list[tuple[str, bytes]]) -> None:
        state = self.sync_state(lid)
        pending = state.outstanding
        tx = msg["tx"]
        # The sync command in flight has its own tx: only another reply can be a request's.
        if (pending is None or pending.tx != tx) and self._on_request_reply(lid, tx, msg, now):
            return
        if pending is None or pending.tx != tx:
            self._close_command(lid, tx, "ok" if msg["ok"] else "failed", msg.get("error"))
            return  # a late reply to a command given up on: the status tells the truth
        state.outstanding = None
        if msg["ok"]:
            self._close_command(lid, tx, "ok", None)
            state.failures = 0
            # A `dup` reply carries no result: the command ran before, with the planned outcome.
            rev = msg.get("rev") if not msg.get("dup") else pending.planned.rev
            if pending.rest and (msg.get("dup") or msg.get("rev") is None):
                out.append(self._send(lid, pending.rest[0], pending.rest[1:], now))
                return
            if rev is not None:
                self.conn.send("UPDATE lockers SET locker_rev = ?, snap = 0 WHERE id = ?", (rev, lid))
            return
        error = str(msg.get("error"))
        self._close_command(lid, tx, "failed", error)
        self.counters.sync_errors += 1
        state.failures += 1
        log.warning("locker %s refused %s: %s", lid, pending.planned.op, error, extra={"locker": lid})
        if error == "revision_mismatch" and ingest._is_int(msg.get("rev")):
            self.conn.send("UPDATE lockers SET locker_rev = ? WHERE id = ?", (msg["rev"], lid))
        elif error != "snapshot_order":
            state.blocked = error  # capacity, bad_args, safe_mode...: wait for the locker's next status
        if state.failures >= MAX_SYNC_FAILURES:
            state.blocked = error

    def _advance(self, lid: str, now: float) -> list[tuple[str, bytes]]:
        """Send the next sync command for a locker, if it needs one and none is in flight."""
        state = self.sync_state(lid)
        if state.outstanding is not None or not state.online or state.blocked:
            return []
        inputs = fleet_db.sync_input(self.conn, lid, now)
        if inputs is None:
            return []
        state.host_rev = inputs.host_rev
        commands = plan(inputs)
        if not commands:
            return []
        first = commands[0]
        log.info(
            "sync %s: locker at %d%s, host at %d: %d x %s",
            *(lid, inputs.locker_rev, " (snapshot asked)" if inputs.snap else "", inputs.host_rev),
            *(len(commands), first.op),
            extra={"locker": lid},
        )
        rest = commands[1:] if first.op == "codes.snapshot" else []  # deltas: planned afresh per reply
        return [self._send(lid, first, rest, now)]

    def _send(self, lid: str, planned: Planned, rest: list[Planned], now: float) -> tuple[str, bytes]:
        tx = uuid.uuid4().hex[:12]
        seq, wire = self._command(lid, planned.op, planned.args, tx)
        self.sync_state(lid).outstanding = Outstanding(tx, planned, rest, seq, time.monotonic())
        self.conn.send(
            "INSERT INTO commands(locker_id, tx, seq, op, state, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 'sent', ?, ?)",
            (lid, tx, seq, planned.op, now, now),
        )
        self.counters.commands_sent += 1
        return f"lockers/{lid}/cmd", wire

    def _set_clock(self, lid: str, nonce: Any, now: float) -> tuple[str, bytes]:
        """A `time` command, answering the locker's clock challenge when its status had one. Not a
        sync command (none waits for it): its reply only closes its record."""
        tx = uuid.uuid4().hex[:12]
        seq, wire = self._command(lid, "time", {"nonce": nonce} if isinstance(nonce, str) else {}, tx)
        self.conn.send(
            "INSERT INTO commands(locker_id, tx, seq, op, state, created_at, updated_at)"
            " VALUES (?, ?, ?, 'time', 'sent', ?, ?)",
            (lid, tx, seq, now, now),
        )
        self.counters.commands_sent += 1
        log.info("locker %s: clock off, sending the time", lid, extra={"locker": lid})
        return f"lockers/{lid}/cmd", wire

    def _set_desk(self, lid: str, args: dict[str, Any], now: float) -> tuple[str, bytes]:
        """A `desk` command: the locker's status showed other desk settings than today's. Not a sync
        command either; the next status shows whether it took them."""
        tx = uuid.uuid4().hex[:12]
        seq, wire = self._command(lid, "desk", args, tx)
        self.conn.send(
            "INSERT INTO commands(locker_id, tx, seq, op, state, created_at, updated_at)"
            " VALUES (?, ?, ?, 'desk', 'sent', ?, ?)",
            (lid, tx, seq, now, now),
        )
        self.counters.commands_sent += 1
        log.info("locker %s: sending the desk's phone and hours", lid, extra={"locker": lid})
        return f"lockers/{lid}/cmd", wire

    def _close_command(self, lid: str, tx: str, state: str, detail: str | None) -> None:
        self.conn.send(
            "UPDATE commands SET state = ?, detail = ?, updated_at = ?"
            " WHERE locker_id = ? AND tx = ? AND state = 'sent'",
            (state, detail, time.time(), lid, tx),
        )

    def _command(self, lid: str, op: str, args: dict[str, Any], tx: str) -> tuple[int, bytes]:
        """A signed command. Its seq comes from a reservation stored before it is used (db.CommandSeqs:
        inside the caller's transaction, which commits before the command is published, or on its own)."""
        seq = self._seqs.take(self.conn, lid)
        now = int(time.time())
        payload = {"v": 1, "lid": lid, "seq": seq, "now": now, "exp": now + self.config.command_ttl_s}
        payload |= {"tx": tx, "op": op, "args": args}
        return seq, self._keys.sign(lid, payload)

    def _sign_ack(self, lid: str, seqs: list[int]) -> bytes:
        """The sender's call, when an ack leaves (outside any transaction)."""
        _, wire = self._command(lid, "ack", {"seqs": seqs}, uuid.uuid4().hex[:12])
        return wire

    # --- polling ----------------------------------------------------------------------------------

    async def _poller(self) -> None:
        conn = self.conn
        seen = db.data_version(conn) if self._listener is None else self._listener.count
        next_expiry = 0.0
        next_housekeeping = time.time() + self.config.housekeeping_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_s)
            self._wake.clear()
            self._beat("poller")
            now = time.time()
            if now >= next_housekeeping:
                next_housekeeping = now + self.config.housekeeping_s
                self._housekeeping(now)
            version = db.data_version(conn) if self._listener is None else self._listener.count
            out: list[tuple[str, bytes]] = []
            if version != seen or now >= next_expiry:
                with db.transaction(conn):
                    changed = version != seen
                    if now >= next_expiry:
                        # An expired staff PIN is deleted from its locker (a change, as if committed
                        # by another process): look at the revisions then too.
                        changed = fleet_db.expire_codes(conn, now) > 0 or changed
                        fleet_db.queue_reminders(conn, now)
                        self._settle_flaps(now)
                        incidents.check(conn, now, self.config.incident_offline_s)
                        next_expiry = now + 30.0
                    if changed:
                        seen = version
                        self._keys.reload(conn)
                        for row in conn.execute("SELECT id, host_rev FROM lockers").fetchall():
                            state = self.sync_state(row[0])
                            if state.host_rev != int(row[1]):
                                state.host_rev = int(row[1])
                                out.extend(self._advance(row[0], now))
            for topic, wire in out:  # committed: the sync commands go before anything else is looked at
                self.sender.command(topic, wire)
            out = []
            try:
                out.extend(self._resend_overdue(now))
                out.extend(self._send_requests(now))
            except db.Error:
                self._seqs.forget()
                log.exception("database error while resending")
            for topic, wire in out:
                self.sender.command(topic, wire)

    def _housekeeping(self, now: float) -> None:
        """Bounded history: the change log keeps `log_keep` revisions per locker (the planner sends a
        snapshot to a locker behind that), finished command records `commands_keep_s`."""
        conn = self.conn
        try:
            for (lid,) in conn.execute("SELECT id FROM lockers").fetchall():
                fleet_db.prune_log(conn, lid, self.config.log_keep)
            with db.transaction(conn):
                conn.execute(
                    "DELETE FROM commands WHERE state != 'sent' AND updated_at < ?",
                    (now - self.config.commands_keep_s,),
                )
        except db.Error:
            log.exception("database error during housekeeping")

    def _resend_overdue(self, now: float) -> list[tuple[str, bytes]]:
        due = time.monotonic() - self.config.resend_s
        overdue = [
            (lid, s.outstanding)
            for lid, s in self._sync.items()
            if s.online and s.outstanding and s.outstanding.sent_at < due
        ]
        if not overdue:
            return []
        out = []
        with db.transaction(self.conn):
            for lid, pending in overdue:
                # Same tx: if the first attempt ran and only its reply was lost, the locker answers `dup`.
                pending.seq, wire = self._command(lid, pending.planned.op, pending.planned.args, pending.tx)
                pending.sent_at = time.monotonic()
                pending.attempts += 1
                self.conn.execute(
                    "UPDATE commands SET seq = ?, attempts = ?, updated_at = ? WHERE locker_id = ? AND tx = ?",
                    (pending.seq, pending.attempts, now, lid, pending.tx),
                )
                self.counters.resends += 1
                out.append((f"lockers/{lid}/cmd", wire))
        return out

    # --- requests: one-off signed commands people asked for (door.open, door.service) ----------------

    def _send_requests(self, now: float) -> list[tuple[str, bytes]]:
        """Send queued requests to online lockers; resend one without a reply after `resend_s` (new seq,
        same tx: the locker acts once); drop one older than `request_ttl_s`."""
        rows = self.conn.execute(
            "SELECT id, locker_id, op, args_json, tx, state, attempts, sent_at, created_at FROM requests"
            " WHERE state IN ('queued', 'sent') AND (state = 'queued' OR sent_at < ?)",
            (now - self.config.resend_s,),
        ).fetchall()
        if not rows:
            return []
        out = []
        with db.transaction(self.conn):
            for r in rows:
                if r["created_at"] < now - self.config.request_ttl_s:
                    self.conn.execute("UPDATE requests SET state = 'expired', done_at = ? WHERE id = ?", (now, r["id"]))
                    log.warning(
                        "request %d (%s to %s) expired unanswered", r["id"], r["op"], r["locker_id"],
                        extra={"locker": r["locker_id"]},
                    )  # fmt: skip
                    continue
                if not self.sync_state(r["locker_id"]).online:
                    continue
                seq, wire = self._command(r["locker_id"], r["op"], json.loads(r["args_json"]), r["tx"])
                self.conn.execute(
                    "UPDATE requests SET state = 'sent', seq = ?, attempts = attempts + 1, sent_at = ? WHERE id = ?",
                    (seq, now, r["id"]),
                )
                self.counters.requests_sent += 1
                log.info(
                    "request %d: %s to %s (attempt %d)", r["id"], r["op"], r["locker_id"], r["attempts"] + 1,
                    extra={"locker": r["locker_id"]},
                )  # fmt: skip
                out.append((f"lockers/{r['locker_id']}/cmd", wire))
        return out

    def _on_request_reply(self, lid: str, tx: Any, msg: dict[str, Any], now: float) -> bool:
        """Record the reply to a request; False when `tx` is not a request's."""
        row = self.conn.execute("SELECT id, state FROM requests WHERE locker_id = ? AND tx = ?", (lid, tx)).fetchone()
        if row is None:
            return False
        if row["state"] in ("queued", "sent", "expired"):
            self.conn.send(
                "UPDATE requests SET state = ?, reply_json = ?, done_at = ? WHERE id = ?",
                ("ok" if msg["ok"] else "failed", json.dumps(msg), now, row["id"]),
            )
        return True

    # --- notifications ------------------------------------------------------------------------------

    async def _notifications(self) -> None:
        """Hand due notifications to the hook, one at a time (the hook runs in a thread); a failure is
        recorded and retried later. A `loaded` notification carries the held plain code, which is
        deleted once the hook took it."""
        while True:
            await asyncio.sleep(self.config.poll_s)
            self._beat("notifier")
            if self.notifier is None:
                continue
            try:
                due = self.conn.execute(
                    "SELECT * FROM notifications WHERE state IN ('pending', 'failed') AND next_at <= ?"
                    " ORDER BY next_at LIMIT 20",
                    (time.time(),),
                ).fetchall()
                for row in due:
                    self._beat("notifier")
                    await self._notify_one(row)
            except db.Error:
                log.exception("database error while notifying")

    def _notification(self, row: db.Row) -> Notification | None:
        code_row = None
        if row["code_id"] is not None:
            code_row = self.conn.execute("SELECT * FROM codes WHERE id = ?", (row["code_id"],)).fetchone()
        detail = json.loads(row["detail_json"])
        code = None
        if row["kind"] == "loaded":
            held = self.conn.execute("SELECT code FROM held_codes WHERE code_id = ?", (row["code_id"],)).fetchone()
            if held is None:
                return None  # picked up, cancelled or expired meanwhile: nothing to tell
            code = str(held[0])
        to_resident = row["kind"] in ("loaded", "reminder", "code")
        return Notification(
            locker=row["locker_id"],
            door=row["door"] or "",
            code=code,
            expires=int(code_row["expires"]) if code_row is not None else 0,
            code_id=row["code_id"],
            recipient=code_row["recipient"] if code_row is not None and to_resident else None,
            kind=row["kind"],
            item=detail.get("item") or (code_row["item"] if code_row is not None else None),
            staff=detail.get("staff"),
        )

    async def _notify_one(self, row: db.Row) -> None:
        conn, notifier = self.conn, self.notifier
        assert notifier is not None
        note = self._notification(row)
        if note is None:
            with db.transaction(conn):
                conn.execute("UPDATE notifications SET state = 'skipped' WHERE id = ?", (row["id"],))
            return
        error = None
        try:
            await asyncio.to_thread(notifier.send, note)
        except NotifyError as exc:
            error = str(exc)  # never holds the code (notify.py)
        now = time.time()
        attempts = int(row["attempts"]) + 1
        with db.transaction(conn):
            if error is None:
                self.counters.notifications += 1
                conn.execute(
                    "UPDATE notifications SET state = 'sent', attempts = ?, sent_at = ?, error = NULL WHERE id = ?",
                    (attempts, now, row["id"]),
                )
                if row["kind"] == "loaded":
                    release_held_code(conn, int(row["code_id"]), hook=False, outbox=self.outbox is not None)
                return
            self.counters.notify_failures += 1
            delay = min(self.config.notify_retry_max_s, self.config.notify_retry_min_s * 2 ** (attempts - 1))
            conn.execute(
                "UPDATE notifications SET state = 'failed', attempts = ?, error = ?, next_at = ? WHERE id = ?",
                (attempts, error, now + delay, row["id"]),
            )
            if row["kind"] == "loaded":
                conn.execute(
                    "UPDATE codes SET notify_state = 'failed', notify_error = ? WHERE id = ?", (error, row["code_id"])
                )
        log.warning(
            "notification %d (%s) failed: %s; retry in %.0f s", row["id"], row["kind"], error, delay,
            extra={"locker": row["locker_id"]},
        )  # fmt: skip

    async def _messages(self) -> None:
        """Residents' messages (lockertools/notify/outbox.py): plan and send what is due; once an hour,
        delete the contact details whose retention ended (docs/privacy.md)."""
        purged_at = 0.0
        while True:
            await asyncio.sleep(self.config.messages_poll_s)
            self._beat("messages")
            try:
                if self.outbox is not None:
                    await self.outbox.run_once(self.conn, lambda: self._beat("messages"))
                if time.monotonic() - purged_at >= self.config.housekeeping_s:
                    purged_at = time.monotonic()
                    days = (self.config.messages or Settings()).messages.contact_retention_days
                    if purged := purge_contacts(self.conn, time.time(), days):
                        log.info("deleted the contact details of %d ended deliveries", purged)
            except db.Error:
                log.exception("database error while sending residents' messages")

    async def _alerts(self) -> None:
        """Staff alerts (lockertools/notify/alerts.py): follow the incidents, close the batches whose
        window is over, send what is due."""
        while True:
            await asyncio.sleep(self.config.alerts_poll_s)
            self._beat("alerts")
            if self.alerts is None:
                continue
            try:
                await self.alerts.run_once(self.conn, beat=lambda: self._beat("alerts"))
            except db.Error:
                log.exception("database error while alerting staff")


def _locker_of(message: aiomqtt.Message) -> dict[str, str]:
    """The log line's locker: the id in the topic (lockers/<id>/<kind>), for messages not opened yet."""
    parts = str(message.topic).split("/")
    return {"locker": parts[1]} if len(parts) == 3 and parts[0] == "lockers" else {}


def clock_off(locker_t: Any, now: float) -> bool:
    """A locker's status clock (`t`) is unknown or more than CLOCK_SLACK_S from the host's."""
    return not ingest._is_int(locker_t) or abs(locker_t - now) > CLOCK_SLACK_S


def run_service(config: ServiceConfig) -> None:
    """Blocking entry point for the CLI: serve until SIGINT or SIGTERM, then leave cleanly (the broker
    keeps the persistent session and queues events for the next start)."""

    async def serve() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        service = Service(config)

        def stop() -> None:
            service.systemd.send("STOPPING=1")
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        with contextlib.suppress(asyncio.CancelledError):
            await service.run()

    asyncio.run(serve())
