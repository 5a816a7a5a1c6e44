"""The whole firmware on the simulated board, online: a real mosquitto on loopback, and a paho-mqtt
client in the test playing the host (signing commands with the firmware's own protocol module,
checking every signature of what the locker sends). docs/protocol.md is the contract.

Every wait is a condition wait with a deadline; every broker, board and client is stopped at the end.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockertools import flash
from lockertools.broker import BrokerSetup
from lockertools.commands import CommandSigner
from lockertools.contract import check_wire
from lockertools.sim import NET_HEAP, TLS_HEAP, VirtualBoard, default_micropython
from tests.support.mosquitto import Mosquitto, MqttClient, wait_until
from tests.support.settings import FAST_TIMINGS

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "boards" / "esp32-4door.json"
LID = "hall-1"
CODE = "48291357"
NEW_CODE = "73519824"
FAST = FAST_TIMINGS
WAIT = 20.0  # a reconnect after a broker restart takes the client's backoff (1, 2, 4 s ...)
# For measuring the smallest heap that works (docs/simulator.md): LOCKER_NET_HEAP=150K pytest tests/net
HEAP = os.getenv("LOCKER_NET_HEAP") or NET_HEAP
THE_TLS_HEAP = os.getenv("LOCKER_TLS_HEAP") or TLS_HEAP

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]


class Host:
    """The host's side, on a real MQTT connection: signs commands, checks what the locker sends."""

    def __init__(self, client: MqttClient, lid: str, key: bytes) -> None:
        self.c = client
        self.lid = lid
        self.key = key
        self.signer = CommandSigner(lid, key)
        self.board: VirtualBoard | None = None  # its log goes into a failed wait's message

    def topic(self, leaf: str) -> str:
        return f"lockers/{self.lid}/{leaf}"

    def messages(self, leaf: str) -> list[dict[str, Any]]:
        """Every message on the locker's `leaf` topic, each checked as it travelled: signature, lid,
        and the contract's schema (lockertools.contract)."""
        topic = self.topic(leaf)
        return [check_wire(topic, m.payload, self.key) for m in self.c.received(topic)]

    def wait(self, leaf: str, pred: Any, what: str, timeout: float = WAIT) -> dict[str, Any]:
        def found() -> bool:
            return any(pred(m) for m in self.messages(leaf))

        try:
            self.c.wait(found, what, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.board.explain() if self.board else ''}") from None
        return next(m for m in self.messages(leaf) if pred(m))

    def events(self) -> dict[int, dict[str, Any]]:
        """seq -> event (a duplicate delivery carries the same event: checked)."""
        out: dict[int, dict[str, Any]] = {}
        for m in self.messages("events"):
            seq = m["seq"]
            assert out.get(seq, m["ev"]) == m["ev"], f"seq {seq} carried two different events"
            out[seq] = m["ev"]
        return out

    def wait_event(self, pred: Any, what: str, timeout: float = WAIT) -> dict[str, Any]:
        return self.wait("events", lambda m: pred(m["ev"]), f"event {what}", timeout)["ev"]

    def send(self, op: str, args: dict[str, Any] | None = None, retain: bool = False) -> str:
        wire = self.signer.command(op, args)
        self.c.publish(self.topic("cmd"), wire, 1, retain)
        return str(json.loads(wire[65:])["tx"])

    def call(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        tx = self.send(op, args)
        return self.wait("reply", lambda m: m.get("tx") == tx, f"the reply to {op}")

    def ack_all(self) -> list[int]:
        seqs = sorted(self.events())
        self.send("ack", {"seqs": seqs})
        return seqs


def _locker(
    tmp_path: Path,
    port: int,
    password: str,
    *,
    tls: bool = False,
    ca: Path | None = None,
    heap: str = HEAP,
    extra: dict[str, Any] | None = None,
) -> tuple[VirtualBoard, bytes]:
    broker: dict[str, Any] = {"host": "127.0.0.1", "port": port, "tls": tls, "user": LID, "password": password}
    if tls:
        broker.update(ca_file=str(ca), server_hostname="localhost")
    net: dict[str, Any] = {"broker": broker, "keepalive": 10, **(extra or {})}
    secrets = flash.prepare(
        tmp_path / "flash", BOARD, codes=[(CODE, "2", 0, 0, 501)], config_overrides=FAST, locker_id=LID, net=net
    )
    return VirtualBoard(tmp_path / "flash", heap=heap), secrets.key


@pytest.fixture
def board_cleanup() -> Iterator[list[VirtualBoard]]:
    boards: list[VirtualBoard] = []
    try:
        yield boards
    finally:
        for b in boards:
            b.close()


def _host(broker: Any, key: bytes, **kw: Any) -> Host:
    c = broker.connected(broker.host_client(**kw))
    assert c.subscribe("lockers/+/#") == 1
    return Host(c, LID, key)


def _online(host: Host, b: VirtualBoard, **match: Any) -> dict[str, Any]:
    def ok(m: dict[str, Any]) -> bool:
        return m.get("online") is True and all(m.get(k) == v for k, v in match.items())

    host.board = b
    return host.wait("status", ok, f"the locker's status {match}")


def _pickup(b: VirtualBoard, door: int, code: str) -> None:
    b.set_parcel(door, True)
    mark = b.mark()
    b.type_code(code)
    b.wait_event("solenoid", 5, since=mark, door=door, on=1)
    b.wait_event("door", 5, since=mark, door=door, open=1)
    b.set_parcel(door, False)
    b.wait_event("solenoid", 5, since=mark, door=door, on=0)
    b.close_door(door)


def _big_apply(host: Host, b: VirtualBoard, key: bytes) -> None:
    """The largest change one message carries (64 rows, about 4 KB; NEW_CODE for door 3 among them):
    the heap figures in docs/simulator.md include it. Revision 1 -> 2."""
    from locker import codes as fw_codes  # type: ignore[import-not-found]

    rows = [[fw_codes.tag(key, "3", NEW_CODE).hex(), "3", 0, 0, 502]]
    rows += [[fw_codes.tag(key, "4", "%08d" % (10000000 + i)).hex(), "4", 0, 0, 600 + i] for i in range(63)]
    reply = host.call("codes.apply", {"base": 1, "rev": 2, "add": rows, "del": []})
    assert reply["ok"] is True and reply["rev"] == 2 and reply["count"] == 65, reply
    _online(host, b, rev=2, codes=65)


def _logged(b: VirtualBoard, kind: str) -> int:
    """How many events of this kind the firmware recorded (it prints each after the outbox write)."""
    return sum(1 for ln in b.log_lines() if ln.startswith("event ") and f'"k": "{kind}"' in ln)


def _outbox_files(b: VirtualBoard) -> list[str]:
    return sorted(p.name for p in (b.flash_dir / "outbox").glob("*.ev"))


# --- the happy path -----------------------------------------------------------------------------


def test_online_sync_pickup_and_ack(tmp_path: Path, broker: Any, board_cleanup: list[VirtualBoard]) -> None:
    password = broker.add_locker(LID)
    b, key = _locker(tmp_path, broker.port, password)
    board_cleanup.append(b)
    host = _host(broker, key)
    b.boot(keep_rtc=int(time.time()))

    st = _online(host, b, rev=1)
    assert st["mode"] == "normal" and st["codes"] == 1 and st["snap"] is False
    host.wait_event(lambda e: e["k"] == "boot", "boot")
    doors = host.wait("doors", lambda m: len(m["doors"]) == 4, "the doors snapshot")
    assert doors["doors"][1] == {"d": "2", "s": "locked", "full": False}

    # A code change from the host: the reply and the next status carry the new revision.
    _big_apply(host, b, key)

    # The resident picks up with the new code: the events arrive signed, in order.
    _pickup(b, 2, NEW_CODE)
    pickup = host.wait_event(lambda e: e["k"] == "pickup", "pickup")
    assert pickup["d"] == "3" and pickup["id"] == 502
    events = host.events()
    seqs = sorted(events)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"a gap in {seqs}"
    kinds = [events[s]["k"] for s in seqs]
    assert kinds.index("unlock") < kinds.index("opened") < kinds.index("pickup"), kinds
    assert _outbox_files(b), "the events stay on flash until the host acknowledges them"
    # Doors: the parcel put in, then taken (a snapshot at most once a second: an open door that
    # shuts within the second may never show).
    host.wait("doors", lambda m: m["doors"][2]["full"] is True, "door 3 full in a snapshot")

    def emptied() -> bool:
        doors = [m["doors"][2] for m in host.messages("doors")]
        first = next(i for i, d in enumerate(doors) if d["full"] is True)
        return {"d": "3", "s": "locked", "full": False} in doors[first:]

    host.c.wait(emptied, "door 3 locked and empty in a later snapshot")

    # The host acknowledges: the outbox empties, and the locker says so.
    host.ack_all()
    b.watch(lambda: not _outbox_files(b), 10, recheck_s=0.05)
    assert _outbox_files(b) == []
    st = host.call("status")["status"]
    assert st["outbox"] == 0 and st["rev"] == 2
    print(f"\nfree heap during a plain MQTT session: {st['heap']} bytes (heap {HEAP})")
    b.send_console("status")
    b.wait_log('"outbox": 0')

    # status and doors are retained: a host that subscribes later gets them at once. (The broker
    # takes the user name as client id: the first host session makes way.)
    host.c.close()
    late = _host(broker, key, client_id="late", clean_session=True)
    late.c.wait(lambda: len(late.c.received(late.topic("status"))) > 0, "the retained status")
    late.c.wait(lambda: len(late.c.received(late.topic("doors"))) > 0, "the retained doors")
    assert all(m.retain for m in late.c.received(late.topic("status")) + late.c.received(late.topic("doors")))


# --- refusals -----------------------------------------------------------------------------------


def test_retained_forged_and_oversized_commands_are_refused(
    tmp_path: Path, broker: Any, board_cleanup: list[VirtualBoard]
) -> None:
    password = broker.add_locker(LID)
    b, key = _locker(tmp_path, broker.port, password)
    board_cleanup.append(b)
    host = _host(broker, key)
    # A retained "open" would act at every boot: waiting for the locker before it ever connects.
    host.send("time", retain=True)
    b.boot(keep_rtc=int(time.time()))
    _online(host, b)
    refused = host.wait_event(lambda e: e["k"] == "refused" and e["r"] == "retained", "refused: retained")
    assert refused["n"] == 1
    host.c.publish(host.topic("cmd"), b"", 1, True)  # clear it

    forger = CommandSigner(LID, bytes(32))
    host.c.publish(host.topic("cmd"), forger.command("codes.apply", {"base": 1, "rev": 9, "add": [], "del": []}))
    host.wait_event(lambda e: e["k"] == "refused" and e["r"] == "bad_signature", "refused: bad_signature")
    # Over 8 KB: skipped on the way in, never parsed, and reported.
    host.c.publish(host.topic("cmd"), b"x" * 9000)
    host.wait_event(lambda e: e["k"] == "refused" and e["r"] == "too_large", "refused: too_large")
    assert host.messages("reply") == [], "a refused command gets no reply"
    assert host.call("status")["status"]["rev"] == 1  # nothing changed


# --- the last will ------------------------------------------------------------------------------


def test_last_will_on_power_cut(tmp_path: Path, broker: Any, board_cleanup: list[VirtualBoard]) -> None:
    password = broker.add_locker(LID)
    b, key = _locker(tmp_path, broker.port, password)
    board_cleanup.append(b)
    host = _host(broker, key)
    b.boot(keep_rtc=int(time.time()))
    _online(host, b)
    b.power_cut()
    will = host.wait("status", lambda m: m.get("online") is False, "the last will")
    assert will == {"v": 1, "lid": LID, "online": False}
    # Retained: a host that comes later sees the locker offline too.
    late = _host(broker, key, client_id="late", clean_session=True)
    late.c.wait(lambda: bool(late.messages("status")), "the retained status")
    assert late.messages("status")[-1]["online"] is False


# --- the broker dies ----------------------------------------------------------------------------


def test_broker_killed_and_restarted_loses_no_event(
    tmp_path: Path, broker: Any, board_cleanup: list[VirtualBoard], fault_proxy_factory: Any
) -> None:
    password = broker.add_locker(LID)
    # The locker reaches the broker through a proxy, so the test can let it back in only once the
    # host has resubscribed: the broker lost the host's session too (killed before it saved), and an
    # event published before the host is back would wait for the locker's 30 s resend.
    proxy = fault_proxy_factory(broker.port)
    b, key = _locker(tmp_path, proxy.port, password)
    board_cleanup.append(b)
    host = _host(broker, key, reconnect=True)
    b.boot(keep_rtc=int(time.time()))
    _online(host, b)
    host.wait_event(lambda e: e["k"] == "boot", "boot")

    broker.server.kill()  # SIGKILL: whatever the broker had not saved is gone
    host.c.wait(lambda: not host.c.connected, "the host to see the broker gone")
    for i in range(3):  # events while the broker is down: wrong codes (denied)
        b.type_code("11112222")
        b.wait_for(lambda n=i + 1: _logged(b, "denied") >= n, 5, "the wrong code refused")  # type: ignore[misc]
    b.open_door(0)
    b.wait_for(lambda: _logged(b, "forced") >= 1, 5, "the door seen forced open")
    b.close_door(0)
    b.wait_for(lambda: _logged(b, "closed") >= 1, 5, "the door seen closed")
    on_flash = _outbox_files(b)
    assert len(on_flash) >= 6, on_flash
    proxy.cut()
    resubscribed = host.c.resubscribed
    broker.server.start()
    host.c.wait(lambda: host.c.connected and host.c.resubscribed > resubscribed, "the host back, subscribed", WAIT)
    proxy.heal()

    want = {int(name[:10]) for name in on_flash}

    def all_there() -> bool:
        return want <= set(host.events())

    try:
        host.c.wait(all_there, "every queued event after the reconnect", WAIT * 2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: missing {sorted(want - set(host.events()))}\n{b.explain()}") from None
    kinds = [e["k"] for e in host.events().values()]
    assert kinds.count("denied") == 3 and "forced" in kinds and "closed" in kinds
    host.ack_all()
    b.watch(lambda: not _outbox_files(b), 10, recheck_s=0.05)
    assert _outbox_files(b) == []


# --- TLS ----------------------------------------------------------------------------------------


def test_tls_with_the_fleet_ca(tmp_path: Path, tls_broker: Any, board_cleanup: list[VirtualBoard]) -> None:
    password = tls_broker.add_locker(LID)
    b, key = _locker(tmp_path, tls_broker.port, password, tls=True, ca=tls_broker.setup.ca_path, heap=THE_TLS_HEAP)
    board_cleanup.append(b)
    host = _host(tls_broker, key)
    b.boot(keep_rtc=int(time.time()))
    st = _online(host, b, rev=1)
    host.wait_event(lambda e: e["k"] == "boot", "boot")
    # Free heap during the TLS session (the figure), as the locker reports it.
    st = host.call("status")["status"]
    print(f"\nfree heap during a TLS session: {st['heap']} bytes (heap {THE_TLS_HEAP})")
    assert st["heap"] > 0
    _big_apply(host, b, key)
    _pickup(b, 1, CODE)
    host.wait_event(lambda e: e["k"] == "pickup", "pickup over TLS")


def test_tls_broker_with_another_ca_is_refused(
    tmp_path: Path, tls_broker: Any, board_cleanup: list[VirtualBoard]
) -> None:
    password = tls_broker.add_locker(LID)
    other = BrokerSetup(tmp_path / "other-ca", port=None, tls_port=0, names=["localhost"])
    other.write()  # a CA of its own: its certificate is not the broker's
    b, key = _locker(tmp_path, tls_broker.port, password, tls=True, ca=other.ca_path, heap=THE_TLS_HEAP)
    board_cleanup.append(b)
    host = _host(tls_broker, key)
    b.boot(keep_rtc=int(time.time()))
    line = b.wait_log("net error:", WAIT)
    assert "CA" in line or "certificate" in line.lower() or "verif" in line.lower(), line
    b.wait_for(lambda: "ready normal" in "\n".join(b.log_lines()), 5, "the locker running offline")
    assert host.messages("status") == []
    # Offline, the locker still works: a pickup goes to the outbox.
    _pickup(b, 1, CODE)
    b.wait_for(lambda: _logged(b, "pickup") >= 1, 10, "the pickup event")
    assert host.messages("events") == []


# --- net.json -----------------------------------------------------------------------------------


def test_corrupt_net_json_is_a_problem_not_a_crash(tmp_path: Path, board_cleanup: list[VirtualBoard]) -> None:
    flash.prepare(tmp_path / "flash", BOARD, codes=[(CODE, "2")], config_overrides=FAST, locker_id=LID)
    (tmp_path / "flash" / "net.json").write_text('{"broker": {"host": 12}')
    b = VirtualBoard(tmp_path / "flash")
    board_cleanup.append(b)
    b.boot(keep_rtc=int(time.time()))
    b.wait_log("ready normal")
    line = b.wait_for(lambda: next((ln for ln in b.log_lines() if '"problem"' in ln and "net" in ln), ""), 5)
    assert "offline" in line
    assert not any("net up" in ln for ln in b.log_lines())


def test_no_broker_yet_the_locker_works_and_catches_up(tmp_path: Path, board_cleanup: list[VirtualBoard]) -> None:
    """The broker is down at boot (and Wi-Fi set): the locker runs; once it is up, events flow."""
    setup = BrokerSetup(tmp_path / "broker", port=0, tls_port=None)
    host_password = setup.add_host("host")
    password = setup.add_locker(LID)
    b, key = _locker(tmp_path, int(setup.port or 0), password, extra={"wifi": {"ssid": "hall", "password": "x"}})
    board_cleanup.append(b)
    b.boot(keep_rtc=int(time.time()))
    _pickup(b, 1, CODE)
    b.wait_for(lambda: _logged(b, "pickup") >= 1, 10, "the pickup, offline")
    server = Mosquitto(setup)
    with server, MqttClient(server.host, int(setup.port or 0), "host", host_password, client_id="host") as c:
        assert c.connect() == 0
        c.subscribe("lockers/+/#")
        host = Host(c, LID, key)
        host.board = b
        host.wait_event(lambda e: e["k"] == "pickup", "the pickup made offline", 90)
        wait_until(lambda: "boot" in [e["k"] for e in host.events().values()], 5, "the boot event")


# --- wired Ethernet ----------------------------------------------------------------------------

POE_BOARD = ROOT / "boards" / "esp32-poe-8door-mcp.json"


def test_ethernet_board_offline_until_the_cable_is_plugged(
    tmp_path: Path, broker: Any, board_cleanup: list[VirtualBoard]
) -> None:
    """A board with an "ethernet" section and net.json "ethernet": true brings the PHY up with the
    board definition's wiring; with the cable pulled at power-on it serves a pickup offline, and
    once the cable goes in it comes online and the pickup reaches the host."""
    password = broker.add_locker(LID)
    net = {
        "broker": {"host": "127.0.0.1", "port": broker.port, "tls": False, "user": LID, "password": password},
        "ethernet": True,
        "keepalive": 10,
    }
    secrets = flash.prepare(
        tmp_path / "flash", POE_BOARD, codes=[(CODE, "2", 0, 0, 501)], config_overrides=FAST, locker_id=LID, net=net
    )
    b = VirtualBoard(tmp_path / "flash", heap=HEAP, env={"LOCKER_SIM_ETH": "off"})
    board_cleanup.append(b)
    host = _host(broker, secrets.key)
    host.board = b
    b.boot(keep_rtc=int(time.time()))
    lan = b.wait_event("lan", 10)
    wiring = {k: lan[k] for k in ("mdc", "mdio", "power", "ref_clk", "addr", "phy", "clk_out")}
    assert wiring == {"mdc": 23, "mdio": 18, "power": 12, "ref_clk": 17, "addr": 0, "phy": 1, "clk_out": 1}
    _pickup(b, 1, CODE)
    b.wait_for(lambda: _logged(b, "pickup") >= 1, 10, "the pickup, offline")
    assert not [m for m in host.messages("status") if m.get("online") is True], "online with the cable pulled"
    b.cable(True)
    _online(host, b)
    host.wait_event(
        lambda e: e["k"] == "pickup" and e.get("d") == "2" and e.get("id") == 501, "the pickup made offline"
    )


def test_ethernet_in_net_json_without_an_ethernet_section_is_a_problem(
    tmp_path: Path, board_cleanup: list[VirtualBoard]
) -> None:
    net = {"broker": {"host": "127.0.0.1", "port": 1883, "tls": False, "user": LID, "password": "x"}, "ethernet": True}
    flash.prepare(tmp_path / "flash", BOARD, codes=[(CODE, "2")], config_overrides=FAST, locker_id=LID, net=net)
    b = VirtualBoard(tmp_path / "flash")
    board_cleanup.append(b)
    b.boot(keep_rtc=int(time.time()))
    b.wait_log("ready normal")
    line = b.wait_for(lambda: next((ln for ln in b.log_lines() if '"problem"' in ln and "ethernet" in ln), ""), 5)
    assert "ethernet: not in board.json" in line and "offline" in line
    _pickup(b, 1, CODE)  # the doors still work
    b.wait_for(lambda: _logged(b, "pickup") >= 1, 10, "the pickup, offline")
