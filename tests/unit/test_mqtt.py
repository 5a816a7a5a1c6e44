# The MQTT 3.1.1 client: packet codec, and the client against a scripted fake broker.
# Dual runtime (CPython and MicroPython): plain asserts, condition waits on asyncio events.
import asyncio

from locker import mqtt

# MQTT 3.1.1 packet types, as decode() reports them, and the firmware's packet limit
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBACK = 9
UNSUBACK = 11
PINGRESP = 13
MAX_PACKET = 16384

try:
    _wait_ms = asyncio.wait_for_ms
except AttributeError:  # CPython

    def _wait_ms(aw, ms):
        return asyncio.wait_for(aw, ms / 1000)


def _run(coro):
    if hasattr(asyncio, "sleep_ms"):  # MicroPython: one global loop; start each test clean
        asyncio.new_event_loop()
    asyncio.run(coro)


def _raises(exc_type, fn, *args):
    try:
        fn(*args)
    except exc_type as exc:
        return exc
    raise AssertionError("%r did not raise %s" % (args, exc_type.__name__))


# --- a fake broker on in-memory streams ---------------------------------------------------------


class Pipe:
    """Broker -> client bytes, read like a MicroPython stream (readexactly and readinto)."""

    def __init__(self):
        self.buf = b""
        self.eof = False
        self.ev = asyncio.Event()

    def feed(self, data):
        self.buf += data
        self.ev.set()

    def end(self):
        self.eof = True
        self.ev.set()

    async def _wait(self, n):
        while len(self.buf) < n:
            if self.eof:
                raise EOFError
            self.ev.clear()
            await self.ev.wait()

    async def readexactly(self, n):
        await self._wait(n)
        d = self.buf[:n]
        self.buf = self.buf[n:]
        return d

    async def readinto(self, mv):
        await self._wait(1)
        k = min(len(mv), len(self.buf), 7)  # short reads, like TCP segments
        mv[:k] = self.buf[:k]
        self.buf = self.buf[k:]
        return k


class Conn:
    """Client -> broker: every complete packet written is handed to the broker."""

    def __init__(self, broker):
        self.broker = broker
        self.rx = Pipe()
        self.buf = b""
        self.closed = False

    def write(self, data):
        if self.closed:
            raise OSError("closed")
        self.buf += bytes(data)
        self.broker.parse(self)

    async def drain(self):
        if self.closed:
            raise OSError("closed")

    def close(self):
        self.closed = True
        self.rx.end()

    async def wait_closed(self):
        pass


def _topics(body, with_qos=True):
    out = []
    i = 2
    while i < len(body):
        n = (body[i] << 8) | body[i + 1]
        t = body[i + 2 : i + 2 + n].decode()
        i += 2 + n
        if with_qos:
            out.append((t, body[i]))
            i += 1
        else:
            out.append(t)
    return out


def _pid(body, at=0):
    return (body[at] << 8) | body[at + 1]


class Broker:
    def __init__(self):
        self.conns = []
        self.got = []  # (connection number, first byte, body)
        self.ev = asyncio.Event()
        self.fail = 0  # connection attempts to refuse at TCP level
        self.refuse = []  # CONNACK return codes for the next connections
        self.puback = True
        self.pingresp = True
        self.suback = None  # a return code to force in SUBACKs
        self.status = []
        self.msgs = []

    def poke(self):
        self.ev.set()

    async def connect(self):
        if self.fail:
            self.fail -= 1
            self.poke()
            raise OSError("ECONNREFUSED")
        c = Conn(self)
        self.conns.append(c)
        return c.rx, c

    def parse(self, c):
        while len(c.buf) >= 2:
            n = shift = 0
            i = 1
            while True:
                if i >= len(c.buf):
                    return
                d = c.buf[i]
                n |= (d & 127) << shift
                shift += 7
                i += 1
                if not d & 128:
                    break
            if len(c.buf) < i + n:
                return
            first = c.buf[0]
            body = c.buf[i : i + n]
            c.buf = c.buf[i + n :]
            self.got.append((len(self.conns), first, body))
            self.answer(c, first, body)
            self.poke()

    def answer(self, c, first, body):
        kind = first >> 4
        if kind == 1:
            c.rx.feed(bytes((0x20, 2, 0, self.refuse.pop(0) if self.refuse else 0)))
        elif kind == 8:
            codes = bytes([t[1] if self.suback is None else self.suback for t in _topics(body)])
            c.rx.feed(bytes((0x90, 2 + len(codes))) + body[:2] + codes)
        elif kind == 10:
            c.rx.feed(b"\xb0\x02" + body[:2])
        elif kind == 3 and first & 6 and self.puback:
            self.ack(_pid(body, 2 + _pid(body)))
        elif kind == 12 and self.pingresp:
            c.rx.feed(b"\xd0\x00")

    def ack(self, pid):
        self.conns[-1].rx.feed(mqtt.encode_puback(pid))

    def drop(self):
        self.conns[-1].close()

    def send(self, data):
        self.conns[-1].rx.feed(data)

    def of(self, kind):
        return [g for g in self.got if g[1] >> 4 == kind]

    async def until(self, cond, ms=3000):
        while not cond():
            self.ev.clear()
            await _wait_ms(self.ev.wait(), ms)

    def on_status(self, up):
        self.status.append(up)
        self.poke()

    def on_message(self, topic, payload, retained):
        self.msgs.append((topic, bytes(payload), retained, len(self.of(4))))
        self.poke()


def _client(b, **kw):
    kw.setdefault("keepalive_s", 0)
    c = mqtt.Client(b.connect, "locker-1", on_message=b.on_message, on_status=b.on_status, **kw)
    c.min_backoff_ms = 2
    c.max_backoff_ms = 16
    return c


async def _stop(*tasks):
    tasks = [t for t in tasks if t is not None]
    for t in tasks:
        t.cancel()
    for t in tasks:
        try:
            await t
        except asyncio.CancelledError:
            pass
    await asyncio.sleep(0)


def _pub(topic, payload, qos=0, retain=False, pid=0):
    return bytes(mqtt.publish_header(topic, len(payload), qos, retain, False, pid)) + payload


# --- codec --------------------------------------------------------------------------------------


def test_encode_connect_all_fields():
    pkt = mqtt.encode_connect("c1", 30, True, ("w/t", b"gone", 1, True), "u", "p")
    body = b"\x00\x04MQTT\x04\xee\x00\x1e\x00\x02c1\x00\x03w/t\x00\x04gone\x00\x01u\x00\x01p"
    assert bytes(pkt) == b"\x10" + bytes((len(body),)) + body
    assert bytes(mqtt.encode_connect("x", 0)) == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x00\x00\x01x"
    assert bytes(mqtt.encode_connect("x", 300, False))[9:12] == b"\x00\x01\x2c"
    _raises(ValueError, mqtt.encode_connect, "x", 30, True, None, None, "p")
    _raises(ValueError, mqtt.encode_connect, "x", 70000)


def test_encode_publish_subscribe_and_small_packets():
    assert bytes(mqtt.publish_header("a/b", 5, 1, True, True, 0x1234)) == b"\x3b\x0c\x00\x03a/b\x12\x34"
    assert bytes(mqtt.publish_header("a/b", 2)) == b"\x30\x07\x00\x03a/b"
    assert bytes(mqtt.publish_header("t", 200))[:3] == b"\x30\xcb\x01"
    assert bytes(mqtt.publish_header("t", 16381))[:4] == b"\x30\x80\x80\x01"  # 16384 = 3-byte length
    _raises(ValueError, mqtt.publish_header, "t", 1, 1, False, False, 0)
    _raises(ValueError, mqtt.publish_header, "t", 1, 2, False, False, 1)
    assert bytes(mqtt.encode_subscribe(10, [("a", 1), ("bc", 0)])) == b"\x82\x0b\x00\x0a\x00\x01a\x01\x00\x02bc\x00"
    assert bytes(mqtt.encode_unsubscribe(7, ["a"])) == b"\xa2\x05\x00\x07\x00\x01a"
    assert mqtt.encode_puback(0x0102) == b"\x40\x02\x01\x02"


def test_decode_broker_packets():
    assert mqtt.decode(b"\x20\x02\x01\x00") == ((CONNACK, 1, 0), 4)
    assert mqtt.decode(b"\x90\x04\x00\x05\x01\x80") == ((SUBACK, 5, b"\x01\x80"), 6)
    assert mqtt.decode(b"\x40\x02\x00\x09\xd0\x00") == ((PUBACK, 9), 4)
    assert mqtt.decode(b"\xb0\x02\x00\x09") == ((UNSUBACK, 9), 4)
    assert mqtt.decode(b"\xd0\x00") == ((PINGRESP,), 2)
    wire = _pub("a/b", b"hello", 1, True, 7)
    assert mqtt.decode(wire + b"\xd0\x00") == ((PUBLISH, "a/b", b"hello", 1, True, False, 7), len(wire))
    wire = b"\x38" + _pub("t", b"x" * 200)[1:]  # DUP set, two-byte length
    assert mqtt.decode(wire) == ((PUBLISH, "t", b"x" * 200, 0, False, True, 0), 206)
    assert mqtt.decode(_pub("t", b"")) == ((PUBLISH, "t", b"", 0, False, False, 0), 5)


def test_decode_rejects_malformed():
    bad = [
        b"",
        b"\x20",
        b"\x20\x02\x00",  # truncated
        b"\x20\x02\x02\x00",  # CONNACK flags
        b"\x21\x02\x00\x00",  # fixed-header flags
        b"\x20\x03\x00\x00\x00",  # wrong length
        b"\x34\x06\x00\x01a\x00\x01z",  # QoS 2
        b"\x36\x06\x00\x01a\x00\x01z",  # QoS 3
        b"\x32\x05\x00\x01a\x00\x00",  # packet id 0
        b"\x30\x03\x00\x05a",  # topic overruns the packet
        b"\x32\x03\x00\x01a",  # no room for the packet id
        b"\x30\x80\x80\x80\x80\x01",  # 5-byte length
        b"\x00\x00",
        b"\xf0\x00",
        b"\x10\x00",  # CONNECT from the broker
        b"\x90\x02\x00\x01",  # SUBACK without a code
        b"\x90\x03\x00\x01\x03",  # SUBACK code 3
        b"\x30\x04\x00\x01\xffz",  # topic not UTF-8
        b"\xd0\x01\x00",
    ]
    for wire in bad:
        exc = _raises(mqtt.MQTTError, mqtt.decode, wire)
        assert not isinstance(exc, mqtt.Oversized), wire


def test_oversized_is_refused_and_skipped():
    wire = _pub("t/x", b"z" * 40, 1, False, 9)
    exc = _raises(mqtt.Oversized, mqtt.decode, wire + b"\xd0\x00", 16)
    assert exc.pid == 9 and exc.used == len(wire)  # skipped whole: the stream stays in step
    assert _raises(mqtt.Oversized, mqtt.decode, _pub("t", b"z" * 40), 16).pid == 0
    assert _raises(mqtt.Oversized, mqtt.decode, b"\x90\x14" + b"\x00\x01" + b"\x00" * 18, 16).pid is None
    assert mqtt.decode(_pub("t", b"z" * 11), 16)[1] == 16  # exactly at the limit
    # A huge declared length costs no heap: it is refused, never allocated.
    exc = _raises(mqtt.MQTTError, mqtt.decode, b"\x30\xff\xff\xff\x7f\x00\x01t" + b"z" * 100)
    assert "truncated" in str(exc)
    # the default limit, 16 KiB
    assert mqtt.decode(_pub("t", b"z" * 16000))[0][2] == b"z" * 16000
    assert _raises(mqtt.Oversized, mqtt.decode, _pub("t", b"z" * (MAX_PACKET + 1))).pid == 0


def test_backoff_grows_and_is_capped():
    hi = [mqtt.backoff_ms(n, 1000, 60000, 0) for n in range(9)]
    assert hi == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
    lo = [mqtt.backoff_ms(n, 1000, 60000, 65535) for n in range(9)]
    for a, b in zip(lo, hi):
        assert b // 2 <= a < b
    assert mqtt.backoff_ms(1000, 1000, 60000, 0) == 60000


# --- client against the fake broker -------------------------------------------------------------


def test_connect_resubscribe_and_status():
    async def main():
        b = Broker()
        c = _client(b, keepalive_s=30, user="u", password="p")
        await c.subscribe("lockers/L1/cmd")  # offline: only remembered
        t = asyncio.create_task(c.run())
        try:
            await b.until(lambda: b.status == [True])
            assert c.connected and c.stats["connects"] == 1
            conn = b.of(1)
            assert len(conn) == 1 and b"locker-1" in conn[0][2] and conn[0][2][7] == 0xC2
            assert _topics(b.of(8)[0][2]) == [("lockers/L1/cmd", 1)]
            await c.subscribe("lockers/all", 0)  # online: waits for its SUBACK
            assert _topics(b.of(8)[1][2]) == [("lockers/all", 0)]
            b.drop()
            await b.until(lambda: b.status == [True, False, True])
            again = [g for g in b.of(8) if g[0] == 2]
            assert len(again) == 1 and _topics(again[0][2]) == [("lockers/L1/cmd", 1), ("lockers/all", 0)]
            assert c.stats["connects"] == 2 and c.stats["disconnects"] == 1
            await c.unsubscribe("lockers/all")
            assert _topics(b.of(10)[0][2], False) == ["lockers/all"]
            b.drop()
            await b.until(lambda: len(b.status) == 5)
            assert _topics([g for g in b.of(8) if g[0] == 3][0][2]) == [("lockers/L1/cmd", 1)]
        finally:
            await _stop(t)

    _run(main())


def test_subscribe_refused_raises():
    async def main():
        b = Broker()
        b.suback = 0x80
        c = _client(b)
        t = asyncio.create_task(c.run())
        try:
            await b.until(lambda: b.status == [True])
            try:
                await c.subscribe("not/mine")
                raise AssertionError("no error")
            except mqtt.MQTTError as exc:
                assert "not/mine" in str(exc)
            b.suback = None
            b.drop()
            await b.until(lambda: len(b.status) == 3)
            assert len(b.of(8)) == 1  # not resubscribed
        finally:
            await _stop(t)

    _run(main())


def test_publish_qos1_returns_on_puback():
    async def main():
        b = Broker()
        b.puback = False
        c = _client(b)
        done = []

        async def pub():
            await c.publish("lockers/L1/ev", b'{"k":"pickup"}', 1, True)
            done.append(1)
            b.poke()

        t = asyncio.create_task(c.run())
        p = asyncio.create_task(pub())
        try:
            await b.until(lambda: len(b.of(3)) == 1)
            first, body = b.of(3)[0][1:]
            assert first == 0x33 and body.endswith(b'{"k":"pickup"}')
            await asyncio.sleep(0)
            assert not done
            b.ack(_pid(body, 2 + _pid(body)))
            await b.until(lambda: done)
            await c.publish("q0", "x", 0)
            assert b.of(3)[-1][1] == 0x30
        finally:
            await _stop(t, p)

    _run(main())


def test_retransmit_with_dup_and_same_id_after_drop():
    async def main():
        b = Broker()
        b.puback = False
        c = _client(b)
        done = []

        async def pub():
            await c.publish("ev", b"e1")
            done.append(1)
            b.poke()

        t = asyncio.create_task(c.run())
        p = None
        try:
            await b.until(lambda: b.status == [True])
            p = asyncio.create_task(pub())
            await b.until(lambda: len(b.of(3)) == 1)
            b.drop()  # before the PUBACK
            await b.until(lambda: len(b.of(3)) == 2)
            (n1, f1, b1), (n2, f2, b2) = b.of(3)
            assert (n1, n2) == (1, 2)
            assert f1 == 0x32 and f2 == 0x3A  # DUP only on the resend
            assert b1 == b2  # same topic, packet id and payload
            assert c.stats["retransmits"] == 1 and not done
            b.ack(_pid(b2, 4))
            await b.until(lambda: done)
            b.drop()
            await b.until(lambda: len(b.status) == 5)
            assert len(b.of(3)) == 2  # acknowledged: not sent again
        finally:
            await _stop(t, p)

    _run(main())


def test_publish_while_offline_goes_out_on_connect():
    async def main():
        b = Broker()
        b.fail = 2
        c = _client(b)
        done = []

        async def pub():
            await c.publish("ev", b"early")
            done.append(1)
            b.poke()

        p = asyncio.create_task(pub())
        t = asyncio.create_task(c.run())
        try:
            await b.until(lambda: done and b.status)
            assert [g[1] for g in b.of(3)] == [0x32] and c.stats["retransmits"] == 0
            assert b.status == [True] and b.got[0][1] == 0x10  # CONNECT went first
        finally:
            await _stop(t, p)

    _run(main())


def test_incoming_qos1_acked_after_handler_with_retained_flag():
    async def main():
        b = Broker()
        c = _client(b)
        t = asyncio.create_task(c.run())
        try:
            await b.until(lambda: b.status == [True])
            b.send(_pub("lockers/L1/cmd", b"open", 1, True, 5) + _pub("lockers/L1/cmd", b"x" * 100))
            await b.until(lambda: len(b.msgs) == 2)
            assert b.msgs == [("lockers/L1/cmd", b"open", True, 0), ("lockers/L1/cmd", b"x" * 100, False, 1)]
            await b.until(lambda: len(b.of(4)) == 1)
            assert b.of(4)[0][2] == b"\x00\x05"
        finally:
            await _stop(t)

    _run(main())


def test_async_handler_is_awaited_before_puback():
    async def main():
        b = Broker()
        gate = asyncio.Event()
        seen = []

        async def handler(topic, payload, retained):
            seen.append(topic)
            b.poke()
            await gate.wait()

        c = mqtt.Client(b.connect, "x", keepalive_s=0, on_message=handler, on_status=b.on_status)
        t = asyncio.create_task(c.run())
        try:
            await b.until(lambda: b.status == [True])
            b.send(_pub("cmd", b"1", 1, False, 3))
            await b.until(lambda: seen)
            await asyncio.sleep(0)
            assert b.of(4) == []
            gate.set()
            await b.until(lambda: len(b.of(4)) == 1)
        finally:
            await _stop(t)

    _run(main())


def test_handler_error_closes_without_puback():
    async def main():
        b = Broker()

        def handler(topic, payload, retained):
            raise ValueError("app bug")

        c = mqtt.Client(b.connect, "x", keepalive_s=0, on_message=handler, on_status=b.on_status)
        c.min_backoff_ms = 2
        t = asyncio.create_task(c.run())
        try:
            await b.until(lambda: b.status == [True])
            b.send(_pub("cmd", b"1", 1, False, 3))
            await b.until(lambda: b.status == [True, False, True])
            assert b.of(4) == [] and isinstance(c.last_error, ValueError)
        finally:
            await _stop(t)

    _run(main())


def test_keepalive_pings_keep_the_connection():
    async def main():
        b = Broker()
        c = _client(b, keepalive_s=0.2)
        t = asyncio.create_task(c.run())
        try:
            await b.until(lambda: len(b.of(12)) >= 3)
            assert b.status == [True] and c.stats["connects"] == 1
            assert b.of(1)[0][2][8:10] == b"\x00\x01"  # wire keepalive rounded up to 1 s
        finally:
            await _stop(t)

    _run(main())


def test_silent_broker_is_declared_dead_and_reconnected():
    async def main():
        b = Broker()
        b.pingresp = False
        c = _client(b, keepalive_s=0.1)
        t = asyncio.create_task(c.run())
        try:
            await b.until(lambda: b.status == [True, False, True])
            assert len(b.of(12)) >= 1 and len(b.conns) == 2
            assert c.stats["disconnects"] == 1 and "keepalive" in str(c.last_error)
        finally:
            await _stop(t)

    _run(main())


def test_malformed_packet_closes_counts_and_reconnects():
    async def main():
        b = Broker()
        c = _client(b)
        t = asyncio.create_task(c.run())
        try:
            await b.until(lambda: b.status == [True])
            b.send(b"\x20\x03\x00\x00\x00")
            await b.until(lambda: b.status == [True, False, True])
            assert c.stats["malformed"] == 1 and c.stats["connects"] == 2
            b.send(b"\x20\x02\x00\x00")  # a second CONNACK is a protocol error too
            await b.until(lambda: len(b.status) == 5)
            assert c.stats["malformed"] == 2
        finally:
            await _stop(t)

    _run(main())


def test_oversized_publish_is_skipped_acked_and_connection_kept():
    async def main():
        b = Broker()
        c = _client(b, max_packet=64)
        t = asyncio.create_task(c.run())
        try:
            await b.until(lambda: b.status == [True])
            b.send(_pub("cmd", b"z" * 1000, 1, False, 3) + _pub("cmd", b"ok"))
            await b.until(lambda: b.msgs)
            assert b.msgs == [("cmd", b"ok", False, 1)]
            assert b.of(4)[0][2] == b"\x00\x03"
            assert c.stats["oversized"] == 1 and c.stats["malformed"] == 0 and b.status == [True]
            try:
                await c.publish("ev", b"y" * 64)
                raise AssertionError("no error")
            except ValueError:
                pass
        finally:
            await _stop(t)

    _run(main())


def test_connect_failures_back_off_and_cap():
    async def main():
        b = Broker()
        b.fail = 6
        delays = []

        async def connect():
            delays.append(c.delay_ms)
            return await b.connect()

        c = mqtt.Client(connect, "x", keepalive_s=0, on_status=b.on_status)
        c.min_backoff_ms = 4
        c.max_backoff_ms = 32
        t = asyncio.create_task(c.run())
        try:
            await b.until(lambda: b.status == [True])
            assert len(delays) == 7 and delays[0] == 0
            for got, cap in zip(delays[1:], [8, 16, 32, 32, 32, 32]):
                assert cap // 2 <= got <= cap, (delays,)
            assert isinstance(c.last_error, OSError)
        finally:
            await _stop(t)

    _run(main())


def test_refused_connack_is_retried():
    async def main():
        b = Broker()
        b.refuse = [5]
        c = _client(b)
        t = asyncio.create_task(c.run())
        try:
            await b.until(lambda: b.status == [True])
            assert len(b.conns) == 2 and c.stats["connects"] == 1 and c.stats["malformed"] == 0
            assert "refused" in str(c.last_error)
        finally:
            await _stop(t)

    _run(main())


def test_disconnect_sends_disconnect_and_run_returns():
    async def main():
        b = Broker()
        c = _client(b)
        t = asyncio.create_task(c.run())
        await b.until(lambda: b.status == [True])
        await c.disconnect()
        await _wait_ms(t, 2000)
        assert len(b.of(14)) == 1 and b.status == [True, False] and not c.connected
        assert b.conns[0].closed

    _run(main())
