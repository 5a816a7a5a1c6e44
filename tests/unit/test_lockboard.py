# RS485 lock-board driver (hal.lockboard) against a byte-level model of Kerong KR-CU16 boards on
# a half-duplex bus. Runs under pytest (CPython) and under MicroPython.
from fakes import FakePin
from hal import lockboard as L


def frame(*body):
    """A frame with its checksum: the low byte of the sum of every byte before it."""
    return bytes(body) + bytes([sum(body) & 0xFF])


def reply(addr, hooks, infrared):
    return frame(0x02, addr << 4, 0x35, hooks & 0xFF, hooks >> 8, infrared & 0xFF, infrared >> 8, 0x03)


class Clock:
    """Fake ticks: every reading is a millisecond later (a waiting loop ends)."""

    def __init__(self):
        self.now = 1000

    def __call__(self):
        self.now += 1
        return self.now


class FakeBus:
    """The UART, the transceiver and the lock boards behind it. A request reaches the boards only
    if DE was high while it was written and it is flushed; a board answers with its hooks and
    infrared words, `split` bytes per millisecond of the fake clock after the request's flush."""

    def __init__(self, de, boards, clock):
        self.de = de
        self.clock = clock
        self.hooks = dict((a, 0xFFFF) for a in boards)
        self.ir = dict((a, 0) for a in boards)
        self.silent = []
        self.corrupt = 0  # replies still to corrupt (one bit flipped)
        self.noise = b""  # bytes on the line before the next reply
        self.split = 9
        self.sent = []  # requests that reached the bus
        self.lost = 0  # requests written with DE low
        self.de_at_flush_end = []
        self.unlocked = []  # (address, lock)
        self._pending = b""
        self._rx = b""
        self._t0 = 0
        self._taken = 0

    def write(self, buf):
        if self.de.level != 1:
            self.lost += 1
        else:
            self._pending += bytes(buf)
        return len(buf)

    def flush(self):
        req, self._pending = self._pending, b""
        if len(req) == 5:
            self.sent.append(req)
            self._answer(req)

    def _answer(self, req):
        addr, lock, cmd = req[1] >> 4, req[1] & 15, req[2]
        if req[0] != 2 or req[3] != 3 or req[4] != sum(req[:4]) & 0xFF:
            return
        if addr not in self.hooks or addr in self.silent:
            return
        if cmd == 0x31:
            self.unlocked.append((addr, lock))
        r = bytearray(reply(addr, self.hooks[addr], self.ir[addr]))
        if self.corrupt:
            self.corrupt -= 1
            r[3] ^= 0x01
        self._rx = self.noise + bytes(r)
        self.noise = b""
        self._t0 = self.clock.now
        self._taken = 0

    def any(self):
        arrived = min(len(self._rx), (self.clock.now - self._t0) * self.split)
        return arrived - self._taken

    def readinto(self, buf, n):
        k = min(n, len(buf), self.any())
        for i in range(k):
            buf[i] = self._rx[self._taken + i]
        self._taken += k
        return k


def make(boards=(0, 1), doors=None, split=2):
    de = FakePin(0)
    clock = Clock()
    uart = FakeBus(de, boards, clock)
    uart.split = split
    if doors is None:
        doors = [(b, lock) for b in range(len(boards)) for lock in range(16)]
    bus = L.LockBus(uart, de, 19200, list(boards), doors, poll_ms=100, clock=clock)
    return bus, uart, de, clock


def run(bus, clock, ms, step=5):
    for _ in range(ms // step):
        clock.now += step
        bus.poll(clock.now)


def drain(bus):
    out = []
    ev = bus.events.get()
    while ev >= 0:
        out.append(ev)
        ev = bus.events.get()
    return out


# --- frames -----------------------------------------------------------------------------------


def test_request_frames_are_stx_addr_cmd_etx_sum():
    buf = bytearray(L.REQUEST_LEN)
    assert bytes(L.build(buf, 1, 0, L.CMD_STATUS)) == bytes([0x02, 0x10, 0x30, 0x03, 0x45])
    # board 0, lock 1 (0 on the wire): 02 00 31 03 36, as the public descriptions give it
    assert bytes(L.build(buf, 0, 0, L.CMD_UNLOCK)) == bytes([0x02, 0x00, 0x31, 0x03, 0x36])
    assert bytes(L.build(buf, 2, 15, L.CMD_UNLOCK)) == bytes([0x02, 0x2F, 0x31, 0x03, 0x65])


def feed_all(p, data):
    results = [p.feed(b) for b in data]
    return [r for r in results if r != L.NEED_MORE]


def test_parser_reads_a_status_reply():
    p = L.Parser()
    assert feed_all(p, reply(1, 0xA55A, 0x0102)) == [L.FRAME]
    assert (p.addr, p.hooks, p.infrared) == (1, 0xA55A, 0x0102)


def test_parser_drops_a_bad_checksum_a_bad_end_and_a_wrong_command():
    p = L.Parser()
    bad_sum = bytearray(reply(0, 0xFFFF, 0))
    bad_sum[8] ^= 0xFF
    assert feed_all(p, bad_sum) == [L.BAD]
    bad_end = bytearray(reply(0, 0xFFFF, 0))
    bad_end[7] = 0x04
    bad_end[8] = sum(bad_end[:8]) & 0xFF  # the sum is right: the end byte is what is wrong
    assert feed_all(p, bad_end) == [L.BAD]
    assert feed_all(p, frame(0x02, 0x00, 0x30, 0x03)) == [L.BAD]  # our own request, echoed
    assert p.bad == 3
    # and it still reads the next good frame
    assert feed_all(p, reply(0, 0x0001, 0)) == [L.FRAME]
    assert p.hooks == 1


def test_parser_skips_noise_before_a_frame():
    p = L.Parser()
    assert feed_all(p, b"\x00\xff\x55" + reply(3, 0x00F0, 0x000F)) == [L.FRAME]
    assert (p.addr, p.hooks, p.infrared) == (3, 0x00F0, 0x000F)


def test_wire_time_of_a_request():
    assert L.wire_us(5, 9600) == 5209  # 50 bits at 9600 baud
    assert L.wire_us(5, 19200) == 2605


# --- the bus ----------------------------------------------------------------------------------


def test_boot_reads_every_board_and_the_pins_show_hooks_and_infrared():
    bus, uart, de, clock = make(doors=[(0, 0), (0, 5), (1, 0)])
    uart.hooks[0] = 0xFFFF & ~(1 << 5)  # lock 6 of board 0: door open
    uart.ir[1] = 0x0001
    bus.start()
    assert [r[1] for r in uart.sent] == [0x00, 0x10]
    assert [bus.lock(i).value() for i in range(3)] == [1, 0, 1]
    assert [bus.infrared(i).value() for i in range(3)] == [0, 0, 1]
    assert drain(bus) == []  # both answered: nothing to report
    assert bus.online(0) and bus.online(2)


def test_de_is_high_for_the_frame_and_low_once_it_is_out():
    bus, uart, de, clock = make()
    bus.start()
    assert uart.lost == 0
    assert de.level == 0
    # every DE write pairs a rise before the frame with a fall after the flush
    assert [w[1] for w in de.writes] == [0] + [1, 0] * len(uart.sent)


def test_energize_sends_the_unlock_frame_at_once():
    bus, uart, de, clock = make()
    bus.start()
    n = len(uart.sent)
    lock = bus.lock(20)  # board 1, lock 5 (4 on the wire)
    lock.value(1)
    assert uart.sent[n:] == [bytes([0x02, 0x14, 0x31, 0x03, 0x4A])]
    assert uart.unlocked == [(1, 4)]
    run(bus, clock, 300)
    assert uart.unlocked == [(1, 4)]  # one frame per pulse when the board answers
    lock.value(0)
    run(bus, clock, 300)
    assert uart.unlocked == [(1, 4)]


def test_an_unlock_waits_for_a_reply_in_progress():
    bus, uart, de, clock = make(split=1)
    bus.start()
    clock.now += 200
    bus.poll(clock.now)  # a status request is out, its reply not in yet
    n = len(uart.sent)
    assert uart.sent[-1][2] == 0x30
    bus.lock(3).value(1)  # the bus is not ours: the frame waits (no collision with the reply)
    assert len(uart.sent) == n
    run(bus, clock, 10)  # 9 bytes at a byte a millisecond, then the unlock
    assert uart.sent[-1] == bytes([0x02, 0x03, 0x31, 0x03, 0x39])
    assert uart.sent[-2][2] == 0x30


def test_a_corrupted_reply_is_retried_and_the_board_stays_up():
    bus, uart, de, clock = make()
    bus.start()
    uart.hooks[1] = 0xFFFE  # door 17 opened
    uart.corrupt = 1
    run(bus, clock, 300)
    assert bus.failures == 1
    assert bus.lock(16).value() == 0  # the retry brought the real state
    assert drain(bus) == []


def test_noise_before_a_reply_is_skipped():
    bus, uart, de, clock = make()
    bus.start()
    uart.hooks[0] = 0x7FFF
    uart.noise = b"\x00\x00\x35"
    run(bus, clock, 300)
    assert bus.failures == 0
    assert bus.lock(15).value() == 0


def test_a_silent_board_goes_down_keeps_its_last_state_and_the_other_board_works():
    bus, uart, de, clock = make()
    bus.start()
    uart.hooks[0] = 0xFFFE  # door 1 open before the silence
    run(bus, clock, 300)
    assert bus.lock(0).value() == 0
    uart.silent.append(0)
    uart.hooks[0] = 0xFFFF  # shut while board 0 is silent: nobody can know
    uart.hooks[1] = 0xFFFD  # door 18 opens on the board that still answers
    run(bus, clock, 1000)
    assert drain(bus) == [0]  # board 0 down, once
    assert not bus.online(0) and bus.online(16)
    assert bus.lock(0).value() == 0  # the last known level: no "closed" invented
    assert bus.lock(17).value() == 0
    uart.silent.remove(0)
    run(bus, clock, 300)
    assert drain(bus) == [0x100]  # board 0 up
    assert bus.online(0)
    assert bus.lock(0).value() == 1


def test_a_board_silent_at_boot_is_reported_down():
    bus, uart, de, clock = make()
    uart.silent.append(1)
    bus.start()
    assert drain(bus) == [1]
    assert not bus.online(16) and bus.online(0)
    assert bus.lock(16).value() == 1  # never heard: assumed shut (locked), never "open"
    uart.silent.remove(1)
    run(bus, clock, 300)
    assert drain(bus) == [0x101]


def test_an_unanswered_unlock_is_sent_again_once_and_never_after_the_pulse():
    bus, uart, de, clock = make()
    bus.start()
    uart.silent.append(0)
    lock = bus.lock(2)
    lock.value(1)
    run(bus, clock, 300)
    unlocks = [r for r in uart.sent if r[2] == 0x31]
    assert len(unlocks) == 2
    lock.value(0)
    n = len(uart.sent)
    run(bus, clock, 500)
    assert [r for r in uart.sent[n:] if r[2] == 0x31] == []


def test_all_off_stops_unlock_frames():
    bus, uart, de, clock = make(split=1)
    bus.start()
    clock.now += 200
    bus.poll(clock.now)  # a status exchange in progress
    bus.lock(4).value(1)
    bus.all_off()
    run(bus, clock, 300)
    assert uart.unlocked == []
    assert bus.lock(4).value() == 1  # reading a lock gives its hook, not the request


# --- typing: the bus is kept free for the unlock frame ----------------------------------------


def status_requests(uart, since=0):
    """(address, index in uart.sent) of the status requests sent since index `since`."""
    return [(r[1] >> 4, i) for i, r in enumerate(uart.sent) if i >= since and r[2] == 0x30]


def test_no_status_exchange_starts_while_a_code_is_typed_so_the_unlock_goes_out_at_once():
    bus, uart, de, clock = make(split=1)
    bus.start()
    run(bus, clock, 300)
    assert status_requests(uart, 2)  # not typing: each board is read every poll_ms
    n = len(uart.sent)
    bus.keypad(False, 3)  # three digits typed
    run(bus, clock, 200)
    bus.keypad(True, 3)  # a key is down: it may be `#`
    run(bus, clock, 100)
    assert status_requests(uart, n) == []
    bus.keypad(False, 8)
    run(bus, clock, 300)
    assert status_requests(uart, n) == []
    bus.lock(3).value(1)  # the code was right: the bus is free, the frame is out now
    assert uart.sent[n:] == [bytes([0x02, 0x03, 0x31, 0x03, 0x39])]
    bus.keypad(False, 0)  # the entry is wiped after the lookup: the boards are read again
    run(bus, clock, 300)
    assert len(status_requests(uart, n)) >= 4


def test_a_long_typing_session_still_reads_every_board_and_notices_a_door():
    bus, uart, de, clock = make()
    bus.start()
    run(bus, clock, 300)
    n = len(uart.sent)
    bus.keypad(False, 1)
    uart.hooks[1] = 0xFFFE  # door 17 is pried open while someone types
    reads = {0: [], 1: []}
    for _ in range(1000):  # 5 s of typing, read every 5 ms as the app polls
        clock.now += 5
        before = len(uart.sent)
        bus.poll(clock.now)
        for a, _i in status_requests(uart, before):
            reads[a].append(clock.now)
    for a in (0, 1):
        assert len(reads[a]) >= 4, reads  # about once a second each, not every 100 ms
        gaps = [t1 - t0 for t0, t1 in zip(reads[a], reads[a][1:])]
        assert min(gaps) >= 1000 and max(gaps) <= 1100, gaps
    assert bus.lock(16).value() == 0  # the pause did not hide the open door
    assert len(status_requests(uart, n)) <= 12


def test_a_key_held_down_pauses_the_reads_longer_but_not_for_ever():
    bus, uart, de, clock = make()
    bus.start()
    run(bus, clock, 300)
    n = len(uart.sent)
    bus.keypad(True, 0)
    run(bus, clock, 1500)
    assert status_requests(uart, n) == []  # a key down may be `#`: not even the second's read
    run(bus, clock, 1000)
    assert sorted(a for a, _ in status_requests(uart, n)) == [0, 1]  # after two seconds: read anyway


def test_a_failed_exchange_is_retried_after_the_typing_pause_and_a_silent_board_still_goes_down():
    bus, uart, de, clock = make()
    bus.start()
    run(bus, clock, 300)
    uart.silent.append(0)
    bus.keypad(False, 2)
    run(bus, clock, 5000)
    assert drain(bus) == [0]  # three failed exchanges, a second apart: down
    assert bus.online(16) and not bus.online(0)
