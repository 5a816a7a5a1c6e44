"""The service's sender (lockertools/service/sender.py): a bounded window of publishes, sync commands
ahead of acks, acks coalesced per locker, and a slow PUBACK that never ends the connection.

The unit tests drive a `Sender` with a fake client whose PUBACKs the test releases; the last test runs
the whole service behind a FaultProxy that holds the broker's answers back."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from service_helpers import Rig

from lockertools.service import fleet_db
from lockertools.service.sender import MAX_ACK_SEQS, Sender, Stalled
from tests.support.faultproxy import FaultProxy
from tests.support.fixtures import Broker


class FakeClient:
    """aiomqtt.Client's publish, with the PUBACKs in the test's hands."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.waiting: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self.sent: list[tuple[str, bytes]] = []
        self.most = 0
        self.fail = fail

    async def publish(self, topic: str, payload: bytes, qos: int = 0, timeout: float | None = None) -> None:
        assert qos == 1 and timeout == math.inf  # the sender waits for the PUBACK, aiomqtt must not time out
        if self.fail is not None:
            raise self.fail
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((topic, payload, fut))
        self.sent.append((topic, payload))
        self.most = max(self.most, len(self.waiting))
        try:
            await fut
        finally:
            self.waiting = [w for w in self.waiting if w[2] is not fut]

    def puback(self, n: int | None = None) -> None:
        for _, _, fut in self.waiting[:n]:
            if not fut.done():
                fut.set_result(None)

    def in_flight(self) -> list[tuple[str, Any]]:
        return [(topic, _decode(payload)) for topic, payload, _ in self.waiting]


def _sign(lid: str, seqs: list[int]) -> bytes:
    return json.dumps({"op": "ack", "lid": lid, "seqs": seqs}).encode()


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 10))


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_the_window_bounds_publishes_and_keeps_slots_for_sync_commands() -> None:
    async def body() -> None:
        sender, client = Sender(_sign, window=8, reserved=2), FakeClient()
        task = asyncio.create_task(sender.serve(client))
        for n in range(100):
            sender.ack(f"l{n:03d}", [1])
        await _settle()
        assert len(client.waiting) == 6  # acks take at most window - reserved slots
        sender.command("lockers/l050/cmd", b"codes.apply")
        sender.command("lockers/l051/cmd", b"codes.apply")
        await _settle()
        assert len(client.waiting) == 8  # the sync commands did not wait behind 94 acks
        assert [p for _, p in client.in_flight()][-2:] == [b"codes.apply", b"codes.apply"]
        while not sender.idle:
            client.puback()
            await _settle()
        assert client.most == 8
        assert sender.stats.acks_sent == 100 and sender.stats.commands_published == 2
        await _stop(task)

    _run(body)


def test_acks_coalesce_per_locker_while_one_is_in_flight() -> None:
    async def body() -> None:
        sender, client = Sender(_sign, window=8, reserved=2), FakeClient()
        task = asyncio.create_task(sender.serve(client))
        sender.ack("a", [1])
        await _settle()
        for seq in range(2, 50):  # one batch each, while the first ack waits for its PUBACK
            sender.ack("a", [seq])
            sender.ack("a", [seq])  # a duplicate delivery too
            await _settle()
        assert client.in_flight() == [("lockers/a/cmd", {"op": "ack", "lid": "a", "seqs": [1]})]
        client.puback()
        await _settle()
        assert client.in_flight() == [("lockers/a/cmd", {"op": "ack", "lid": "a", "seqs": list(range(2, 50))})]
        client.puback()
        await _settle()
        assert sender.idle and sender.stats.acks_sent == 2 and sender.stats.acked_seqs == 49
        assert sender.stats.backlog_most == 1

        sender.ack("b", range(1, 600))  # more than one ack holds: one at a time, at most 256 seqs each
        sizes = []
        for _ in range(3):
            await _settle()
            assert len(client.waiting) == 1
            sizes.append(len(client.in_flight()[0][1]["seqs"]))
            client.puback()
        await _settle()
        assert sender.idle and sizes == [MAX_ACK_SEQS, MAX_ACK_SEQS, 599 - 2 * MAX_ACK_SEQS]
        await _stop(task)

    _run(body)


def test_acks_in_flight_when_the_connection_ends_are_sent_on_the_next() -> None:
    async def body() -> None:
        sender, first = Sender(_sign, window=4, reserved=1), FakeClient()
        task = asyncio.create_task(sender.serve(first))
        sender.ack("a", [1, 2])
        sender.command("lockers/a/cmd", b"in flight")
        await _settle()
        sender.ack("a", [3])  # waits behind the ack in flight
        await _settle()
        await _stop(task)  # the connection ended: no PUBACK came
        sender.command("lockers/a/cmd", b"queued")
        assert sender.stats.requeued_seqs == 2

        second = FakeClient()
        task = asyncio.create_task(sender.serve(second))
        await _settle()
        # The queued command goes again (never sent); the one in flight does not (the service's resend
        # covers it, with a new seq); the acks' seqs all go, together.
        assert second.in_flight() == [
            ("lockers/a/cmd", b"queued"),
            ("lockers/a/cmd", {"op": "ack", "lid": "a", "seqs": [1, 2, 3]}),
        ]
        second.puback()
        await _settle()
        assert sender.idle
        await _stop(task)

    _run(body)


def test_a_slow_puback_is_waited_for_and_a_missing_one_ends_the_connection() -> None:
    async def body() -> None:
        sender, client = Sender(_sign, window=4, reserved=1, stall_s=0.5), FakeClient()
        task = asyncio.create_task(sender.serve(client))
        sender.ack("a", [1])
        await asyncio.sleep(0.3)  # slow, not stuck
        assert not task.done()
        client.puback()
        await _settle()
        assert sender.idle and not task.done()
        sender.ack("a", [2])
        with pytest.raises(Stalled):  # an aiomqtt.MqttError: the service reconnects
            await task
        assert sender.stats.stalls == 1 and not sender.idle  # seq 2 waits for the next connection

        refused = FakeClient(fail=aiomqtt.MqttCodeError(4, "Could not publish message"))
        with pytest.raises(aiomqtt.MqttCodeError):
            await sender.serve(refused)
        assert sender.queued() == (0, 1)

    _run(body)


def test_a_puback_slower_than_the_mqtt_timeout_keeps_the_connection(
    broker: Broker, tmp_path: Path, fault_proxy_factory: Callable[[int], FaultProxy]
) -> None:
    """The service used to publish with aiomqtt's timeout, and a late PUBACK ended its connection."""
    proxy = fault_proxy_factory(broker.port)
    rig = Rig(broker, tmp_path, port=proxy.port, mqtt_timeout_s=0.3)
    try:
        service = rig.start_service()
        sim = rig.start_locker()  # straight to the broker
        rig.wait(lambda: rig.query("SELECT online FROM lockers")[0][0] == 1, "the locker online")
        proxy.stall()  # the broker's PUBACKs (and everything else) wait in the proxy
        issued = fleet_db.issue_code(rig.conn, "hall-1", "A1")
        rig.wait(lambda: service.counters.commands_published >= 1, "the command handed to the broker")
        time.sleep(1.0)  # over three times the MQTT timeout
        proxy.stall(False)
        rig.wait(lambda: sim.lookup("A1", issued.code) == issued.code_id, "the code on the locker")
        seq = rig.call(sim.event("boot", cause="power", v="sim"))
        rig.wait(lambda: seq in sim.acked, "an event acknowledged")
        assert service.counters.connects == 1 and service.counters.stalls == 0
    finally:
        rig.close()
