# Door state machines, the solenoid scheduler and the door alarms.
#
# Safety rules, whatever the arguments or the call pattern:
# - at most ONE solenoid is energized at any moment (power budget); the others wait in FIFO order,
#   with gap_ms between the end of one pulse and the start of the next;
# - a pulse never lasts longer than HARD_MAX_PULSE_MS (pulse_ms is clamped); poll() switches an
#   expired pulse off before it does anything else, so the only slack is the caller's poll period.
# Only poll() energizes a solenoid. Events are ints (kind << 8 | door) in a preallocated Ring, and
# poll() allocates nothing. Times are ticks passed in by the caller, compared with ticks_diff only.
from micropython import const

from locker.ticks import ticks_diff

HARD_MAX_PULSE_MS = const(1000)

# door states
LOCKED = const(0)
_UNLOCKING = const(1)
OPEN = const(2)
CLOSED = const(3)  # shut again after an unlock, until acknowledge()

# event kinds
_EV_PULSE_ON = const(1)
_EV_PULSE_OFF = const(2)
EV_OPENED = const(3)
EV_CLOSED = const(4)
EV_JAMMED = const(5)
EV_RETRY = const(6)
EV_LEFT_OPEN = const(7)
EV_FORCED = const(8)
EV_SENSOR_SUSPECT = const(9)
_EV_PARCEL_IN = const(10)
_EV_PARCEL_OUT = const(11)


# where a door is in its unlock (independent of the door state the app sees)
_P_IDLE = const(0)
_P_QUEUED = const(1)  # waiting for its turn (first pulse or a retry)
_P_PULSING = const(2)
_P_CONFIRM = const(3)  # pulse over, waiting to see the door open

# gap_armed
_GAP_NONE = const(0)  # no pulse yet: the next one may start at once
_GAP_SET = const(1)  # off_at holds the end of the last pulse
_GAP_AT_NEXT_POLL = const(2)  # all_off() cut a pulse without a time: count the gap from the next poll

_NO_TIME = const(-1)  # ticks are never negative

_STATE_NAMES = const(("locked", "unlocking", "open", "closed"))


def event_kind(ev):
    return ev >> 8


def event_door(ev):
    return ev & 0xFF


def name_of_state(state):
    if 0 <= state < len(_STATE_NAMES):
        return _STATE_NAMES[state]
    return "?"


class DoorBank:
    def __init__(
        self,
        solenoids,
        closed_sensors,
        parcel_sensors,
        pulse_ms=300,
        gap_ms=150,
        confirm_ms=3000,
        retries=1,
        open_alarm_ms=120000,
        sensor_debounce_ms=50,
        queue_size=32,
        now_ms=0,
    ):
        # Run once per boot: the work is in locker.doorinit, imported for it and dropped again.
        from locker import lazy

        try:
            lazy.load("doorinit").init(
                self,
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
            )
        finally:
            lazy.drop("doorinit")

    # --- requests -----------------------------------------------------------------------------

    def request_unlock(self, door, now_ms):
        """Queue an unlock. False for a bad index, a door out of service or already unlocking."""
        if not (0 <= door < self.n) or self.oos[door]:
            return False
        if self.states[door] == _UNLOCKING or self.phase[door] != _P_IDLE:
            return False
        self.states[door] = _UNLOCKING
        self.unlocks[door] = (self.unlocks[door] + 1) & 0xFF
        self.tries[door] = 0
        self.suspect[door] = 0
        self._queue(door)
        return True

    def set_out_of_service(self, door, flag):
        """Refuse new unlocks; cancel this door's pulses that have not started (a running one finishes)."""
        self._check(door)
        self.oos[door] = 1 if flag else 0
        if flag and self.phase[door] == _P_QUEUED:
            self.phase[door] = _P_IDLE
            if self.states[door] == _UNLOCKING:
                self.states[door] = LOCKED

    def out_of_service(self, door):
        self._check(door)
        return bool(self.oos[door])

    def acknowledge(self, door):
        """CLOSED -> LOCKED (the app has dealt with the pickup). True if the state changed."""
        self._check(door)
        if self.states[door] == CLOSED:
            self.states[door] = LOCKED
            return True
        return False

    def assume_open(self, door, now_ms):
        """After a reboot: a door found open for a pickup in progress counts as opened by an unlock,
        so closing it gives EV_CLOSED and state CLOSED. No effect unless seen open, and LOCKED or
        open with no unlock (as a door open at boot is)."""
        self._check(door)
        s = self.states[door]
        if self.phase[door] != _P_IDLE or self.db[door] or not (s == LOCKED or s == OPEN and not self.unlocked[door]):
            return False
        self.enter_open(door, 1, now_ms)
        return True

    def all_off(self):
        """Every solenoid off now, nothing more energized until the next request_unlock: queued
        pulses are cancelled (their doors go back to LOCKED) and doors waiting to be seen open get
        no retry (they open -> EV_OPENED, or time out -> EV_JAMMED)."""
        for pin in self.sol:
            pin.value(0)
        a = self.active
        if a >= 0:
            self.active = -1
            self.gap_armed = _GAP_AT_NEXT_POLL
            self._emit(_EV_PULSE_OFF, a)
        for d in range(self.n):
            if self.phase[d] == _P_QUEUED:
                self.phase[d] = _P_IDLE
                if self.states[d] == _UNLOCKING:
                    self.states[d] = LOCKED
            elif d == a:
                self._after_pulse(d, _NO_TIME)  # the confirm window starts at the next poll
                self.tries[d] = self.retries + 1  # no retry: nothing more is energized
            elif self.phase[d] == _P_CONFIRM:
                self.tries[d] = self.retries + 1
        self.qlen = 0
        self.qhead = 0
        for d in range(self.n):
            self.inq[d] = 0

    # --- queries ------------------------------------------------------------------------------

    def state(self, door):
        self._check(door)
        return self.states[door]

    def is_closed(self, door):
        self._check(door)
        return self.db[door] == 1

    def has_parcel(self, door):
        self._check(door)
        if self.parcel_pin[door] is None:
            return None
        return self.db[self.n + door] == 1

    def _debounce(self, i, raw, now_ms):
        """Feed one raw sample of sensor i; True when its debounced state changed. A level different
        from the state is accepted once seen continuously for at least sensor_debounce_ms."""
        if raw != self.dc[i]:
            self.dc[i] = raw
            self.dt[i] = now_ms
        if self.dc[i] != self.db[i] and ticks_diff(now_ms, self.dt[i]) >= self.stable:
            self.db[i] = self.dc[i]
            return True
        return False

    def energized(self):
        return self.active

    # --- the hot loop: no allocation below ----------------------------------------------------

    def poll(self, now_ms):
        # 1. An expired pulse goes off before anything else (a negative age means the clock jumped
        #    more than half a tick period: off as well).
        a = self.active
        if a >= 0:
            age = ticks_diff(now_ms, self.on_at)
            if age >= self.pulse_ms or age < 0:
                self.sol[a].value(0)
                self.active = -1
                self.off_at = now_ms
                self.gap_armed = _GAP_SET
                self._emit(_EV_PULSE_OFF, a)
                self._after_pulse(a, now_ms)
        elif self.gap_armed == _GAP_AT_NEXT_POLL:
            self.off_at = now_ms
            self.gap_armed = _GAP_SET

        for d in range(self.n):
            # 2. sensors
            if self._debounce(d, 1 if self.closed_pin[d].value() else 0, now_ms):
                if self.db[d]:
                    self._on_close(d)
                else:
                    self._on_open(d, now_ms)
            p = self.parcel_pin[d]
            if p is not None and self._debounce(self.n + d, 1 if p.value() else 0, now_ms):
                self._emit(_EV_PARCEL_IN if self.db[self.n + d] else _EV_PARCEL_OUT, d)

            # 3. timers
            ph = self.phase[d]
            if ph == _P_CONFIRM:
                if self.times[d] == _NO_TIME:
                    self.times[d] = now_ms  # window of a pulse cut by all_off()
                if not self.db[d]:
                    # still "open" after the pulse: the sensor said so from the start (suspect)
                    self.phase[d] = _P_IDLE
                    self._emit(EV_OPENED, d)
                    self.enter_open(d, 1, now_ms)
                elif ticks_diff(now_ms, self.times[d]) >= self.confirm_ms:
                    if self.tries[d] <= self.retries and not self.oos[d]:
                        self._emit(EV_RETRY, d)
                        self._queue(d)
                    else:
                        self.phase[d] = _P_IDLE
                        self.states[d] = LOCKED
                        self._emit(EV_JAMMED, d)
            elif self.states[d] == OPEN and not self.alarmed[d]:
                if ticks_diff(now_ms, self.times[d]) >= self.alarm_ms:
                    self.alarmed[d] = 1
                    self._emit(EV_LEFT_OPEN, d)

        # 4. the next pulse, if none is on and the gap has passed
        if self.active < 0 and self.qlen:
            if self.gap_armed == _GAP_SET:
                since = ticks_diff(now_ms, self.off_at)
                if 0 <= since < self.gap_ms:
                    return
            while self.qlen:
                d = self.fifo[self.qhead]
                self.qhead += 1
                if self.qhead >= self.n:
                    self.qhead = 0
                self.qlen -= 1
                self.inq[d] = 0
                if self.phase[d] == _P_QUEUED:
                    self._start_pulse(d, now_ms)
                    return

    # --- internals ----------------------------------------------------------------------------

    def _check(self, door):
        if not (0 <= door < self.n):
            raise IndexError("door")

    def _emit(self, kind, door):
        self.events.put(kind << 8 | door)

    def _queue(self, d):
        self.phase[d] = _P_QUEUED
        if self.inq[d]:
            return  # a cancelled entry is still in the FIFO: it serves again
        i = self.qhead + self.qlen
        if i >= self.n:
            i -= self.n
        self.fifo[i] = d
        self.qlen += 1
        self.inq[d] = 1

    def _start_pulse(self, d, now_ms):
        self.phase[d] = _P_PULSING
        self.tries[d] += 1
        self.active = d
        self.on_at = now_ms
        self.sol[d].value(1)
        self._emit(_EV_PULSE_ON, d)
        if self.states[d] == _UNLOCKING and not self.db[d] and not self.suspect[d]:
            # "open" before the latch was released: a cut wire reads like this. Pulse anyway.
            self.suspect[d] = 1
            self._emit(EV_SENSOR_SUSPECT, d)

    def _after_pulse(self, d, now_ms):
        if self.states[d] == _UNLOCKING:
            self.phase[d] = _P_CONFIRM
            self.times[d] = now_ms
        else:
            self.phase[d] = _P_IDLE  # already seen open during the pulse

    def enter_open(self, d, unlocked, now_ms):
        self.states[d] = OPEN
        self.unlocked[d] = unlocked
        self.times[d] = now_ms
        self.alarmed[d] = 0

    def _on_open(self, d, now_ms):
        s = self.states[d]
        if s == OPEN:
            return
        if s == LOCKED:
            self._emit(EV_FORCED, d)
            self.enter_open(d, 0, now_ms)
            return
        # UNLOCKING, or CLOSED (shut after a pickup but not acknowledged: the latch may not have caught)
        self._emit(EV_OPENED, d)
        ph = self.phase[d]
        if ph == _P_CONFIRM or (ph == _P_QUEUED and self.tries[d] > 0):
            self.phase[d] = _P_IDLE  # no retry needed; a first pulse still queued is still given
        self.enter_open(d, 1, now_ms)

    def _on_close(self, d):
        self._emit(EV_CLOSED, d)
        if self.states[d] == OPEN:
            self.states[d] = CLOSED if self.unlocked[d] else LOCKED
