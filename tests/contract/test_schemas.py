"""The contract itself: the examples in docs/protocol.md validate, and the schemas can say no."""

from __future__ import annotations

import json
import re

import pytest

from lockertools.contract import ContractError, check, check_wire, kind_of_topic
from tests.support import REPO_ROOT

_HEADING_KIND = {"status (retained)": "status", "doors (retained)": "doors", "event": "event", "reply": "reply"}


def _doc_examples() -> list[tuple[str, dict[str, object]]]:
    """(kind, message) for every JSON example under a message heading of docs/protocol.md."""
    text = (REPO_ROOT / "docs" / "protocol.md").read_text()
    out = []
    heading = ""
    for block in re.split(r"(^#{2,3} .*$)", text, flags=re.M):
        if block.startswith("#"):
            heading = block.lstrip("#").strip()
            continue
        for example in re.findall(r"```json\n(.*?)```", block, flags=re.S):
            kind = _HEADING_KIND.get(heading, "command" if heading.startswith("Commands") else None)
            if kind is not None:
                out.append((kind, json.loads(example)))
    return out


def test_the_doc_has_an_example_of_every_message() -> None:
    assert sorted({kind for kind, _ in _doc_examples()}) == ["command", "doors", "event", "reply", "status"]


@pytest.mark.parametrize(("kind", "message"), _doc_examples())
def test_doc_examples_follow_the_contract(kind: str, message: dict[str, object]) -> None:
    check(kind, message)


@pytest.mark.parametrize(
    ("kind", "message", "field"),
    [
        ("event", {"v": 1, "lid": "a", "seq": 3, "ev": {"k": "pickup", "t": 5, "d": "A1", "id": 9, "code": "1"}}, "ev"),
        ("event", {"v": 1, "lid": "a", "seq": 3, "ev": {"k": "pickup", "t": 5}}, "ev"),
        ("event", {"v": 2, "lid": "a", "seq": 3, "ev": {"k": "boot", "t": None}}, "v"),
        ("status", {"v": 1, "lid": "a/b", "online": False}, "lid"),
        ("status", {"v": 1, "lid": "a", "online": False, "rev": 3}, "(root)"),
        ("command", {"v": 1, "lid": "a", "seq": 1, "now": 1, "exp": 2, "tx": "t", "op": "open_all"}, "op"),
        (
            "command",
            {"v": 1, "lid": "a", "seq": 1, "now": 1, "exp": 2, "tx": "t", "op": "codes.apply",
             "args": {"base": 0, "rev": 1, "add": [["0F" * 16, "A1", 0, 0, 1]]}},
            "args/add/0/0",
        ),
        ("reply", {"v": 1, "lid": "a", "tx": "t", "cseq": 5, "ok": False}, "(root)"),
        # closed: a field the schema does not declare is named
        ("status", {"v": 1, "lid": "a", "online": True, "mode": "normal", "fw": "1", "rev": 0, "snap": False,
                    "clock_ok": True}, "'clock_ok' was unexpected"),
        ("status", {"v": 1, "lid": "a", "online": False, "rev": 3}, "'rev' was unexpected"),
        ("doors", {"v": 1, "lid": "a", "t": None, "doors": [{"d": "1", "s": "jammed", "full": None}]}, "doors/0/s"),
        ("doors", {"v": 1, "lid": "a", "t": None, "doors": [{"d": "1", "s": "open", "full": None, "x": 1}]}, "doors/0"),
        ("event", {"v": 1, "lid": "a", "seq": 3, "ev": {"k": "refused", "t": 5, "r": "no", "n": 1}}, "ev/r"),
        ("event", {"v": 1, "lid": "a", "seq": 3, "ev": {"k": "boot", "t": 5}, "extra": 1}, "'extra' was unexpected"),
        ("reply", {"v": 1, "lid": "a", "tx": "t", "cseq": 5, "ok": True, "status": {"v": 1, "lid": "a", "online": True,
                   "mode": "normal", "fw": "1", "rev": 0, "snap": False, "zz": 1}}, "status"),
        ("reply", {"v": 1, "lid": "a", "tx": "t", "cseq": 5, "ok": True, "result": 1}, "'result' was unexpected"),
        ("command", {"v": 1, "lid": "a", "seq": 1, "now": 1, "exp": 2, "tx": "t", "op": "time", "args": {"x": 1}},
         "args"),
        ("command", {"v": 1, "lid": "a", "seq": 1, "now": 1, "exp": 2, "tx": "t", "op": "door.open",
                     "args": {"door": "A1", "by": "ann", "force": True}}, "'force' was unexpected"),
        # staff loads, returns, remote opening: their events and ops say no too
        ("event", {"v": 1, "lid": "a", "seq": 3, "ev": {"k": "loaded", "t": 5, "d": "A1", "id": 123456}}, "ev"),
        ("event", {"v": 1, "lid": "a", "seq": 3, "ev": {"k": "returned", "t": 5, "d": "A1", "id": 0}}, "ev/id"),
        ("event", {"v": 1, "lid": "a", "seq": 3, "ev": {"k": "staff_out", "t": 5, "staff": 7, "r": "bored"}}, "ev/r"),
        ("event", {"v": 1, "lid": "a", "seq": 3, "ev": {"k": "remote_open", "t": 5, "d": "A1"}}, "ev"),
        ("event", {"v": 1, "lid": "a", "seq": 3, "ev": {"k": "staff_in", "t": 5, "staff": 7, "pin": "1"}}, "ev"),
        ("command", {"v": 1, "lid": "a", "seq": 1, "now": 1, "exp": 2, "tx": "t", "op": "door.open",
                     "args": {"door": "A1"}}, "args"),
        ("command", {"v": 1, "lid": "a", "seq": 1, "now": 1, "exp": 2, "tx": "t", "op": "door.open",
                     "args": {"door": "A1", "by": "x" * 33}}, "args/by"),
        ("command", {"v": 1, "lid": "a", "seq": 1, "now": 1, "exp": 2, "tx": "t", "op": "door.service",
                     "args": {"door": "A1", "by": "ann"}}, "args"),
        (
            "command",
            {"v": 1, "lid": "a", "seq": 1, "now": 1, "exp": 2, "tx": "t", "op": "codes.apply",
             "args": {"base": 0, "rev": 1, "add": [["0f" * 16, "*", 128, 0, 1]]}},
            "args/add/0/2",
        ),
    ],
)  # fmt: skip
def test_the_contract_refuses(kind: str, message: dict[str, object], field: str) -> None:
    with pytest.raises(ContractError, match=re.escape(field)):
        check(kind, message)


def test_check_wire_needs_the_right_key_and_topic() -> None:

    from locker import protocol  # type: ignore[import-not-found]
    from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

    key = bytes(range(32))
    wire = protocol.sign(HmacKey(key), b'{"v":1,"lid":"hall-1","online":false}')
    assert check_wire("lockers/hall-1/status", wire, key)["online"] is False
    with pytest.raises(ContractError, match="bad_signature"):
        check_wire("lockers/hall-1/status", wire, bytes(32))
    with pytest.raises(ContractError, match="does not match"):
        check_wire("lockers/hall-2/status", wire, key)
    with pytest.raises(ContractError, match="not lockers"):
        kind_of_topic("lockers/hall-1/secrets")


def test_door_free_rows_loads_by_size_and_staff_ids_pass() -> None:
    """Door-free rows with any kind byte up to 127, loads by size (`id` 0), the staff id."""
    row = ["0f" * 16, "*", 3 | 2 << 4 | 64, 1800000000, 482913]
    check("command", {"v": 1, "lid": "a", "seq": 1, "now": 1, "exp": 2, "tx": "t", "op": "codes.snapshot",
                      "args": {"rev": 3, "part": 1, "parts": 1, "total": 1, "codes": [row]}})  # fmt: skip
    for ev in [
        {"k": "loaded", "t": 5, "d": "A1", "id": 0, "staff": 7, "low": 0, "sensor": 0},
        {"k": "load_abandoned", "t": 5, "d": "A1", "id": 0, "staff": 7},
        {"k": "return_empty", "t": 5, "d": "A1", "id": 9},
        {"k": "taken_back", "t": None, "d": "A1", "id": 9, "staff": 7},
        {"k": "door_service", "t": 5, "d": "A1", "on": False, "staff": 7},
        {"k": "denied", "t": 5, "r": "not_loaded", "id": 123456},
        {"k": "staff_out", "t": 5, "staff": 7, "r": "timeout"},
    ]:
        check("event", {"v": 1, "lid": "a", "seq": 4, "ev": ev})
    check("reply", {"v": 1, "lid": "a", "tx": "t", "cseq": 5, "ok": True, "d": "A1", "on": True})


def _open_objects(node: object, where: str) -> list[str]:
    """Where a schema declares an object's properties but lets others through."""
    out: list[str] = []
    if isinstance(node, dict):
        declares = node.get("type") == "object" and "properties" in node
        if declares and node.get("additionalProperties") is not False:
            out.append(where)
        for k, v in node.items():
            out += _open_objects(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _open_objects(v, f"{where}/{i}")
    return out


@pytest.mark.parametrize("name", ["common", "status", "doors", "event", "reply", "command"])
def test_the_schemas_are_closed(name: str) -> None:
    """Every object the protocol defines lists its fields: a field a sender adds without the schema
    fails the contract tests (tests/contract/test_firmware_messages.py) instead of slipping through."""
    schema = json.loads((REPO_ROOT / "protocol" / "schemas" / f"{name}.json").read_text())
    assert _open_objects(schema, name) == []
