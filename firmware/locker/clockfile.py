# locker.clock's rare parts: clock.bin and vouched.bin read at boot, and a host command's time (the
# vouched time, the clock challenge's proven `time`). Imported per call: the boot's is dropped with
# the other boot-only modules (locker.startup); the running locker keeps only now(), tick(), set().
import struct

from micropython import const

from locker import store

_OFF_S = const(2)  # a host time further off than this from the clock is adopted


def boot(clock, rtc_epoch, now_ms):
    saved = _load(clock, clock.path)
    clock.vouched = _load(clock, clock.vouched_path)
    if clock.vouched is not None and (saved is None or saved < clock.vouched):
        saved = clock.vouched  # the host said it was at least this late
    clock.base_ms = clock.saved_ms = now_ms
    if rtc_epoch is not None and (saved is None or rtc_epoch >= saved):
        clock.base_epoch, clock.known = rtc_epoch, True
        if saved is None or rtc_epoch > saved:
            # Saved now, not only in 10 minutes: a power cut right after this boot must not
            # leave a locker that knew the time with no estimate (then no expiry check at all).
            clock.save(now_ms)
    elif saved is not None:
        clock.base_epoch, clock.known = saved, False


def host_time(clock, sent, now_ms, proven):
    sent = int(sent)
    vouched = clock.vouched
    if proven or vouched is None or sent > vouched:
        clock.vouched = sent
    mine = clock.now(now_ms)
    if proven or not clock.known or mine is None or abs(sent - mine) > _OFF_S:
        clock.set(sent, now_ms)
    if clock.vouched != vouched:
        store.save(clock.vouched_path, struct.pack("<I", clock.vouched))


def _load(clock, path):
    try:
        raw = store.load(path)
        if raw is not None and len(raw) == 4:
            return struct.unpack("<I", raw)[0] or None
    except store.Corrupt as exc:
        clock.problem = str(exc)
    return None
