"""A broker killed before it saved its queue loses nothing end to end: the locker keeps each event until
the host's ack and sends its outbox again after every reconnect (docs/protocol.md, "Delivery, end to
end"); the host records each (locker, seq) once. The broker saves every 30 s and at a clean stop only
(lockertools.broker.AUTOSAVE_S), so a kill -9 soon after a start is a crash with nothing saved since."""

from __future__ import annotations

from pathlib import Path

from service_helpers import Rig

from tests.support.fixtures import Broker


def _saved(broker: Broker) -> bytes:
    try:
        return broker.setup.persistence_file.read_bytes()
    except FileNotFoundError:
        return b""


def _event_wires(rig: Rig, seqs: list[int]) -> list[bytes]:
    sim = rig.sims["hall-1"]
    return [sim.outbox[s] for s in seqs]


def test_events_lost_in_a_broker_kill_are_sent_again_and_recorded_once(broker: Broker, tmp_path: Path) -> None:
    rig = Rig(broker, tmp_path)
    try:
        rig.start_service()  # the host's persistent session and its subscriptions
        sim = rig.start_locker()
        first = rig.call(sim.event("boot", cause="power", v="sim"))
        rig.wait(lambda: first in sim.acked and not sim.outbox, "the first event acknowledged")
        rig.stop_service()

        # The service is away: the broker queues for its session. A clean stop saves the queue.
        saved = [rig.call(sim.event("denied", r="wrong", n=k)) for k in range(3)]
        rig.stop_locker()
        broker.server.stop()
        assert all(w in _saved(broker) for w in _event_wires(rig, saved))
        broker.server.start()
        rig.start_locker()  # it sends its outbox again on connecting: those events are queued twice now

        # More events, then a kill -9 before the broker saved again: they and the resends are gone from it.
        lost = [rig.call(sim.event("denied", r="wrong", n=k)) for k in range(3, 8)]
        on_disk = _saved(broker)
        assert not any(w in on_disk for w in _event_wires(rig, lost)), "the broker saved: not a crash test"
        broker.server.kill()  # the locker stays on: it reconnects by itself and sends its outbox again
        broker.server.start()

        service = rig.start_service()  # gets what the broker saved (and what the locker sends again)
        everything = [first, *saved, *lost]
        rig.wait(lambda: sim.acked >= set(everything) and not sim.outbox, "every event acknowledged", 20)
        rows = rig.query("SELECT seq, count(*) FROM events WHERE locker_id = 'hall-1' GROUP BY seq ORDER BY seq")
        assert [(r[0], r[1]) for r in rows] == [(s, 1) for s in everything]
        assert service.counters.events == len(saved) + len(lost)
        assert service.counters.errors == 0 and service.counters.rejected == {}
    finally:
        rig.close()
