"""Board validator: the shipped boards pass, and every rule names the exact field it objects to."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lockertools.boards import SIZES, Door, Report, doors, field_path, validate
from lockertools.cli.board import board_cli

ROOT = Path(__file__).resolve().parents[2]
BOARDS = sorted((ROOT / "boards").glob("*.json"))
BAD = Path(__file__).resolve().parent / "bad_boards"
FOUR = ROOT / "boards" / "esp32-4door.json"
SIXTEEN = ROOT / "boards" / "esp32-16door-mcp.json"
POE = ROOT / "boards" / "esp32-poe-8door-mcp.json"  # wired Ethernet (LAN8720, clock out on GPIO 17)
S3 = ROOT / "boards" / "esp32s3-16door-mcp.json"  # ESP32-S3-DevKitC-1 N16R8: octal PSRAM

Doc = dict[str, Any]


def load(path: Path) -> Doc:
    doc: Doc = json.loads(path.read_text())
    return doc


def check(tmp_path: Path, doc: Doc) -> Report:
    path = tmp_path / "board.json"
    path.write_text(json.dumps(doc))
    return validate(path)


def fields(issues: list[Any]) -> set[str]:
    return {i.field for i in issues}


def message(issues: list[Any], where: str) -> str:
    found = [i.message for i in issues if i.field == where]
    assert found, f"no issue at {where}: {[str(i) for i in issues]}"
    return " | ".join(found)


# --- shipped boards ----------------------------------------------------------------------------


def test_both_shipped_boards_exist() -> None:
    assert FOUR in BOARDS and SIXTEEN in BOARDS


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.name)
def test_shipped_board_has_no_error(path: Path) -> None:
    report = validate(path)
    assert report.ok, "\n".join(map(str, report.errors))


def test_16door_board_is_clean_and_uses_every_expander_pin() -> None:
    report = validate(SIXTEEN)
    assert report.errors == [] and report.warnings == []
    doc = load(SIXTEEN)
    assert len(doc["doors"]) == 16
    used = {(d[role]["expander"], d[role]["pin"]) for d in doc["doors"] for role in ("solenoid", "closed", "parcel")}
    assert len(used) == 48
    assert [x["address"] for x in doc["expanders"]] == [0x20, 0x21, 0x22]
    assert (doc["display"]["cols"], doc["display"]["rows"]) == (20, 4)
    assert len(doc["keypad"]["rows"]) == 4 and len(doc["keypad"]["cols"]) == 4


def test_s3_board_is_clean_with_octal_psram_and_every_door_on_an_expander() -> None:
    report = validate(S3)
    assert report.errors == [] and report.warnings == []
    doc = load(S3)
    assert (doc["chip"], doc["module"], doc["psram"]) == ("esp32s3", "wroom", "octal")
    assert all("expander" in d["solenoid"] for d in doc["doors"])  # no solenoid on a strapping pin
    assert doors(doc) == doors(load(SIXTEEN))  # the 16-door cabinet, on the S3


def test_4door_board_warnings_are_only_the_strapping_pins_it_chose() -> None:
    report = validate(FOUR)
    assert fields(report.warnings) == {"keypad.rows[1]", "status_led.pin", "doors[2].parcel.pin", "doors[3].parcel.pin"}
    doc = load(FOUR)
    assert len(doc["doors"]) == 4 and all("parcel" in d for d in doc["doors"])
    assert (doc["display"]["cols"], doc["display"]["rows"]) == (16, 2)
    assert len(doc["keypad"]["rows"]) * len(doc["keypad"]["cols"]) == 12


def test_poe_board_warnings_are_the_strapping_pins_an_ethernet_board_is_left_with() -> None:
    report = validate(POE)
    assert fields(report.warnings) == {
        "ethernet.power",
        "keypad.cols[0]",
        "keypad.cols[1]",
        "keypad.cols[2]",
        "buzzer.pin",
    }
    doc = load(POE)
    rmii = {19, 21, 22, 25, 26, 27, 17, 23, 18, 12}  # data pins, clock out, MDC, MDIO, PHY power
    gpios = {*doc["keypad"]["rows"], *doc["keypad"]["cols"], doc["buzzer"]["pin"], doc["i2c"]["sda"], doc["i2c"]["scl"]}
    assert not gpios & rmii


def test_4door_board_door_sizes_and_heights() -> None:
    assert doors(load(FOUR)) == [
        Door("1", "S", True),
        Door("2", "S", True),
        Door("3", "M", False),
        Door("4", "L", False),
    ]


def test_16door_board_has_every_size_and_a_low_bottom_row() -> None:
    found = doors(load(SIXTEEN))
    assert [d.label for d in found if d.low] == ["13", "14", "15", "16"]
    assert {d.size for d in found} == {"S", "M", "L"}
    assert {d.size for d in found if d.low} == {"S", "M", "L"}  # a low door for any size asked for


def test_door_fields_default_to_medium_and_not_low() -> None:
    doc = load(FOUR)
    for d in doc["doors"]:
        d.pop("size", None)
        d.pop("low", None)
    assert doors(doc) == [Door(label, "M", False) for label in ("1", "2", "3", "4")]
    assert [Door("x", s, False).size_class for s in SIZES] == [1, 2, 3]


def test_issue_text_names_file_and_field(tmp_path: Path) -> None:
    doc = load(FOUR)
    doc["doors"][2]["solenoid"]["pin"] = 7
    report = check(tmp_path, doc)
    assert str(report.errors[0]) == (
        f"{tmp_path / 'board.json'}: doors[2].solenoid.pin: "
        "GPIO 7 is wired to the SPI flash (GPIO 6-11); using it bricks the board"
    )


def test_s3_issue_text_names_file_and_field(tmp_path: Path) -> None:
    doc = load(S3)
    doc["keypad"]["rows"][2] = 36
    report = check(tmp_path, doc)
    assert [str(e) for e in report.errors] == [
        f"{tmp_path / 'board.json'}: keypad.rows[2]: GPIO 36 is taken by the octal PSRAM (GPIO 33-37 on modules "
        "such as the ESP32-S3 N8R8 and N16R8): use another pin, or a module with quad PSRAM (N8R2)"
    ]


def test_s3_pins_the_classic_rules_would_refuse_are_fine(tmp_path: Path) -> None:
    """No input-only pins, no MTDI on GPIO 12, pulls everywhere; 33-37 are free with quad PSRAM."""
    doc = load(S3)
    doc["psram"] = "quad"  # an N8R2
    doc["keypad"]["rows"] = [35, 36, 37, 12]  # outputs on what are input-only pins on the classic ESP32
    doc["keypad"]["cols"] = [34, 39, 47, 48]  # pulled-up inputs
    doc["buzzer"]["pin"] = 38
    report = check(tmp_path, doc)
    assert report.errors == [] and report.warnings == []


def test_field_path_format() -> None:
    assert field_path(["doors", 2, "solenoid", "pin"]) == "doors[2].solenoid.pin"
    assert field_path([]) == ""


# --- one failing example per rule ---------------------------------------------------------------

Mutator = Callable[[Doc], None]


def _set(path: str, value: Any) -> Mutator:
    """_set("doors.0.solenoid.pin", 7): assign one value by a dotted path (ints index lists)."""

    def mutate(doc: Doc) -> None:
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
        node: Any = doc
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value

    return mutate


def _delete(path: str) -> Mutator:
    def mutate(doc: Doc) -> None:
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
        node: Any = doc
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]

    return mutate


def _all(*mutators: Mutator) -> Mutator:
    def mutate(doc: Doc) -> None:
        for m in mutators:
            m(doc)

    return mutate


# (id, base board, mutation, field, words the message must contain)
ERRORS: list[tuple[str, Path, Mutator, str, str]] = [
    ("gpio-20-missing", FOUR, _set("doors.0.solenoid.pin", 20), "doors[0].solenoid.pin", "doesn't exist"),
    ("gpio-24-missing", FOUR, _set("keypad.rows.0", 24), "keypad.rows[0]", "doesn't exist"),
    ("gpio-30-missing", FOUR, _set("doors.1.parcel.pin", 30), "doors[1].parcel.pin", "doesn't exist"),
    ("gpio-40-missing", FOUR, _set("buzzer.pin", 40), "buzzer.pin", "doesn't exist"),
    ("flash-pin", FOUR, _set("doors.2.solenoid.pin", 7), "doors[2].solenoid.pin", "SPI flash"),
    ("flash-pin-input", FOUR, _set("doors.0.closed.pin", 11), "doors[0].closed.pin", "SPI flash"),
    ("input-only-solenoid", FOUR, _set("doors.0.solenoid.pin", 38), "doors[0].solenoid.pin", "input-only"),
    ("input-only-row", FOUR, _set("keypad.rows.0", 37), "keypad.rows[0]", "input-only"),
    ("input-only-buzzer", FOUR, _set("buzzer.pin", 37), "buzzer.pin", "input-only"),
    ("input-only-led", FOUR, _set("status_led.pin", 38), "status_led.pin", "input-only"),
    ("input-only-i2c", FOUR, _set("i2c.sda", 38), "i2c.sda", "input-only"),
    ("input-only-pull-up", FOUR, _set("doors.0.closed.pull", "up"), "doors[0].closed.pull", "external resistor"),
    ("input-only-pull-down", FOUR, _set("doors.3.closed.pull", "down"), "doors[3].closed.pull", "external"),
    ("input-only-keypad-col", FOUR, _set("keypad.cols.1", 37), "keypad.cols[1]", "internal pull-up"),
    ("gpio-twice", FOUR, _set("doors.1.solenoid.pin", 16), "doors[1].solenoid.pin", "doors[0].solenoid.pin"),
    ("gpio-twice-across-roles", FOUR, _set("buzzer.pin", 13), "buzzer.pin", "keypad.rows[0]"),
    ("gpio-twice-i2c", FOUR, _set("i2c.scl", 21), "i2c.scl", "i2c.sda"),
    (
        "expander-pin-twice",
        SIXTEEN,
        _set("doors.5.closed.pin", 4),
        "doors[5].closed.pin",
        "expander x1 pin 4 is already used by doors[4].closed.pin",
    ),
    ("expander-pin-16", SIXTEEN, _set("doors.0.solenoid.pin", 16), "doors[0].solenoid.pin", "0-15"),
    ("expander-pin-negative", SIXTEEN, _set("doors.0.parcel.pin", -1), "doors[0].parcel.pin", "0-15"),
    ("unknown-expander", SIXTEEN, _set("doors.3.closed.expander", "x7"), "doors[3].closed.expander", "'x7'"),
    ("expander-address-twice", SIXTEEN, _set("expanders.2.address", 0x20), "expanders[2].address", "expanders[0]"),
    ("expander-address-low", SIXTEEN, _set("expanders.0.address", 0x1F), "expanders[0].address", "0x20-0x27"),
    ("expander-address-high", SIXTEEN, _set("expanders.1.address", 0x28), "expanders[1].address", "0x20-0x27"),
    ("expander-name-twice", SIXTEEN, _set("expanders.1.name", "x0"), "expanders[1].name", "twice"),
    ("mcp-pull-down", SIXTEEN, _set("doors.2.parcel.pull", "down"), "doors[2].parcel.pull", "pull-ups only"),
    ("display-on-expander-address", SIXTEEN, _set("display.address", 0x21), "display.address", "expanders[1]"),
    ("display-not-i2c-address", FOUR, _set("display.address", 0x78), "display.address", "7-bit"),
    ("display-too-big", FOUR, _all(_set("display.cols", 40), _set("display.rows", 4)), "display.cols", "80"),
    ("keys-too-few", FOUR, _set("keypad.keys", "123456789*0"), "keypad.keys", "need 12"),
    ("keys-too-many", SIXTEEN, _set("keypad.keys", "123A456B789C*0#DE"), "keypad.keys", "need 16"),
    ("keys-extra-col", FOUR, _set("keypad.cols", [26, 25, 33, 32]), "keypad.keys", "need 16"),
    ("mtdi-input", FOUR, _set("doors.0.parcel.pin", 12), "doors[0].parcel.pin", "1.8 V"),
    ("mtdi-keypad-col", FOUR, _set("keypad.cols.0", 12), "keypad.cols[0]", "1.8 V"),
    ("mtdi-active-low-output", FOUR, _set("status_led", {"pin": 12, "active_low": True}), "status_led.pin", "1.8 V"),
    ("mtdi-pulled-up-output", FOUR, _set("status_led", {"pin": 12, "pull": "up"}), "status_led.pull", "pull it up"),
    ("wrover-psram", FOUR, _set("module", "wrover"), "doors[0].solenoid.pin", "PSRAM"),
    ("no-i2c-for-display", FOUR, _delete("i2c"), "i2c", "required"),
    ("no-i2c-for-expanders", SIXTEEN, _all(_delete("i2c"), _delete("display")), "i2c", "expanders"),
    ("label-twice", FOUR, _set("doors.3.label", "1"), "doors[3].label", "doors[0]"),
    ("buzzer-on-expander", SIXTEEN, _set("buzzer", {"expander": "x0", "pin": 3}), "buzzer.pin", "PWM"),
    ("ethernet-rmii-i2c", POE, _set("i2c.sda", 21), "i2c.sda", "RMII TX_EN is GPIO 21 on every ESP32"),
    ("ethernet-rmii-keypad", POE, _set("keypad.rows.0", 27), "keypad.rows[0]", "RMII CRS_DV"),
    ("ethernet-on-4door-pins", FOUR, _set("ethernet", load(POE)["ethernet"]), "keypad.rows[3]", "RMII CRS_DV"),
    ("ethernet-mdc-flash", POE, _set("ethernet.mdc", 6), "ethernet.mdc", "SPI flash"),
    ("ethernet-mdio-input-only", POE, _set("ethernet.mdio", 35), "ethernet.mdio", "input-only"),
    ("ethernet-clock-out-wrover", POE, _set("module", "wrover"), "ethernet.clock", "PSRAM"),
    ("ethernet-clock-in-on-keypad", POE, _set("ethernet.clock", "in0"), "keypad.cols[2]", "ethernet.clock"),
    ("ethernet-power-on-mdc", POE, _set("ethernet.power", 23), "ethernet.power", "ethernet.mdc"),
    ("wrover-quad", FOUR, _all(_set("module", "wrover"), _set("psram", "quad")), "doors[1].solenoid.pin", "PSRAM"),
    ("esp32-octal-psram", FOUR, _set("psram", "octal"), "psram", "no octal PSRAM"),
    ("esp32-wroom-with-psram", FOUR, _set("psram", "quad"), "psram", '"module": "wrover"'),
    ("wrover-without-psram", SIXTEEN, _all(_set("module", "wrover"), _set("psram", "none")), "psram", "every WROVER"),
    ("s3-wrover", S3, _set("module", "wrover"), "module", "no ESP32-S3 WROVER"),
    ("s3-ethernet", S3, _set("ethernet", load(POE)["ethernet"]), "ethernet", "ESP32-S3 has no Ethernet MAC"),
    ("s3-gpio-22", S3, _set("buzzer.pin", 22), "buzzer.pin", "doesn't exist on the ESP32-S3 (valid: 0-21, 26-48"),
    ("s3-gpio-49", S3, _set("keypad.cols.3", 49), "keypad.cols[3]", "doesn't exist on the ESP32-S3"),
    ("s3-flash", S3, _set("keypad.rows.1", 30), "keypad.rows[1]", "SPI flash and PSRAM (GPIO 26-32); using it bricks"),
    ("s3-psram-cs", S3, _set("i2c.scl", 26), "i2c.scl", "GPIO 26-32"),
    ("s3-octal-psram", S3, _set("status_led.pin", 33), "status_led.pin", "octal PSRAM"),
    ("s3-octal-psram-37", S3, _set("keypad.cols.0", 37), "keypad.cols[0]", "octal PSRAM"),
    ("s3-usb-dminus", S3, _set("buzzer.pin", 19), "buzzer.pin", "USB D-"),
    ("s3-usb-dplus", S3, _set("i2c.sda", 20), "i2c.sda", "USB D+"),
    ("s3-gpio45-input", S3, _set("keypad.cols.2", 45), "keypad.cols[2]", "VDD_SPI"),
    ("s3-gpio45-active-low", S3, _set("status_led", {"pin": 45, "active_low": True}), "status_led.pin", "1.8 V"),
    ("s3-gpio45-pulled-up", S3, _set("status_led", {"pin": 45, "pull": "up"}), "status_led.pull", "pull it up"),
    ("s3-gpio-twice", S3, _set("buzzer.pin", 21), "status_led.pin", "GPIO 21 is already used by buzzer.pin"),
]


@pytest.mark.parametrize(("base", "mutate", "where", "words"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_error_rule_names_the_field(tmp_path: Path, base: Path, mutate: Mutator, where: str, words: str) -> None:
    doc = copy.deepcopy(load(base))
    mutate(doc)
    report = check(tmp_path, doc)
    assert not report.ok
    assert words in message(report.errors, where)


WARNINGS: list[tuple[str, Path, Mutator, str, str]] = [
    ("strapping-0", FOUR, _set("keypad.cols.0", 0), "keypad.cols[0]", "download mode"),
    ("strapping-2", SIXTEEN, _set("status_led.pin", 2), "status_led.pin", "strapping"),
    ("strapping-5", FOUR, _set("doors.2.parcel.pin", 5), "doors[2].parcel.pin", "strapping"),
    ("strapping-15", FOUR, _set("doors.3.parcel.pin", 15), "doors[3].parcel.pin", "strapping"),
    ("mtdi-plain-output", FOUR, _set("keypad.rows.1", 12), "keypad.rows[1]", "1.8 V"),
    ("uart0-tx", SIXTEEN, _set("status_led.pin", 1), "status_led.pin", "console"),
    ("uart0-rx", SIXTEEN, _set("keypad.cols.0", 3), "keypad.cols[0]", "console"),
    ("gpio-37-not-on-module", FOUR, _set("doors.0.closed.pin", 37), "doors[0].closed.pin", "not brought out"),
    ("pull-on-output", FOUR, _set("doors.0.solenoid.pull", "down"), "doors[0].solenoid.pull", "ignored"),
    ("pull-on-expander-output", SIXTEEN, _set("doors.0.solenoid.pull", "up"), "doors[0].solenoid.pull", "ignored"),
    (
        "unused-expander",
        SIXTEEN,
        _set("expanders", [*load(SIXTEEN)["expanders"], {"name": "x3", "type": "mcp23017", "address": 0x23}]),
        "expanders[3]",
        "no pin uses it",
    ),
    ("display-not-pcf8574", FOUR, _set("display.address", 0x50), "display.address", "PCF8574"),
    ("display-fast-bus", FOUR, _set("i2c.freq", 400000), "i2c.freq", "100 kHz"),
    ("duplicate-keys", FOUR, _set("keypad.keys", "123456789*00"), "keypad.keys", "'0'"),
    ("ethernet-power-mtdi", POE, _set("name", "poe"), "ethernet.power", "1.8 V"),
    ("s3-strapping-0", S3, _set("keypad.cols.0", 0), "keypad.cols[0]", "download mode"),
    ("s3-strapping-3", S3, _set("keypad.rows.0", 3), "keypad.rows[0]", "JTAG"),
    ("s3-strapping-46", S3, _set("buzzer.pin", 46), "buzzer.pin", "GPIO 46 is a strapping pin"),
    ("s3-gpio45-plain-output", S3, _set("status_led.pin", 45), "status_led.pin", "VDD_SPI"),
    ("s3-uart0-tx", S3, _set("status_led.pin", 43), "status_led.pin", "UART0 TX0"),
    ("s3-uart0-rx", S3, _set("keypad.cols.1", 44), "keypad.cols[1]", "UART0 RX0"),
    (
        "ethernet-clock-in-gpio0",
        POE,
        _all(_set("ethernet.clock", "in0"), _set("keypad.cols.2", 17)),
        "ethernet.clock",
        "oscillator must stay off during reset",
    ),
]


@pytest.mark.parametrize(("base", "mutate", "where", "words"), [w[1:] for w in WARNINGS], ids=[w[0] for w in WARNINGS])
def test_warning_rule_names_the_field(tmp_path: Path, base: Path, mutate: Mutator, where: str, words: str) -> None:
    doc = copy.deepcopy(load(base))
    mutate(doc)
    report = check(tmp_path, doc)
    assert report.ok, "\n".join(map(str, report.errors))
    assert words in message(report.warnings, where)


# --- structure (schema) -------------------------------------------------------------------------

SCHEMA_ERRORS: list[tuple[str, Path, Mutator, str, str]] = [
    ("missing-doors", FOUR, _delete("doors"), "doors", "required"),
    ("missing-closed", FOUR, _delete("doors.1.closed"), "doors[1].closed", "required"),
    ("unknown-field", FOUR, _set("doors.0.latch", {"pin": 4}), "doors[0].latch", "unknown field"),
    ("pin-not-int", FOUR, _set("doors.0.solenoid.pin", "16"), "doors[0].solenoid.pin", "not of type"),
    ("bad-pull", FOUR, _set("doors.0.parcel.pull", "sideways"), "doors[0].parcel.pull", "sideways"),
    ("bad-chip", FOUR, _set("chip", "esp32c3"), "chip", "'esp32', 'esp32s3'"),
    ("bad-psram", S3, _set("psram", "opi"), "psram", "'none', 'quad', 'octal'"),
    ("no-doors", FOUR, _set("doors", []), "doors", "non-empty"),
    ("bad-expander-type", SIXTEEN, _set("expanders.0.type", "pcf8574"), "expanders[0].type", "mcp23017"),
    ("size-unknown", FOUR, _set("doors.2.size", "XL"), "doors[2].size", """door '3': size "XL" is not a size class"""),
    ("size-lowercase", FOUR, _set("doors.0.size", "m"), "doors[0].size", '"S", "M" or "L" (default "M")'),
    ("size-number", SIXTEEN, _set("doors.15.size", 2), "doors[15].size", "door '16': size 2 is not"),
    ("low-string", FOUR, _set("doors.1.low", "yes"), "doors[1].low", """door '2': low "yes" is not a boolean"""),
    ("low-number", SIXTEEN, _set("doors.12.low", 1), "doors[12].low", "door '13': low 1 is not a boolean"),
    ("low-null", FOUR, _set("doors.3.low", None), "doors[3].low", "use true (reachable from a wheelchair"),
    ("ethernet-phy-unknown", POE, _set("ethernet.phy", "W5500"), "ethernet.phy", "W5500"),
    ("ethernet-addr-32", POE, _set("ethernet.addr", 32), "ethernet.addr", "32"),
    ("ethernet-no-mdc", POE, _delete("ethernet.mdc"), "ethernet.mdc", "required"),
    ("ethernet-clock-out-18", POE, _set("ethernet.clock", "out18"), "ethernet.clock", "out18"),
]


@pytest.mark.parametrize(
    ("base", "mutate", "where", "words"), [s[1:] for s in SCHEMA_ERRORS], ids=[s[0] for s in SCHEMA_ERRORS]
)
def test_schema_error_names_the_field(tmp_path: Path, base: Path, mutate: Mutator, where: str, words: str) -> None:
    doc = copy.deepcopy(load(base))
    mutate(doc)
    report = check(tmp_path, doc)
    assert words in message(report.errors, where)


def test_not_json_is_an_error_with_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x",\n  "chip": "esp32"\n  "doors": []}')
    report = validate(path)
    assert len(report.errors) == 1
    assert "line 3" in str(report.errors[0]) and str(path) in str(report.errors[0])


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    report = validate(tmp_path / "nope.json")
    assert not report.ok and "can't read" in str(report.errors[0])


# --- the deliberately broken boards ------------------------------------------------------------


def test_bad_gpio_board_reports_every_mistake() -> None:
    report = validate(BAD / "gpio-mistakes.json")
    assert fields(report.errors) == {
        "status_led.pin",  # GPIO 20
        "keypad.cols[2]",  # 34: no internal pull-up
        "doors[0].closed.pin",  # 34 again
        "doors[1].solenoid.pin",  # 36 is input-only
        "doors[1].closed.pull",  # pull on 35
        "doors[2].solenoid.pin",  # 7 is flash
    }
    assert "keypad.cols[2]" in message(report.errors, "doors[0].closed.pin")


def test_bad_expander_board_reports_every_mistake() -> None:
    report = validate(BAD / "expander-mistakes.json")
    assert fields(report.errors) == {
        "expanders[1].address",
        "expanders[2].address",
        "display.address",
        "keypad.keys",
        "doors[0].solenoid.pin",
        "doors[0].closed.expander",
        "doors[0].parcel.pull",
        "doors[1].closed.pin",
    }
    assert fields(report.warnings) == {"expanders[2]"}


def test_bad_door_class_board_reports_every_mistake() -> None:
    report = validate(BAD / "door-class-mistakes.json")
    assert fields(report.errors) == {
        "doors[0].size",  # "XL"
        "doors[1].size",  # "s": size classes are upper case
        "doors[1].low",  # "yes"
        "doors[2].size",  # 2
        "doors[2].low",  # 0 is not false
        "doors[3].height",  # not a field
    }
    assert message(report.errors, "doors[0].size") == (
        'door \'A1\': size "XL" is not a size class: use "S", "M" or "L" (default "M")'
    )
    assert message(report.errors, "doors[1].low") == (
        "door 'A2': low \"yes\" is not a boolean: use true (reachable from a wheelchair, below about 1.2 m) "
        "or false (the default)"
    )
    assert "unknown field" in message(report.errors, "doors[3].height")
    assert "low" in message(report.errors, "doors[3].height") and "size" in message(report.errors, "doors[3].height")


def test_bad_s3_board_reports_every_mistake() -> None:
    report = validate(BAD / "s3-mistakes.json")
    assert fields(report.errors) == {
        "i2c.sda",  # 20: USB D+
        "keypad.rows[3]",  # 29: flash
        "keypad.cols[1]",  # 35: octal PSRAM
        "keypad.cols[2]",  # 45: flash voltage strap, as an input
        "buzzer.pin",  # 24 is not a GPIO on the S3
        "doors[0].closed.pin",  # 12 again: the clash is still found
    }
    assert fields(report.warnings) == {"status_led.pin"}  # 46: strapping
    assert "keypad.rows[0]" in message(report.errors, "doors[0].closed.pin")


# --- command line --------------------------------------------------------------------------------


def test_cli_check_passes_shipped_boards_and_prints_warnings() -> None:
    result = CliRunner().invoke(board_cli, ["check", str(FOUR), str(SIXTEEN)])
    assert result.exit_code == 0, result.output
    assert f"{FOUR}: ok (4 warnings)" in result.output
    assert f"{SIXTEEN}: ok (0 warnings)" in result.output
    assert "warning: " in result.output and "keypad.rows[1]" in result.output


def test_cli_check_exits_1_on_any_error() -> None:
    result = CliRunner().invoke(board_cli, ["check", str(SIXTEEN), str(BAD / "gpio-mistakes.json")])
    assert result.exit_code == 1
    assert "error: " in result.output and "doors[2].solenoid.pin: GPIO 7 is wired to the SPI flash" in result.output
    assert "FAILED (6 errors, 1 warning)" in result.output


def test_cli_check_needs_a_file() -> None:
    result = CliRunner().invoke(board_cli, ["check"])
    assert result.exit_code == 2
