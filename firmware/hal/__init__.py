# Hardware layer: the only package that imports `machine`. Nothing here touches hardware at import time.
#
#   hal.board     Board(spec) / Board.load(): pins by role from board.json
#   hal.boardinit Board's construction and the pin specs (boot only: dropped once the board is built)
#   hal.pins      LogicalIn / LogicalOut (polarity applied; hal.boardinit makes them from a pin spec)
#   hal.mcp23017  MCP23017 I2C expander (cached inputs, latched outputs)
#   hal.lockboard RS485 lock-control boards (Kerong KR-CU16 and compatibles): per-door logical pins
#   hal.lcd       HD44780 behind a PCF8574 I2C backpack
#   hal.buzzer    non-blocking tone patterns on a PWM
#   hal.system    watchdog, reset cause, RTC wall clock, ids, memory
#
# The protocols below exist for the type checker only (mypy --config-file firmware/hal/mypy.ini);
# TYPE_CHECKING is a const, so MicroPython's compiler drops the block; mypy always enters it.
from micropython import const

TYPE_CHECKING = const(False)  # the compiler drops `if TYPE_CHECKING:` blocks; mypy enters them
if TYPE_CHECKING:
    from typing import Any, Protocol, overload  # TYPE_CHECKING only: mpy-cross drops the block

    class I2CLike(Protocol):
        def readfrom_mem_into(self, __addr: int, __memaddr: int, __buf: bytearray) -> None: ...

        def writeto_mem(self, __addr: int, __memaddr: int, __buf: bytearray) -> None: ...

        def writeto(self, __addr: int, __buf: bytearray | memoryview) -> int | None: ...

    class PinLike(Protocol):
        # machine.Pin's shape: value() reads, value(v) writes.
        @overload
        def value(self) -> int: ...

        @overload
        def value(self, __v: Any) -> None: ...

    class UARTLike(Protocol):
        # machine.UART's shape, as far as hal.lockboard uses it
        def any(self) -> int: ...

        def readinto(self, __buf: bytearray, __n: int) -> int | None: ...

        def write(self, __buf: bytearray) -> int | None: ...

        def flush(self) -> None: ...

    class PWMLike(Protocol):
        def freq(self, __hz: int) -> None: ...

        def duty_u16(self, __duty: int) -> None: ...
