# Wall-clock time for code expiry, with an honest "known" flag.
#
# Offline policy (docs/security.md): the ESP32's RTC survives resets but not a power cut. The host's
# time is written to the RTC when it is adopted, so after a reset the locker reads it back, known.
# When the RTC is unset after boot, the locker estimates the time as the last time it knew (saved
# to flash every few minutes and whenever the host sets the clock) plus the uptime since this boot.
# The estimate is never later than the true time, so a valid code is never refused as expired; a
# code may be honoured past its expiry by at most the length of the power cut, until the host or
# NTP gives the time again. A locker that has never known the time does not check expiry at all.
#
# vouched.bin keeps `vouched`: the latest time a signed host command carried. It only rises (but
# for a challenge-proven `time`, signed by the host within the last two minutes, so the truth), is
# written when it does, and lives in a file of its own, so it survives damage to cmdseq.bin or
# clock.bin: while the command sequence is unknown, a command signed before it is taken for a replay
# (protocol.CommandGate), and no clock at boot starts before it (the true time is later).
import struct

from micropython import const

from locker import lazy, store
from locker.ticks import ticks_diff

_SAVE_EVERY_MS = const(600_000)


class WallClock:
    def __init__(self, path="clock.bin", rtc=None, vouched_path="vouched.bin"):
        self.path = path
        self.vouched_path = vouched_path
        self.rtc = rtc  # sets the chip's RTC from epoch seconds (hal.system.set_wall_clock), or None
        self.known = False  # True when the time came from the RTC or the host since boot
        self.vouched = None  # the latest host-signed time seen (epoch), None: never
        self.base_epoch = None  # epoch at ticks base_ms
        self.base_ms = 0
        self.saved_ms = 0
        self.problem = None

    def boot(self, rtc_epoch, now_ms):
        """Start from the RTC's time when it has one, otherwise from the last time saved on flash
        (the later of clock.bin and vouched.bin). Boot only: the work is in locker.clockfile."""
        try:
            lazy.load("clockfile").boot(self, rtc_epoch, now_ms)
        finally:
            lazy.drop("clockfile")

    def set(self, epoch, now_ms):
        """A trusted source (the host, NTP) gave the time: adopt it, save it, and set the RTC, which
        keeps it across a reset (not a power cut)."""
        self.base_epoch, self.base_ms, self.known = int(epoch), now_ms, True
        if self.rtc is not None:
            self.rtc(int(epoch))
        self.save(now_ms)

    def host_time(self, sent, now_ms, proven=False):
        """An admitted host command's `now` (never an ack's). Adopted when the clock is unknown or
        off by more than 2 s; `proven` (a `time` answering the locker's challenge): adopted, and the
        vouched time follows it down too. Writes only what changed (locker.clockfile)."""
        try:
            lazy.load("clockfile").host_time(self, sent, now_ms, proven)
        finally:
            lazy.drop("clockfile")

    def now(self, now_ms):
        """Epoch seconds (known or estimated), or None when the locker has never known the time."""
        if self.base_epoch is None:
            return None
        return self.base_epoch + ticks_diff(now_ms, self.base_ms) // 1000

    def tick(self, now_ms):
        """Call now and then: saves the time every few minutes so an estimate after a cut is recent."""
        if self.base_epoch is not None and ticks_diff(now_ms, self.saved_ms) >= _SAVE_EVERY_MS:
            self.save(now_ms)
        # Re-base well before ticks_diff's range (2**29 ms, 6 days) runs out.
        if ticks_diff(now_ms, self.base_ms) > 86_400_000 and self.base_epoch is not None:
            self.base_epoch = self.now(now_ms)
            self.base_ms = now_ms

    def save(self, now_ms):
        self.saved_ms = now_ms
        store.save(self.path, struct.pack("<I", self.now(now_ms)))
