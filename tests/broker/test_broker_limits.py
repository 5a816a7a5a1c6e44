"""What one locker's credentials can cost the broker the whole fleet uses, on a real mosquitto with the
configuration `lockerctl broker init` writes (docs/security.md, "The broker's limits"): a packet over
the limit drops its sender and reaches nobody, a flood of queued messages stays within the stated
memory and persistence figures, and the other lockers' messages still get through."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockertools.broker import MAX_INFLIGHT_MESSAGES, MAX_PACKET_BYTES, MAX_QUEUED_BYTES
from tests.support.fixtures import Broker
from tests.support.mosquitto import MqttClient, wait_until

# The figures docs/security.md states for a full queue of the host's session.
BROKER_RSS_BOUND = 128 * 1024 * 1024
PERSISTENCE_BOUND = 64 * 1024 * 1024
LONGEST_LID = "L" * 32  # the longest topic a locker has: lockers/<32 characters>/...
OVERSIZE = "disconnected due to oversize packet"  # mosquitto's log line
HOST_COMMAND_MAX = 8192  # the firmware's protocol.MAX_MESSAGE: the largest message of the protocol


def _proc_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _dropped(broker: Broker, client: MqttClient, what: str, times: int) -> None:
    client.wait(lambda: not client.connected, f"the broker to drop {what}")
    wait_until(lambda: broker.server.log(this_run=True).count(OVERSIZE) >= times, 5, f"the log to say why: {what}")
    assert broker.server.log(this_run=True).count(OVERSIZE) == times


def test_the_largest_messages_of_the_protocol_pass(broker: Broker) -> None:
    broker.add_locker(LONGEST_LID)
    host = broker.connected(broker.host_client(clean_session=True))
    assert host.subscribe("lockers/+/events") == 1
    locker = broker.connected(broker.locker_client(LONGEST_LID))
    assert locker.subscribe(f"lockers/{LONGEST_LID}/cmd") == 1
    command = b"c" * HOST_COMMAND_MAX
    host.publish(f"lockers/{LONGEST_LID}/cmd", command)
    assert locker.wait_message(f"lockers/{LONGEST_LID}/cmd").payload == command
    event = b"e" * 4096  # the service's ingest.MAX_PAYLOAD: the most a locker sends
    locker.publish(f"lockers/{LONGEST_LID}/events", event)
    assert host.wait_message(f"lockers/{LONGEST_LID}/events").payload == event
    assert locker.connected and host.connected


def test_a_packet_over_the_limit_drops_its_sender_and_reaches_nobody(broker: Broker) -> None:
    broker.add_locker("hall-1")
    broker.add_locker("hall-2")
    host = broker.connected(broker.host_client(clean_session=True))
    assert host.subscribe("lockers/+/#") == 1
    rogue = broker.connected(broker.locker_client("hall-1"))
    other = broker.connected(broker.locker_client("hall-2"))
    rogue.publish("lockers/hall-1/status", b"status before", retain=True)
    host.wait_message("lockers/hall-1/status", b"status before")

    oversized = b"x" * MAX_PACKET_BYTES  # the payload alone fills the limit: the packet is over it
    rogue.send("lockers/hall-1/events", oversized)
    _dropped(broker, rogue, "a locker that sent an oversized event", 1)
    # A new client each time: paho would send its unacknowledged oversized message again on reconnecting.
    rogue = broker.connected(broker.locker_client("hall-1"))
    rogue.send("lockers/hall-1/status", oversized, retain=True)
    _dropped(broker, rogue, "a locker that sent an oversized retained status", 2)

    # The same locker's next message comes after anything it sent before: the oversized ones would be here.
    rogue = broker.connected(broker.locker_client("hall-1"))
    rogue.publish("lockers/hall-1/events", b"hall-1 after")
    other.publish("lockers/hall-2/events", b"hall-2 after")
    host.wait_message("lockers/hall-1/events", b"hall-1 after")
    host.wait_message("lockers/hall-2/events", b"hall-2 after")
    assert all(len(m.payload) < MAX_PACKET_BYTES for m in host.messages)
    assert other.connected and other.disconnects == 0 and host.disconnects == 0

    # What the broker keeps retained is the status before the oversized one.
    host.close()
    late = broker.connected(broker.host_client(clean_session=True))
    assert late.subscribe("lockers/hall-1/status") == 1
    retained = late.wait_message("lockers/hall-1/status")
    assert retained.payload == b"status before" and retained.retain


@pytest.mark.slow
def test_a_queue_flood_from_one_locker_is_bounded_and_the_others_get_through(broker: Broker) -> None:
    """The host service away (its persistent session queues), one locker floods it with QoS 1 messages of
    the largest size the broker lets in: about 100 MB, three times what the queue may hold."""
    broker.add_locker("hall-1")
    broker.add_locker("hall-2")
    host = broker.connected(broker.host_client())
    assert host.subscribe("lockers/+/events") == 1
    host.disconnect()

    size = MAX_PACKET_BYTES - 64  # topic and headers fit in the rest
    fits = MAX_QUEUED_BYTES // size
    flooder = broker.connected(broker.locker_client("hall-1"))
    payload = b"f" * size
    for _ in range(3 * fits):
        flooder.publish("lockers/hall-1/events", payload)  # each one PUBACKed: the broker took it
    assert flooder.connected
    broker.server.save()
    flooder.publish("lockers/hall-1/doors", b"saved")  # answered after the save is written
    persisted = broker.setup.persistence_file.stat().st_size

    # The service comes back and drains its queue; hall-2 sends its event again until it arrives (as
    # the firmware's outbox does), which is after everything the queue held before it.
    other = broker.connected(broker.locker_client("hall-2"))
    assert host.connect() == 0

    def hall_2_arrived() -> bool:
        other.publish("lockers/hall-2/events", b"hall-2 event")
        try:
            host.wait_message("lockers/hall-2/events", b"hall-2 event", timeout=1.0)
        except AssertionError:
            return False
        return True

    wait_until(hall_2_arrived, 60, "hall-2's event to reach the host", poll=0)
    pid = broker.server.proc.pid if broker.server.proc else 0
    rss, peak = _proc_bytes(pid, "VmRSS"), _proc_bytes(pid, "VmHWM")
    flood = len(host.received("lockers/hall-1/events"))
    assert fits <= flood <= fits + MAX_INFLIGHT_MESSAGES + 1, f"{flood} of {3 * fits} queued, {fits} fit"
    assert peak < BROKER_RSS_BOUND, f"the broker's memory peaked at {peak / 2**20:.0f} MiB"
    assert rss < BROKER_RSS_BOUND
    assert persisted < PERSISTENCE_BOUND, f"the persistence file was {persisted / 2**20:.0f} MiB"
    assert other.disconnects == 0 and flooder.connected
