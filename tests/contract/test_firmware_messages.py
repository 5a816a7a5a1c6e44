"""Every message the real firmware sends keeps the contract (protocol/schemas, closed where the
protocol is): captured, not written by hand.

- Online: the whole firmware under MicroPython on the simulated board, against a real mosquitto,
  driven through each command (every op, its errors, a re-sent tx), each refusal reason, a pickup
  and the resident's refusals, and its last will. Every status, doors, event and reply message the
  locker published is checked as it travelled (signature, lid, schema).
- Offline: the scenario files for the staff, return and alarm flows, played on the simulated board;
  each event they left in the outbox is wrapped as the uplink sends it (`protocol.event_payload`,
  signed) and checked.

Either fails on a field the schema does not declare, and on an event kind or reply the runs were
meant to reach and did not.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockertools import flash
from lockertools.commands import CommandSigner
from lockertools.contract import ContractError, check, check_wire
from lockertools.sim import NET_HEAP, VirtualBoard, default_micropython
from lockertools.sim.scenario import Runner, load
from tests.support.mosquitto import MqttClient
from tests.support.settings import FAST_TIMINGS

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "boards" / "esp32-4door.json"
SCENARIOS = ROOT / "tests" / "scenarios"
LID = "hall-1"
CODE = "48291357"  # door 2, id 501
WAIT = 20.0
LEAVES = ("status", "doors", "events", "reply")

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]


class Host:
    """The host's side on a real MQTT connection: every command it sends is checked against the
    command schema first (unless it is meant to break the rules); every message from the locker is
    checked as it travelled."""

    def __init__(self, client: MqttClient, key: bytes, board: VirtualBoard) -> None:
        self.c = client
        self.key = key
        self.board = board
        self.signer = CommandSigner(LID, key)

    def topic(self, leaf: str) -> str:
        return f"lockers/{LID}/{leaf}"

    def messages(self, leaf: str) -> list[dict[str, Any]]:
        topic = self.topic(leaf)
        return [check_wire(topic, m.payload, self.key) for m in self.c.received(topic)]

    def wait(self, leaf: str, pred: Any, what: str) -> dict[str, Any]:
        def found() -> bool:
            return any(pred(m) for m in self.messages(leaf))

        try:
            self.c.wait(found, what, WAIT)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.board.explain()}") from None
        return next(m for m in self.messages(leaf) if pred(m))

    def wait_event(self, what: str, **match: Any) -> dict[str, Any]:
        def pred(m: dict[str, Any]) -> bool:
            return all(m["ev"].get(k) == v for k, v in match.items())

        return self.wait("events", pred, f"event {what} {match}")["ev"]

    def publish(self, wire: bytes, retain: bool = False) -> None:
        self.c.publish(self.topic("cmd"), wire, 1, retain)

    def wire(self, op: str, args: dict[str, Any] | None = None, **kw: Any) -> bytes:
        wire = self.signer.command(op, args, **kw)
        check("command", json.loads(wire[65:]))
        return wire

    def resent(self, wire: bytes) -> bytes:
        """The command again as a host re-sends it: the same tx under a new seq."""
        from locker import protocol  # type: ignore[import-not-found]
        from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

        cmd = json.loads(wire[65:])
        fresh = json.loads(self.wire(cmd["op"], cmd["args"])[65:])
        payload = protocol.encode(cmd | {"seq": fresh["seq"], "now": fresh["now"], "exp": fresh["exp"]})
        check("command", json.loads(payload))
        signed: bytes = protocol.sign(HmacKey(self.key), payload)
        return signed

    def call_wire(self, wire: bytes) -> dict[str, Any]:
        seq = json.loads(wire[65:])["seq"]
        self.publish(wire)
        return self.wait("reply", lambda m: m["cseq"] == seq, f"the reply to {wire[65:120]!r}")

    def call(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call_wire(self.wire(op, args))


@pytest.fixture
def board_cleanup() -> Iterator[list[VirtualBoard]]:
    boards: list[VirtualBoard] = []
    try:
        yield boards
    finally:
        for b in boards:
            b.close()


def _row(key: bytes, door: str, code: str, code_id: int, exp: int = 0) -> list[Any]:
    from locker import codes as fw_codes  # type: ignore[import-not-found]

    return [fw_codes.tag(key, door, code).hex(), door, 0, exp, code_id]


def _pickup(b: VirtualBoard, door: int, code: str) -> None:
    b.set_parcel(door, True)
    mark = b.mark()
    b.type_code(code)
    b.wait_event("solenoid", 5, since=mark, door=door, on=1)
    b.wait_event("door", 5, since=mark, door=door, open=1)  # the spring pushes it open
    b.set_parcel(door, False)
    b.wait_event("solenoid", 5, since=mark, door=door, on=0)
    b.close_door(door)


def test_every_message_the_firmware_sends_online_is_in_the_schema(
    tmp_path: Path, broker: Any, board_cleanup: list[VirtualBoard]
) -> None:
    password = broker.add_locker(LID)
    net = {"broker": {"host": "127.0.0.1", "port": broker.port, "tls": False, "user": LID, "password": password}}
    config = {**FAST_TIMINGS, "grace_ms": 0}
    secrets = flash.prepare(
        tmp_path / "flash", BOARD, codes=[(CODE, "2", 0, 0, 501)], config_overrides=config, locker_id=LID, net=net
    )
    key = secrets.key
    b = VirtualBoard(tmp_path / "flash", heap=NET_HEAP)
    board_cleanup.append(b)
    c = broker.connected(broker.host_client())
    assert c.subscribe("lockers/+/#") == 1
    host = Host(c, key, b)

    # A retained command waits for the locker before it ever connects: refused (`retained`).
    host.publish(host.wire("time"), retain=True)
    b.boot(keep_rtc=int(time.time()))
    st = host.wait("status", lambda m: m["online"] is True, "the locker online")
    assert st["time_known"] is True and st["cseq"] == 0, st
    host.wait_event("boot", k="boot")
    host.wait("doors", lambda m: len(m["doors"]) == 4, "the doors")
    host.wait_event("refused: retained", k="refused", r="retained")
    # Clearing it (an empty retained publish) reaches the subscribed locker as an empty message.
    host.publish(b"", retain=True)
    host.wait_event("refused: malformed", k="refused", r="malformed")

    # Every op, with the errors a host meets.
    assert host.call("time")["ok"] is True
    status_cmd = host.wire("status")
    status = host.call_wire(status_cmd)["status"]
    assert status["cseq"] == json.loads(status_cmd[65:])["seq"] and len(status["doors"]) == 4, status
    assert host.call("diag")["diag"]["rev"] == 1
    assert host.call("selftest.keys", {"on": True})["keys"]
    assert host.call("selftest.keys", {"on": False})["s"] == 0
    new = _row(key, "3", "73519824", 502)
    wrong_base = host.call("codes.apply", {"base": 7, "rev": 8, "add": [new], "del": []})
    assert wrong_base["error"] == "revision_mismatch" and wrong_base["rev"] == 1
    apply = host.wire("codes.apply", {"base": 1, "rev": 2, "add": [new], "del": []})
    assert host.call_wire(apply)["count"] == 2
    host.publish(apply)  # the same command again: a replay, refused
    host.wait_event("refused: replay", k="refused", r="replay", op="codes.apply")
    assert host.call_wire(host.resent(apply))["dup"] is True  # the same tx under a new seq: done once
    rows = sorted([_row(key, "2", CODE, 501), new, _row(key, "4", "99887766", 503, exp=int(time.time()) - 60)])
    snap = {"rev": 3, "parts": 2, "total": 3}
    assert host.call("codes.snapshot", {**snap, "part": 1, "codes": rows[:2]})["part"] == 1
    assert host.call("codes.snapshot", {**snap, "part": 2, "codes": rows[2:]})["count"] == 3
    out_of_order = host.call("codes.snapshot", {**snap, "part": 2, "codes": rows[2:]})
    assert out_of_order["error"] == "snapshot_order" and out_of_order["detail"]
    assert host.call("codes.replace", {"rev": 4, "codes": rows})["rev"] == 4
    assert host.call("door.service", {"door": "1", "on": False, "by": "desk-ann"})["on"] is False
    assert host.call("door.open", {"door": "1", "by": "desk-ann"})["error"] == "out_of_service"
    assert host.call("door.service", {"door": "1", "on": True, "by": "desk-ann"})["on"] is True
    mark = b.mark()
    assert host.call("door.open", {"door": "1", "by": "desk-ann", "r": "phone"})["d"] == "1"
    host.wait_event("opened", k="opened", d="1")  # the spring pushed it open
    b.wait_event("solenoid", 5, since=mark, door=0, on=0)
    b.close_door(0)
    host.wait_event("closed", k="closed", d="1")
    assert host.call("door.open", {"door": "Z9", "by": "desk-ann"})["error"] == "bad_args"
    unknown = host.signer.command("open_all")  # not in the command schema: the locker's answer is
    assert host.call_wire(unknown)["error"] == "unknown_op"
    # Application updates: the replies of a staging, its status, and its errors.
    data = b"print('hello')\n"
    files = [{"path": "locker/hello.py", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    begun = host.call("app.begin", {"version": "9.9.9", "count": 1, "size": len(data), "files": files})
    assert begun["need"] == len(data) and begun["version"] == "9.9.9", begun
    assert host.call("app.chunk", {"path": "locker/hello.py", "off": 5, "data": ""})["error"] == "offset"
    assert host.call("app.chunk", {"path": "other.py", "off": 0, "data": ""})["error"] == "unknown_path"
    chunk = {"path": "locker/hello.py", "off": 0, "data": base64.b64encode(data).decode()}
    assert host.call("app.chunk", chunk)["have"] == len(data)
    assert host.call("app.status")["staged"]["ready"] is True
    assert host.call("app.files", {"files": files})["ok"] is False  # more than `count`: bad_args
    assert host.call("app.abort")["ok"] is True
    assert host.call("app.chunk", chunk)["error"] == "not_staged"

    # Refusals: each reason once (each has its own 10 s window, so each is recorded at once).
    host.publish(CommandSigner(LID, bytes(32)).command("time"))
    host.wait_event("refused: bad_signature", k="refused", r="bad_signature")
    host.publish(CommandSigner("hall-2", key).command("time"))
    host.wait_event("refused: wrong_locker", k="refused", r="wrong_locker")
    host.publish(host.signer.command("time", ttl_s=-60))
    host.wait_event("refused: expired", k="refused", r="expired")
    host.publish(b"x" * 9000)
    host.wait_event("refused: too_large", k="refused", r="too_large")

    # The resident: a pickup, then the same code again (used), a wrong one, an expired one.
    _pickup(b, 1, CODE)
    host.wait_event("pickup", k="pickup", d="2", id=501)
    b.type_code(CODE)
    host.wait_event("denied: used", k="denied", r="used")
    b.type_code("11112222")
    host.wait_event("denied: wrong", k="denied", r="wrong")
    b.type_code("99887766")
    host.wait_event("denied: expired", k="denied", r="expired")
    host.publish(host.wire("ack", {"seqs": sorted(m["seq"] for m in host.messages("events"))}))
    assert host.call("status")["status"]["outbox"] == 0  # commands run in order: the ack first

    # Gone: the broker publishes the last will.
    b.power_cut()
    host.wait("status", lambda m: m["online"] is False, "the last will")

    # Every message checked (messages() validates each); and the runs reached what they were for.
    seen = {leaf: host.messages(leaf) for leaf in LEAVES}
    kinds = {m["ev"]["k"] for m in seen["events"]}
    assert kinds >= {"boot", "refused", "remote_open", "door_service", "opened", "closed", "unlock", "pickup"}, kinds
    assert {m["ev"]["r"] for m in seen["events"] if m["ev"]["k"] == "refused"} == {
        "retained", "malformed", "replay", "bad_signature", "wrong_locker", "expired", "too_large"
    }  # fmt: skip
    reply_fields = set().union(*(m.keys() for m in seen["reply"]))
    assert reply_fields >= {"dup", "error", "detail", "rev", "count", "part", "status", "d", "on", "s", "keys", "diag"}
    assert reply_fields >= {"files", "need", "version", "have", "app", "staged", "swap", "trial", "rollback"}
    assert {m["online"] for m in seen["status"]} == {True, False}


# Offline flows that reach the events an online run cannot easily: staff sessions, loads, returns,
# take-backs, alarms, power cuts, damaged files.
_FLOWS = (
    "staff_load_delivery",
    "staff_load_bad_paths",
    "staff_take_back",
    "staff_door_service",
    "return_item",
    "power_cut_mid_load",
    "jammed_latch",
    "forced_open",
    "door_left_open",
    "cut_sensor_wire",
    "parcel_left_inside",
    "grace_reopen",
    "corrupt_codes_partly",
    "rs485_board_silent_mid_pickup",
)
# What the flows above are there to reach. Not here: app_ok and app_rollback (an update on trial),
# throttled (100 failures in a row), pickup_undone (the power-cut campaign), refused and remote_open
# (online, above).
_KINDS = {
    "boot", "unlock", "opened", "closed", "pickup", "closed_full", "jammed", "denied",
    "left_open", "forced", "sensor_suspect", "problem", "staff_in", "staff_out", "loaded", "load_empty",
    "load_abandoned", "returned", "return_empty", "taken_back", "reopened", "door_service", "lockboard",
}  # fmt: skip


def test_every_event_of_the_staff_return_and_alarm_flows_is_in_the_schema(tmp_path: Path) -> None:
    from locker import protocol, store  # type: ignore[import-not-found]
    from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

    kinds: set[str] = set()
    checked = 0
    for name in _FLOWS:
        flash_dir = tmp_path / name
        trace = io.StringIO()
        result = Runner(load(SCENARIOS / f"{name}.yaml"), trace, flash_dir=flash_dir).run()
        assert result.passed, f"{name}: {result.failure}\n{trace.getvalue()}"
        key = bytes.fromhex((flash_dir / "locker.key").read_text())
        lid = json.loads((flash_dir / "config.json").read_text())["locker_id"]
        hkey = HmacKey(key)
        files = sorted((flash_dir / "outbox").glob("*.ev"))
        assert files, f"{name} left no event in the outbox"
        for path in files:
            raw = store.load(str(path))
            seq = int(path.stem)
            wire = protocol.sign(hkey, protocol.event_payload(lid, seq, raw))
            try:
                msg = check_wire(f"lockers/{lid}/events", wire, key)
            except ContractError as exc:
                raise AssertionError(f"{name}: {raw!r}: {exc}") from None
            kinds.add(msg["ev"]["k"])
            checked += 1
    assert kinds >= _KINDS, f"not reached: {sorted(_KINDS - kinds)}"
    print(f"\n{checked} events from {len(_FLOWS)} flows, {len(kinds)} kinds")
