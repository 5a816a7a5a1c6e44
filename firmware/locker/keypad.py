# Matrix keypad scan -> debounced key events (ord(key)) in a Ring.
#
# The whole matrix is reduced each scan to one small int: no key, key index k, or
# "more than one key". That value is debounced as a whole, so a key is emitted only
# after it has been the one and only key down in every scan for debounce_ms.
# Two or more keys down (including ghosting, which needs at least three real keys)
# is rejected: nothing is emitted, and no key emits again until the matrix has been
# seen empty for debounce_ms. A held key emits once; it must be released (debounced)
# before it can emit again. scan() allocates nothing.
from micropython import const

from locker.debounce import Debouncer
from locker.ring import Ring

_NONE = const(-1)
_MULTI = const(-2)


class MatrixKeypad:
    def __init__(self, rows, cols, keys, debounce_ms=20, queue_size=16):
        self._rows = tuple(rows)
        self._cols = tuple(cols)
        if not self._rows or not self._cols or len(keys) != len(self._rows) * len(self._cols):
            raise ValueError("keypad: len(keys) must be rows * cols")
        codes = bytearray(len(keys))
        for i in range(len(keys)):
            codes[i] = ord(keys[i])
        self._codes = codes
        self._deb = Debouncer(_NONE, debounce_ms)
        self._blocked = False  # after a multi-key press, until all keys are released
        self._down = 0
        self.rejected = 0  # multi-key presses rejected
        self.events = Ring(queue_size)
        for r in self._rows:
            r.value(1)

    def keys_down(self):
        """How many keys the last raw scan saw down (ghost keys included)."""
        return self._down

    def settling(self):
        """The key (ord) down alone and not reported yet: it is, after debounce_ms, unless it
        bounces first. -1: none."""
        deb = self._deb
        s = deb.settling()
        if s < 0 or s == deb.state or self._blocked:
            return -1
        return self._codes[s]

    def scan(self, now_ms):
        n = 0
        idx = _NONE
        k = 0
        cols = self._cols
        for r in self._rows:
            r.value(0)
            for c in cols:
                if not c.value():
                    n += 1
                    idx = k
                k += 1
            r.value(1)
        self._down = n
        if n > 1:
            idx = _MULTI
        deb = self._deb
        if not deb.update(idx, now_ms):
            return
        s = deb.state
        if s == _NONE:
            self._blocked = False
        elif s == _MULTI:
            self._blocked = True
            self.rejected += 1
        elif not self._blocked:
            self.events.put(self._codes[s])
