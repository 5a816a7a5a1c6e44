# Simulated `machine` for the MicroPython unix port: shadows the built-in module when
# host_tools/sim_board comes first on MICROPYPATH. Only what the firmware's hal uses, with the
# ESP32 port's signatures and constants; the board itself (wiring, devices, control channel) is
# _simboard, and nothing happens until the firmware first touches the hardware.
import time

import _simboard as _sb

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1

    def __init__(self, id, mode=-1, pull=-1, value=None, **kw):
        _sb.up()
        self._n = id
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None, **kw):
        _sb.gpio_set(
            self._n,
            -1 if mode == -1 else (1 if mode == 3 else 2 if mode == 7 else 0),
            -1 if pull == -1 else (1 if pull == 2 else 2 if pull == 1 else 0),
            value,
        )

    def value(self, v=None):
        if v is None:
            return _sb.gpio_read(self._n)
        _sb.gpio_set(self._n, -1, -1, v)

    __call__ = value

    def on(self):
        _sb.gpio_set(self._n, -1, -1, 1)

    def off(self):
        _sb.gpio_set(self._n, -1, -1, 0)


def _no(p):
    return p if p is None or isinstance(p, int) else p._n


class I2C:
    def __init__(self, id=0, scl=None, sda=None, freq=400000, **kw):
        _sb.up()
        b = _sb.bus
        # devices answer only on the bus the board wires them to
        self._ok = b is not None and id == b[0] and _no(scl) in (None, b[1]) and _no(sda) in (None, b[2])

    def scan(self):
        return _sb.scan(self._ok)

    def readfrom_mem(self, addr, reg, n, **kw):
        buf = bytearray(n)
        _sb.i2c(self._ok, addr, reg, buf, 0)
        return bytes(buf)

    def readfrom_mem_into(self, addr, reg, buf, **kw):
        _sb.i2c(self._ok, addr, reg, buf, 0)

    def writeto_mem(self, addr, reg, buf, **kw):
        _sb.i2c(self._ok, addr, reg, buf, 1)

    def readfrom(self, addr, n, stop=True):
        buf = bytearray(n)
        _sb.i2c(self._ok, addr, -1, buf, 0)
        return bytes(buf)

    def writeto(self, addr, buf, stop=True):
        _sb.i2c(self._ok, addr, -1, buf, 1)
        return len(buf)


SoftI2C = I2C


class PWM:
    def __init__(self, pin, freq=None, duty_u16=None, **kw):
        _sb.up()
        self._k = k = _no(pin)
        _sb.pwm(k, 5000 if freq is None and k not in _sb.pwms else freq, duty_u16)

    def freq(self, f=None):
        if f is None:
            return _sb.pwms[self._k][0]
        _sb.pwm(self._k, f, None)

    def duty_u16(self, d=None):
        if d is None:
            return _sb.pwms[self._k][1]
        _sb.pwm(self._k, None, d)

    def deinit(self):
        _sb.pwm(self._k, None, 0)
        _sb.pwms.pop(self._k, None)


def UART(id, baudrate=9600, tx=None, rx=None, **kw):
    """A UART wired to the simulated RS485 lock boards (_simlock: loaded by the first UART only)."""
    _sb.up()
    import _simlock

    return _simlock.UART(id, baudrate, _no(tx), _no(rx))


class WDT:
    def __init__(self, id=0, timeout=5000):
        _sb.wdt(timeout)

    def feed(self):
        _sb.wdt(None)
        _sb.pump()  # a board in safe mode reads no pins: the controller's commands still arrive


class RTC:
    def __init__(self, id=0):
        _sb.up()

    def datetime(self, dt=None):
        if dt is None:
            g = time.gmtime(_sb.rtc())
            return (g[0], g[1], g[2], g[6], g[3], g[4], g[5], 0)
        # days since 1970 of a civil date (proleptic Gregorian): time.mktime is local time here
        y, m, d = dt[0] - (dt[1] <= 2), dt[1], dt[2]
        era = y // 400
        yoe = y - era * 400
        doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
        days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
        _sb.rtc(days * 86400 + dt[4] * 3600 + dt[5] * 60 + dt[6])


def reset():
    _sb.reset(4, "hard")


def soft_reset():
    _sb.reset(5, "soft")


def reset_cause():
    c = _sb.cause
    return 3 if c == "watchdog" else 2 if c == "hard" else 5 if c == "soft" else 4 if c == "deepsleep" else 1


def unique_id():
    return b"\x24\x6f\x28\x5a\x1c\x01"


def freq(f=None):
    return 240000000


def idle():
    _sb.pump()
    time.sleep_ms(1)
