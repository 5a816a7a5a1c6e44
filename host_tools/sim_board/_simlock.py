# RS485 lock-control boards on the simulated board (Kerong KR-CU16 frames; firmware: hal.lockboard):
# machine.UART's bytes on the wire's time, the transceiver's DE pin, and the boards behind it. Loaded
# by _simboard only for a board.json with a "lockboards" section, so other boards' heap pays nothing.
# Nothing here allocates between a write and its flush's return (a real UART driver is C): a garbage
# collection there would hold DE high into the reply. Events are reported after the frame (report()).
import time

import _simboard as sb

ticks_ms = time.ticks_ms
ticks_diff = time.ticks_diff

_lb = None  # board address -> board index
_lbw = None  # (uart id, tx, rx, baud) as wired
_lbdoor = None  # bytearray(16 * boards): door index + 1 behind each lock (0: none)
_lbir = None  # per door: 1 if the board's infrared sensor watches it
_lbsil = _lbcor = None  # per board: silent (no answer, no action); replies still to corrupt
_lboff = None  # per door: ticks_ms when its board ends the pulse, or -1
_lbon = None  # per door: its board's pulse is on and reported
_lb_ms = 250  # every board's unlock time (set on a real board with its tool; the controller can change it)
_u = None  # the open UART: [wired right, microseconds a byte]
_de = 0
_txq = bytearray(32)  # _txn bytes written, on the wire until _tx_end (ticks_us)
_txn = 0
_tx_end = 0
_rxq = bytearray(9)  # a board's reply (_rxn bytes), arriving from _rx_t0 (ticks_us) a byte time at a time
_rxn = 0
_rx_t0 = 0
_rx_got = 0
_req = bytearray(5)
_reqn = 0
# events to report after the frame: [bytes lost (DE low), board << 8 | lock of an unlock (-1 none),
# its door, a pulse ended, board of a corrupted reply (-1 none), ticks_us of the unlock's last byte]
_lbev = [0, -1, -1, 0, -1, 0]


def setup(lb, doors):
    global _lb, _lbw, _lbdoor, _lbir, _lbsil, _lbcor, _lboff, _lbon
    n = len(doors)
    _lb = {x["address"]: j for j, x in enumerate(lb["boards"])}
    _lbw = (lb["uart"], lb["tx"], lb["rx"], lb.get("baud", 19200))
    _lbdoor = bytearray(16 * len(_lb))
    _lbir = bytearray(n)
    _lbsil = bytearray(len(_lb))
    _lbcor = bytearray(len(_lb))
    _lboff = [-1] * n
    _lbon = bytearray(n)
    for i, dr in enumerate(doors):
        lk = dr.get("lock")
        if lk and lk["board"] in _lb:
            _lbdoor[16 * _lb[lk["board"]] + lk["lock"] - 1] = i + 1
            _lbir[i] = 1 if lk.get("infrared") else 0


def fault(c):
    global _lb_ms
    j = _lb[c["address"]] if c.get("address") in _lb else -1
    if j < 0:
        raise ValueError("no lock board at address %r" % c.get("address"))
    if "silent" in c:
        _lbsil[j] = 1 if c["silent"] else 0
    if "corrupt" in c:
        _lbcor[j] = c["corrupt"]
    if "unlock_ms" in c:
        _lb_ms = c["unlock_ms"]


def de(on):
    """The DE pin changed. Our transceiver driving the bus loses a reply on its way (it collides, or
    our receiver is off while it starts); DE dropped before a frame's last bit tears the frame."""
    global _de, _rxn, _txn
    if on == _de:
        return
    _de = on
    now = time.ticks_us()
    if _rxn and (on or time.ticks_diff(now, _rx_t0) > 0):
        _rxn = 0
    if not on and _txn and time.ticks_diff(_tx_end, now) > 0:
        _txn = 0
        _lbev[0] = 1


class UART:
    """machine.UART (the methods the ESP32 port has), byte by byte on the wire's time."""

    def __init__(self, id, baud, tx, rx):
        global _u
        w = _lbw
        # a UART on other pins or at another speed reaches no board: every frame is lost
        _u = [w is not None and w == (id, tx, rx, baud), (10000000 + baud - 1) // baud]

    def any(self):
        return uart_any()

    def readinto(self, buf, n=None):
        return uart_read(buf, len(buf) if n is None else n)

    def read(self, n=None):
        buf = bytearray(n or 64)
        got = uart_read(buf, len(buf))
        return bytes(buf[:got]) if got else None

    def write(self, buf):
        return uart_write(buf)

    def flush(self):
        uart_flush()

    def txdone(self):
        return not _txn or time.ticks_diff(time.ticks_us(), _tx_end) >= 0


def uart_write(buf):
    global _tx_end, _txn
    step()
    n = len(buf)
    if not _de:
        _lbev[0] = n  # the transceiver was not sending: the frame never reached the bus
        return n
    now = time.ticks_us()
    start = _tx_end if _txn and time.ticks_diff(_tx_end, now) > 0 else now
    _tx_end = time.ticks_add(start, n * _u[1])
    for v in buf:
        if _txn < len(_txq):
            _txq[_txn] = v
            _txn += 1
    return n


def uart_flush():
    d = time.ticks_diff(_tx_end, time.ticks_us())
    if d > 0 and _txn:
        time.sleep_us(d)
    step()


def uart_any():
    step()
    report()
    if not _rxn:
        return 0
    k = time.ticks_diff(time.ticks_us(), _rx_t0) // _u[1]
    if k <= 0:
        return 0
    return (k if k < _rxn else _rxn) - _rx_got


def uart_read(buf, n):
    global _rx_got, _rxn
    k = uart_any()
    m = min(k, n, len(buf))
    for j in range(m):
        buf[j] = _rxq[_rx_got + j]
    _rx_got += m
    if _rxn and _rx_got >= _rxn:
        _rxn = _rx_got = 0
    return m


def step():
    """Deliver bytes whose time on the wire is over; end the boards' pulses that are due."""
    global _txn
    if _txn and time.ticks_diff(time.ticks_us(), _tx_end) >= 0:
        n, _txn = _txn, 0
        for j in range(n):
            _lb_byte(_txq[j])
    if _lboff is None:
        return  # a UART on a board without lock boards: nobody on the line
    ms = ticks_ms()
    for i in range(sb._nd):
        if _lboff[i] != -1 and ticks_diff(ms, _lboff[i]) >= 0:
            _lboff[i] = -1
            sb._sol[i] = 0
            _lbev[3] = 1


def report():
    """The events of the frames that went by (outside the frame's window: these allocate)."""
    e = _lbev
    if e[0]:
        sb._ev('"ev":"rs485","lost":"de_low","n":%d' % e[0])
        e[0] = 0
    if e[1] >= 0:
        b, lock, i = e[1] >> 8, e[1] & 15, e[2]
        e[1] = -1
        t = time.time_ns() // 1000 - time.ticks_diff(time.ticks_us(), e[5])
        sb._ev('"ev":"lockframe","board":%d,"lock":%d,"door":%d' % (b, lock + 1, i), t)
        if i >= 0 and sb._sol[i]:
            sb._ev('"ev":"solenoid","door":%d,"on":1' % i, t)
            sb._spring_check(i)
    if e[3]:
        e[3] = 0
        for i in range(sb._nd):
            if not sb._sol[i] and _lbon[i]:
                _lbon[i] = 0
                sb._ev('"ev":"solenoid","door":%d,"on":0' % i)
    if e[4] >= 0:
        sb._ev('"ev":"rs485","corrupted":%d' % e[4])
        e[4] = -1


def _lb_byte(v):
    global _reqn
    if _reqn == 0 and v != 2:
        return
    _req[_reqn] = v
    _reqn += 1
    if _reqn < 5:
        return
    _reqn = 0
    r = _req
    if not _u[0] or r[3] != 3 or (r[0] + r[1] + r[2] + r[3]) & 0xFF != r[4]:
        return  # garbage to every board: none answers
    j = _lb.get(r[1] >> 4, -1)
    if j < 0 or _lbsil[j]:
        return
    lock = r[1] & 15
    if r[2] == 0x31:
        i = _lbdoor[16 * j + lock] - 1
        _lbev[1] = r[1] >> 4 << 8 | lock
        _lbev[2] = i
        _lbev[5] = _tx_end
        if i >= 0:
            sb._sol[i] = 1  # the door pops (_spring_check) when the event is reported, a moment later
            _lbon[i] = 1
            _lboff[i] = time.ticks_add(ticks_ms(), _lb_ms)
    elif r[2] != 0x30:
        return
    _reply(j, r[1] >> 4)


def _reply(j, addr):
    global _rxn, _rx_t0, _rx_got
    hooks = ir = 0
    for lock in range(16):
        i = _lbdoor[16 * j + lock] - 1
        if i >= 0:
            if not sb._open[i]:
                hooks |= 1 << lock
            if _lbir[i] and sb._parcel[i]:
                ir |= 1 << lock
    f = _rxq
    f[0] = 2
    f[1] = addr << 4
    f[2] = 0x35
    f[3] = hooks & 0xFF
    f[4] = hooks >> 8
    f[5] = ir & 0xFF
    f[6] = ir >> 8
    f[7] = 3
    f[8] = (2 + f[1] + 0x35 + f[3] + f[4] + f[5] + f[6] + 3) & 0xFF
    if _lbcor[j]:
        _lbcor[j] -= 1
        f[3] ^= 0x01  # one hook bit flipped on the wire: the checksum no longer matches
        _lbev[4] = addr
    _rxn = 9
    _rx_got = 0
    # The board answers about a millisecond after the frame reached it. Timed from now, not from
    # _tx_end: this process may have slept past the frame's end (a loaded host), which a real
    # UART's flush() would not have.
    _rx_t0 = time.ticks_add(time.ticks_us(), 1000)
