"""Webhooks through the running service, a real mosquitto and a protocol-level locker (DeliverySim),
on SQLite and PostgreSQL: a receiver on loopback gets `loaded` then `picked_up`, once each, signed
(HMAC-SHA256 over f"{t}.{body}"), also across a restart of the service; a receiver that is down gets
them, in order, once it is back, and meanwhile the failures are listed with their last error."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import Contract

from lockertools.api import openapi, webhooks
from lockertools.service import fleet_db
from tests.service.service_helpers import DeliverySim, Rig
from tests.support.fixtures import Broker
from tests.support.webhook_receiver import Receiver, check_signed


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def make_rig(broker: Broker, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**config: Any) -> Rig:
        settings = {"webhook_poll_s": 0.05, "webhook_retry_min_s": 0.1, "webhook_retry_max_s": 0.3} | config
        rig = Rig(broker, tmp_path, sim_class=DeliverySim, resend_s=0.5, **settings)
        made.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in made:
            rig.close()


def _deliver(rig: Rig, case: str) -> tuple[DeliverySim, fleet_db.IssuedDelivery]:
    sim = rig.sims["hall-1"]
    assert isinstance(sim, DeliverySim)
    resident = fleet_db.Resident(name="Ann", language="en", case_ref=case)
    issued = fleet_db.prepare_delivery(rig.conn, "hall-1", size="S", resident=resident, source="api", created_by="e")
    return sim, issued


def _load_and_pick_up(rig: Rig, sim: DeliverySim, issued: fleet_db.IssuedDelivery) -> None:
    rig.wait(lambda: sim.lookup_any(issued.code) == (issued.number, "*"), "the delivery on the locker")
    sim.load(issued.number, "A2")
    rig.call(sim.event("loaded", d="A2", id=issued.number, repeat=2))  # delivered twice: one event
    rig.wait(lambda: rig.query("SELECT 1 FROM codes WHERE id = ? AND door = 'A2'", issued.number), "loaded")
    rig.call(sim.event("pickup", d="A2", id=issued.number, repeat=2))


def test_a_receiver_gets_loaded_then_picked_up_once_each_signed(
    make_rig: Callable[..., Rig], receiver: Receiver
) -> None:
    receiver.start()
    rig = make_rig()
    hook = webhooks.add_webhook(rig.conn, receiver.url, "e-loket")
    sim, issued = _deliver(rig, "EL-7")
    rig.start_service()
    rig.start_locker()
    _load_and_pick_up(rig, sim, issued)
    rig.wait(lambda: len(receiver.got) >= 2, "loaded and picked_up at the receiver")
    # The service restarts: nothing it sent goes again; the next change comes after those.
    rig.stop_service()
    rig.start_service()
    _, second = _deliver(rig, "EL-8")
    fleet_db.cancel_delivery(rig.conn, second.number)
    rig.wait(lambda: len(receiver.got) >= 3, "the cancellation at the receiver")
    bodies = receiver.bodies()
    assert [(b["event"], b["delivery"], b["state"]) for b in bodies] == [
        ("loaded", issued.number, "loaded"),
        ("picked_up", issued.number, "picked_up"),
        ("cancelled", second.number, "cancelled"),
    ]
    assert [b["case_number"] for b in bodies] == ["EL-7", "EL-7", "EL-8"]
    assert [b["door"] for b in bodies] == ["A2", "A2", None]
    assert all(b["locker"] == "hall-1" for b in bodies) and len({b["id"] for b in bodies}) == 3
    assert issued.code not in json.dumps(bodies)  # never the resident's code
    check_signed(receiver, hook.secret, Contract(openapi.document()))
    assert webhooks.webhook_failures(rig.conn) == []


def test_a_receiver_that_is_down_gets_them_once_it_is_back(make_rig: Callable[..., Rig]) -> None:
    receiver = Receiver()  # its port has nobody listening yet
    rig = make_rig()
    hook = webhooks.add_webhook(rig.conn, receiver.url)
    sim, issued = _deliver(rig, "EL-9")
    rig.start_service()
    rig.start_locker()
    try:
        _load_and_pick_up(rig, sim, issued)
        rig.wait(lambda: any(f.attempts >= 2 for f in webhooks.webhook_failures(rig.conn)), "failed attempts")
        (failure,) = webhooks.webhook_failures(rig.conn)  # the oldest goes first: picked_up waits behind it
        assert (failure.event, failure.delivery, failure.state, failure.webhook_id) == (
            "loaded", issued.number, "pending", hook.webhook.id,
        )  # fmt: skip
        assert failure.last_error and "Connect" in failure.last_error
        receiver.start()
        rig.wait(lambda: len(receiver.got) >= 2, "both events once the receiver is back")
        _, second = _deliver(rig, "EL-10")
        fleet_db.cancel_delivery(rig.conn, second.number)
        rig.wait(lambda: len(receiver.got) >= 3, "the next event")
        assert [b["event"] for b in receiver.bodies()] == ["loaded", "picked_up", "cancelled"]
        check_signed(receiver, hook.secret, Contract(openapi.document()))
        assert webhooks.webhook_failures(rig.conn) == []
    finally:
        receiver.stop()
