# Consecutive wrong codes, with growing delays, kept across reboots.
#
# After the n-th consecutive failure the keypad waits delay_after(n): nothing for the first
# free_failures, then base_delay_ms doubling per failure, capped at max_delay_ms. No hard lockout
# (a stranger must not be able to lock residents out). The count is on flash before failure()
# returns; after a reboot the full delay for the stored count restarts at the first wait_ms()
# call, so cutting the power never shortens a wait.
import struct

from micropython import const

from locker import store
from locker.ticks import ticks_diff

_MAX_SHIFT = const(30)
_MAX_COUNT = const(0xFFFF)


def delay_after(n, free_failures, base_delay_ms, max_delay_ms):
    """Wait in ms after the n-th consecutive failure."""
    if n <= free_failures:
        return 0
    shift = n - free_failures - 1
    if shift > _MAX_SHIFT:
        return max_delay_ms
    return min(base_delay_ms << shift, max_delay_ms)


def max_guesses_per_day(free_failures, base_delay_ms, max_delay_ms, seconds_per_guess=4):
    """Most codes one keypad accepts in 24 h from a patient attacker who never succeeds and never
    lets the counter reset: each guess takes seconds_per_guess to type, then the delay applies."""
    day_ms = 86400 * 1000
    typing_ms = int(seconds_per_guess * 1000)
    t = 0
    n = 0
    while True:
        t += typing_ms
        if t > day_ms:
            return n
        n += 1
        t += delay_after(n, free_failures, base_delay_ms, max_delay_ms)


class Throttle:
    def __init__(self, path="throttle.bin", free_failures=3, base_delay_ms=5000, max_delay_ms=300000):
        self.path = path
        self.free_failures = free_failures
        self.base_delay_ms = base_delay_ms
        self.max_delay_ms = max_delay_ms
        self.failures = 0
        self._start = None  # ticks when the current wait began; None = begins at the next wait_ms()
        self._over = False  # the current wait has run out

    def load(self):
        """Read the stored count. Returns a list of problems; a damaged file counts as free_failures
        (the next failure is delayed, nobody is locked out)."""
        self._start = None
        self._over = False
        try:
            raw = store.load(self.path)
        except store.Corrupt as exc:
            self.failures = self.free_failures
            return [str(exc)]
        if raw is None:
            self.failures = 0
            return []
        if len(raw) != 2:
            self.failures = self.free_failures
            return ["%s: bad length" % self.path]
        self.failures = struct.unpack("<H", raw)[0]
        return []

    def delay_ms(self):
        """The full wait for the current count."""
        return delay_after(self.failures, self.free_failures, self.base_delay_ms, self.max_delay_ms)

    def wait_ms(self, now_ms):
        """Milliseconds left before the next try is allowed; 0 = may try now."""
        delay = self.delay_ms()
        if not delay or self._over:
            return 0
        if self._start is None:
            self._start = now_ms
            return delay
        elapsed = ticks_diff(now_ms, self._start)
        if elapsed < 0 or elapsed >= delay:
            # elapsed < 0: the ticks wrapped (days later), so the wait is long over.
            self._over = True
            return 0
        return delay - elapsed

    def failure(self, now_ms):
        """A wrong code: count it (on flash before returning) and start the wait."""
        if self.failures < _MAX_COUNT:
            self.failures += 1
        store.save(self.path, struct.pack("<H", self.failures))
        self._start = now_ms
        self._over = False

    def success(self):
        """A code that opened a door: back to no delay. Writes only when there was a count."""
        if self.failures:
            store.save(self.path, struct.pack("<H", 0))
            self.failures = 0
        self._start = None
        self._over = False
