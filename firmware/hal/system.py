# Chip services: watchdog, resets, the RTC as a Unix-epoch wall clock, ids, memory.
import gc
import time

import machine
from micropython import const

_UNIX_2000 = const(946684800)  # 2000-01-01T00:00:00Z in Unix seconds
_MIN_YEAR = const(2024)  # an RTC showing an earlier year was never set (power-on: 2000-01-01)


def watchdog(timeout_ms: int) -> machine.WDT:
    """Start the hardware watchdog (it can't be stopped again); the caller feeds it with .feed()."""
    return machine.WDT(timeout=timeout_ms)


def reset() -> None:
    machine.reset()


def reset_cause() -> str:
    """One of: power_on, watchdog, soft, hard, deepsleep, brownout, unknown.

    The ESP32 port reports a brown-out as PWRON_RESET; "brownout" appears only on ports that have a
    BROWNOUT_RESET constant."""
    cause = machine.reset_cause()
    brownout = getattr(machine, "BROWNOUT_RESET", None)
    if brownout is not None and cause == brownout:
        return "brownout"
    if cause == machine.PWRON_RESET:
        return "power_on"
    if cause == machine.WDT_RESET:
        return "watchdog"
    if cause == machine.SOFT_RESET:
        return "soft"
    if cause == machine.HARD_RESET:
        return "hard"
    if cause == machine.DEEPSLEEP_RESET:
        return "deepsleep"
    return "unknown"


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _port_epoch() -> int:
    """Unix seconds of this port's time epoch: 0 where time.gmtime(0) is 1970, else 2000-01-01."""
    return 0 if time.gmtime(0)[0] == 1970 else _UNIX_2000


def wall_clock() -> "int | None":
    """RTC time (kept in UTC) as Unix epoch seconds, or None while the RTC is clearly unset."""
    dt = machine.RTC().datetime()  # (year, month, day, weekday, hours, minutes, seconds, subseconds)
    year = int(dt[0])
    if year < _MIN_YEAR:
        return None
    days = _days_from_civil(year, int(dt[1]), int(dt[2]))
    return days * 86400 + int(dt[4]) * 3600 + int(dt[5]) * 60 + int(dt[6])


def set_wall_clock(epoch: int) -> None:
    """Set the RTC (UTC) from Unix epoch seconds."""
    t = time.gmtime(epoch - _port_epoch())  # (year, month, mday, hour, minute, second, weekday, yearday)
    machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))


def unique_id() -> str:
    return "".join("%02x" % b for b in machine.unique_id())


def mem_free() -> int:
    return gc.mem_free()


def mem_alloc() -> int:
    return gc.mem_alloc()
