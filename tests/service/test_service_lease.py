"""The database's lease: two services started against one database by mistake never both send, and
nothing is applied twice, on SQLite and on PostgreSQL (tests/service/conftest.py runs both)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from service_helpers import Rig

from lockertools.service import db, fleet_db
from lockertools.service.runner import Service
from tests.support.fixtures import Broker


def test_one_lease_holder_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    db.connect(path, create=True).close()
    first, second = db.Lease(path), db.Lease(path)
    try:
        assert first.try_acquire() and first.held
        assert not second.try_acquire() and not second.held
        first.release()
        assert second.try_acquire()
        assert not first.try_acquire()
    finally:
        first.release()
        second.release()


def test_two_services_on_one_database_only_the_lease_holder_sends_and_nothing_is_applied_twice(
    broker: Broker, tmp_path: Path
) -> None:
    rig = Rig(broker, tmp_path, lease_retry_s=0.05)
    second_task: asyncio.Task[None] | None = None
    try:
        first = rig.start_service()
        sim = rig.start_locker()
        # The same service started again by mistake (its own connection, the same database and broker).
        second = Service(first.config)
        second_task = rig.call(rig._spawn(second.run()))
        issued = fleet_db.issue_code(rig.conn, "hall-1", "A1")
        rig.wait(lambda: sim.lookup("A1", issued.code) == issued.code_id, "the code on the locker")
        ev = {"k": "pickup", "t": int(time.time()), "d": "A1", "id": issued.code_id}
        seq = rig.call(sim.event("pickup", d="A1", id=issued.code_id))
        rig.wait(lambda: not sim.outbox, "the pickup acknowledged")
        rig.wait(lambda: rig.query("SELECT state FROM codes WHERE id = ?", issued.code_id)[0][0] == "used", "used")
        assert first.counters.commands_sent >= 1 and first.counters.acks_sent >= 1
        # The second one waits for the lease: no broker connection, nothing applied, nothing sent.
        assert not second.lease_held.is_set() and not second.connected.is_set()
        assert second.counters.connects == second.counters.messages == 0
        assert second.counters.commands_sent == second.counters.acks_sent == second.counters.requests_sent == 0

        # The first one stops: the second takes the lease over and serves.
        rig.stop_service()
        rig.wait(second.lease_held.is_set, "the second service to take the lease")
        rig.wait(second.connected.is_set, "the second service to connect")
        # The locker sends the acknowledged pickup again (its ack lost, say): recorded once, acked again.
        again = sim.sign({"v": 1, "lid": "hall-1", "seq": seq, "ev": ev})
        rig.call(sim.publish("events", again))
        rig.wait(lambda: second.counters.duplicates == 1 and second.counters.acks_sent >= 1, "the duplicate acked")
        later = fleet_db.issue_code(rig.conn, "hall-1", "A2")
        rig.wait(lambda: sim.lookup("A2", later.code) == later.code_id, "a code synced by the second service")
        assert second.counters.commands_sent >= 1

        assert rig.query("SELECT count(*) FROM events WHERE locker_id = 'hall-1' AND seq = ?", seq)[0][0] == 1
        dels = rig.query("SELECT count(*) FROM changes WHERE code_id = ? AND op = 'del'", issued.code_id)[0][0]
        assert dels == 1  # the pickup took the code off the locker once
    finally:
        if second_task is not None:
            task = second_task

            async def cancel() -> None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

            rig.call(cancel())
        rig.close()
