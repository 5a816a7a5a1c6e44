# The board: pins by role, built from board.json (see docs/design.md, "Board definition").
# Board(spec) switches every solenoid off before it does anything else.
import json

import machine
from micropython import const

from hal.pins import make_in, make_out

TYPE_CHECKING = const(False)  # the compiler drops `if TYPE_CHECKING:` blocks; mypy enters them
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple  # TYPE_CHECKING only: mpy-cross drops the block

    from hal.buzzer import Buzzer
    from hal.lcd import Lcd
    from hal.lockboard import LockBus, _Infrared, _Lock
    from hal.mcp23017 import MCP23017, ExpanderPin
    from hal.pins import LogicalIn as _In
    from hal.pins import LogicalOut as _Out

    LogicalIn = _In | ExpanderPin | _Lock | _Infrared  # an expander pin applies its polarity itself
    LogicalOut = _Out | ExpanderPin | _Lock

# The expander, display and buzzer drivers are imported only by boards that have those parts:
# on a board every module's bytecode costs heap.


class Board:
    def __init__(self, spec: "Dict[str, Any]") -> None:
        doors = spec["doors"]
        # 1. Solenoids on ESP32 GPIOs: driven to their OFF level before anything else happens.
        sol: "List[Optional[LogicalOut]]" = [None] * len(doors)
        for i, door in enumerate(doors):
            s = door.get("solenoid")
            if s is not None and "expander" not in s:
                sol[i] = make_out(s, {})

        # 2. I2C and expanders. An expander's constructor puts it back in its power-on state (all
        #    inputs), which releases any solenoid a previous run left on; then its solenoid pins become
        #    outputs with the OFF level latched first.
        self.faults: "List[str]" = []
        self.name: str = spec.get("name", "")
        self.i2c: "Optional[machine.I2C]" = None
        bus = spec.get("i2c")
        if bus is not None:
            self.i2c = machine.I2C(
                bus.get("id", 0),
                scl=machine.Pin(bus["scl"]),
                sda=machine.Pin(bus["sda"]),
                freq=bus.get("freq", 100000),
            )
        self.expanders: "Dict[str, MCP23017]" = {}
        for x in spec.get("expanders", ()):
            from hal.mcp23017 import MCP23017

            if self.i2c is None:
                raise ValueError("board.json: expanders need an i2c bus")
            self.expanders[x["name"]] = MCP23017(self.i2c, x["address"])  # raises ExpanderError
        # RS485 lock-control boards pulse their locks themselves, on a frame (hal.lockboard).
        self.lockbus: "Optional[LockBus]" = None
        if "lockboards" in spec:
            from hal.lockboard import from_spec

            self.lockbus = from_spec(spec["lockboards"], doors, sol)  # their doors' locks into sol
        for i, door in enumerate(doors):
            if sol[i] is None:
                sol[i] = make_out(door["solenoid"], self.expanders)
        self.solenoids: "List[LogicalOut]" = [s for s in sol if s is not None]

        # 3. Door inputs. A lock on a lock board is its door's sensor too (the hook bit), and its
        #    infrared sensor the parcel sensor.
        self.labels: "List[str]" = [str(d["label"]) for d in doors]
        self.closed: "List[LogicalIn]" = [
            sol[i] if "lock" in d else make_in(d["closed"], self.expanders)  # type: ignore[misc]
            for i, d in enumerate(doors)
        ]
        self.parcels: "List[Optional[LogicalIn]]" = [
            make_in(d["parcel"], self.expanders) if d.get("parcel") else None for d in doors
        ]
        if self.lockbus is not None:
            self.lockbus.infrared_pins(doors, self.parcels)
        # Size class (1 S, 2 M, 3 L; default M) and height (low: reachable from a wheelchair; default
        # false) of each door, parsed once here. sizes is bytes (n bytes), low a list of bools.
        self.sizes, self.low = _door_classes(doors)

        # 4. Keypad: raw pins, columns pulled up; rows open-drain, released (1) when idle and pulled
        # low one at a time to scan. Open drain: two keys down in one column never short a low row
        # to a high one.
        keypad = spec["keypad"]
        Pin = machine.Pin
        self.rows: "List[machine.Pin]" = [Pin(n, Pin.OPEN_DRAIN, value=1) for n in keypad["rows"]]
        self.cols: "List[machine.Pin]" = [Pin(n, Pin.IN, Pin.PULL_UP) for n in keypad["cols"]]
        self.keys: str = keypad["keys"]

        # 5. Buzzer, status LED, display.
        self.buzzer: "Optional[Buzzer]" = None
        if spec.get("buzzer"):
            from hal.buzzer import Buzzer

            pin = machine.Pin(spec["buzzer"]["pin"], machine.Pin.OUT, value=0)
            self.buzzer = Buzzer(machine.PWM(pin, freq=2000, duty_u16=0))
        self.led: "Optional[LogicalOut]" = None
        if spec.get("status_led"):
            self.led = make_out(spec["status_led"], self.expanders)
        self.display: "Optional[Lcd]" = None
        disp = spec.get("display")
        if disp is not None and self.i2c is not None:
            from hal.lcd import Lcd

            try:
                self.display = Lcd(self.i2c, disp["address"], disp.get("cols", 16), disp.get("rows", 2))
            except OSError as exc:
                # The locker still works without its display: report it, carry on.
                self.faults.append("display: %s" % (exc,))
        self._xs = list(self.expanders.values())  # refresh() iterates a list: no allocation per poll
        self.refresh()

    @classmethod
    def load(cls, path: str = "board.json") -> "Board":
        with open(path) as f:
            spec = json.load(f)
        return cls(spec)

    def refresh(self) -> bool:
        """Read every expander's inputs once and move the lock bus on (call once per poll). False if
        any expander failed."""
        ok = True
        for x in self._xs:
            if not x.refresh():
                ok = False
        if self.lockbus is not None:
            self.lockbus.tick()
        return ok

    def all_off(self) -> None:
        """Safe state: every solenoid off, buzzer silent, LED off."""
        for s in self.solenoids:
            s.value(0)
        if self.buzzer is not None:
            self.buzzer.stop()
        if self.led is not None:
            self.led.value(0)


def _door_classes(doors: "List[Dict[str, Any]]") -> "Tuple[bytes, List[bool]]":
    """(sizes, low) from the doors of board.json; ValueError names the door and the field."""
    sizes = bytearray(len(doors))
    low = [False] * len(doors)
    for i, d in enumerate(doors):
        sz = d.get("size", "M")
        k = "SML".find(sz) + 1 if isinstance(sz, str) and len(sz) == 1 else 0
        if not k:
            raise ValueError("board.json: doors[%d].size: %r is not S, M or L" % (i, sz))
        sizes[i] = k
        lw = d.get("low", False)
        if lw is not True and lw is not False:
            raise ValueError("board.json: doors[%d].low: %r is not true or false" % (i, lw))
        low[i] = lw
    return bytes(sizes), low
