"""The fleet's broker set-up against a real mosquitto: who may connect, publish and read what.

Absence checks ("B never receives it") always come with a positive control: a message the same
client is allowed to send, published after the forbidden one on the same connection, arrives; the
broker handles one connection's packets in order, so by then the forbidden one would have arrived.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.support.faultproxy import FaultProxy
from tests.support.fixtures import Broker

REFUSED = (134, 135)  # bad user name or password / not authorised (paho's names for 3.1.1's 4 and 5)


def test_anonymous_client_refused(broker: Broker) -> None:
    assert broker.client(None).connect() in REFUSED


def test_wrong_password_refused_right_one_accepted(broker: Broker) -> None:
    password = broker.add_locker("hall-1")
    assert broker.client("hall-1", password + "x").connect() in REFUSED
    assert broker.client("hall-1", "").connect() in REFUSED
    assert broker.client("nobody", password).connect() in REFUSED
    # The hash lockertools wrote is one mosquitto accepts.
    assert broker.client("hall-1", password).connect() == 0
    assert broker.client("host").connect() == 0


def test_locker_cannot_publish_as_another(broker: Broker) -> None:
    broker.add_locker("A")
    broker.add_locker("B")
    host = broker.connected(broker.host_client())
    assert host.subscribe("lockers/+/events") == 1
    assert host.subscribe("lockers/+/status") == 1
    b_watch = broker.connected(broker.locker_client("B"))
    b_watch.subscribe("lockers/B/#")
    a = broker.connected(broker.locker_client("A"))

    a.publish("lockers/B/events", b"forged event")
    a.publish("lockers/B/status", b"forged status", retain=True)
    a.publish("lockers/A/events", b"control")
    host.wait_message("lockers/A/events", b"control")
    assert host.received("lockers/B/events") == [] and host.received("lockers/B/status") == []
    assert b_watch.received("lockers/B/events") == [] and b_watch.received("lockers/B/status") == []
    # Nor anything outside the locker topics, nor its own cmd topic (only the host commands).
    a.publish("lockers/A/cmd", b"self command")
    a.publish("elsewhere", b"x")
    a.publish("lockers/A/events", b"control 2")
    host.wait_message("lockers/A/events", b"control 2")
    assert [m.topic for m in host.messages] == ["lockers/A/events", "lockers/A/events"]
    # The forged retained status was not kept either: a new subscriber sees nothing for B.
    late = broker.connected(broker.client("host", client_id="late", clean_session=True))
    a.publish("lockers/A/status", b"online", retain=True)
    late.subscribe("lockers/+/status")
    late.wait_message("lockers/A/status", b"online")
    assert late.received("lockers/B/status") == []


def test_locker_cannot_read_another_lockers_commands(broker: Broker) -> None:
    broker.add_locker("A")
    broker.add_locker("B")
    a = broker.connected(broker.locker_client("A"))
    # mosquitto grants the subscriptions but delivers only what the ACL lets A read.
    for topic in ("lockers/B/cmd", "lockers/+/cmd", "#", "lockers/A/cmd"):
        a.subscribe(topic)
    b = broker.connected(broker.locker_client("B"))
    b.subscribe("lockers/B/cmd")
    host = broker.connected(broker.host_client())
    host.publish("lockers/B/cmd", b"for B")
    host.publish("lockers/A/cmd", b"for A")
    a.wait_message("lockers/A/cmd", b"for A")
    b.wait_message("lockers/B/cmd", b"for B")
    assert {m.topic for m in a.messages} == {"lockers/A/cmd"}
    assert all(m.payload == b"for A" for m in a.messages)
    # ...nor another locker's events.
    b.publish("lockers/B/events", b"B's event")
    host.publish("lockers/A/cmd", b"control")
    a.wait_message("lockers/A/cmd", b"control")
    assert a.received("lockers/B/events") == []


def test_host_reads_every_locker_and_writes_commands_only(broker: Broker) -> None:
    broker.add_locker("A")
    broker.add_locker("B")
    host = broker.connected(broker.host_client())
    for leaf in ("status", "doors", "events", "reply"):
        assert host.subscribe(f"lockers/+/{leaf}") == 1
    lockers = {lid: broker.connected(broker.locker_client(lid)) for lid in ("A", "B")}
    for lid, c in lockers.items():
        c.subscribe(f"lockers/{lid}/cmd")
        for leaf in ("status", "doors", "events", "reply"):
            c.publish(f"lockers/{lid}/{leaf}", f"{lid} {leaf}".encode(), retain=leaf in ("status", "doors"))
    for lid in lockers:
        for leaf in ("status", "doors", "events", "reply"):
            host.wait_message(f"lockers/{lid}/{leaf}", f"{lid} {leaf}".encode())
    for lid, c in lockers.items():
        host.publish(f"lockers/{lid}/cmd", f"cmd {lid}".encode())
        c.wait_message(f"lockers/{lid}/cmd", f"cmd {lid}".encode())
    # The host cannot forge a locker's messages.
    host.publish("lockers/A/events", b"forged by host")
    lockers["A"].publish("lockers/A/events", b"control")
    host.wait_message("lockers/A/events", b"control")
    assert [m.payload for m in host.received("lockers/A/events")] == [b"A events", b"control"]


def test_a_locker_cannot_take_over_another_lockers_session(broker: Broker) -> None:
    """The client id is the user name (use_username_as_clientid): A connecting as client id "B"
    gets its own session and B stays connected."""
    broker.add_locker("A")
    broker.add_locker("B")
    b = broker.connected(broker.locker_client("B"))
    b.subscribe("lockers/B/cmd")
    a = broker.connected(broker.locker_client("A", client_id="B"))
    a.subscribe("lockers/A/cmd")
    host = broker.connected(broker.host_client())
    host.publish("lockers/B/cmd", b"still there?")
    host.publish("lockers/A/cmd", b"and A")
    b.wait_message("lockers/B/cmd", b"still there?")
    a.wait_message("lockers/A/cmd", b"and A")
    assert b.connected and b.disconnects == 0


def test_last_will_on_own_status_reaches_the_host(
    broker: Broker, fault_proxy_factory: Callable[[int], FaultProxy]
) -> None:
    broker.add_locker("A")
    host = broker.connected(broker.host_client())
    host.subscribe("lockers/+/status")
    proxy = fault_proxy_factory(broker.port)
    a = broker.connected(
        broker.locker_client("A", port=proxy.port, keepalive=5, will=("lockers/A/status", b"offline", 1, True))
    )
    a.publish("lockers/A/status", b"online", retain=True)
    host.wait_message("lockers/A/status", b"online")
    proxy.cut()  # the network breaks: the broker sees a reset and sends the will
    msg = host.wait_message("lockers/A/status", b"offline")
    assert msg.qos == 1


def test_a_second_login_takes_the_session_and_a_rotated_password_drops_it(broker: Broker) -> None:
    """Whoever logs in with a locker's user name throws the connected client off (the client id is the
    user name); once its password is rotated and the broker reloaded, the old password is out at once."""
    password = broker.add_locker("hall-1")
    locker = broker.connected(broker.locker_client("hall-1"))
    intruder = broker.connected(broker.client("hall-1", password, client_id="anything"))
    locker.wait(lambda: not locker.connected, "the real locker to be thrown off")
    broker.setup.add_locker("hall-1", rotate=True)
    broker.server.reload()
    intruder.wait(lambda: not intruder.connected, "the rotated password's client to be dropped")
    assert broker.client("hall-1", password).connect() in REFUSED
