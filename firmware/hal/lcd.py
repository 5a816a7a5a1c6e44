# HD44780 character LCD in 4-bit mode behind a PCF8574 I2C backpack.
# Backpack bits: P0 = RS, P1 = RW (kept 0: write only), P2 = E, P3 = backlight, P4-P7 = D4-D7.
# init() runs the datasheet's reset-by-instruction sequence (the only place with delays); after it,
# show() sends only DDRAM-address commands and characters, and only for characters that changed.
# Text is folded to the display's ASCII (ROM A00): accented nl/fr letters lose their accents.
# No machine import: takes any I2C object with writeto().
import time

from micropython import const

TYPE_CHECKING = const(False)  # the compiler drops `if TYPE_CHECKING:` blocks; mypy enters them
if TYPE_CHECKING:
    from typing import Sequence  # TYPE_CHECKING only: mpy-cross drops the block

    from hal import I2CLike

_RS = const(0x01)
_E = const(0x04)
_BL = const(0x08)

_CLEAR = const(0x01)
_ENTRY_INC = const(0x06)  # cursor moves right, no display shift
_DISPLAY_OFF = const(0x08)
_DISPLAY_ON = const(0x0C)  # display on, cursor off, blink off
_FUNCTION_4BIT_2LINE = const(0x28)
_FUNCTION_4BIT_1LINE = const(0x20)
_SET_DDRAM = const(0x80)

# Characters outside printable ASCII -> what the display shows. Two strings of equal length for the
# one-to-one cases (a dict would cost several KB of RAM), a small dict for the rest.
_FROM = const("ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝàáâãäåçèéêëìíîïñòóôõöøùúûüýÿŸ«»‹›‘’‚“”„–—\u00a0\u202f\u2009°\\~")
_TO = const('AAAAAACEEEEIIIINOOOOOOUUUUYaaaaaaceeeeiiiinoooooouuuuyyY""<>\'\',"""--   \xdf/-')
_MULTI = {
    0xC6: "AE", 0xE6: "ae", 0x152: "OE", 0x153: "oe", 0x132: "IJ", 0x133: "ij", 0xDF: "ss",
    0x2026: "...", 0x20AC: "EUR",
}  # fmt: skip
# "\xdf" is the degree sign in the HD44780's ROM A00, which shows a yen sign for \ and an arrow for ~.


_ROW_OFFSETS = const((0x00, 0x40))  # rows 2 and 3 continue rows 0 and 1 after `cols` characters


def delay_us(us: int) -> None:
    """HD44780 timing; init() is its only user. time.sleep_us is MicroPython's; CPython (tests) has sleep().

    Public so a test can replace it (module global, looked up at call time)."""
    try:
        time.sleep_us(us)
    except AttributeError:
        time.sleep(us / 1000000)


class LcdError(OSError):
    """The display did not answer on I2C."""


def fold(text: str, out: bytearray) -> None:
    """Render text into out: folded to display ASCII, clipped, padded with spaces."""
    cols = len(out)
    n = 0
    for ch in text:
        if n >= cols:
            break
        o = ord(ch)
        if 32 <= o < 127 and o != 0x5C and o != 0x7E:
            out[n] = o
            n += 1
            continue
        i = _FROM.find(ch)
        if i >= 0:
            out[n] = ord(_TO[i])
            n += 1
            continue
        for r in _MULTI.get(o, "?" if o >= 127 else " "):
            if n >= cols:
                break
            out[n] = ord(r)
            n += 1
    while n < cols:
        out[n] = 32
        n += 1


class Lcd:
    def __init__(self, i2c: "I2CLike", address: int = 0x27, cols: int = 16, rows: int = 2) -> None:
        self.i2c = i2c
        self.address = address
        self.cols = cols
        self.rows = rows
        self.errors = 0  # I2C failures in show()/backlight()
        self.ok = False  # True once init() succeeded and no write failed since
        self._bl = _BL
        self._one = bytearray(1)
        # One transaction per run of changed characters: address command + up to `cols` characters.
        self._tx = bytearray(4 * (cols + 1))
        self._txv = memoryview(self._tx)
        self._line = bytearray(cols)
        self._shadow = [bytearray(cols) for _ in range(rows)]  # what the display shows
        self._addr = [(_ROW_OFFSETS[r & 1] + (cols if r >= 2 else 0)) for r in range(rows)]
        self.init()

    def init(self) -> None:
        """(Re)initialise: reset by instruction to 4-bit mode, clear. Raises LcdError without an answer."""
        self.ok = False
        try:
            self._out(self._bl)
            delay_us(50000)  # > 40 ms after power reaches 2.7 V
            self._nibble(0x3)  # function set, 8-bit: whatever mode the controller was left in
            delay_us(5000)  # > 4.1 ms
            self._nibble(0x3)
            delay_us(150)  # > 100 us
            self._nibble(0x3)
            delay_us(150)
            self._nibble(0x2)  # 4-bit from here on
            delay_us(150)
            for cmd in (
                _FUNCTION_4BIT_2LINE if self.rows > 1 else _FUNCTION_4BIT_1LINE,
                _DISPLAY_OFF,
                _CLEAR,
                _ENTRY_INC,
                _DISPLAY_ON,
            ):
                self._command(cmd)
                delay_us(2000 if cmd == _CLEAR else 60)  # clear takes 1.52 ms, the others 37 us
        except OSError as exc:
            raise LcdError("LCD at 0x%02x: no answer on I2C (%s)" % (self.address, exc))
        for row in self._shadow:
            for i in range(self.cols):
                row[i] = 32
        self.ok = True

    def show(self, lines: "Sequence[str] | str") -> bool:
        """Show up to `rows` lines (missing ones blank). Writes only changed characters.

        Returns False when the display could not be updated (it is re-initialised on the next call)."""
        if isinstance(lines, str):
            lines = lines.split("\n")
        try:
            if not self.ok:
                self.init()
            for r in range(self.rows):
                fold(lines[r] if r < len(lines) and lines[r] else "", self._line)
                self._update_row(r)
            return True
        except OSError:
            self.errors += 1
            self.ok = False
            for row in self._shadow:  # unknown content: rewrite everything next time
                for i in range(self.cols):
                    row[i] = 0
            return False

    def text(self) -> "list[str]":
        """What the display shows (as written), one str per row."""
        return ["".join(chr(c) for c in row) for row in self._shadow]

    def backlight(self, on: bool) -> None:
        self._bl = _BL if on else 0
        try:
            self._out(self._bl)
        except OSError:
            self.errors += 1

    def _update_row(self, r: int) -> None:
        shadow = self._shadow[r]
        line = self._line
        cols = self.cols
        c = 0
        while c < cols:
            if shadow[c] == line[c]:
                c += 1
                continue
            start = c
            end = c + 1  # one past the last changed character of this run
            c += 1
            while c < cols:
                if shadow[c] != line[c]:
                    end = c + 1
                elif c - end >= 1:  # two unchanged in a row: a new address command is as cheap
                    break
                c += 1
            n = self._put(0, _SET_DDRAM | (self._addr[r] + start))
            for i in range(start, end):
                n = self._put(n, line[i], _RS)
                shadow[i] = line[i]
            self.i2c.writeto(self.address, self._txv[:n])

    def _put(self, n: int, byte: int, rs: int = 0) -> int:
        """Append one byte as two E-strobed nibbles to the transmit buffer at n; returns the new length."""
        tx = self._tx
        bits = rs | self._bl
        hi = (byte & 0xF0) | bits
        lo = ((byte << 4) & 0xF0) | bits
        tx[n] = hi | _E
        tx[n + 1] = hi
        tx[n + 2] = lo | _E
        tx[n + 3] = lo
        return n + 4

    def _command(self, cmd: int) -> None:
        n = self._put(0, cmd)
        self.i2c.writeto(self.address, self._txv[:n])

    def _nibble(self, nibble: int) -> None:
        bits = (nibble << 4) | self._bl
        tx = self._tx
        tx[0] = bits | _E
        tx[1] = bits
        self.i2c.writeto(self.address, self._txv[:2])

    def _out(self, byte: int) -> None:
        self._one[0] = byte
        self.i2c.writeto(self.address, self._one)
