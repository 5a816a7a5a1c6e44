"""200 simulated lockers at once against one service: codes out, events in, all acknowledged."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from service_helpers import LABELS, Rig

from lockertools.fleet import SimLocker
from lockertools.service import db, fleet_db
from tests.support.fixtures import Broker

LOCKERS = 200
EVENTS_EACH = 3


@pytest.mark.slow  # ~10 s: the simulated fleet shares the test's one event loop
def test_two_hundred_lockers_are_served(broker: Broker, tmp_path: Path) -> None:
    rig = Rig(broker, tmp_path, lockers=tuple(f"l{n:03d}" for n in range(LOCKERS)))
    try:
        service = rig.start_service()
        rig.start_lockers()
        rig.wait(lambda: rig.query("SELECT count(*) FROM lockers WHERE online = 1")[0][0] == LOCKERS, "all online")
        started = time.monotonic()
        issued = {lid: fleet_db.issue_code(rig.conn, lid, LABELS[0]) for lid in rig.sims}
        rig.wait(
            lambda: all(sim.lookup(LABELS[0], issued[lid].code) for lid, sim in rig.sims.items()),
            "every locker to hold its code",
            30,
        )
        synced = time.monotonic() - started

        async def burst() -> None:  # every locker at once
            async def events(sim: SimLocker) -> None:
                for k in range(EVENTS_EACH):
                    await sim.event("denied", r="wrong", n=k)

            await asyncio.gather(*(events(sim) for sim in rig.sims.values()))

        started = time.monotonic()
        rig.call(burst(), timeout=30)
        rig.wait(lambda: all(not sim.outbox for sim in rig.sims.values()), "every event acknowledged", 30)
        ingested = time.monotonic() - started
        assert rig.query("SELECT count(*) FROM events")[0][0] == LOCKERS * EVENTS_EACH
        assert service.counters.duplicates == 0 and service.counters.errors == 0
        # Batching: far fewer transactions than messages.
        assert service.counters.batches < service.counters.messages / 2
        print(
            f"\n{LOCKERS} lockers: codes synced in {synced:.2f} s; {LOCKERS * EVENTS_EACH} events recorded and"
            f" acknowledged in {ingested:.2f} s; {service.counters.messages} messages in"
            f" {service.counters.batches} transactions ({service.counters.busy_s:.2f} s busy),"
            f" {service.counters.acks_sent} acks"
        )
        assert db.schema_head()
    finally:
        rig.close()
