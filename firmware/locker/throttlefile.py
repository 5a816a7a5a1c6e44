# Throttle.load's reading of throttle.bin (format at the top of locker/throttle.py): boot only, so
# imported for the call and dropped again after the Locker is built (locker.app).
import struct

from locker import store
from locker.ticks import ticks_add


def load(th, now_ms, now_epoch):
    problems = []
    n = epoch = 0
    try:
        raw = store.load(th.path)
        if raw is not None and len(raw) == 6:
            n, epoch = struct.unpack("<HI", raw)
        elif raw is not None and len(raw) == 2:  # the count only
            n = raw[0] | raw[1] << 8
        elif raw is not None:
            raise store.Corrupt(th.path, "bad length")
    except store.Corrupt as exc:
        n = th.free_failures
        problems.append(str(exc))
    th.failures = th.stored = n
    th.started = None
    if n:
        elapsed = 0
        if epoch and now_epoch is not None:
            # Whole seconds on both sides: up to 1 s less, never more, than really went by; past the
            # cap the count has decayed to 0 anyway (and ticks_add keeps to its range).
            elapsed = min(max(0, now_epoch - epoch - 1) * 1000, th.last_wait() + th.level * th.decay_ms)
        th.started = ticks_add(now_ms, -elapsed)
        th.settle(now_ms)
    return problems
