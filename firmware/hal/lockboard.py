# RS485 lock-control boards: the Kerong KR-CU16 family and its compatibles, on one UART behind a
# half-duplex transceiver whose DE/RE pin is high while we send. Frames, as public descriptions give
# them (docs/hardware.md, "RS485 lock-control boards", says which, and what to check on a real board):
#   request  02 ADDR CMD 03 SUM                    5 bytes (CMD 0x30 status, 0x31 unlock)
#   reply    02 ADDR 35 H1 H2 IR1 IR2 03 SUM       9 bytes (to a status or an unlock request)
# ADDR: the board's address (0-15, its DIP switches) in the high nibble, the lock (0-15) in the low
# one; SUM: the low byte of the sum of every byte before it. H1/H2: one hook bit per lock (1 = the
# hook is caught: the door is shut), locks 1-8 then 9-16, bit 0 first; IR1/IR2 likewise, the
# infrared item sensors (1 = something inside).
#
# The boards present per-door logical pins, so locker.doors drives them like GPIOs: a lock's pin,
# written 1, sends an unlock frame (the board times the pulse itself); read, it gives the hook bit
# (the door sensor) of that board's latest status reply, and the infrared pin the parcel sensor.
# poll() is a small state machine: one exchange at a time, non-blocking reads into a preallocated
# buffer, nothing allocated per poll. A timeout or a bad reply is retried; a board that fails
# _DOWN_AFTER exchanges in a row is down (an event), and its pins keep their last known levels
# (no open/closed change can be invented) until it answers again (another event).
# While a code is being typed (the app sets `typing`), no status exchange starts, so the bus is free
# when `#` comes and the unlock frame goes out at once: a board is read then only when its last
# status is _TYPING_POLL_MS old (between keys; twice that while a key is held down), and a failed
# exchange's retry waits as long. Door states are read less often meanwhile, never less than that.
# No machine import: the UART and the DE pin come in (hal.board makes them from board.json).
from micropython import const

from locker.ring import Ring
from locker.ticks import ticks_diff, ticks_ms

TYPE_CHECKING = const(False)  # the compiler drops `if TYPE_CHECKING:` blocks; mypy enters them
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple  # TYPE_CHECKING only

    from hal import PinLike, UARTLike

CMD_STATUS = const(0x30)
CMD_UNLOCK = const(0x31)
_REPLY_STATUS = const(0x35)
REQUEST_LEN = const(5)
_REPLY_LEN = const(9)

# Parser.feed() results
NEED_MORE = const(0)
FRAME = const(1)  # a whole, checked reply: addr, hooks, infrared hold it
BAD = const(-1)  # a reply that failed a check (checksum, end byte, command): dropped

_STX = const(0x02)
_ETX = const(0x03)


def build(buf: bytearray, board: int, lock: int, cmd: int) -> bytearray:
    """Fill buf (a bytearray of REQUEST_LEN) with one request; returns buf (no allocation)."""
    buf[0] = _STX
    buf[1] = ((board & 0x0F) << 4) | (lock & 0x0F)
    buf[2] = cmd & 0xFF
    buf[3] = _ETX
    buf[4] = (_STX + buf[1] + buf[2] + _ETX) & 0xFF
    return buf


class Parser:
    """Byte-by-byte reply parser: no allocation per byte. Bytes before an STX are skipped; a frame
    that fails a check is dropped whole (BAD) and the search for the next STX starts again."""

    def __init__(self) -> None:
        self._buf = bytearray(_REPLY_LEN)
        self._n = 0
        self._sum = 0
        self.addr = 0  # of the last good frame: the board (high nibble of its ADDR byte)
        self.hooks = 0  # 16 bits, bit n = lock n + 1
        self.infrared = 0
        self.bad = 0  # frames dropped since construction

    def reset(self) -> None:
        self._n = 0

    def feed(self, b: int) -> int:
        n = self._n
        if n == 0:
            if b != _STX:
                return NEED_MORE  # noise between frames, or our own echo
            self._sum = 0
        buf = self._buf
        buf[n] = b
        n += 1
        if n < _REPLY_LEN:
            self._sum = (self._sum + b) & 0xFF
            self._n = n
            if n == 3 and b != _REPLY_STATUS:
                return self._drop()
            return NEED_MORE
        self._n = 0
        if buf[7] != _ETX or b != self._sum:
            return self._drop()
        self.addr = buf[1] >> 4
        self.hooks = buf[3] | (buf[4] << 8)
        self.infrared = buf[5] | (buf[6] << 8)
        return FRAME

    def _drop(self) -> int:
        self._n = 0
        self.bad += 1
        return BAD


def wire_us(nbytes: int, baud: int) -> int:
    """Microseconds that nbytes take on the wire at 8N1 (10 bits a byte)."""
    return (nbytes * 10 * 1000000 + baud - 1) // baud


_DOWN_AFTER = const(3)  # failed exchanges in a row before a board is reported down
_UNLOCK_FRAMES = const(2)  # unlock frames for one pulse at most (the first, one retry)
_TURNAROUND_MS = const(20)  # the board's own time to answer, beyond the bytes on the wire
_ALL_CLOSED = const(0xFFFF)  # hooks assumed before a board has ever answered
_TYPING_POLL_MS = const(1000)  # the longest a board goes unread while a code is being typed

# LockBus.typing, as the app sets it on every poll
_NOT_TYPING = const(0)
_TYPING = const(1)  # the entry holds digits: the next key may be `#`
_KEY_DOWN = const(2)  # a key is down, not debounced yet: it may be `#`, due within key_debounce_ms

_IDLE = const(0)
_WAIT = const(1)
_NOT_ON_BUS = const(255)


def from_spec(lb: "Dict[str, Any]", doors: "List[Dict[str, Any]]", sol: "List[Any]") -> "LockBus":
    """The bus of board.json's lockboards section, read once (blocking, at boot); each door on a
    lock board gets its lock in sol. The DE pin starts low: nothing reaches a board before this."""
    import machine

    from hal.boardinit import make_out  # from_spec runs inside hal.boardinit.init

    de = make_out({"pin": lb["de"]}, {})  # low: the transceiver listens
    baud = lb.get("baud", 19200)
    uart = machine.UART(lb["uart"], baudrate=baud, tx=lb["tx"], rx=lb["rx"], timeout=0, timeout_char=0)
    addresses = [b["address"] for b in lb["boards"]]
    locks = []
    for d in doors:
        lock = d.get("lock")
        # "lock" is 1-16 as printed on the board (CH1..CH16); the frame's low nibble counts from 0
        locks.append((addresses.index(lock["board"]), lock["lock"] - 1) if lock else (_NOT_ON_BUS, 0))
    bus = LockBus(uart, de, baud, addresses, locks, poll_ms=lb.get("poll_ms", 100))
    for i, d in enumerate(doors):
        if "lock" in d:
            sol[i] = bus.lock(i)
    bus.start()
    return bus


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
        self._dboard = bytearray(len(door_locks))  # _NOT_ON_BUS: a door with pins of its own
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
        self._typing_poll_ms = poll_ms if poll_ms > _TYPING_POLL_MS else _TYPING_POLL_MS
        self.typing = _NOT_TYPING  # set by the app (see the header)
        # the reply's deadline after the request's last byte: both frames' time on the wire + margin
        self._reply_ms = (wire_us(REQUEST_LEN + _REPLY_LEN, baud) + 999) // 1000 + _TURNAROUND_MS
        self._tx = bytearray(REQUEST_LEN)
        self._rx = bytearray(16)
        self._parser = Parser()
        self._state = _IDLE
        self._cur = 0  # board of the exchange in progress
        self._cur_unlock = False
        self._sent_at = 0
        self._on = -1  # the door whose lock locker.doors holds energized
        self._ul_frames = 0  # unlock frames sent for it
        self._ul_done = False  # its board answered the unlock
        self._started = False
        # A board going down or up: an event. The app sets report (its record()); until then (and
        # in tests) they wait here as (1 up / 0 down) << 8 | address.
        self.report: "Optional[Callable[[str, Optional[int], Dict[str, Any], int], None]]" = None
        self.events = Ring(8)
        self.exchanges = 0
        self.failures = 0

    # --- the doors' pins -------------------------------------------------------------------

    def lock(self, door: int) -> "LockPin":
        """The door's solenoid and door sensor in one pin (see LockPin)."""
        LockPin.bus = InfraredPin.bus = self
        return LockPin(door)

    def infrared(self, door: int) -> "InfraredPin":
        LockPin.bus = InfraredPin.bus = self
        return InfraredPin(door)

    def online(self, door: int) -> bool:
        """False while the door's board is not answering: its state is unknown."""
        b = self._dboard[door]
        return b == _NOT_ON_BUS or self._up[b] == 1

    def keypad(self, key_down: bool, digits: int) -> None:
        """What the keypad shows, on every poll: a key down (not debounced yet), the digits typed."""
        self.typing = _KEY_DOWN if key_down else (_TYPING if digits else _NOT_TYPING)

    def tick(self) -> None:
        self.poll(self._clock())

    def infrared_pins(self, doors: "List[Dict[str, Any]]", parcels: "List[Any]") -> None:
        """The infrared sensors of the doors' locks (where fitted) as their parcel sensors."""
        for i, d in enumerate(doors):
            lock = d.get("lock")
            if lock is not None and lock.get("infrared"):
                parcels[i] = InfraredPin(i)

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
                    self._receive(self._clock())
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
        typing = self.typing
        every = self._poll_ms
        if typing:
            # A status exchange now could hold up the unlock frame of a `#` typed meanwhile.
            every = self._typing_poll_ms if typing == _TYPING else 2 * self._typing_poll_ms
        for _ in range(n):
            b = self._next
            self._next = b + 1 if b + 1 < n else 0
            retry = not typing and self._fails[b] and self._fails[b] < _DOWN_AFTER
            if retry or ticks_diff(now_ms, self._polled[b]) >= every:
                self._polled[b] = now_ms
                self._send(b, False, now_ms)
                return

    def _send(self, b: int, unlock: bool, now_ms: int) -> None:
        uart = self._uart
        while uart.any():  # stale bytes (a late reply, noise): not this exchange's
            uart.readinto(self._rx, len(self._rx))
        self._parser.reset()
        lock = self._dlock[self._on] if unlock else 0
        build(self._tx, self.addresses[b], lock, CMD_UNLOCK if unlock else CMD_STATUS)
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
                if r == FRAME and p.addr == self.addresses[self._cur]:
                    self._answered(p.hooks, p.infrared, now_ms)
                    return
                if r != NEED_MORE:  # a bad frame, or another board's: this exchange failed
                    self._fail(now_ms)
                    return
            if not got:
                return
            n = uart.any()

    def _answered(self, hooks: int, infrared: int, now_ms: int) -> None:
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
                self._event(b, True, now_ms)

    def _fail(self, now_ms: int) -> None:
        b = self._cur
        self._state = _IDLE
        self.failures += 1
        if self._fails[b] < 255:
            self._fails[b] += 1
        if self._fails[b] == _DOWN_AFTER and self._up[b]:
            self._up[b] = 0
            self._event(b, False, now_ms)
        self._polled[b] = now_ms

    def _event(self, b: int, up: bool, now_ms: int) -> None:
        report = self.report
        if report is not None:
            report("lockboard", None, {"a": self.addresses[b], "r": "up" if up else "down"}, now_ms)
        else:
            self.events.put((0x100 if up else 0) | self.addresses[b])


# The pins are small (a board has two per door: 64 on a 32-door cabinet): one int each, the bus
# in the class (a board has one lock bus).


class LockPin:
    """A lock as locker.doors sees it: written, its solenoid (1 = unlock: frames go out; 0 = no
    more); read, its door sensor (the hook bit: 1 = closed). locker.doors never reads a solenoid."""

    bus: LockBus

    def __init__(self, door: int) -> None:
        self._d = door

    def value(self, v: "Any" = None) -> "int | None":
        if v is None:
            return self.bus.bit(self._d, False)
        self.bus.energize(self._d, bool(v))
        return None


class InfraredPin:
    """A lock's infrared item sensor (1 = something inside), from the last status."""

    bus: LockBus

    def __init__(self, door: int) -> None:
        self._d = door

    def value(self, v: "Any" = None) -> "int | None":
        if v is None:
            return self.bus.bit(self._d, True)
        return None
