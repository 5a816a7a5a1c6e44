# Task check-ins for the watchdog. The hardware watchdog is fed only when EVERY long-lived task
# has checked in recently, so one hung task resets the board instead of hiding behind the others.
from locker.ticks import ticks_diff


class Supervisor:
    def __init__(self, max_silence_ms):
        self.max_silence_ms = max_silence_ms
        self._names = []
        self._seen = []

    def register(self, name, now_ms):
        """A task announces itself; returns the slot it checks in with."""
        self._names.append(name)
        self._seen.append(now_ms)
        return len(self._names) - 1

    def check_in(self, slot, now_ms):
        self._seen[slot] = now_ms

    def stale(self, now_ms):
        """Names of the tasks that have been silent too long."""
        out = []
        for i, seen in enumerate(self._seen):
            if ticks_diff(now_ms, seen) > self.max_silence_ms:
                out.append(self._names[i])
        return out

    def healthy(self, now_ms):
        for seen in self._seen:
            if ticks_diff(now_ms, seen) > self.max_silence_ms:
                return False
        return bool(self._seen)
