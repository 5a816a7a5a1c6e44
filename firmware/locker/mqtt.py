# The firmware's own MQTT 3.1.1 client, after the design of Peter Hinch's mqtt_as.
#
# Codec: encode_* build client packets; read_packet() reads one broker packet from a stream and
# decode() does the same on bytes (the same code runs on both). A PUBLISH payload is the only
# large allocation: it is read straight off the stream, never copied. A packet over max_packet is
# refused with Oversized; an oversized PUBLISH is skipped in small chunks so the stream stays usable.
#
# Client.run() keeps one broker connection up forever: connect with backoff and jitter,
# resubscribe, resend unacknowledged QoS 1 publishes (DUP=1, same packet id), keepalive pings,
# and a connection silent for 1.5 x keepalive is declared dead. Nothing escapes run() but
# cancellation. Unacknowledged publishes live in RAM only: the outbox on flash is the durable copy.
import asyncio
from random import getrandbits

from micropython import const

from locker.ticks import ticks_diff, ticks_ms

_CONNACK = const(2)
_PUBLISH = const(3)
_PUBACK = const(4)
_SUBACK = const(9)
_UNSUBACK = const(11)
_PINGRESP = const(13)
_MAX_PACKET = const(16384)
_PINGREQ = const(b"\xc0\x00")
_DISCONNECT = const(b"\xe0\x00")

_MAX_REMAINING = const(268435455)
_JOIN_MAX = const(2048)  # parts of a packet up to this size are sent as one write
_SKIP_CHUNK = const(256)

try:
    _sleep_ms = asyncio.sleep_ms
    _wait_ms = asyncio.wait_for_ms
except AttributeError:  # CPython

    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)

    async def _wait_ms(aw, ms):  # not wait_for: on 3.11 it can swallow a cancellation
        async with asyncio.timeout(ms / 1000):
            return await aw


class MQTTError(Exception):
    """A packet that breaks the protocol, or a refusal from the broker."""


class Oversized(MQTTError):
    """A packet over max_packet. pid: packet id of a skipped QoS 1 PUBLISH (0 for QoS 0);
    None when the packet was not skipped and the stream is no longer usable."""

    def __init__(self, msg, pid=None):
        super().__init__(msg)
        self.pid = pid


# --- encoding -----------------------------------------------------------------------------------


def _field(b, s):
    if isinstance(s, str):
        s = s.encode()
    if len(s) > 65535:
        raise ValueError("field > 65535 bytes")
    b.append(len(s) >> 8)
    b.append(len(s) & 255)
    b += s
    return b


def _frame(first, n):
    if n > _MAX_REMAINING:
        raise ValueError("packet too large")
    b = bytearray((first,))
    while n > 127:
        b.append((n & 127) | 128)
        n >>= 7
    b.append(n)
    return b


def _strlen(s):
    return len(s.encode()) if isinstance(s, str) else len(s)


def encode_connect(client_id, keepalive_s, clean=True, will=None, user=None, password=None):
    """will: (topic, payload, qos, retain). A password needs a user (MQTT 3.1.1)."""
    if password is not None and user is None:
        raise ValueError("password without user")
    if not 0 <= keepalive_s < 65536:
        raise ValueError("keepalive")
    flags = 2 if clean else 0
    body = bytearray(b"\x00\x04MQTT\x04\x00")  # protocol level 4; flags filled in below
    body.append(keepalive_s >> 8)
    body.append(keepalive_s & 255)
    _field(body, client_id)
    if will is not None:
        topic, payload, qos, retain = will
        if qos not in (0, 1, 2):
            raise ValueError("will qos")
        flags |= 4 | (qos << 3) | (0x20 if retain else 0)
        _field(_field(body, topic), payload)
    if user is not None:
        flags |= 0x80
        _field(body, user)
    if password is not None:
        flags |= 0x40
        _field(body, password)
    body[7] = flags
    return _frame(0x10, len(body)) + body


def publish_header(topic, payload_len, qos=0, retain=False, dup=False, pid=0):
    """Fixed header, topic and packet id of a PUBLISH: the payload is written after it, uncopied."""
    if qos not in (0, 1) or (qos and not 0 < pid < 65536):
        raise ValueError("qos/pid")
    first = 0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
    b = _field(_frame(first, 2 + _strlen(topic) + 2 * qos + payload_len), topic)
    if qos:
        b.append(pid >> 8)
        b.append(pid & 255)
    return b


def _sub_packet(first, pid, topics, with_qos):
    body = bytearray((pid >> 8, pid & 255))
    for t in topics:
        if with_qos:
            _field(body, t[0]).append(t[1])
        else:
            _field(body, t)
    return _frame(first, len(body)) + body


def encode_subscribe(pid, topics):
    """topics: [(filter, qos), ...]"""
    return _sub_packet(0x82, pid, topics, True)


def encode_unsubscribe(pid, topics):
    """topics: [filter, ...]"""
    return _sub_packet(0xA2, pid, topics, False)


def encode_puback(pid):
    return bytes((0x40, 2, pid >> 8, pid & 255))


# --- decoding -----------------------------------------------------------------------------------


async def _skip(r, n):
    while n > 0:
        k = n if n < _SKIP_CHUNK else _SKIP_CHUNK
        await r.readexactly(k)
        n -= k


async def _read_payload(r, n):
    if not n:
        return b""
    if not hasattr(r, "readinto"):  # CPython's StreamReader
        return await r.readexactly(n)
    # MicroPython's readexactly() grows its result by concatenation: 2x the payload at peak.
    b = bytearray(n)
    mv = memoryview(b)
    i = 0
    while i < n:
        k = await r.readinto(mv[i:])
        if not k:
            raise EOFError
        i += k
    return b


async def read_packet(r, max_packet=_MAX_PACKET):
    """One broker packet from stream r (needs readexactly). Returns
    (CONNACK, session_present, rc) | (PUBLISH, topic, payload, qos, retain, dup, pid) |
    (PUBACK, pid) | (SUBACK, pid, codes) | (UNSUBACK, pid) | (PINGRESP,).
    The payload is bytes, or a bytearray when r has readinto() (MicroPython streams).
    Raises MQTTError (Oversized) on a bad packet, EOFError when the stream ends."""
    h = await r.readexactly(2)
    first = h[0]
    c = h[1]
    n = c & 127
    shift = 7
    while c & 128:
        if shift > 21:
            raise MQTTError("bad remaining length")
        c = (await r.readexactly(1))[0]
        n |= (c & 127) << shift
        shift += 7
    kind = first >> 4
    if kind == _PUBLISH:
        qos = (first >> 1) & 3
        if qos > 1:
            raise MQTTError("PUBLISH qos %d" % qos)
        vh = 2 + 2 * qos
        if n < vh:
            raise MQTTError("short PUBLISH")
        b = await r.readexactly(2)
        tl = (b[0] << 8) | b[1]
        if vh + tl > n:
            raise MQTTError("PUBLISH topic overruns packet")
        if n > max_packet:
            await _skip(r, tl)
            pid = 0
            if qos:
                b = await r.readexactly(2)
                pid = (b[0] << 8) | b[1]
            await _skip(r, n - vh - tl)
            raise Oversized("PUBLISH of %d bytes > %d" % (n, max_packet), pid)
        b = await r.readexactly(tl + 2 * qos) if tl or qos else b""
        pid = 0
        if qos:
            pid = (b[tl] << 8) | b[tl + 1]
            if not pid:
                raise MQTTError("PUBLISH packet id 0")
            b = b[:tl]
        try:
            topic = b.decode()
        except ValueError:  # UnicodeError on MicroPython
            raise MQTTError("topic not UTF-8") from None
        payload = await _read_payload(r, n - vh - tl)
        return (_PUBLISH, topic, payload, qos, bool(first & 1), bool(first & 8), pid)
    if kind == _PINGRESP and first == 0xD0 and n == 0:
        return (_PINGRESP,)
    if kind == _SUBACK and first == 0x90 and n >= 3:
        if n > max_packet:
            raise Oversized("SUBACK of %d bytes > %d" % (n, max_packet))
        b = await r.readexactly(n)
        for c in b[2:]:
            if c > 2 and c != 0x80:
                raise MQTTError("SUBACK code %d" % c)
        return (_SUBACK, (b[0] << 8) | b[1], b[2:])
    if first in (0x20, 0x40, 0xB0) and n == 2:
        b = await r.readexactly(2)
        if kind == _CONNACK:
            if b[0] > 1:
                raise MQTTError("CONNACK flags")
            return (_CONNACK, b[0], b[1])
        return (kind, (b[0] << 8) | b[1])
    raise MQTTError("unexpected packet 0x%02x/%d" % (first, n))


class _Bytes:
    def __init__(self, b):
        self.b = b
        self.i = 0

    async def readexactly(self, n):
        i = self.i
        if i + n > len(self.b):
            raise MQTTError("truncated packet")
        self.i = i + n
        return bytes(self.b[i : i + n])


def decode(buf, max_packet=_MAX_PACKET):
    """The first packet in buf -> (packet, bytes used); raises MQTTError if bad or incomplete.
    After an Oversized PUBLISH, its .used says how many bytes it took."""
    src = _Bytes(buf)
    co = read_packet(src, max_packet)
    try:
        co.send(None)
    except StopIteration as e:
        return e.value, src.i
    except Oversized as e:
        e.used = src.i
        raise
    raise MQTTError("parser suspended")  # cannot happen: _Bytes never waits


def backoff_ms(failures, lo, hi, r16):
    """Delay before reconnect attempt after `failures` failures: min(hi, lo * 2**failures) with
    'equal jitter' (half fixed, half random from r16 in 0..65535)."""
    d = lo
    while failures > 0 and d < hi:
        d <<= 1
        failures -= 1
    if d > hi:
        d = hi
    return d - ((d >> 1) * r16 >> 16)


async def _call(fn, *args):
    if fn is not None:
        r = fn(*args)
        if hasattr(r, "send"):  # a coroutine (a generator on MicroPython)
            await r


def _total(parts):
    n = 0
    for p in parts:
        n += len(p)
    return n


# --- client -------------------------------------------------------------------------------------


class Client:
    """on_message(topic: str, payload: bytes-like, retained: bool) and on_status(up: bool) may be
    plain functions or coroutines; a QoS 1 message is acknowledged after on_message returns (if it
    raises, the connection is closed unacknowledged). keepalive_s may be fractional in tests (the
    wire value is rounded up; 0 disables). clean: the CONNECT clean-session flag.
    Tunable attributes: min_backoff_ms, max_backoff_ms, timeout_ms (connect, CONNACK, writes),
    stable_ms (a session shorter than this counts as a failure for the backoff)."""

    def __init__(
        self,
        connect_fn,
        client_id,
        keepalive_s=30,
        will=None,
        user=None,
        password=None,
        max_packet=_MAX_PACKET,
        on_message=None,
        on_status=None,
        now_ms=None,
        clean=True,
    ):
        self._open_fn = connect_fn
        self._ka = int(keepalive_s * 1000)
        self._connect = encode_connect(client_id, (self._ka + 999) // 1000, clean, will, user, password)
        self._max = max_packet
        self._on_msg = on_message
        self._on_status = on_status
        self._now = now_ms or ticks_ms
        self.min_backoff_ms = 1000
        self.max_backoff_ms = 60000
        self.timeout_ms = 10000
        self.stable_ms = 10000
        self.delay_ms = 0  # the last backoff delay
        self.last_error = None
        self.connected = False
        self.stats = {"connects": 0, "disconnects": 0, "malformed": 0, "oversized": 0, "retransmits": 0}
        self._subs = []  # [filter, qos]
        self._inflight = []  # [pid, Event, header or None, payload, gen sent on (0: never), result]
        self._pid = 0
        self._gen = 0
        self._w = None
        self._task = None
        self._lock = None
        self._down = None
        self._rx = self._tx = 0
        self._pinged = False
        self._stop = False

    # --- public API ---

    async def publish(self, topic, payload, qos=1, retain=False):
        """QoS 1: returns once PUBACK arrives, resending on every reconnect (DUP=1, same id).
        QoS 0: sent if connected, else dropped."""
        if isinstance(payload, str):
            payload = payload.encode()
        pid = self._new_pid() if qos else 0
        hdr = publish_header(topic, len(payload), qos, retain, False, pid)
        if len(hdr) + len(payload) > self._max:
            raise ValueError("publish over max_packet")
        if not qos:
            if self.connected:
                try:
                    await self._send(hdr, payload)
                except Exception:
                    pass
            return
        e = [pid, asyncio.Event(), hdr, payload, 0, None]
        self._inflight.append(e)
        try:
            if self.connected:
                await self._xmit(e)
            await e[1].wait()
        finally:
            self._forget(e)

    async def subscribe(self, topic, qos=1):
        """Kept for every reconnect. If connected, waits for SUBACK; MQTTError if refused."""
        if qos not in (0, 1):
            raise ValueError("qos")
        for s in self._subs:
            if s[0] == topic:
                s[1] = qos
                break
        else:
            self._subs.append([topic, qos])
        p = await self._request(encode_subscribe, (topic, qos))
        if p is not None and p[2][0] == 0x80:
            self._subs = [s for s in self._subs if s[0] != topic]
            raise MQTTError("subscribe refused: %s" % topic)

    async def unsubscribe(self, topic):
        self._subs = [s for s in self._subs if s[0] != topic]
        await self._request(encode_unsubscribe, topic)

    async def disconnect(self):
        """Sends DISCONNECT (the broker drops the will), closes, and makes run() return."""
        self._stop = True
        if self.connected:
            try:
                await self._send(_DISCONNECT)
            except Exception:
                pass
        if self._down is not None:
            self._down.set()

    async def run(self):
        failures = 0
        first = True
        try:
            while True:
                if not first:
                    self.delay_ms = backoff_ms(failures, self.min_backoff_ms, self.max_backoff_ms, getrandbits(16))
                    await _sleep_ms(self.delay_ms)
                first = False
                if self._stop:
                    return
                try:
                    await self._open()
                except Exception as exc:
                    self.last_error = exc
                    await self._close()
                    failures += 1
                    continue
                t0 = self._now()
                self.stats["connects"] += 1
                try:
                    await self._up()
                except Exception as exc:
                    self.last_error = exc
                await self._close()
                self.stats["disconnects"] += 1
                try:
                    await _call(self._on_status, False)
                except Exception as exc:
                    self.last_error = exc
                failures = 0 if ticks_diff(self._now(), t0) >= self.stable_ms else failures + 1
        finally:
            await self._close()

    # --- connection ---

    async def _open(self):
        r, w = await _wait_ms(self._open_fn(), self.timeout_ms)
        self._w = w
        self._lock = asyncio.Lock()
        self._down = asyncio.Event()
        self._rx = self._tx = self._now()
        self._pinged = False
        await self._send(self._connect)
        try:
            p = await _wait_ms(read_packet(r, self._max), self.timeout_ms)
        except MQTTError:
            self.stats["malformed"] += 1
            raise
        if p[0] != _CONNACK:
            self.stats["malformed"] += 1
            raise MQTTError("expected CONNACK")
        if p[2]:
            raise MQTTError("connection refused, code %d" % p[2])
        self._gen += 1
        self.connected = True
        self._task = asyncio.create_task(self._reader(r))

    async def _up(self):
        g = self._gen
        if self._subs:
            try:
                await self._send(encode_subscribe(self._new_pid(), self._subs))
            except Exception:
                pass  # the connection is down: the loop below sees it
        for e in [e for e in self._inflight if e[2] is not None and e[4] != g]:
            await self._xmit(e)
        await _call(self._on_status, True)
        ka = self._ka
        down = self._down
        while not down.is_set():
            if not ka:
                await down.wait()
                break
            try:
                await _wait_ms(down.wait(), ka >> 2)
                break
            except asyncio.TimeoutError:
                pass
            now = self._now()
            if ticks_diff(now, self._rx) > ka + (ka >> 1):
                raise MQTTError("keepalive: broker silent")
            if ticks_diff(now, self._tx) >= ka >> 1 or (not self._pinged and ticks_diff(now, self._rx) >= ka >> 1):
                self._pinged = True
                await self._send(_PINGREQ)

    async def _close(self):
        self.connected = False
        w = self._w
        self._w = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for e in self._inflight:
            if e[2] is None:  # subscribe/unsubscribe waits end: the reconnect resubscribes
                e[1].set()
        if w is not None:
            try:
                w.close()
                await _wait_ms(w.wait_closed(), 1000)
            except Exception:
                pass

    async def _send(self, *parts):
        w = self._w
        down = self._down
        if w is None:
            raise OSError("not connected")
        try:
            async with self._lock:
                if w is not self._w:
                    raise OSError("connection replaced")
                if len(parts) > 1 and _total(parts) <= _JOIN_MAX:
                    # One write, one TCP segment: a header written alone leaves the payload to
                    # Nagle, which holds it until the broker's delayed ACK (~40 ms on Linux).
                    w.write(b"".join(parts))
                else:
                    for p in parts:
                        w.write(p)
                await _wait_ms(w.drain(), self.timeout_ms)
        except Exception:
            down.set()
            raise
        self._tx = self._now()

    async def _reader(self, r):
        st = self.stats
        down = self._down
        try:
            while True:
                try:
                    p = await read_packet(r, self._max)
                except Oversized as e:
                    st["oversized"] += 1
                    self.last_error = e
                    if e.pid is None:
                        return
                    self._got()
                    if e.pid:
                        await self._send(encode_puback(e.pid))
                    continue
                self._got()
                kind = p[0]
                if kind == _PUBLISH:
                    await _call(self._on_msg, p[1], p[2], p[4])
                    if p[3]:
                        await self._send(encode_puback(p[6]))
                elif kind == _CONNACK:
                    raise MQTTError("CONNACK on an open connection")
                elif kind != _PINGRESP:
                    for e in self._inflight:
                        if e[0] == p[1] and (e[2] is None) == (kind != _PUBACK):
                            e[5] = p
                            e[1].set()
                            break
        except MQTTError as exc:
            st["malformed"] += 1
            self.last_error = exc
        except Exception as exc:  # EOF, socket errors, or on_message raised: no PUBACK was sent
            self.last_error = exc
        finally:
            down.set()

    def _got(self):
        self._rx = self._now()
        self._pinged = False

    # --- packet ids and acknowledgements ---

    def _new_pid(self):
        while True:
            self._pid = self._pid % 65535 + 1
            for e in self._inflight:
                if e[0] == self._pid:
                    break
            else:
                return self._pid

    async def _xmit(self, e):
        if e[4]:
            e[2][0] |= 8  # DUP
            self.stats["retransmits"] += 1
        e[4] = self._gen
        try:
            await self._send(e[2], e[3])
        except Exception:
            pass  # the connection is going down; the reconnect resends

    async def _request(self, encode, item):
        if not self.connected:
            return None
        pid = self._new_pid()
        e = [pid, asyncio.Event(), None, None, self._gen, None]
        self._inflight.append(e)
        try:
            await self._send(encode(pid, [item]))
            await e[1].wait()
        except Exception:
            pass
        finally:
            self._forget(e)
        return e[5]

    def _forget(self, e):
        if e in self._inflight:
            self._inflight.remove(e)
