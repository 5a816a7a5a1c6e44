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
UNLOCKING = const(1)
OPEN = const(2)
CLOSED = const(3)  # shut again after an unlock, until acknowledge()

# event kinds
EV_PULSE_ON = const(1)
EV_PULSE_OFF = const(2)
EV_OPENED = const(3)
EV_CLOSED = const(4)
EV_JAMMED = const(5)
EV_RETRY = const(6)
EV_LEFT_OPEN = const(7)
EV_FORCED = const(8)
EV_SENSOR_SUSPECT = const(9)
EV_PARCEL_IN = const(10)
EV_PARCEL_OUT = const(11)


# where a door is in its unlock (independent of the door state the app sees)
_P_IDLE = const(0)
_P_QUEUED = const(1)  # waiting for its turn (first pulse or a retry)
_P_PULSING = const(2)
_P_CONFIRM = const(3)  # pulse over, waiting to see the door open

# _gap_armed
_GAP_NONE = const(0)  # no pulse yet: the next one may start at once
_GAP_SET = const(1)  # _off_at holds the end of the last pulse
_GAP_AT_NEXT_POLL = const(2)  # all_off() cut a pulse without a time: count the gap from the next poll

_NO_TIME = const(-1)  # ticks are never negative

_STATE_NAMES = ("locked", "unlocking", "open", "closed")


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
        # Run once per boot: the work is in locker.doorinit, which the boot drops again (locker.startup).
        from locker import doorinit

        doorinit.init(
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

    # --- requests -----------------------------------------------------------------------------

    def request_unlock(self, door, now_ms):
        """Queue an unlock. False for a bad index, a door out of service or already unlocking."""
        if not (0 <= door < self._n) or self._oos[door]:
            return False
        if self._state[door] == UNLOCKING or self._phase[door] != _P_IDLE:
            return False
        self._state[door] = UNLOCKING
        self.unlocks[door] = (self.unlocks[door] + 1) & 0xFF
        self._tries[door] = 0
        self._suspect[door] = 0
        self._queue(door)
        return True

    def set_out_of_service(self, door, flag):
        """Refuse new unlocks; cancel this door's pulses that have not started (a running one finishes)."""
        self._check(door)
        self._oos[door] = 1 if flag else 0
        if flag and self._phase[door] == _P_QUEUED:
            self._phase[door] = _P_IDLE
            if self._state[door] == UNLOCKING:
                self._state[door] = LOCKED

    def out_of_service(self, door):
        self._check(door)
        return bool(self._oos[door])

    def acknowledge(self, door):
        """CLOSED -> LOCKED (the app has dealt with the pickup). True if the state changed."""
        self._check(door)
        if self._state[door] == CLOSED:
            self._state[door] = LOCKED
            return True
        return False

    def assume_open(self, door, now_ms):
        """After a reboot: a door found open for a pickup in progress counts as opened by an unlock,
        so closing it gives EV_CLOSED and state CLOSED. No effect unless seen open, and LOCKED or
        open with no unlock (as a door open at boot is)."""
        self._check(door)
        s = self._state[door]
        if (
            self._phase[door] != _P_IDLE
            or self._db[door]
            or not (s == LOCKED or s == OPEN and not self._unlocked[door])
        ):
            return False
        self._enter_open(door, 1, now_ms)
        return True

    def all_off(self):
        """Every solenoid off now, nothing more energized until the next request_unlock: queued
        pulses are cancelled (their doors go back to LOCKED) and doors waiting to be seen open get
        no retry (they open -> EV_OPENED, or time out -> EV_JAMMED)."""
        for pin in self._sol:
            pin.value(0)
        a = self._active
        if a >= 0:
            self._active = -1
            self._gap_armed = _GAP_AT_NEXT_POLL
            self._emit(EV_PULSE_OFF, a)
        for d in range(self._n):
            if self._phase[d] == _P_QUEUED:
                self._phase[d] = _P_IDLE
                if self._state[d] == UNLOCKING:
                    self._state[d] = LOCKED
            elif d == a:
                self._after_pulse(d, _NO_TIME)  # the confirm window starts at the next poll
                self._tries[d] = self._retries + 1  # no retry: nothing more is energized
            elif self._phase[d] == _P_CONFIRM:
                self._tries[d] = self._retries + 1
        self._qlen = 0
        self._qhead = 0
        for d in range(self._n):
            self._inq[d] = 0

    # --- queries ------------------------------------------------------------------------------

    def state(self, door):
        self._check(door)
        return self._state[door]

    def is_closed(self, door):
        self._check(door)
        return self._db[door] == 1

    def has_parcel(self, door):
        self._check(door)
        if self._parcel_pin[door] is None:
            return None
        return self._db[self._n + door] == 1

    def _debounce(self, i, raw, now_ms):
        """Feed one raw sample of sensor i; True when its debounced state changed. A level different
        from the state is accepted once seen continuously for at least sensor_debounce_ms."""
        if raw != self._dc[i]:
            self._dc[i] = raw
            self._dt[i] = now_ms
        if self._dc[i] != self._db[i] and ticks_diff(now_ms, self._dt[i]) >= self._stable:
            self._db[i] = self._dc[i]
            return True
        return False

    def energized(self):
        return self._active

    # --- the hot loop: no allocation below ----------------------------------------------------

    def poll(self, now_ms):
        # 1. An expired pulse goes off before anything else (a negative age means the clock jumped
        #    more than half a tick period: off as well).
        a = self._active
        if a >= 0:
            age = ticks_diff(now_ms, self._on_at)
            if age >= self._pulse_ms or age < 0:
                self._sol[a].value(0)
                self._active = -1
                self._off_at = now_ms
                self._gap_armed = _GAP_SET
                self._emit(EV_PULSE_OFF, a)
                self._after_pulse(a, now_ms)
        elif self._gap_armed == _GAP_AT_NEXT_POLL:
            self._off_at = now_ms
            self._gap_armed = _GAP_SET

        for d in range(self._n):
            # 2. sensors
            if self._debounce(d, 1 if self._closed_pin[d].value() else 0, now_ms):
                if self._db[d]:
                    self._on_close(d)
                else:
                    self._on_open(d, now_ms)
            p = self._parcel_pin[d]
            if p is not None and self._debounce(self._n + d, 1 if p.value() else 0, now_ms):
                self._emit(EV_PARCEL_IN if self._db[self._n + d] else EV_PARCEL_OUT, d)

            # 3. timers
            ph = self._phase[d]
            if ph == _P_CONFIRM:
                if self._t[d] == _NO_TIME:
                    self._t[d] = now_ms  # window of a pulse cut by all_off()
                if not self._db[d]:
                    # still "open" after the pulse: the sensor said so from the start (suspect)
                    self._phase[d] = _P_IDLE
                    self._emit(EV_OPENED, d)
                    self._enter_open(d, 1, now_ms)
                elif ticks_diff(now_ms, self._t[d]) >= self._confirm_ms:
                    if self._tries[d] <= self._retries and not self._oos[d]:
                        self._emit(EV_RETRY, d)
                        self._queue(d)
                    else:
                        self._phase[d] = _P_IDLE
                        self._state[d] = LOCKED
                        self._emit(EV_JAMMED, d)
            elif self._state[d] == OPEN and not self._alarmed[d]:
                if ticks_diff(now_ms, self._t[d]) >= self._alarm_ms:
                    self._alarmed[d] = 1
                    self._emit(EV_LEFT_OPEN, d)

        # 4. the next pulse, if none is on and the gap has passed
        if self._active < 0 and self._qlen:
            if self._gap_armed == _GAP_SET:
                since = ticks_diff(now_ms, self._off_at)
                if 0 <= since < self._gap_ms:
                    return
            while self._qlen:
                d = self._fifo[self._qhead]
                self._qhead += 1
                if self._qhead >= self._n:
                    self._qhead = 0
                self._qlen -= 1
                self._inq[d] = 0
                if self._phase[d] == _P_QUEUED:
                    self._start_pulse(d, now_ms)
                    return

    # --- internals ----------------------------------------------------------------------------

    def _check(self, door):
        if not (0 <= door < self._n):
            raise IndexError("door")

    def _emit(self, kind, door):
        self.events.put(kind << 8 | door)

    def _queue(self, d):
        self._phase[d] = _P_QUEUED
        if self._inq[d]:
            return  # a cancelled entry is still in the FIFO: it serves again
        i = self._qhead + self._qlen
        if i >= self._n:
            i -= self._n
        self._fifo[i] = d
        self._qlen += 1
        self._inq[d] = 1

    def _start_pulse(self, d, now_ms):
        self._phase[d] = _P_PULSING
        self._tries[d] += 1
        self._active = d
        self._on_at = now_ms
        self._sol[d].value(1)
        self._emit(EV_PULSE_ON, d)
        if self._state[d] == UNLOCKING and not self._db[d] and not self._suspect[d]:
            # "open" before the latch was released: a cut wire reads like this. Pulse anyway.
            self._suspect[d] = 1
            self._emit(EV_SENSOR_SUSPECT, d)

    def _after_pulse(self, d, now_ms):
        if self._state[d] == UNLOCKING:
            self._phase[d] = _P_CONFIRM
            self._t[d] = now_ms
        else:
            self._phase[d] = _P_IDLE  # already seen open during the pulse

    def _enter_open(self, d, unlocked, now_ms):
        self._state[d] = OPEN
        self._unlocked[d] = unlocked
        self._t[d] = now_ms
        self._alarmed[d] = 0

    def _on_open(self, d, now_ms):
        s = self._state[d]
        if s == OPEN:
            return
        if s == LOCKED:
            self._emit(EV_FORCED, d)
            self._enter_open(d, 0, now_ms)
            return
        # UNLOCKING, or CLOSED (shut after a pickup but not acknowledged: the latch may not have caught)
        self._emit(EV_OPENED, d)
        ph = self._phase[d]
        if ph == _P_CONFIRM or (ph == _P_QUEUED and self._tries[d] > 0):
            self._phase[d] = _P_IDLE  # no retry needed; a first pulse still queued is still given
        self._enter_open(d, 1, now_ms)

    def _on_close(self, d):
        self._emit(EV_CLOSED, d)
        if self._state[d] == OPEN:
            self._state[d] = CLOSED if self._unlocked[d] else LOCKED
