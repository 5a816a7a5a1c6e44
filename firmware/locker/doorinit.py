# DoorBank's construction (locker.doors): run once per boot, so imported for it and dropped again by
# the boot (locker.startup) once the Locker is built; the running locker keeps only the door logic.
from micropython import const

from locker.doors import HARD_MAX_PULSE_MS
from locker.ring import Ring

_MAX_DOORS = const(256)  # the door index lives in the low byte of an event
_MAX_SPAN_MS = const(0x1FFFFFFF)  # longest interval ticks_diff measures on a 2**30 tick period


def init(
    bank,
    solenoids,
    closed_sensors,
    parcel_sensors,
    pulse_ms,
    gap_ms,
    confirm_ms,
    retries,
    open_alarm_ms,
    sensor_debounce_ms,
    queue_size,
    now_ms,
):
    n = len(solenoids)
    # Outputs first: whatever else goes wrong below, every latch is released.
    for pin in solenoids:
        pin.value(0)
    if n > _MAX_DOORS:
        raise ValueError("too many doors")
    if len(closed_sensors) != n or len(parcel_sensors) != n:
        raise ValueError("one closed sensor and one parcel entry (or None) per solenoid")
    bank.n = n
    # The board's own lists, not copies (a list per door role saved): nothing changes them after boot.
    bank.sol = _as_list(solenoids)
    bank.closed_pin = _as_list(closed_sensors)
    bank.parcel_pin = _as_list(parcel_sensors)
    bank.pulse_ms = _clamp(pulse_ms, 1, HARD_MAX_PULSE_MS)
    bank.gap_ms = _clamp(gap_ms, 0, _MAX_SPAN_MS)
    bank.confirm_ms = _clamp(confirm_ms, 0, _MAX_SPAN_MS)
    bank.retries = _clamp(retries, 0, 100)
    bank.alarm_ms = _clamp(open_alarm_ms, 0, _MAX_SPAN_MS)
    stable = _clamp(sensor_debounce_ms, 0, _MAX_SPAN_MS)
    bank.events = Ring(queue_size)
    # Unlocks requested per door (mod 256): whoever asks (a code, staff, the host), the app can
    # tell that a door was unlocked since a moment it remembers (the end of a grace period).
    bank.unlocks = bytearray(n)

    # Sensor debounce (locker.debounce.Debouncer's rule) kept in flat tables, not one object per
    # sensor: entry d is door d's closed sensor, n + d its parcel sensor (unused without one).
    bank.stable = stable
    bank.db = bytearray(2 * n)  # debounced state
    for d in range(n):
        bank.db[d] = 1 if bank.closed_pin[d].value() else 0
        p = bank.parcel_pin[d]
        if p is not None:
            bank.db[n + d] = 1 if p.value() else 0
    bank.dc = bytearray(bank.db)  # last raw level seen
    bank.dt = [0] * (2 * n)  # ticks when that level was first seen
    # Per-door small ints (0-255) in bytearrays: a byte each instead of a list slot each.
    bank.states = bytearray(n)  # LOCKED
    bank.phase = bytearray(n)  # _P_IDLE
    bank.tries = bytearray(n)  # pulses given in the current unlock (at most retries + 2)
    bank.times = [0] * n  # _P_CONFIRM: end of the pulse; OPEN: when the door was seen open
    bank.alarmed = bytearray(n)  # EV_LEFT_OPEN sent for this open period
    bank.unlocked = bytearray(n)  # the open period comes from an unlock (-> CLOSED on close)
    bank.suspect = bytearray(n)  # EV_SENSOR_SUSPECT sent for the current unlock
    bank.oos = bytearray(n)
    bank.inq = bytearray(n)  # the door has an entry in the FIFO (maybe a cancelled one)
    bank.fifo = bytearray(n)  # door indices (< _MAX_DOORS); each queued at most once: n slots
    bank.qhead = 0
    bank.qlen = 0
    bank.active = -1
    bank.on_at = 0
    bank.off_at = 0
    bank.gap_armed = 0  # locker.doors' _GAP_NONE: the first pulse may start at once
    # A door the sensor reads open at boot is open, not locked, and nobody unlocked it: closing
    # it locks it (EV_CLOSED), its left-open alarm runs from the boot. The app reports it forced
    # unless its journal explains it (then assume_open).
    for d in range(n):
        if not bank.db[d]:
            bank.enter_open(d, 0, now_ms)


def _as_list(pins):
    return pins if isinstance(pins, list) else list(pins)


def _clamp(v, lo, hi):
    v = int(v)
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v
