# hal.board's Board construction from board.json: boot only, so imported for the call and dropped
# again (Board.__init__): the running locker does not hold its bytecode (docs/design.md, "Board
# definition"). Solenoids are switched off before anything else.
import machine
from micropython import const

from hal.pins import LogicalIn, LogicalOut

TYPE_CHECKING = const(False)  # the compiler drops `if TYPE_CHECKING:` blocks; mypy enters them
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple  # TYPE_CHECKING only: mpy-cross drops the block

    from hal.board import Board
    from hal.board import LogicalOut as AnyOut
    from hal.mcp23017 import MCP23017, ExpanderPin

# The expander, display and buzzer drivers are imported only by boards that have those parts:
# on a board every module's bytecode costs heap.


def init(b: "Board", spec: "Dict[str, Any]") -> None:
    doors = spec["doors"]
    # 1. Solenoids on ESP32 GPIOs: driven to their OFF level before anything else happens.
    sol: "List[Optional[AnyOut]]" = [None] * len(doors)
    for i, door in enumerate(doors):
        s = door.get("solenoid")
        if s is not None and "expander" not in s:
            sol[i] = make_out(s, {})

    # 2. I2C and expanders. An expander's constructor puts it back in its power-on state (all
    #    inputs), which releases any solenoid a previous run left on; then its solenoid pins become
    #    outputs with the OFF level latched first.
    b.faults = []
    b.name = spec.get("name", "")
    b.i2c = None
    bus = spec.get("i2c")
    if bus is not None:
        b.i2c = machine.I2C(
            bus.get("id", 0),
            scl=machine.Pin(bus["scl"]),
            sda=machine.Pin(bus["sda"]),
            freq=bus.get("freq", 100000),
        )
    b.expanders = {}
    for x in spec.get("expanders", ()):
        from hal.mcp23017 import MCP23017

        if b.i2c is None:
            raise ValueError("board.json: expanders need an i2c bus")
        b.expanders[x["name"]] = MCP23017(b.i2c, x["address"])  # raises ExpanderError
    # RS485 lock-control boards pulse their locks themselves, on a frame (hal.lockboard).
    b.lockbus = None
    if "lockboards" in spec:
        from hal.lockboard import from_spec

        b.lockbus = from_spec(spec["lockboards"], doors, sol)  # their doors' locks into sol
    for i, door in enumerate(doors):
        if sol[i] is None:
            sol[i] = make_out(door["solenoid"], b.expanders)
    b.solenoids = [s for s in sol if s is not None]

    # 3. Door inputs. A lock on a lock board is its door's sensor too (the hook bit), and its
    #    infrared sensor the parcel sensor.
    b.labels = [str(d["label"]) for d in doors]
    b.closed = [
        sol[i] if "lock" in d else make_in(d["closed"], b.expanders)  # type: ignore[misc]
        for i, d in enumerate(doors)
    ]
    b.parcels = [make_in(d["parcel"], b.expanders) if d.get("parcel") else None for d in doors]
    if b.lockbus is not None:
        b.lockbus.infrared_pins(doors, b.parcels)
    # Size class (1 S, 2 M, 3 L; default M) and height (low: reachable from a wheelchair; default
    # false) of each door, parsed once here. sizes is bytes (n bytes), low a list of bools.
    b.sizes, b.low = door_classes(doors)

    # 4. Keypad: raw pins, columns pulled up; rows open-drain, released (1) when idle and pulled
    # low one at a time to scan. Open drain: two keys down in one column never short a low row
    # to a high one.
    keypad = spec["keypad"]
    Pin = machine.Pin
    b.rows = [Pin(n, Pin.OPEN_DRAIN, value=1) for n in keypad["rows"]]
    b.cols = [Pin(n, Pin.IN, Pin.PULL_UP) for n in keypad["cols"]]
    b.keys = keypad["keys"]

    # 5. Buzzer, status LED, display.
    b.buzzer = None
    if spec.get("buzzer"):
        from hal.buzzer import Buzzer

        pin = machine.Pin(spec["buzzer"]["pin"], machine.Pin.OUT, value=0)
        b.buzzer = Buzzer(machine.PWM(pin, freq=2000, duty_u16=0))
    b.led = None
    if spec.get("status_led"):
        b.led = make_out(spec["status_led"], b.expanders)
    b.display = None
    disp = spec.get("display")
    if disp is not None and b.i2c is not None:
        from hal.lcd import Lcd

        try:
            b.display = Lcd(b.i2c, disp["address"], disp.get("cols", 16), disp.get("rows", 2))
        except OSError as exc:
            # The locker still works without its display: report it, carry on.
            b.faults.append("display: %s" % (exc,))
    b.expander_list = list(b.expanders.values())  # refresh() iterates a list: no allocation per poll
    b.refresh()


def door_classes(doors: "List[Dict[str, Any]]") -> "Tuple[bytes, List[bool]]":
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


def _pull(spec: "dict[str, Any]") -> "int | None":
    pull = spec.get("pull")
    if pull == "up":
        return machine.Pin.PULL_UP
    if pull == "down":
        return machine.Pin.PULL_DOWN
    return None


def make_in(spec: "dict[str, Any]", expanders: "dict[str, MCP23017]") -> "LogicalIn | ExpanderPin":
    active_low = bool(spec.get("active_low", False))
    name = spec.get("expander")
    if name is not None:
        # The expander pin applies the polarity itself: no wrapper object per pin.
        return expanders[name].pin(spec["pin"], output=False, pull_up=spec.get("pull") == "up", active_low=active_low)
    # pull None = explicitly no internal pull (MicroPython's documented value; the stubs only say int).
    raw = machine.Pin(spec["pin"], machine.Pin.IN, _pull(spec))  # type: ignore[arg-type]
    return LogicalIn(raw, active_low)


def make_out(spec: "dict[str, Any]", expanders: "dict[str, MCP23017]") -> "LogicalOut | ExpanderPin":
    """The pin is set to its OFF level before it is switched to output: no glitch on the load."""
    active_low = bool(spec.get("active_low", False))
    off = 1 if active_low else 0
    name = spec.get("expander")
    if name is not None:
        return expanders[name].pin(spec["pin"], output=True, value=off, active_low=active_low)
    # value= sets the level before the direction (ESP32 port: gpio_set_level, then gpio_set_direction).
    raw = machine.Pin(spec["pin"], machine.Pin.OUT, value=off)
    return LogicalOut(raw, active_low)
