# Wrap-safe millisecond ticks, the same on the board and under CPython.
# The ESP32's ticks_ms() wraps at 2**30; logic must only compare ticks
# through ticks_diff/ticks_add so a wrap after 12 days changes nothing.
try:
    from time import ticks_add, ticks_diff, ticks_ms  # noqa: F401
except ImportError:  # CPython: tests and host tools
    import time as _time

    _PERIOD = 1 << 30
    _HALF = _PERIOD >> 1

    def ticks_ms():
        return int(_time.monotonic() * 1000) & (_PERIOD - 1)

    def ticks_add(ticks, delta):
        return (ticks + delta) & (_PERIOD - 1)

    def ticks_diff(end, start):
        return ((end - start + _HALF) & (_PERIOD - 1)) - _HALF
