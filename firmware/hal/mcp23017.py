# MCP23017 16-bit I2C port expander (default register bank, IOCON.BANK = 0).
#
# Pin n: 0-7 = GPA0-7, 8-15 = GPB0-7. Every register pair (A, B) is written as one 2-byte transaction
# (the chip's address pointer steps from A to B). Outputs are latched in a shadow and OLAT is written
# only on a change; inputs read a cache that refresh() fills with ONE 2-byte read of GPIOA+GPIOB.
# No machine import: takes any I2C object with readfrom_mem_into/writeto_mem.
from micropython import const

TYPE_CHECKING = const(False)  # the compiler drops `if TYPE_CHECKING:` blocks; mypy enters them
if TYPE_CHECKING:
    from typing import Any, overload  # TYPE_CHECKING only: mpy-cross drops the block

    from hal import I2CLike

_IODIRA = const(0x00)  # 1 = input (power-on: 0xFF 0xFF)
_GPPUA = const(0x0C)  # 1 = 100 kOhm pull-up
_GPIOA = const(0x12)  # read: pin levels
_OLATA = const(0x14)  # output latches
_ALL = const(0xFFFF)
_OUT = const(0x10000)  # ExpanderPin: an output
_INV = const(0x20000)  # ExpanderPin: active low (bit 17, read as (m >> 17) & 1)


class ExpanderError(OSError):
    """The expander did not answer on I2C (wiring, address jumpers, pull-ups, power)."""


class ExpanderPin:
    """One expander pin with .value() / .value(v). Inputs read the cache of the last refresh().

    With active_low the pin is logical (hal.pins' polarity): reads and writes are inverted here, so a
    board needs one object per expander pin, not a pin plus a wrapper. An output reads its latch."""

    def __init__(self, chip: "MCP23017", mask: int, output: bool, active_low: bool = False) -> None:
        self._chip = chip
        # mask | _OUT | _INV in one int: two attributes make a smaller object than four (a board
        # has one of these per expander pin).
        self._m = mask | (_OUT if output else 0) | (_INV if active_low else 0)

    @property
    def output(self) -> bool:
        return bool(self._m & _OUT)

    if TYPE_CHECKING:

        @overload
        def value(self) -> int: ...

        @overload
        def value(self, v: Any) -> None: ...

    def value(self, v: "Any" = None) -> "int | None":
        chip = self._chip
        m = self._m
        inv = (m >> 17) & 1
        if v is None:
            return (1 if ((chip._olat if m & _OUT else chip._gpio) & m & _ALL) else 0) ^ inv
        if m & _OUT:
            chip._set_latch(m & _ALL, (1 if v else 0) ^ inv)
        return None

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)


class MCP23017:
    def __init__(self, i2c: "I2CLike", address: int = 0x20) -> None:
        self.i2c = i2c
        self.address = address
        self.errors = 0  # I2C failures after init (reads and writes)
        self.ok = True  # False after a failed transaction, until one succeeds again
        self._buf = bytearray(2)  # every transfer goes through this: no allocation after init
        self._iodir = _ALL
        self._gppu = 0
        self._olat = 0
        self._gpio = 0
        self._dirty = False  # an OLAT write failed: retried by refresh()
        # Back to the power-on state: every pin an input, no pull-ups, latches low. This releases any
        # output a previous run left on (the chip keeps its state across an ESP32 reset), and the wiring
        # must already be safe in this state because it is how the chip powers up.
        try:
            self._write(_OLATA, 0)
            self._write(_IODIRA, _ALL)
            self._write(_GPPUA, 0)
            self._read()
        except OSError as exc:
            raise ExpanderError("MCP23017 at 0x%02x: no answer on I2C (%s)" % (address, exc))

    def pin(
        self, n: int, output: bool = False, pull_up: bool = False, value: int = 0, active_low: bool = False
    ) -> ExpanderPin:
        """Configure pin n and return it. An output's latch is set to `value` (the level on the wire)
        BEFORE it becomes an output. active_low: the returned pin inverts reads and writes.

        Inputs read the levels of the last refresh(): call refresh() once configuring is done."""
        if not 0 <= n <= 15:
            raise ValueError("MCP23017 pin must be 0-15")
        mask = 1 << n
        try:
            if output:
                self._set_latch(mask, value)
                if self._dirty:
                    raise OSError("OLAT write failed")
                self._gppu &= ~mask & _ALL
                self._iodir &= ~mask & _ALL
            else:
                if pull_up:
                    self._gppu |= mask
                else:
                    self._gppu &= ~mask & _ALL
                self._iodir |= mask
            self._write(_GPPUA, self._gppu)
            self._write(_IODIRA, self._iodir)
        except OSError as exc:
            raise ExpanderError("MCP23017 at 0x%02x: configuring pin %d failed (%s)" % (self.address, n, exc))
        return ExpanderPin(self, mask, output, active_low)

    def refresh(self) -> bool:
        """Read all 16 input levels into the cache. On an I2C error: count it, keep the last levels."""
        try:
            if not self.ok:
                # The chip may have lost power (that is a common cause of a bus error): restore it.
                self.reconfigure()
            elif self._dirty:
                self._write(_OLATA, self._olat)
                self._dirty = False
            self._read()
            self.ok = True
            return True
        except OSError:
            self.errors += 1
            self.ok = False
            return False

    def reconfigure(self) -> None:
        """Rewrite latches, pull-ups and directions from the shadows (latches first: glitch-free)."""
        self._write(_OLATA, self._olat)
        self._dirty = False
        self._write(_GPPUA, self._gppu)
        self._write(_IODIRA, self._iodir)

    def inputs(self) -> int:
        """The cached GPIO levels of all 16 pins (bit n = pin n)."""
        return self._gpio

    def _set_latch(self, mask: int, v: "Any") -> None:
        olat = (self._olat | mask) if v else (self._olat & ~mask & _ALL)
        if olat == self._olat and not self._dirty:
            return
        self._olat = olat
        try:
            self._write(_OLATA, olat)
            self._dirty = False
        except OSError:
            self.errors += 1
            self.ok = False
            self._dirty = True

    def _write(self, reg: int, value: int) -> None:
        buf = self._buf
        buf[0] = value & 0xFF
        buf[1] = (value >> 8) & 0xFF
        self.i2c.writeto_mem(self.address, reg, buf)

    def _read(self) -> None:
        buf = self._buf
        self.i2c.readfrom_mem_into(self.address, _GPIOA, buf)
        self._gpio = buf[0] | (buf[1] << 8)
