# RS485 lock-control boards (Kerong KR-CU16 and compatibles; frames: locker.lockframe) on one UART
# behind a half-duplex transceiver whose DE/RE pin is high while we send.
#
# The boards present per-door logical pins, so locker.doors drives them like GPIOs: a lock's
# "solenoid" sends an unlock frame when it is energized (the board times the pulse itself); its
# "closed" and "parcel" pins read the hook and infrared bits of that board's latest status reply.
# poll() is a small state machine: one exchange at a time, non-blocking reads into a preallocated
# buffer, nothing allocated per poll. A timeout or a bad reply is retried; a board that fails
# _DOWN_AFTER exchanges in a row is down (an event), and its pins keep their last known levels
# (no open/closed change can be invented) until it answers again (another event).
# No machine import: the UART and the DE pin come in (hal.board makes them from board.json).
from micropython import const

from locker import lockframe as F
from locker.ring import Ring
from locker.ticks import ticks_diff, ticks_ms

TYPE_CHECKING = const(False)  # the compiler drops `if TYPE_CHECKING:` blocks; mypy enters them
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Sequence, Tuple  # TYPE_CHECKING only

    from hal import PinLike, UARTLike

_DOWN_AFTER = const(3)  # failed exchanges in a row before a board is reported down
_UNLOCK_FRAMES = const(2)  # unlock frames for one pulse at most (the first, one retry)
_TURNAROUND_MS = const(20)  # the board's own time to answer, beyond the bytes on the wire
_ALL_CLOSED = const(0xFFFF)  # hooks assumed before a board has ever answered

_IDLE = const(0)
_WAIT = const(1)


class LockBus:
    def __init__(
        self,
        uart: "UARTLike",
        de: "PinLike",
        baud: int,
        addresses: "Sequence[int]",
        door_locks: "Sequence[Tuple[int, int]]",
        poll_ms: int = 100,
        clock: "Optional[Callable[[], int]]" = None,
    ) -> None:
        """addresses: the boards' addresses (0-15); door_locks: per door (board index, lock 0-15)."""
        de.value(0)  # receive: the bus is the boards' until we speak
        self._uart = uart
        self._de = de
        self._clock: "Callable[[], int]" = clock or ticks_ms
        nb = len(addresses)
        self.addresses = bytes(addresses)
        self._dboard = bytearray(len(door_locks))
        self._dlock = bytearray(len(door_locks))
        for i, (b, lock) in enumerate(door_locks):
            self._dboard[i] = b
            self._dlock[i] = lock
        self._hooks: "List[int]" = [_ALL_CLOSED] * nb
        self._ir: "List[int]" = [0] * nb
        self._up = bytearray(nb)  # 1 while the board answers
        self._fails = bytearray(nb)
        self._polled: "List[int]" = [0] * nb  # ticks of the last status request
        self._next = 0  # round-robin position
        self._poll_ms = poll_ms
        # the reply's deadline after the request's last byte: both frames' time on the wire + margin
        self._reply_ms = (F.wire_us(F.REQUEST_LEN + F.REPLY_LEN, baud) + 999) // 1000 + _TURNAROUND_MS
        self._tx = bytearray(F.REQUEST_LEN)
        self._rx = bytearray(16)
        self._parser = F.Parser()
        self._state = _IDLE
        self._cur = 0  # board of the exchange in progress
        self._cur_unlock = False
        self._sent_at = 0
        self._on = -1  # the door whose lock locker.doors holds energized
        self._ul_frames = 0  # unlock frames sent for it
        self._ul_done = False  # its board answered the unlock
        self._started = False
        self.events = Ring(8)  # (1 up / 0 down) << 8 | address
        self.exchanges = 0
        self.failures = 0

    # --- the doors' pins -------------------------------------------------------------------

    def solenoid(self, door: int) -> "_LockPin":
        return _LockPin(self, door)

    def closed(self, door: int) -> "_BitPin":
        return _BitPin(self, door, False)

    def parcel(self, door: int) -> "_BitPin":
        return _BitPin(self, door, True)

    def online(self, door: int) -> bool:
        """False while the door's board is not answering: its state is unknown."""
        return self._up[self._dboard[door]] == 1

    def energize(self, door: int, on: bool) -> None:
        if on:
            if self._on != door:
                self._on = door
                self._ul_frames = 0
                self._ul_done = False
                self.poll(self._clock())  # out at once when the bus is free: no loop's delay
        elif self._on == door:
            self._on = -1  # no more frames; the board ends the pulse by itself

    def all_off(self) -> None:
        self._on = -1

    def bit(self, door: int, infrared: bool) -> int:
        b = self._dboard[door]
        word = self._ir[b] if infrared else self._hooks[b]
        return int((word >> self._dlock[door]) & 1)

    # --- the bus -------------------------------------------------------------------------------

    def start(self, timeout_ms: int = 200) -> None:
        """At boot (blocking, bounded): one status from every board, so the doors start from what
        the boards see. A board that does not answer is reported down."""
        for b in range(len(self.addresses)):
            for _ in range(_DOWN_AFTER):
                t0 = self._clock()
                self._send(b, False, t0)
                while self._state == _WAIT and ticks_diff(self._clock(), t0) < timeout_ms:
                    self.poll(self._clock())
                if self._state == _WAIT:
                    self._fail(self._clock())
                if self._up[b]:
                    break
            if not self._up[b]:
                self.events.put(self.addresses[b])
                self._fails[b] = _DOWN_AFTER
        self._started = True

    def poll(self, now_ms: int) -> None:
        if self._state == _WAIT:
            self._receive(now_ms)
            if self._state == _WAIT:
                if ticks_diff(now_ms, self._sent_at) < self._reply_ms:
                    return
                self._fail(now_ms)
        d = self._on
        if d >= 0 and not self._ul_done and self._ul_frames < _UNLOCK_FRAMES:
            self._ul_frames += 1
            self._send(self._dboard[d], True, now_ms)
            return
        n = len(self.addresses)
        for _ in range(n):
            b = self._next
            self._next = b + 1 if b + 1 < n else 0
            retry = self._fails[b] and self._fails[b] < _DOWN_AFTER
            if retry or ticks_diff(now_ms, self._polled[b]) >= self._poll_ms:
                self._polled[b] = now_ms
                self._send(b, False, now_ms)
                return

    def _send(self, b: int, unlock: bool, now_ms: int) -> None:
        uart = self._uart
        while uart.any():  # stale bytes (a late reply, noise): not this exchange's
            uart.readinto(self._rx, len(self._rx))
        self._parser.reset()
        lock = self._dlock[self._on] if unlock else 0
        F.build(self._tx, self.addresses[b], lock, F.CMD_UNLOCK if unlock else F.CMD_STATUS)
        self._de.value(1)
        uart.write(self._tx)
        uart.flush()  # returns once the last bit is out: the frame's own time on the wire
        self._de.value(0)
        self._cur = b
        self._cur_unlock = unlock
        self._sent_at = self._clock()
        self._state = _WAIT
        self.exchanges += 1

    def _receive(self, now_ms: int) -> None:
        uart = self._uart
        p = self._parser
        rx = self._rx
        n = uart.any()
        while n:
            got = uart.readinto(rx, n if n < len(rx) else len(rx)) or 0
            for i in range(got):
                r = p.feed(rx[i])
                if r == F.FRAME and p.addr == self.addresses[self._cur]:
                    self._answered(p.hooks, p.infrared)
                    return
                if r != F.NEED_MORE:  # a bad frame, or another board's: this exchange failed
                    self._fail(now_ms)
                    return
            if not got:
                return
            n = uart.any()

    def _answered(self, hooks: int, infrared: int) -> None:
        b = self._cur
        self._state = _IDLE
        self._hooks[b] = hooks
        self._ir[b] = infrared
        self._fails[b] = 0
        if self._cur_unlock:
            self._ul_done = True
        if not self._up[b]:
            self._up[b] = 1
            if self._started:  # at boot only the boards that stay silent are news
                self.events.put(0x100 | self.addresses[b])

    def _fail(self, now_ms: int) -> None:
        b = self._cur
        self._state = _IDLE
        self.failures += 1
        if self._fails[b] < 255:
            self._fails[b] += 1
        if self._fails[b] == _DOWN_AFTER and self._up[b]:
            self._up[b] = 0
            self.events.put(self.addresses[b])
        self._polled[b] = now_ms


class _LockPin:
    """A lock as locker.doors' solenoid: 1 = the unlock is on (frames go out), 0 = off."""

    def __init__(self, bus: LockBus, door: int) -> None:
        self._bus = bus
        self._d = door

    def value(self, v: "Any" = None) -> "int | None":
        if v is None:
            return 1 if self._bus._on == self._d else 0
        self._bus.energize(self._d, bool(v))
        return None


class _BitPin:
    """The hook (door closed) or infrared (parcel present) bit of a lock, from the last status."""

    def __init__(self, bus: LockBus, door: int, infrared: bool) -> None:
        self._bus = bus
        self._d = door
        self._ir = infrared

    def value(self, v: "Any" = None) -> "int | None":
        if v is None:
            return self._bus.bit(self._d, self._ir)
        return None
