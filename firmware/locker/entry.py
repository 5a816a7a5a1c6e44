# Key events -> a submitted code (like ESPHome's key_collector).
# The code lives only in one preallocated bytearray; code() is a view on it, wipe() zeroes it.
from micropython import const

from locker.ticks import ticks_diff

# key() results
DIGIT = const(1)  # digit appended
CLEARED = const(2)  # "*" wiped a non-empty entry
SUBMIT = const(3)  # "#" with a valid length: read code(), check it, then wipe()
TOO_SHORT = const(4)  # "#" with a length out of range: entry wiped
FULL = const(5)  # digit ignored: already max_len digits
LANGUAGE = const(6)  # "*" on an empty entry: cycle the display language
_IGNORED = const(7)  # A-C, D on an empty entry, anything else
BACK = const(8)  # "D" (4x4 keypads) took the last digit back; `length` may now be 0

_ZERO = const(48)
_NINE = const(57)
_STAR = const(42)
_HASH = const(35)
_BACKSPACE = const(68)  # "D": the 4x4 keypad's bottom-right key (docs/operation.md, "The keypad")


class CodeEntry:
    def __init__(self, min_len=8, max_len=12, timeout_ms=30000):
        if min_len < 1 or max_len < min_len:
            raise ValueError("entry lengths")
        self.min_len = min_len
        self.max_len = max_len
        self._timeout_ms = timeout_ms
        self._buf = bytearray(max_len)
        self._mv = memoryview(self._buf)
        self.length = 0
        self._last = 0  # ticks of the last key

    def key(self, ch, now_ms):
        """One key: an int (ord, as the keypad emits) or a 1-character str."""
        if isinstance(ch, str):
            ch = ord(ch) if len(ch) == 1 else -1
        self._last = now_ms
        if _ZERO <= ch <= _NINE:
            if self.length >= self.max_len:
                return FULL
            self._buf[self.length] = ch
            self.length += 1
            return DIGIT
        if ch == _STAR:
            if not self.length:
                return LANGUAGE
            self.wipe()
            return CLEARED
        if ch == _HASH:
            if self.min_len <= self.length <= self.max_len:
                return SUBMIT
            self.wipe()
            return TOO_SHORT
        if ch == _BACKSPACE and self.length:
            self.length -= 1
            self._buf[self.length] = 0  # the digit taken back leaves memory too
            return BACK
        return _IGNORED

    def tick(self, now_ms):
        """True (once; the entry is wiped) when a non-empty entry saw no key for timeout_ms."""
        if self.length and ticks_diff(now_ms, self._last) >= self._timeout_ms:
            self.wipe()
            return True
        return False

    def code(self):
        """The entered ASCII digits: a view on the internal buffer, not a copy."""
        return self._mv[: self.length]

    def wipe(self):
        buf = self._buf
        for i in range(len(buf)):
            buf[i] = 0
        self.length = 0

    def masked(self):
        return "*" * self.length
