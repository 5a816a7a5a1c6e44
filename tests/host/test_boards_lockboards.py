"""The board file's `lockboards` section (RS485 lock-control boards) and doors on lock boards:
`lockerctl board check` names the field and says what is wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from lockertools.boards import doors, validate

ROOT = Path(__file__).resolve().parents[2]
RS485 = ROOT / "boards" / "esp32-32door-rs485.json"
FOUR = ROOT / "boards" / "esp32-4door.json"

Doc = dict[str, Any]


def load(path: Path) -> Doc:
    doc: Doc = json.loads(path.read_text())
    return doc


def issues(tmp_path: Path, doc: Doc) -> tuple[list[str], list[str]]:
    path = tmp_path / "board.json"
    path.write_text(json.dumps(doc))
    report = validate(path)
    return [f"{i.field}: {i.message}" for i in report.errors], [f"{i.field}: {i.message}" for i in report.warnings]


def test_the_32_door_board_is_clean_two_boards_of_16_locks() -> None:
    report = validate(RS485)
    assert report.ok and not report.warnings, [str(i) for i in report.errors + report.warnings]
    doc = load(RS485)
    assert [b["address"] for b in doc["lockboards"]["boards"]] == [0, 1]
    assert len(doors(doc)) == 32
    locks = {(d["lock"]["board"], d["lock"]["lock"]) for d in doc["doors"]}
    assert locks == {(b, n) for b in (0, 1) for n in range(1, 17)}


def _err(tmp_path: Path, doc: Doc, where: str, words: str) -> None:
    errors, _ = issues(tmp_path, doc)
    found = [e for e in errors if e.startswith(where + ": ")]
    assert found and any(words in e for e in found), errors


def test_a_lock_on_an_undeclared_board(tmp_path: Path) -> None:
    doc = load(RS485)
    doc["doors"][3]["lock"]["board"] = 5
    _err(tmp_path, doc, "doors[3].lock.board", "no lock board at address 5 (declared: 0, 1)")


def test_two_doors_on_one_lock(tmp_path: Path) -> None:
    doc = load(RS485)
    doc["doors"][20]["lock"] = {"board": 0, "lock": 2, "infrared": True}
    _err(tmp_path, doc, "doors[20].lock", "board 0 lock 2 is already door '2'")


def test_lock_numbers_are_1_to_16(tmp_path: Path) -> None:
    doc = load(RS485)
    doc["doors"][0]["lock"]["lock"] = 0
    _err(tmp_path, doc, "doors[0].lock.lock", "0")
    doc["doors"][0]["lock"]["lock"] = 17
    _err(tmp_path, doc, "doors[0].lock.lock", "17")


def test_a_door_on_a_lock_board_has_no_pins_of_its_own(tmp_path: Path) -> None:
    doc = load(RS485)
    doc["doors"][1]["solenoid"] = {"pin": 15}
    _err(tmp_path, doc, "doors[1].solenoid", "is on a lock board (lock)")


def test_a_lock_without_a_lockboards_section(tmp_path: Path) -> None:
    doc = load(FOUR)
    door = doc["doors"][0]
    for k in ("solenoid", "closed", "parcel"):
        door.pop(k)
    door["lock"] = {"board": 0, "lock": 1}
    _err(tmp_path, doc, "doors[0].lock", "no lockboards section")


def test_a_door_with_neither_pins_nor_lock(tmp_path: Path) -> None:
    doc = load(RS485)
    del doc["doors"][7]["lock"]
    _err(tmp_path, doc, "doors[7].solenoid", 'required field is missing (or "lock", on a lock board)')
    doc = load(FOUR)
    del doc["doors"][2]["closed"]
    _err(tmp_path, doc, "doors[2].closed", "required field is missing")


def test_board_addresses_are_unique_and_0_to_15(tmp_path: Path) -> None:
    doc = load(RS485)
    doc["lockboards"]["boards"][1]["address"] = 0
    _err(tmp_path, doc, "lockboards.boards[1].address", "already used by lockboards.boards[0]")
    doc["lockboards"]["boards"][1]["address"] = 16
    _err(tmp_path, doc, "lockboards.boards[1].address", "16")


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("tx", 36, "input-only"),
        ("de", 38, "input-only"),
        ("rx", 7, "SPI flash"),
        ("de", 13, "keypad.rows[0]"),
        ("tx", 21, "i2c.sda"),
    ],
)
def test_uart_and_direction_pins_follow_the_gpio_rules(tmp_path: Path, field: str, value: int, words: str) -> None:
    doc = load(RS485)
    doc["lockboards"][field] = value
    _err(tmp_path, doc, f"lockboards.{field}", words)


def test_uart_pins_on_a_wrover_are_psram(tmp_path: Path) -> None:
    doc = load(RS485)
    doc["module"] = "wrover"
    _err(tmp_path, doc, "lockboards.tx", "PSRAM")


@pytest.mark.parametrize(
    ("field", "value"), [("uart", 0), ("baud", 4800), ("type", "modbus"), ("poll_ms", 5), ("poll_ms", 5000)]
)
def test_section_values_are_checked(tmp_path: Path, field: str, value: Any) -> None:
    doc = load(RS485)
    doc["lockboards"][field] = value
    _err(tmp_path, doc, f"lockboards.{field}", str(value))


def test_a_declared_board_no_door_uses_is_a_warning(tmp_path: Path) -> None:
    doc = copy.deepcopy(load(RS485))
    doc["lockboards"]["boards"].append({"address": 4, "locks": 16})
    errors, warnings = issues(tmp_path, doc)
    assert errors == []
    assert warnings == ["lockboards.boards[2]: lock board 4 is declared but no door uses it"]
