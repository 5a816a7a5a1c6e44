# Frames of the Kerong KR-CU16 family of RS485 lock-control boards (and their compatibles), as
# public descriptions give them (docs/hardware.md, "RS485 lock-control boards", says which and what
# to check on a real board):
#   request  02 ADDR CMD 03 SUM                    5 bytes
#   reply    02 ADDR 35 H1 H2 IR1 IR2 03 SUM       9 bytes (to a status or an unlock request)
# ADDR: the board's address (0-15, its DIP switches) in the high nibble, the lock (0-15) in the low
# one; SUM: the low byte of the sum of every byte before it. H1/H2: one hook bit per lock (1 = the
# hook is caught: the door is shut), locks 1-8 then 9-16, bit 0 first; IR1/IR2 likewise, the
# infrared item sensors (1 = something inside).
# No hardware here: hal.lockboard puts these frames on a UART.
from micropython import const

CMD_STATUS = const(0x30)
CMD_UNLOCK = const(0x31)
REPLY_STATUS = const(0x35)
REQUEST_LEN = const(5)
REPLY_LEN = const(9)

# Parser.feed() results
NEED_MORE = const(0)
FRAME = const(1)  # a whole, checked reply: addr, hooks, infrared hold it
BAD = const(-1)  # a reply that failed a check (checksum, end byte, command): dropped

_STX = const(0x02)
_ETX = const(0x03)


def build(buf, board, lock, cmd):
    """Fill buf (a bytearray of REQUEST_LEN) with one request; returns buf (no allocation)."""
    buf[0] = _STX
    buf[1] = ((board & 0x0F) << 4) | (lock & 0x0F)
    buf[2] = cmd & 0xFF
    buf[3] = _ETX
    buf[4] = (_STX + buf[1] + buf[2] + _ETX) & 0xFF
    return buf


def reply(board, hooks, infrared):
    """A status reply as a board sends it (for the simulated board and tests)."""
    f = bytearray(REPLY_LEN)
    f[0] = _STX
    f[1] = (board & 0x0F) << 4
    f[2] = REPLY_STATUS
    f[3] = hooks & 0xFF
    f[4] = (hooks >> 8) & 0xFF
    f[5] = infrared & 0xFF
    f[6] = (infrared >> 8) & 0xFF
    f[7] = _ETX
    s = 0
    for i in range(REPLY_LEN - 1):
        s += f[i]
    f[8] = s & 0xFF
    return bytes(f)


class Parser:
    """Byte-by-byte reply parser: no allocation per byte. Bytes before an STX are skipped; a frame
    that fails a check is dropped whole (BAD) and the search for the next STX starts again."""

    def __init__(self):
        self._buf = bytearray(REPLY_LEN)
        self._n = 0
        self._sum = 0
        self.addr = 0  # of the last good frame: the board (high nibble of its ADDR byte)
        self.hooks = 0  # 16 bits, bit n = lock n + 1
        self.infrared = 0
        self.bad = 0  # frames dropped since construction

    def reset(self):
        self._n = 0

    def feed(self, b):
        n = self._n
        if n == 0:
            if b != _STX:
                return NEED_MORE  # noise between frames, or our own echo
            self._sum = 0
        buf = self._buf
        buf[n] = b
        n += 1
        if n < REPLY_LEN:
            self._sum = (self._sum + b) & 0xFF
            self._n = n
            if n == 3 and b != REPLY_STATUS:
                return self._drop()
            return NEED_MORE
        self._n = 0
        if buf[7] != _ETX or b != self._sum:
            return self._drop()
        self.addr = buf[1] >> 4
        self.hooks = buf[3] | (buf[4] << 8)
        self.infrared = buf[5] | (buf[6] << 8)
        return FRAME

    def _drop(self):
        self._n = 0
        self.bad += 1
        return BAD


def wire_us(nbytes, baud):
    """Microseconds that nbytes take on the wire at 8N1 (10 bits a byte)."""
    return (nbytes * 10 * 1000000 + baud - 1) // baud
