"""TLS with the tools' CA, and what persistence keeps over a restart and loses in a crash, against a real
mosquitto. (That a crash loses no event end to end, the lockers sending again what the host has not
acknowledged: tests/service/test_service_broker_crash.py.)"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from lockertools.broker import BrokerSetup
from tests.support.fixtures import Broker
from tests.support.mosquitto import MqttClient


def test_tls_client_trusting_the_ca_connects_with_host_name_check(tls_broker: Broker) -> None:
    tls_broker.add_locker("A")
    ca = tls_broker.setup.ca_path
    for name in ("127.0.0.1", "localhost"):
        c = tls_broker.client("A", client_id="A", ca=ca)
        c.host = name
        assert c.connect() == 0, name
        c.close()
    # The same checks as the firmware: CERT_REQUIRED, host name checked.
    ctx = ssl.create_default_context(cafile=str(ca))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    address = (tls_broker.host, tls_broker.port)
    with socket.create_connection(address) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with (
        socket.create_connection(address) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="mismatch|doesn't match"),
    ):
        ctx.wrap_socket(raw, server_hostname="broker.elsewhere.example")


def test_tls_client_trusting_another_ca_is_refused(tls_broker: Broker, tmp_path: Path) -> None:
    tls_broker.add_locker("A")
    other = BrokerSetup(tmp_path / "other", port=None, tls_port=0)
    other.write()
    c = tls_broker.client("A", client_id="A", ca=other.ca_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        c.connect()
    # Plain MQTT on the TLS port gets nowhere either.
    plain = tls_broker.client("A", client_id="A", ca=None)
    assert plain.connect(timeout=5) != 0


def _saved(broker: Broker) -> bytes:
    try:
        return broker.setup.persistence_file.read_bytes()
    except FileNotFoundError:
        return b""


def _queue_for_host_and_retain(broker: Broker, tag: bytes) -> None:
    """The host's persistent session gets an event queued; locker A leaves a retained status."""
    host = broker.connected(broker.host_client())
    host.subscribe("lockers/+/events")
    host.disconnect()  # persistent session: the broker queues for it
    a = broker.connected(broker.locker_client("A"))
    a.publish("lockers/A/status", b"online-" + tag, retain=True)
    a.publish("lockers/A/events", b"event-" + tag, qos=1)
    a.close()


def test_clean_restart_keeps_the_hosts_queued_event_and_retained_status(broker: Broker) -> None:
    broker.add_locker("A")
    _queue_for_host_and_retain(broker, b"7f3a")

    broker.server.stop()  # SIGTERM: the broker saves its database on the way out
    assert b"event-7f3a" in _saved(broker)
    broker.server.start()

    again = broker.connected(broker.host_client())  # same client id, clean session off, no new subscribe
    msg = again.wait_message("lockers/A/events", b"event-7f3a")
    assert msg.qos == 1
    again.subscribe("lockers/+/status")
    assert again.wait_message("lockers/A/status", b"online-7f3a").retain


def test_a_kill_loses_what_came_since_the_last_save(broker: Broker) -> None:
    """The trade-off of a save every 30 s (not on every change): kill -9 loses the queue since the last
    save. The protocol does not lean on it: a locker keeps each event until the host's ack."""
    broker.add_locker("A")
    _queue_for_host_and_retain(broker, b"9c1e")
    assert b"event-9c1e" not in _saved(broker)  # no save yet: the first comes 30 s after the start

    broker.server.kill()
    broker.server.start()

    again = broker.connected(broker.host_client())
    again.subscribe("lockers/+/#")
    with pytest.raises(AssertionError, match="timed out"):
        again.wait_message("lockers/A/events", timeout=1.0)
    assert again.received("lockers/A/status") == []  # the retained status went with it


def test_new_locker_accepted_after_reload(broker: Broker) -> None:
    """add_locker on a running broker: SIGHUP rereads the password file (Broker.add_locker waits for it)."""
    password = broker.add_locker("late-1")
    assert broker.client("late-1", password).connect() == 0


def test_broker_restart_keeps_port_and_users(broker: Broker) -> None:
    password = broker.add_locker("A")
    port = broker.port
    broker.server.restart()
    assert broker.port == port
    c = MqttClient(broker.host, broker.port, "A", password, client_id="A")
    try:
        assert c.connect() == 0
    finally:
        c.close()
