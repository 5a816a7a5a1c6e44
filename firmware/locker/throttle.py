# Consecutive wrong codes, with growing delays that decay with quiet time, kept across reboots.
#
# After the n-th failure the keypad waits delay_after(n): nothing for the first free_failures, then
# base_delay_ms doubling per failure, capped at max_delay_ms. No hard lockout (a stranger must not
# be able to lock residents out). Decay: every decay_ms of quiet after a wait has run out (no wrong
# code) lowers the count by one, the first step from at most the level where the wait reached its
# cap; so a resident arriving a while after an attack is not delayed, and an attacker gains nothing
# by pausing as long as decay_ms >= max_delay_ms (locker/guessing.py computes the bound).
#
# throttle.bin (store.save): count u16 | epoch u32 of that failure (0: the clock was not known, or
# only estimated). On flash before failure() returns. After a reboot the wait and the decay go on
# from that time when the clock can tell (the estimate after a power cut is never later than the
# true time, so a cut never shortens a wait); without it, the full wait for the stored count starts
# again at boot. A 2-byte file (the count only) is read as a count with no time.
import struct

from micropython import const

from locker import lazy, store
from locker.ticks import ticks_diff

_MAX_SHIFT = const(30)
_MAX_COUNT = const(0xFFFF)
_FILE = const("<HI")


def delay_after(n, free_failures, base_delay_ms, max_delay_ms):
    """Wait in ms after the n-th consecutive failure."""
    if n <= free_failures:
        return 0
    shift = n - free_failures - 1
    if shift > _MAX_SHIFT:
        return max_delay_ms
    return min(base_delay_ms << shift, max_delay_ms)


def cap_level(free_failures, base_delay_ms, max_delay_ms):
    """The first count whose wait is max_delay_ms: a higher count waits no longer, and decays from here."""
    n = free_failures + 1
    while delay_after(n, free_failures, base_delay_ms, max_delay_ms) < max_delay_ms:
        n += 1
    return n


class Throttle:
    def __init__(self, path="throttle.bin", free_failures=3, base_delay_ms=5000, max_delay_ms=300000, decay_ms=300000):
        self.path = path
        self.free_failures = free_failures
        self.base_delay_ms = base_delay_ms
        self.max_delay_ms = max_delay_ms
        # Never quicker than the longest wait: a pause would then buy an attacker extra guesses.
        self.decay_ms = max(decay_ms, max_delay_ms)
        self.level = cap_level(free_failures, base_delay_ms, max_delay_ms)
        self.failures = 0  # the count now, decay applied
        self.stored = 0  # the count right after the last failure, as on flash
        self.started = None  # ticks of the last failure; None: nothing left to wait or decay

    def load(self, now_ms=0, now_epoch=None):
        """Read the stored count and the time of its failure (locker.throttlefile, boot only). now_epoch:
        the wall clock now, known or estimated (None: never known). Returns a list of problems; a
        damaged file counts as free_failures (the next failure is delayed, nobody is locked out)."""
        try:
            return lazy.load("throttlefile").load(self, now_ms, now_epoch)
        finally:
            lazy.drop("throttlefile")

    def last_wait(self):
        # The wait the last failure started.
        return delay_after(self.stored, self.free_failures, self.base_delay_ms, self.max_delay_ms)

    def settle(self, now_ms):
        """Apply the decay due by now (cheap: the app calls it on every loop while there is a count)."""
        if self.started is None:
            return
        elapsed = ticks_diff(now_ms, self.started)
        quiet = elapsed - self.last_wait()
        if elapsed >= 0 and quiet < self.decay_ms:
            return
        # elapsed < 0: the ticks wrapped (days later), so the count is long gone.
        n = min(self.stored, self.level) - quiet // self.decay_ms if elapsed >= 0 else 0
        if n > 0:
            self.failures = n
            return
        self.failures = 0
        self.started = None
        try:  # so that a reboot with no clock does not wait for a count that is gone
            store.save(self.path, struct.pack(_FILE, 0, 0))
            self.stored = 0
        except OSError:
            pass  # success() tries again; a reboot meanwhile may wait longer, never shorter

    def wait_ms(self, now_ms):
        """Milliseconds left before the next try is allowed; 0 = may try now."""
        if self.started is None:
            return 0
        elapsed = ticks_diff(now_ms, self.started)
        wait = self.last_wait()
        # elapsed < 0: the ticks wrapped (days later), so the wait is long over.
        return wait - elapsed if 0 <= elapsed < wait else 0

    def failure(self, now_ms, epoch=None):
        """A wrong code: count it (on flash before returning) and start the wait. epoch: the wall
        clock when it is known (not an estimate), so a reboot can go on with the wait."""
        self.settle(now_ms)
        # In RAM first: a failed write still counts the code until the next boot.
        self.failures = self.stored = min(self.failures + 1, _MAX_COUNT)
        self.started = now_ms
        store.save(self.path, struct.pack(_FILE, self.stored, epoch or 0))

    def success(self):
        """A code that opened a door: back to no delay. Writes only when there was a count."""
        if self.stored:
            store.save(self.path, struct.pack(_FILE, 0, 0))
        self.failures = self.stored = 0
        self.started = None
