# Software debounce of one logical input (any value compared with !=, so it also
# debounces small-int states such as the keypad's "which key is down").
from locker.ticks import ticks_diff


class Debouncer:
    def __init__(self, initial, stable_ms):
        if stable_ms < 0:
            raise ValueError("stable_ms")
        self.state = initial
        self._stable_ms = stable_ms
        self._cand = initial  # last raw level seen
        self._since = 0  # ticks when _cand was first seen

    def settling(self):
        """The raw level being timed to replace `state` (`state` itself when none is)."""
        return self._cand

    def update(self, raw, now_ms):
        """Feed one raw sample; True when the debounced `state` changed.

        A raw level different from `state` is accepted once it has been seen
        continuously (every sample) for at least stable_ms.
        """
        if raw != self._cand:
            self._cand = raw
            self._since = now_ms
        if self._cand != self.state and ticks_diff(now_ms, self._since) >= self._stable_ms:
            self.state = self._cand
            return True
        return False
