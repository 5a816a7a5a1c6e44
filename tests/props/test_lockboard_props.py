"""Property tests for the RS485 lock-board parser and driver (hal.lockboard): any bytes on the wire,
never an exception; a frame is accepted only when every check holds; the driver's pins stay 0/1."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hal import lockboard as L


def valid_reply(addr: int, hooks: int, infrared: int) -> bytes:
    body = bytes([0x02, addr << 4, 0x35, hooks & 0xFF, hooks >> 8, infrared & 0xFF, infrared >> 8, 0x03])
    return body + bytes([sum(body) & 0xFF])


def is_valid(frame: bytes) -> bool:
    return (
        len(frame) == 9
        and frame[0] == 0x02
        and frame[2] == 0x35
        and frame[7] == 0x03
        and frame[8] == sum(frame[:8]) & 0xFF
    )


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_never_raise_and_frames_are_only_checked_ones(data: bytes) -> None:
    p = L.Parser()
    for i, b in enumerate(data):
        r = p.feed(b)
        assert r in (L.NEED_MORE, L.FRAME, L.BAD)
        if r == L.FRAME:
            frame = data[i - 8 : i + 1]
            assert is_valid(frame)
            assert p.addr == frame[1] >> 4
            assert p.hooks == frame[3] | frame[4] << 8
            assert p.infrared == frame[5] | frame[6] << 8


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=40),
    st.integers(0, 15),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 8),
    st.integers(0, 7),
)
def test_one_flipped_bit_is_never_a_frame_and_a_good_frame_after_reset_is(
    noise: bytes, addr: int, hooks: int, infrared: int, byte: int, bit: int
) -> None:
    p = L.Parser()
    for b in noise:
        p.feed(b)
    p.reset()  # what the driver does before each exchange
    good = valid_reply(addr, hooks, infrared)
    bad = bytearray(good)
    bad[byte] ^= 1 << bit
    results = [p.feed(b) for b in bad]
    assert L.FRAME not in results or is_valid(bytes(bad))
    p.reset()
    assert [p.feed(b) for b in good][-1] == L.FRAME
    assert (p.addr, p.hooks, p.infrared) == (addr, hooks, infrared)


class NoisyUart:
    """A UART whose line carries whatever hypothesis says, whatever was sent."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.rx = b""

    def write(self, buf: bytearray) -> int:
        if self.chunks:
            self.rx += self.chunks.pop(0)
        return len(buf)

    def flush(self) -> None:
        pass

    def any(self) -> int:
        return len(self.rx)

    def readinto(self, buf: bytearray, n: int) -> int:
        k = min(n, len(buf), len(self.rx))
        buf[:k] = self.rx[:k]
        self.rx = self.rx[k:]
        return k


class Pin:
    def __init__(self) -> None:
        self.level = 0

    def value(self, v: int | None = None) -> int | None:
        if v is None:
            return self.level
        self.level = v
        return None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=30), st.lists(st.integers(0, 40), min_size=1, max_size=60))
def test_the_driver_survives_any_line(chunks: list[bytes], steps: list[int]) -> None:
    de = Pin()
    t = [0]
    bus = L.LockBus(
        NoisyUart(chunks), de, 19200, [0, 1], [(b, k) for b in range(2) for k in range(16)], clock=lambda: t[0]
    )
    for i, dt in enumerate(steps):
        t[0] += dt
        if i % 7 == 3:
            bus.lock(i % 32).value(1)
        if i % 7 == 5:
            bus.lock(i % 32).value(0)
        bus.poll(t[0])
        assert de.level == 0  # never left sending
        for d in range(32):
            assert bus.lock(d).value() in (0, 1)
            assert bus.infrared(d).value() in (0, 1)
