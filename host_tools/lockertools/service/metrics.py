"""The service's health endpoint and Prometheus metrics, served on 127.0.0.1 by default.

`GET /metrics` (prometheus-client's text format) and `GET /healthz` (JSON; 200 while the service's
loops are healthy and it is connected to the broker, else 503). Values are read when scraped: the
counters from the running Service, the rest from the database, in the service's own event loop (so
a scrape never interleaves with a batch being applied).

`lockerhost_incidents_open{kind}` counts what stands for an incident today (a door forced or jammed
and not closed since, a door left open, a flapping locker, a locker in safe mode); the staff desk's
incidents are to take the name over.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from lockertools.service import db


class _Counters(Protocol):
    connects: int
    messages: int
    events: int
    duplicates: int
    rejected: Counter[str]
    locker_refusals: Counter[str]
    errors: int
    commands_sent: int
    resends: int
    notifications: int
    notify_failures: int


class _LockerState(Protocol):
    flapping: bool


class Service(Protocol):
    """What is read of runner.Service (a protocol: runner imports this module)."""

    @property
    def counters(self) -> _Counters: ...
    @property
    def connected(self) -> asyncio.Event: ...
    @property
    def conn(self) -> db.Connection: ...
    def healthy(self) -> bool: ...
    def health(self) -> dict[str, Any]: ...
    def inbox_size(self) -> int: ...
    def sync_states(self) -> Sequence[_LockerState]: ...


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9466
INCIDENT_KINDS = ("forced", "jammed", "left_open", "flapping", "safe_mode")


class ServiceCollector(Collector):
    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        svc, c = self.service, self.service.counters
        yield _gauge("lockerhost_up", "1 while the service's loops are healthy", 1 if svc.healthy() else 0)
        yield _gauge("lockerhost_broker_connected", "1 while connected to the broker", int(svc.connected.is_set()))
        yield _counter("lockerhost_broker_connects", "Connections made to the broker", c.connects)
        yield _counter("lockerhost_messages", "Messages received from lockers", c.messages)
        yield _counter("lockerhost_events_ingested", "New events recorded", c.events)
        yield _counter("lockerhost_event_duplicates", "Events delivered again (recorded once)", c.duplicates)
        rejected = CounterMetricFamily(
            "lockerhost_messages_rejected", "Messages the host refused, by reason", labels=["reason"]
        )
        for reason, n in sorted(c.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        # What lockers reported refusing (signed commands that failed their checks: their `refused`
        # events), counted as they come in rather than read from the whole event table per scrape.
        refusals = CounterMetricFamily(
            "lockerhost_locker_refusals", "Commands lockers refused (refused events), by reason", labels=["reason"]
        )
        for reason, n in sorted(c.locker_refusals.items()):
            refusals.add_metric([reason], n)
        yield refusals
        yield _counter("lockerhost_apply_errors", "Messages that raised while applied", c.errors)
        yield _counter("lockerhost_sync_commands", "Sync commands sent (first attempts)", c.commands_sent)
        yield _counter("lockerhost_sync_resends", "Sync commands sent again", c.resends)
        yield _counter("lockerhost_notifications_sent", "Notifications handed to the hook", c.notifications)
        yield _counter("lockerhost_notification_failures", "Notifications the hook failed", c.notify_failures)
        yield _gauge("lockerhost_inbox", "Messages received, not yet applied", svc.inbox_size())
        yield from self._from_database(time.time())

    def _from_database(self, now: float) -> Iterator[Metric]:
        conn = self.service.conn
        lockers = conn.execute("SELECT count(*), coalesce(sum(online), 0) FROM lockers").fetchone()
        yield _gauge("lockerhost_lockers", "Lockers registered", lockers[0])
        yield _gauge("lockerhost_lockers_online", "Lockers whose last status said online", lockers[1])
        waiting = GaugeMetricFamily("lockerhost_commands_waiting", "Commands sent, awaiting a reply", labels=["what"])
        oldest = GaugeMetricFamily(
            "lockerhost_commands_oldest_wait_seconds", "Age of the oldest command awaiting a reply", labels=["what"]
        )
        for what, sql in (
            ("sync", "SELECT count(*), min(created_at) FROM commands WHERE state = 'sent'"),
            ("request", "SELECT count(*), min(created_at) FROM requests WHERE state IN ('queued', 'sent')"),
        ):
            n, first = conn.execute(sql).fetchone()
            waiting.add_metric([what], n)
            oldest.add_metric([what], max(0.0, now - first) if first is not None else 0.0)
        yield waiting
        yield oldest
        yield _gauge(
            "lockerhost_notification_outbox",
            "Notifications waiting for the hook (pending or failed, to be retried)",
            conn.execute("SELECT count(*) FROM notifications WHERE state IN ('pending', 'failed')").fetchone()[0],
        )
        incidents = GaugeMetricFamily(
            "lockerhost_incidents_open", "Open incidents: alarms not cleared, flapping, safe mode", labels=["kind"]
        )
        for kind, n in _incidents(self.service).items():
            incidents.add_metric([kind], n)
        yield incidents


def _incidents(service: Service) -> dict[str, int]:
    conn = service.conn
    found = dict.fromkeys(INCIDENT_KINDS, 0)
    # A door's state is that of the last event applied to it: forced and jammed hold until it closes.
    for state, n in conn.execute(
        "SELECT state, count(*) FROM doors WHERE state IN ('forced', 'jammed') GROUP BY state"
    ):
        found[str(state)] = int(n)
    found["left_open"] = conn.execute(
        "SELECT count(*) FROM doors d JOIN events e ON e.locker_id = d.locker_id AND e.seq = d.state_seq"
        " WHERE d.state = 'open' AND e.kind = 'left_open'"
    ).fetchone()[0]
    found["flapping"] = sum(1 for s in service.sync_states() if s.flapping)
    for (status,) in conn.execute("SELECT status_json FROM lockers WHERE online = 1 AND status_json IS NOT NULL"):
        try:
            found["safe_mode"] += json.loads(status).get("mode") == "safe"
        except (ValueError, AttributeError):
            continue
    return found


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def make_app(service: Service) -> web.Application:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service))

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        report = service.health()
        ok = report["loops"] == "ok" and report["broker"] == "connected"
        return web.json_response(report, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(service: Service, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(make_app(service), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
