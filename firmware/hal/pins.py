# Logical pins: polarity applied, so the rest of the firmware sees 1 = solenoid energized, 1 = door closed,
# 1 = parcel present, whatever the wiring. hal.boardinit's make_in/make_out build them from a board.json
# pin spec (an expander pin applies its polarity itself: hal.mcp23017.ExpanderPin):
#   {"pin": N} (ESP32 GPIO) or {"expander": NAME, "pin": 0..15}, with "active_low" and "pull" optional.
from micropython import const

TYPE_CHECKING = const(False)  # the compiler drops `if TYPE_CHECKING:` blocks; mypy enters them
if TYPE_CHECKING:
    from typing import Any, overload  # TYPE_CHECKING only: mpy-cross drops the block

    from hal import PinLike


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
