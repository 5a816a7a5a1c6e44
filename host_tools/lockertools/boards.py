"""Board definition checks (boards/*.json): structure by JSON schema, then the wiring rules of the board's chip
(the classic ESP32 or the ESP32-S3, refined by its module and PSRAM: ChipRules).

`validate(path)` returns a `Report`; every `Issue` names the file and the JSON field, e.g.
``boards/x.json: doors[2].solenoid.pin: GPIO 7 is wired to the SPI flash (GPIO 6-11); using it bricks
the board``.
The ``lockerctl board`` commands are lockertools.cli.board.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

SCHEMA_PATH = Path(__file__).with_name("board_schema.json")


@dataclass(frozen=True)
class ChipRules:
    """What one chip's GPIOs allow: the board file's `chip` picks one (CHIPS), `module`/`psram` refine it."""

    chip: str  # the board file's "chip"
    title: str  # for messages: "ESP32", "ESP32-S3"
    valid: frozenset[int]
    valid_text: str  # the valid numbers, for the message on any other
    flash: frozenset[int]  # wired to the module's flash (and PSRAM): using one bricks the board
    flash_text: str
    quad_psram: frozenset[int]  # taken by quad PSRAM (WROVER on the classic ESP32)
    octal_psram: frozenset[int]  # taken too when the module has octal PSRAM (ESP32-S3 N8R8, N16R8)
    input_only: frozenset[int]
    not_on_module: frozenset[int]
    usb: dict[int, str]  # native USB D-/D+: the USB port's REPL and esptool
    console: dict[int, str]  # UART0: the boot log and the REPL
    strapping: dict[int, str]
    voltage_strap: int | None  # the strapping pin that selects the flash voltage at reset
    voltage_strap_text: str
    has_emac: bool


# Classic ESP32 (ESP32-D0WD in WROOM-32 / WROVER modules).
ESP32 = ChipRules(
    chip="esp32",
    title="ESP32",
    valid=frozenset([*range(0, 20), 21, 22, 23, 25, 26, 27, *range(32, 40)]),
    valid_text="0-19, 21-23, 25-27, 32-39; no 20, 24, 28-31",
    flash=frozenset(range(6, 12)),
    flash_text="is wired to the SPI flash (GPIO 6-11)",
    quad_psram=frozenset([16, 17]),
    octal_psram=frozenset(),
    input_only=frozenset(range(34, 40)),
    not_on_module=frozenset([37, 38]),
    usb={},
    console={1: "TX0", 3: "RX0"},
    strapping={
        0: "GPIO 0 is a strapping pin: held low at reset it starts the serial download mode, not the firmware",
        2: "GPIO 2 is a strapping pin: it must be low or floating at reset for serial flashing to work",
        5: "GPIO 5 is a strapping pin (SDIO timing) and outputs a PWM burst at boot",
        15: "GPIO 15 (MTDO) is a strapping pin: low at reset it silences the boot log; it outputs PWM at boot",
    },
    voltage_strap=12,
    voltage_strap_text=(
        "GPIO 12 (MTDI) sets the flash voltage at reset: held high it selects 1.8 V and the 3.3 V flash "
        "of WROOM/WROVER modules won't boot"
    ),
    has_emac=True,
)
# ESP32-S3 (WROOM-1/-1U/-2 modules). Datasheet facts: GPIO 0-21 and 26-48; 26-32 run the flash and
# PSRAM, 33-37 too when either is octal; 19/20 are the USB PHY; strapping pins 0, 3, 45, 46;
# every GPIO has an output driver and internal pulls; UART0 (the console) is on 43/44.
ESP32S3 = ChipRules(
    chip="esp32s3",
    title="ESP32-S3",
    valid=frozenset([*range(0, 22), *range(26, 49)]),
    valid_text="0-21, 26-48; no 22-25",
    flash=frozenset(range(26, 33)),
    flash_text="is wired to the module's SPI flash and PSRAM (GPIO 26-32)",
    quad_psram=frozenset(),
    octal_psram=frozenset(range(33, 38)),
    input_only=frozenset(),
    not_on_module=frozenset(),
    usb={19: "D-", 20: "D+"},
    console={43: "TX0", 44: "RX0"},
    strapping={
        0: "GPIO 0 is a strapping pin: held low at reset it starts the download mode, not the firmware",
        3: "GPIO 3 is a strapping pin: with the JTAG e-fuses set, its level at reset picks the JTAG source",
        46: "GPIO 46 is a strapping pin: high at reset it stops the download mode (with GPIO 0 low) and "
        "controls the ROM's boot messages",
    },
    voltage_strap=45,
    voltage_strap_text=(
        "GPIO 45 is a strapping pin that sets the flash voltage (VDD_SPI) at reset: held high it selects "
        "1.8 V and the 3.3 V flash of WROOM-1 modules won't boot"
    ),
    has_emac=False,
)
CHIPS = {rules.chip: rules for rules in (ESP32, ESP32S3)}
PSRAM_KINDS = ("none", "quad", "octal")


def chip_rules(doc: dict[str, Any]) -> ChipRules:
    return CHIPS[str(doc.get("chip", "esp32"))]


def psram(doc: dict[str, Any]) -> str:
    """The board's PSRAM: "none", "quad" or "octal"; default "quad" on a WROVER, else "none"."""
    return str(doc.get("psram", "quad" if doc.get("module") == "wrover" else "none"))


# Wired Ethernet: the EMAC's RMII signals have no route through the GPIO matrix, so these pins are
# fixed in silicon; the 50 MHz reference clock comes in on GPIO 0 or goes out on GPIO 16 or 17.
RMII_GPIOS = {
    19: ("TXD0", True),
    21: ("TX_EN", True),
    22: ("TXD1", True),
    25: ("RXD0", False),
    26: ("RXD1", False),
    27: ("CRS_DV", False),
}
RMII_CLOCKS = {"in0": (0, False), "out16": (16, True), "out17": (17, True)}
MCP23017_ADDRESSES = range(0x20, 0x28)
PCF8574_ADDRESSES = frozenset([*range(0x20, 0x28), *range(0x38, 0x40)])
PCF8574_MAX_FREQ = 100_000
HD44780_MAX_CHARS = 80


@dataclass(frozen=True)
class Issue:
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.field else f"{self.file}: {self.message}"


@dataclass
class Report:
    file: str
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, where: str, message: str) -> None:
        self.errors.append(Issue(self.file, where, message))

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(Issue(self.file, where, message))


@dataclass(frozen=True)
class _Use:
    """One pin as the firmware will drive it."""

    where: str  # JSON field of the pin number
    spec_path: str  # JSON path of the pin spec object ("" for bare ints in keypad lists)
    role: str
    output: bool
    pull: str | None
    pull_is_implicit: bool  # the firmware asks for it (keypad columns), not the board file
    active_low: bool
    expander: str | None
    pin: int


def field_path(parts: Iterable[str | int]) -> str:
    """JSON path in the form used in messages: doors[2].solenoid.pin."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _hex(n: int) -> str:
    return f"0x{n:02X} ({n})"


def _load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def _schema_issues(doc: Any, report: Report) -> None:
    validator = Draft202012Validator(_load_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: (field_path(e.absolute_path), e.message))
    for err in errors:
        parts: list[str | int] = list(err.absolute_path)
        if err.validator == "required":
            missing = [name for name in err.validator_value if name not in err.instance]
            for name in missing:
                report.error(field_path([*parts, name]), "required field is missing")
            continue
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = set(err.schema.get("properties", {}))
            for name in sorted(set(err.instance) - known):
                report.error(field_path([*parts, name]), f"unknown field (allowed: {', '.join(sorted(known))})")
            continue
        door_hint = _door_field_hint(doc, parts, err.instance)
        report.error(field_path(parts) or "(top level)", door_hint or err.message)


SIZES = ("S", "M", "L")  # size classes, smallest first; the firmware numbers them 1..3
DEFAULT_SIZE = "M"


def _door_field_hint(doc: Any, parts: list[str | int], value: Any) -> str | None:
    """A clearer message for a bad doors[i].size / doors[i].low: which door (by label), which field, what's allowed."""
    if len(parts) != 3 or parts[0] != "doors" or not isinstance(parts[1], int) or parts[2] not in ("size", "low"):
        return None
    door = doc["doors"][parts[1]]
    label = door.get("label") if isinstance(door, dict) else None
    which = f"door {label!r}" if isinstance(label, str) else f"door #{parts[1] + 1}"
    if parts[2] == "size":
        return f'{which}: size {json.dumps(value)} is not a size class: use "S", "M" or "L" (default "M")'
    return (
        f"{which}: low {json.dumps(value)} is not a boolean: use true (reachable from a wheelchair, "
        "below about 1.2 m) or false (the default)"
    )


@dataclass(frozen=True)
class Door:
    """A door as the locker and the host service see it: label, size class ("S"/"M"/"L"), low or not."""

    label: str
    size: str
    low: bool

    @property
    def size_class(self) -> int:
        """1 (S), 2 (M) or 3 (L): the number the firmware's Board.sizes and the code rows' size bits use."""
        return SIZES.index(self.size) + 1


def doors(doc: dict[str, Any]) -> list[Door]:
    """The doors of a (validated) board definition, defaults filled in: size "M", low false."""
    return [Door(str(d["label"]), str(d.get("size", DEFAULT_SIZE)), bool(d.get("low", False))) for d in doc["doors"]]


def door_sizes(doc: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Each door's size class and low flag by label (what the fleet database keeps of them)."""
    return {d.label: (d.size, d.low) for d in doors(doc)}


def _pin_spec_use(spec: dict[str, Any], path: str, role: str, output: bool) -> _Use:
    return _Use(
        where=f"{path}.pin",
        spec_path=path,
        role=role,
        output=output,
        pull=spec.get("pull"),
        pull_is_implicit=False,
        active_low=bool(spec.get("active_low", False)),
        expander=spec.get("expander"),
        pin=int(spec["pin"]),
    )


def _ethernet_uses(eth: dict[str, Any]) -> list[_Use]:
    """The PHY's pins: the fixed RMII ones first, so a clash is reported on the other role's field."""
    uses = [
        _Use(
            f"ethernet (RMII {sig} is GPIO {n} on every ESP32)",
            "",
            f"Ethernet RMII {sig}",
            out,
            None,
            False,
            False,
            None,
            n,
        )
        for n, (sig, out) in RMII_GPIOS.items()
    ]
    n, out = RMII_CLOCKS[eth["clock"]]
    uses.append(_Use("ethernet.clock", "", "Ethernet reference clock", out, None, False, False, None, n))
    uses.append(_Use("ethernet.mdc", "", "Ethernet MDC", True, None, False, False, None, eth["mdc"]))
    uses.append(_Use("ethernet.mdio", "", "Ethernet MDIO", True, None, False, False, None, eth["mdio"]))
    if eth.get("power") is not None:
        uses.append(_Use("ethernet.power", "", "PHY power switch", True, None, False, False, None, eth["power"]))
    return uses


def _collect_uses(doc: dict[str, Any]) -> list[_Use]:
    uses: list[_Use] = _ethernet_uses(doc["ethernet"]) if "ethernet" in doc else []
    i2c = doc.get("i2c")
    if i2c is not None:
        for line in ("sda", "scl"):
            uses.append(_Use(f"i2c.{line}", "", f"I2C {line.upper()}", True, None, False, False, None, i2c[line]))
    keypad = doc["keypad"]
    for i, n in enumerate(keypad["rows"]):
        uses.append(_Use(f"keypad.rows[{i}]", "", "keypad row", True, None, False, False, None, n))
    for i, n in enumerate(keypad["cols"]):
        uses.append(_Use(f"keypad.cols[{i}]", "", "keypad column", False, "up", True, False, None, n))
    if "buzzer" in doc:
        uses.append(_pin_spec_use(doc["buzzer"], "buzzer", "buzzer", True))
    if "status_led" in doc:
        uses.append(_pin_spec_use(doc["status_led"], "status_led", "status LED", True))
    lb = doc.get("lockboards")
    if lb is not None:
        uses.append(_Use("lockboards.tx", "", "RS485 transmit (DI)", True, None, False, False, None, lb["tx"]))
        uses.append(_Use("lockboards.rx", "", "RS485 receive (RO)", False, None, False, False, None, lb["rx"]))
        uses.append(_Use("lockboards.de", "", "RS485 direction (DE/RE)", True, None, False, False, None, lb["de"]))
    for i, door in enumerate(doc["doors"]):
        if "lock" in door:
            continue  # on a lock board: no pins of its own (_check_lock_doors)
        uses.append(_pin_spec_use(door["solenoid"], f"doors[{i}].solenoid", "solenoid", True))
        uses.append(_pin_spec_use(door["closed"], f"doors[{i}].closed", "door sensor", False))
        if "parcel" in door:
            uses.append(_pin_spec_use(door["parcel"], f"doors[{i}].parcel", "parcel sensor", False))
    return uses


def _pull_field(use: _Use) -> str:
    return use.where if use.pull_is_implicit or not use.spec_path else f"{use.spec_path}.pull"


def _check_gpio(use: _Use, doc: dict[str, Any], report: Report) -> bool:
    """Rules for one GPIO of the board's chip. Returns False when the number is unusable (skip the clash check)."""
    n = use.pin
    rules = chip_rules(doc)
    if n not in rules.valid:
        report.error(use.where, f"GPIO {n} doesn't exist on the {rules.title} (valid: {rules.valid_text})")
        return False
    if n in rules.flash:
        report.error(use.where, f"GPIO {n} {rules.flash_text}; using it bricks the board")
        return False
    kind = psram(doc)
    if n in rules.quad_psram and kind != "none":
        report.error(use.where, f"GPIO {n} is taken by the PSRAM on WROVER modules")
    if n in rules.octal_psram and kind == "octal":
        report.error(
            use.where,
            f"GPIO {n} is taken by the octal PSRAM (GPIO 33-37 on modules such as the {rules.title} N8R8 "
            "and N16R8): use another pin, or a module with quad PSRAM (N8R2)",
        )
    if n in rules.usb:
        report.error(
            use.where,
            f"GPIO {n} is USB {rules.usb[n]} (GPIO 19/20): the {rules.title}'s USB port carries the console "
            f"and esptool, and its PHY holds the lines at reset: the {use.role} needs another pin",
        )
    if n in rules.input_only:
        if use.output:
            report.error(
                use.where,
                f"GPIO {n} is input-only (GPIO 34-39 have no output driver): the {use.role} needs an output",
            )
        elif use.pull is not None:
            if use.pull_is_implicit:
                report.error(
                    use.where,
                    f"GPIO {n} has no internal pull resistors (GPIO 34-39), and the {use.role} relies on the "
                    "internal pull-up: use a pin from 0-33",
                )
            else:
                report.error(
                    _pull_field(use),
                    f"GPIO {n} has no internal pull-up/down (GPIO 34-39): fit an external resistor "
                    f'(e.g. 10 kOhm to 3.3 V for "up") and set "pull" to null',
                )
        if n in rules.not_on_module:
            report.warn(use.where, f"GPIO {n} exists on the chip but is not brought out on WROOM/WROVER modules")
    if n == rules.voltage_strap:
        _check_voltage_strap(use, rules.voltage_strap_text, report)
    elif n == 0 and use.role == "Ethernet reference clock":
        report.warn(
            use.where,
            "GPIO 0 takes the PHY's 50 MHz clock and is a strapping pin: the oscillator must stay off during "
            "reset (enabled by ethernet.power, as on the WT32-ETH01), or the board may start in download mode",
        )
    elif n in rules.strapping:
        report.warn(use.where, rules.strapping[n] + "; make sure the " + use.role + " can't upset booting")
    if n in rules.console:
        report.warn(
            use.where,
            f"GPIO {n} is UART0 {rules.console[n]}, the REPL/boot console: the {use.role} will see boot "
            "messages and lose the console",
        )
    if use.output and use.pull is not None and not use.pull_is_implicit:
        report.warn(_pull_field(use), f'"pull" is ignored on an output ({use.role})')
    return True


def _check_voltage_strap(use: _Use, base: str, report: Report) -> None:
    """The strapping pin that selects the flash voltage when the chip comes out of reset (GPIO 12 on
    the ESP32, GPIO 45 on the ESP32-S3).

    High at reset = 1.8 V flash; the modules carry 3.3 V flash and then fail to boot or crash at
    random. The firmware's own settings are gone during reset, so what matters is what the wiring does to
    the line then. An input's level is set by its source (a sensor output, a switch with an external
    pull-up): that can hold the pin high at reset, so inputs are refused. So are active-low outputs
    (they need the line held high to be off, typically by an external pull-up) and any pull-up. A plain
    active-high output idles low and only draws a warning.
    """
    n = use.pin
    if not use.output:
        report.error(
            use.where,
            f"{base}; the {use.role} input can hold it high at reset (sensor output, external pull-up, "
            f"pressed switch): use GPIO {n} only for an active-high output",
        )
    elif use.active_low:
        report.error(
            use.where,
            f"{base}; an active-low {use.role} is off when the line is high, i.e. high during reset: "
            f"use GPIO {n} only for an active-high output",
        )
    elif use.pull == "up":
        report.error(_pull_field(use), f"{base}; don't pull it up")
    else:
        report.warn(use.where, f"{base}; keep anything on the {use.role} line from pulling it up")


def _check_chip(doc: dict[str, Any], report: Report) -> bool:
    """The chip, its module and PSRAM agree. False when they don't (the pin rules would mislead)."""
    rules = chip_rules(doc)
    module = doc.get("module", "wroom")
    kind = doc.get("psram")
    ok = True
    if rules is ESP32S3 and module == "wrover":
        report.error(
            "module",
            'there is no ESP32-S3 WROVER: ESP32-S3 modules are "wroom" (WROOM-1, -1U, -2); give the PSRAM '
            'in "psram" ("quad" for an N8R2, "octal" for an N8R8 or N16R8)',
        )
        ok = False
    elif rules is ESP32 and kind == "octal":
        report.error("psram", 'the classic ESP32 has no octal PSRAM: a WROVER carries "quad" PSRAM')
        ok = False
    elif rules is ESP32 and module == "wrover" and kind == "none":
        report.error("psram", 'every WROVER module carries PSRAM (on GPIO 16/17): "quad", or "module": "wroom"')
        ok = False
    elif rules is ESP32 and module != "wrover" and kind == "quad":
        report.error(
            "psram", 'a WROOM-32 module carries no PSRAM: an ESP32 board with PSRAM has a WROVER ("module": "wrover")'
        )
        ok = False
    if "ethernet" in doc and not rules.has_emac:
        report.error(
            "ethernet",
            f"the {rules.title} has no Ethernet MAC (RMII): wired Ethernet needs a classic ESP32 board "
            "(such as boards/esp32-poe-8door-mcp.json)",
        )
        ok = False
    return ok


def _check_expander_pin(use: _Use, names: dict[str, int], report: Report) -> bool:
    assert use.expander is not None
    ok = True
    if use.expander not in names:
        declared = ", ".join(names) or "none declared"
        report.error(f"{use.spec_path}.expander", f"unknown expander '{use.expander}' (expanders: {declared})")
        ok = False
    if not 0 <= use.pin <= 15:
        report.error(use.where, f"MCP23017 pins are 0-15 (GPA0-7 = 0-7, GPB0-7 = 8-15), not {use.pin}")
        ok = False
    if use.pull == "down":
        report.error(
            _pull_field(use),
            'the MCP23017 has internal pull-ups only (100 kOhm): use "up", or null and an external pull-down',
        )
    if use.role == "buzzer":
        report.error(use.where, "the buzzer needs an ESP32 GPIO (PWM); an expander pin can't make a tone")
    if use.output and use.pull is not None and use.pull != "down":
        report.warn(_pull_field(use), f'"pull" is ignored on an output ({use.role})')
    return ok


def _check_buses(doc: dict[str, Any], report: Report) -> dict[str, int]:
    """Expanders and display on I2C. Returns expander name -> address of the declared expanders."""
    names: dict[str, int] = {}
    by_address: dict[int, str] = {}
    expanders: list[dict[str, Any]] = doc.get("expanders", [])
    for i, exp in enumerate(expanders):
        path = f"expanders[{i}]"
        name, address = exp["name"], exp["address"]
        if name in names:
            report.error(f"{path}.name", f"expander name '{name}' is declared twice")
        else:
            names[name] = address
        if address not in MCP23017_ADDRESSES:
            report.error(
                f"{path}.address",
                f"MCP23017 addresses are 0x20-0x27 (32-39, set by A0-A2), not {_hex(address)}",
            )
        elif address in by_address:
            report.error(f"{path}.address", f"I2C address {_hex(address)} is already used by {by_address[address]}")
        else:
            by_address[address] = f"expanders[{i}] ({name})"
    display = doc.get("display")
    if display is not None:
        address = display["address"]
        if not 0x08 <= address <= 0x77:
            report.error("display.address", f"{_hex(address)} is not a 7-bit I2C device address (0x08-0x77)")
        elif address in by_address:
            report.error("display.address", f"I2C address {_hex(address)} is already used by {by_address[address]}")
        elif address not in PCF8574_ADDRESSES:
            report.warn(
                "display.address",
                f"{_hex(address)} is not a PCF8574 (0x20-0x27) or PCF8574A (0x38-0x3F) backpack address",
            )
        if display["cols"] * display["rows"] > HD44780_MAX_CHARS:
            report.error(
                "display.cols",
                f"{display['cols']}x{display['rows']} is more than the HD44780's {HD44780_MAX_CHARS} chars",
            )
    needs_i2c = bool(expanders) or display is not None
    i2c = doc.get("i2c")
    if needs_i2c and i2c is None:
        report.error("i2c", "required: the board has expanders or a display")
    if display is not None and i2c is not None and i2c.get("freq", 400_000) > PCF8574_MAX_FREQ:
        report.warn(
            "i2c.freq",
            f"{i2c.get('freq', 400_000)} Hz is above the PCF8574 (display backpack) rating of 100 kHz; use 100000",
        )
    return names


def _check_keypad(doc: dict[str, Any], report: Report) -> None:
    keypad = doc["keypad"]
    need = len(keypad["rows"]) * len(keypad["cols"])
    keys: str = keypad["keys"]
    if len(keys) != need:
        report.error(
            "keypad.keys",
            f"{len(keys)} keys for {len(keypad['rows'])} rows x {len(keypad['cols'])} cols: need {need}, row-major",
        )
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        report.warn("keypad.keys", f"keys {''.join(dupes)!r} appear more than once and can't be told apart")


def _check_doors(doc: dict[str, Any], report: Report) -> None:
    seen: dict[str, int] = {}
    for i, door in enumerate(doc["doors"]):
        label = door["label"]
        if label in seen:
            report.error(f"doors[{i}].label", f"label {label!r} is already used by doors[{seen[label]}]")
        else:
            seen[label] = i


def _check_lock_doors(doc: dict[str, Any], report: Report) -> bool:
    """Each door has either its own pins (solenoid, closed) or a lock on a declared lock board, and
    no two doors share a lock. False when a door's pins are missing (the pin checks are skipped)."""
    lb = doc.get("lockboards")
    addresses: dict[int, int] = {}
    for j, b in enumerate(lb["boards"] if lb is not None else []):
        if b["address"] in addresses:
            report.error(
                f"lockboards.boards[{j}].address",
                f"address {b['address']} is already used by lockboards.boards[{addresses[b['address']]}]",
            )
        else:
            addresses[b["address"]] = j
    ok = True
    taken: dict[tuple[int, int], int] = {}
    used_boards: set[int] = set()
    for i, door in enumerate(doc["doors"]):
        lock = door.get("lock")
        if lock is None:
            for name in ("solenoid", "closed"):
                if name not in door:
                    ok = False
                    hint = ' (or "lock", on a lock board)' if lb is not None else ""
                    report.error(f"doors[{i}].{name}", f"required field is missing{hint}")
            continue
        pins = [name for name in ("solenoid", "closed", "parcel") if name in door]
        if pins:
            report.error(
                f"doors[{i}].{pins[0]}",
                f"door {door['label']!r} is on a lock board (lock): the board drives its lock and reads its "
                f"sensors, so it has no {', '.join(pins)} pins (infrared: true for the parcel sensor)",
            )
        if lb is None:
            report.error(f"doors[{i}].lock", "there is no lockboards section declaring the lock boards")
            continue
        if lock["board"] not in addresses:
            known = ", ".join(str(a) for a in sorted(addresses))
            report.error(f"doors[{i}].lock.board", f"no lock board at address {lock['board']} (declared: {known})")
            continue
        used_boards.add(lock["board"])
        key = (lock["board"], lock["lock"])
        if key in taken:
            report.error(
                f"doors[{i}].lock",
                f"board {key[0]} lock {key[1]} is already door {doc['doors'][taken[key]]['label']!r}'s",
            )
        else:
            taken[key] = i
    for a, j in addresses.items():
        if a not in used_boards:
            report.warn(f"lockboards.boards[{j}]", f"lock board {a} is declared but no door uses it")
    return ok


def _semantic_issues(doc: dict[str, Any], report: Report) -> None:
    if not _check_chip(doc, report):
        return
    names = _check_buses(doc, report)
    _check_keypad(doc, report)
    _check_doors(doc, report)
    if not _check_lock_doors(doc, report):
        return
    used: dict[tuple[str, int], str] = {}
    used_expanders: set[str] = set()
    for use in _collect_uses(doc):
        if use.expander is None:
            ok = _check_gpio(use, doc, report)
            key = ("", use.pin)
            what = f"GPIO {use.pin}"
        else:
            ok = _check_expander_pin(use, names, report)
            key = (use.expander, use.pin)
            what = f"expander {use.expander} pin {use.pin}"
            used_expanders.add(use.expander)
        if not ok:
            continue
        if key in used:
            report.error(use.where, f"{what} is already used by {used[key]}")
        else:
            used[key] = use.where
    for i, exp in enumerate(doc.get("expanders", [])):
        if exp["name"] not in used_expanders:
            report.warn(f"expanders[{i}]", f"expander '{exp['name']}' is declared but no pin uses it")


def validate(path: str | Path) -> Report:
    """Check one board file. Structure first; wiring rules only run on a structurally valid file."""
    path = Path(path)
    report = Report(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        report.error("", f"can't read: {exc.strerror or exc}")
        return report
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        report.error("", f"not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}")
        return report
    _schema_issues(doc, report)
    if report.ok:
        _semantic_issues(doc, report)
    return report


def validate_all(paths: Sequence[str | Path]) -> list[Report]:
    return [validate(p) for p in paths]
