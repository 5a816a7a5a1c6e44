"""Properties of the MQTT parser and client under random, garbage and truncated broker bytes (CPython only)."""

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from locker import mqtt

# MQTT 3.1.1 packet types, as decode() reports them, and the firmware's packet limit
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBACK = 9
UNSUBACK = 11
PINGRESP = 13
MAX_PACKET = 16384

KINDS = {CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK, PINGRESP}
topics = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
pids = st.integers(1, 65535)


@st.composite
def broker_packet(draw):
    """(wire bytes, the tuple read_packet must return) for one valid broker packet."""
    kind = draw(st.sampled_from(sorted(KINDS)))
    if kind == PUBLISH:
        topic, payload = draw(topics), draw(st.binary(max_size=300))
        qos, retain, dup = draw(st.integers(0, 1)), draw(st.booleans()), draw(st.booleans())
        pid = draw(pids) if qos else 0
        wire = bytes(mqtt.publish_header(topic, len(payload), qos, retain, dup, pid)) + payload
        return wire, (PUBLISH, topic, payload, qos, retain, dup, pid)
    if kind == CONNACK:
        sp, rc = draw(st.integers(0, 1)), draw(st.integers(0, 255))
        return bytes((0x20, 2, sp, rc)), (CONNACK, sp, rc)
    if kind == SUBACK:
        pid, codes = draw(pids), bytes(draw(st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=5)))
        return bytes((0x90, 2 + len(codes), pid >> 8, pid & 255)) + codes, (SUBACK, pid, codes)
    if kind == PINGRESP:
        return b"\xd0\x00", (PINGRESP,)
    pid = draw(pids)
    return bytes((kind << 4, 2, pid >> 8, pid & 255)), (kind, pid)


class ChunkReader:
    """A stream that hands out data in the given chunk sizes; readinto() optional."""

    def __init__(self, data, sizes, readinto):
        self.data, self.sizes, self.i = data, list(sizes) or [1], 0
        if readinto:
            self.readinto = self._readinto

    def _take(self, n):
        k = min(n, self.sizes[self.i % len(self.sizes)] or 1, len(self.data))
        self.i += 1
        d, self.data = self.data[:k], self.data[k:]
        return d

    async def readexactly(self, n):
        out = b""
        while len(out) < n:
            await asyncio.sleep(0)
            d = self._take(n - len(out))
            if not d:
                raise asyncio.IncompleteReadError(out, n)
            out += d
        return out

    async def _readinto(self, mv):
        await asyncio.sleep(0)
        d = self._take(len(mv))
        mv[: len(d)] = d
        return len(d)


async def _read_all(reader, max_packet):
    """Packets until the stream ends or the parser refuses; returns (packets, exception)."""
    out = []
    while True:
        try:
            out.append(await mqtt.read_packet(reader, max_packet))
        except (mqtt.MQTTError, EOFError) as exc:
            return out, exc


def _valid(p):
    assert p[0] in KINDS
    if p[0] == PUBLISH:
        assert isinstance(p[1], str) and isinstance(p[2], (bytes, bytearray)) and p[3] in (0, 1)
        assert (p[6] == 0) == (p[3] == 0)


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(max_size=400), max_packet=st.integers(0, 500))
def test_decode_garbage_yields_packets_or_its_own_error(data, max_packet):
    while data:
        try:
            p, used = mqtt.decode(data, max_packet)
        except mqtt.Oversized as exc:
            assert exc.pid is None or 0 < exc.used <= len(data)
            if exc.pid is None:
                return
            data = data[exc.used :]
            continue
        except mqtt.MQTTError:
            return
        assert 2 <= used <= len(data)
        _valid(p)
        data = data[used:]


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=400),
    sizes=st.lists(st.integers(1, 64), max_size=5),
    readinto=st.booleans(),
    max_packet=st.integers(0, 500),
)
def test_stream_garbage_ends_in_eof_or_its_own_error(data, sizes, readinto, max_packet):
    packets, exc = asyncio.run(_read_all(ChunkReader(data, sizes, readinto), max_packet))
    assert isinstance(exc, (mqtt.MQTTError, EOFError))
    for p in packets:
        _valid(p)


@settings(max_examples=300, deadline=None)
@given(
    pkts=st.lists(broker_packet(), max_size=8),
    sizes=st.lists(st.integers(1, 64), max_size=5),
    readinto=st.booleans(),
    cut=st.one_of(st.none(), st.integers(0, 4000)),
)
def test_valid_packets_survive_any_chunking_and_truncation(pkts, sizes, readinto, cut):
    wire = b"".join(w for w, _ in pkts)
    want = [p for _, p in pkts]
    if cut is not None and cut < len(wire):
        wire = wire[:cut]
        ends, n = [], 0
        for w, _ in pkts:
            n += len(w)
            ends.append(n)
        want = want[: sum(1 for e in ends if e <= cut)]
    got, exc = asyncio.run(_read_all(ChunkReader(wire, sizes, readinto), MAX_PACKET))
    assert isinstance(exc, EOFError) and not isinstance(exc, mqtt.MQTTError)  # truncation is EOF, not garbage
    assert [tuple(bytes(x) if isinstance(x, bytearray) else x for x in p) for p in got] == want


@settings(max_examples=300, deadline=None)
@given(pkts=st.lists(broker_packet(), min_size=1, max_size=6), max_packet=st.integers(4, 200))
def test_oversized_publish_is_skipped_and_the_rest_read(pkts, max_packet):
    wire = b"".join(w for w, _ in pkts)
    want = []
    for w, p in pkts:
        if len(w) - (2 if len(w) < 130 else 3) > max_packet:  # remaining length over the limit
            want.append(("oversized", p[6]) if p[0] == PUBLISH else ("stop",))
        else:
            want.append(p)
    got = []

    async def main():
        r = ChunkReader(wire, [17], True)
        while True:
            try:
                p = await mqtt.read_packet(r, max_packet)
                got.append(tuple(bytes(x) if isinstance(x, bytearray) else x for x in p))
            except mqtt.Oversized as exc:
                if exc.pid is None:
                    got.append(("stop",))
                    return
                got.append(("oversized", exc.pid))
            except EOFError:
                return

    asyncio.run(main())
    if ("stop",) in want:
        want = want[: want.index(("stop",)) + 1]
    assert got == want


class Garbage:
    """connect_fn: the first connection gets CONNACK then the garbage then EOF; later ones stay quiet."""

    def __init__(self, garbage):
        self.garbage, self.n, self.status, self.written = garbage, 0, [], bytearray()
        self.ev = asyncio.Event()

    async def connect(self):
        self.n += 1
        r = asyncio.StreamReader()
        r.feed_data(b"\x20\x02\x00\x00")
        if self.n == 1:
            r.feed_data(self.garbage)
            r.feed_eof()
        return r, self

    def write(self, b):
        self.written += b

    async def drain(self):
        pass

    def close(self):
        pass

    async def wait_closed(self):
        pass

    def on_status(self, up):
        self.status.append(up)
        self.ev.set()


@settings(max_examples=150, deadline=None)
@given(garbage=st.binary(max_size=300), max_packet=st.integers(0, 300))
def test_client_survives_garbage_and_reconnects(garbage, max_packet):
    g = Garbage(garbage)
    msgs = []

    async def main():
        c = mqtt.Client(
            g.connect,
            "x",
            keepalive_s=0,
            max_packet=max_packet,
            on_status=g.on_status,
            on_message=lambda t, p, r: msgs.append((t, p, r)),
        )
        c.min_backoff_ms = 1
        t = asyncio.create_task(c.run())
        while len(g.status) < 3:
            g.ev.clear()
            await asyncio.wait_for(g.ev.wait(), 5)
        assert not t.done()
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass
        return c

    c = asyncio.run(main())
    assert g.status == [True, False, True] and c.stats["connects"] == 2 and c.stats["disconnects"] == 1
    assert c.stats["malformed"] <= 1 and c.stats["retransmits"] == 0  # a bad packet ends that connection
    for t, p, r in msgs:
        assert isinstance(t, str) and isinstance(p, bytes) and r in (True, False)
