# Logical pins: polarity applied, so the rest of the firmware sees 1 = solenoid energized, 1 = door closed,
# 1 = parcel present, whatever the wiring. make_in/make_out build them from a board.json pin spec
# (an expander pin applies its polarity itself: hal.mcp23017.ExpanderPin):
#   {"pin": N} (ESP32 GPIO) or {"expander": NAME, "pin": 0..15}, with "active_low" and "pull" optional.
import machine
from micropython import const

TYPE_CHECKING = const(False)  # the compiler drops `if TYPE_CHECKING:` blocks; mypy enters them
if TYPE_CHECKING:
    from typing import Any, overload  # TYPE_CHECKING only: mpy-cross drops the block

    from hal import PinLike
    from hal.mcp23017 import MCP23017, ExpanderPin


class LogicalIn:
    """An input read through its polarity. value(v) is accepted for the common pin interface and ignored."""

    def __init__(self, pin: "PinLike", active_low: bool = False) -> None:
        self.pin = pin
        self._inv = 1 if active_low else 0

    if TYPE_CHECKING:

        @overload
        def value(self) -> int: ...

        @overload
        def value(self, v: Any) -> None: ...

    def value(self, v: "Any" = None) -> "int | None":
        if v is None:
            return (1 if self.pin.value() else 0) ^ self._inv
        return None


class LogicalOut:
    """An output that remembers its logical state (reads don't touch the pin)."""

    def __init__(self, pin: "PinLike", active_low: bool = False, state: int = 0) -> None:
        self.pin = pin
        self._inv = 1 if active_low else 0
        self._state = state

    if TYPE_CHECKING:

        @overload
        def value(self) -> int: ...

        @overload
        def value(self, v: Any) -> None: ...

    def value(self, v: "Any" = None) -> "int | None":
        if v is None:
            return self._state
        s = 1 if v else 0
        self._state = s
        self.pin.value(s ^ self._inv)
        return None

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)


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
