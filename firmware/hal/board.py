# The board: pins by role, built from board.json (see docs/design.md, "Board definition").
# Board(spec) switches every solenoid off before it does anything else. The construction is boot
# only: it lives in hal.boardinit, imported for it and dropped again, so the running locker keeps
# only refresh() and all_off() of this module.

from micropython import const

TYPE_CHECKING = const(False)  # the compiler drops `if TYPE_CHECKING:` blocks; mypy enters them
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional  # TYPE_CHECKING only: mpy-cross drops the block

    import machine

    from hal.buzzer import Buzzer
    from hal.lcd import Lcd
    from hal.lockboard import InfraredPin, LockBus, LockPin
    from hal.mcp23017 import MCP23017, ExpanderPin
    from hal.pins import LogicalIn as _In
    from hal.pins import LogicalOut as _Out

    LogicalIn = _In | ExpanderPin | LockPin | InfraredPin  # an expander pin applies its polarity itself
    LogicalOut = _Out | ExpanderPin | LockPin


class Board:
    # Set by hal.boardinit.init (annotations only: the compiler keeps nothing of them).
    faults: "List[str]"
    name: str
    i2c: "Optional[machine.I2C]"
    expanders: "Dict[str, MCP23017]"
    lockbus: "Optional[LockBus]"
    solenoids: "List[LogicalOut]"
    labels: "List[str]"
    closed: "List[LogicalIn]"
    parcels: "List[Optional[LogicalIn]]"
    sizes: bytes  # size class per door: 1 S, 2 M, 3 L
    low: "List[bool]"  # per door: reachable from a wheelchair
    rows: "List[machine.Pin]"
    cols: "List[machine.Pin]"
    keys: str
    buzzer: "Optional[Buzzer]"
    led: "Optional[LogicalOut]"
    display: "Optional[Lcd]"
    expander_list: "List[MCP23017]"

    def __init__(self, spec: "Dict[str, Any]") -> None:
        from locker import lazy

        try:
            lazy.load("hal.boardinit").init(self, spec)
        finally:
            lazy.drop("hal.boardinit")

    @classmethod
    def load(cls, path: str = "board.json") -> "Board":
        import json

        with open(path) as f:
            spec = json.load(f)
        return cls(spec)

    def refresh(self) -> bool:
        """Read every expander's inputs once and move the lock bus on (call once per poll). False if
        any expander failed."""
        ok = True
        for x in self.expander_list:
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
