# Non-blocking buzzer on a PWM: play(pattern, now_ms) starts a pattern, update(now_ms) advances it.
# A pattern is a tuple of (freq_hz, ms) steps; freq 0 is silence. Nothing here sleeps or allocates.
# Only ticks_diff is used (patterns are timed from their start), so now_ms may be any ticks_ms value.
try:
    from time import ticks_diff  # MicroPython
except ImportError:  # CPython (tests)
    from locker.ticks import ticks_diff  # type: ignore[no-redef]

from micropython import const

TYPE_CHECKING = const(False)  # the compiler drops `if TYPE_CHECKING:` blocks; mypy enters them
if TYPE_CHECKING:
    from typing import Tuple  # TYPE_CHECKING only: mpy-cross drops the block

    from hal import PWMLike

    Pattern = Tuple[Tuple[int, int], ...]

_ON = const(32768)  # 50 % duty: loudest for a piezo

KEY_CLICK = ((2400, 15),)
ACCEPTED = ((1600, 80), (0, 30), (2400, 160))
WRONG = ((330, 220), (0, 80), (330, 220))
DOOR_OPEN = ((2000, 60), (0, 60), (2000, 60), (0, 60), (2000, 60))
CLOSE_DOOR = ((1200, 150), (0, 350), (1200, 150), (0, 350))
ALARM = ((2800, 250), (1800, 250)) * 4

PATTERNS = {
    "key_click": KEY_CLICK,
    "accepted": ACCEPTED,
    "wrong": WRONG,
    "door_open": DOOR_OPEN,
    "close_door": CLOSE_DOOR,
    "alarm": ALARM,
}


class Buzzer:
    def __init__(self, pwm: "PWMLike") -> None:
        self.pwm = pwm
        self._pattern: "Pattern" = ()
        self._step = 0
        self._t0 = 0  # ticks_ms when the pattern started
        self._due = 0  # ms after _t0 when the current step ends (patterns are short: no wrap)
        self._freq = 0
        pwm.duty_u16(0)

    def play(self, pattern: "Pattern", now_ms: int) -> None:
        """Start pattern now, replacing whatever was playing."""
        if not pattern:
            self.stop()
            return
        self._pattern = pattern
        self._step = 0
        self._t0 = now_ms
        self._due = pattern[0][1]
        self._tone(pattern[0][0])

    def update(self, now_ms: int) -> bool:
        """Advance to the step due at now_ms. Returns True while a pattern is playing.

        Steps follow the pattern's schedule, not the caller's: a late update() skips what it missed."""
        pattern = self._pattern
        if not pattern:
            return False
        elapsed = ticks_diff(now_ms, self._t0)
        if elapsed < self._due:
            return True
        step = self._step
        while elapsed >= self._due:
            step += 1
            if step >= len(pattern):
                self.stop()
                return False
            self._due += pattern[step][1]
        self._step = step
        self._tone(pattern[step][0])
        return True

    def playing(self) -> bool:
        return len(self._pattern) > 0

    def stop(self) -> None:
        self._pattern = ()
        self._step = 0
        self.pwm.duty_u16(0)

    def _tone(self, freq: int) -> None:
        if freq <= 0:
            self.pwm.duty_u16(0)
            return
        if freq != self._freq:
            self.pwm.freq(freq)
            self._freq = freq
        self.pwm.duty_u16(_ON)
