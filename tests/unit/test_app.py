# The resident's flow in the Locker logic, on a fake board: keys in, solenoids/display/events out.
import json
import os

import fakes
from locker import codes as C
from locker.app import Locker
from locker.clock import WallClock
from locker.config import settings
from locker.hmac256 import HmacKey

KEY = b"k" * 32
T0 = 1_790_000_000
LABELS = ["1", "2", "3", "4"]


class FakeDisplay:
    def __init__(self):
        self.lines = ("", "")

    def show(self, lines):
        self.lines = tuple(lines)


class QuietPin:
    """A keypad line: holds its level, keeps no history (it is written on every scan)."""

    def __init__(self, level):
        self.level = level

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = v


class FakeBoard:
    def __init__(self, clock):
        self.labels = LABELS
        self.rows = [QuietPin(1) for _ in range(4)]
        self.cols = [QuietPin(1) for _ in range(3)]
        self.keys = "123456789*0#"
        self.solenoids = [fakes.FakePin(0, clock) for _ in LABELS]
        self.closed = [fakes.FakePin(1) for _ in LABELS]
        self.parcels = [fakes.FakePin(1) for _ in LABELS]
        self.buzzer = None
        self.led = None
        self.display = FakeDisplay()

    def refresh(self):
        pass

    def all_off(self):
        for pin in self.solenoids:
            pin.value(0)


class MatrixCol:
    """A keypad column of the matrix on FakeBoard: low while its row is driven low and the key at
    that row and column is held (board.held: the key's index in board.keys, or None)."""

    def __init__(self, board, col):
        self.board = board
        self.col = col

    def value(self, v=None):
        held = self.board.held
        if v is not None or held is None:
            return 1
        ncols = len(self.board.cols)
        return 0 if held % ncols == self.col and self.board.rows[held // ncols].level == 0 else 1


class KeyBoard(FakeBoard):
    """FakeBoard whose keys are held on the matrix (scanned, debounced) instead of sent to on_key."""

    def __init__(self, clock):
        super().__init__(clock)
        self.held = None
        self.cols = [MatrixCol(self, c) for c in range(3)]


class LockBoardBoard(FakeBoard):
    """The fake board with its four doors on one RS485 lock board (hal.lockboard, on
    test_lockboard's model of the bus): each lock is its door's solenoid and door sensor."""

    def __init__(self, clock):
        from test_lockboard import FakeBus

        from hal import lockboard as L

        super().__init__(clock)
        de = fakes.FakePin(0)
        self.uart = FakeBus(de, [0], clock)
        self.uart.split = 1  # a byte a millisecond: a status exchange takes about 14 ms
        self._clock = clock
        self._booting = True
        self.lockbus = L.LockBus(self.uart, de, 19200, [0], [(0, i) for i in range(4)], clock=self._ticks)
        self.solenoids = self.closed = [self.lockbus.lock(i) for i in range(4)]
        self.lockbus.start()
        self._booting = False

    def _ticks(self):
        if self._booting:  # the boot's blocking read waits on the clock: a millisecond a reading
            self._clock.now += 1
        return self._clock.now

    def refresh(self):
        self.lockbus.tick()

    def all_off(self):
        self.lockbus.all_off()

    def status_reads(self, since):
        return [r for r in self.uart.sent[since:] if r[2] == 0x30]


class Rig:
    """A locker on a fake board in a scratch directory, with a fake tick clock."""

    def __init__(self, name, codes=(), cfg=None, rtc=T0, board=FakeBoard):
        self.dir = fakes.scratch_dir(name)
        self.home = os.getcwd()
        os.chdir(self.dir)
        self.ticks = fakes.FakeClock(1000)
        self.board = board(self.ticks)
        hkey = HmacKey(KEY)
        rows = []
        for i, spec in enumerate(codes):  # (code, label, expiry[, item])
            code, label, expiry = spec[:3]
            item = spec[3] if len(spec) > 3 else 0
            rows.append((C.tag(hkey, label, code.encode()), LABELS.index(label), C.KIND_PICKUP, expiry, 100 + i, item))
        if codes:
            C.CodeStore(KEY, LABELS, capacity=16).replace(1, rows)
        self.cfg = cfg or settings({"locker_id": "t1", "code_capacity": 64})
        self.rtc = rtc
        self.drained = []
        self.boot()

    def boot(self):
        import gc

        self.locker = None  # a reboot: the last Locker is gone before the next one is built
        gc.collect()  # a reboot's Locker comes after the last one's garbage (128K under MicroPython)
        clock = WallClock()
        clock.boot(self.rtc, self.ticks.now)
        self.locker = Locker(self.board, self.cfg, KEY, clock, self.ticks.now)
        self.run(100)

    def close(self):
        os.chdir(self.home)

    def run(self, ms, step=5):
        end = self.ticks.now + ms
        while self.ticks.now < end:
            self.ticks.advance(step)
            self.locker.poll(self.ticks.now)

    def type(self, keys):
        for ch in keys:
            self.locker.on_key(ord(ch), self.ticks.now)
            self.run(10)

    def energized_doors(self):
        return [i for i, pin in enumerate(self.board.solenoids) if any(level for _, level in pin.writes)]

    def events(self, kind=None):
        # Drain the outbox through its API, as the uplink will (acknowledging each event),
        # and keep what was drained so later calls still see it.
        ob = self.locker.outbox
        item = ob.peek()
        while item is not None:
            self.drained.append(json.loads(item[1]))
            ob.ack(item[0])
            item = ob.peek()
        return [ev for ev in self.drained if kind is None or ev["k"] == kind]


def test_right_code_opens_the_right_door_and_pickup_completes():
    rig = Rig("app-ok", codes=[("12345678", "2", 0)])
    try:
        rig.type("12345678#")
        assert rig.energized_doors() == [1]
        assert rig.board.display.lines == ("Deur 2", "gaat nu open")
        rig.board.closed[1].level = 0  # the spring pops the door
        rig.run(200)
        assert rig.board.display.lines == ("Neem uw pakket", "Sluit deur 2")
        rig.board.parcels[1].level = 0
        rig.board.closed[1].level = 1
        rig.run(200)
        assert rig.board.display.lines[0] == "Dank u wel!"
        pickups = rig.events("pickup")
        assert len(pickups) == 1 and pickups[0]["d"] == "2" and pickups[0]["id"] == 100
    finally:
        rig.close()


def test_a_code_works_once():
    rig = Rig("app-once", codes=[("12345678", "1", 0)])
    try:
        rig.type("12345678#")
        rig.board.closed[0].level = 0
        rig.run(200)
        rig.board.parcels[0].level = 0
        rig.board.closed[0].level = 1
        rig.run(200)
        first = len(rig.board.solenoids[0].writes)
        rig.ticks.advance(rig.cfg.grace_ms)  # past the grace period (test_grace_*: within it)
        rig.type("12345678#")
        rig.run(4000)
        assert rig.board.display.lines == ("Code al gebruikt", "Vraag het loket")
        assert len(rig.board.solenoids[0].writes) == first
    finally:
        rig.close()


def test_wrong_code_then_throttle_with_a_plain_wait_message():
    rig = Rig("app-wrong", codes=[("12345678", "1", 0)])
    try:
        for _ in range(4):
            rig.type("99999999#")
        assert rig.board.display.lines[0] == "Code klopt niet"
        rig.type("99999999#")
        assert rig.board.display.lines[0] == "Te veel pogingen"
        assert rig.board.display.lines[1].startswith("Wacht ")
        assert rig.energized_doors() == []
        denied = rig.events("denied")
        assert len(denied) == 4 and all("code" not in json.dumps(e) for e in denied)
    finally:
        rig.close()


def test_expired_code_does_not_open():
    rig = Rig("app-expired", codes=[("12345678", "1", T0 - 10)])
    try:
        rig.type("12345678#")
        assert rig.board.display.lines[0] == "Code is verlopen"
        assert rig.energized_doors() == []
    finally:
        rig.close()


def test_star_switches_language_and_idle_returns_to_default():
    cfg = settings({"locker_id": "t1", "message_ms": 1000, "entry_timeout_ms": 5000, "code_capacity": 64})
    rig = Rig("app-lang", cfg=cfg)
    try:
        rig.type("*")
        assert rig.board.display.lines[0] == "Français"
        rig.type("1")
        assert rig.board.display.lines[0] == "Votre code :"
        rig.type("*")
        assert rig.board.display.lines[0] == "Tapez votre code"
        rig.run(5200)
        assert rig.board.display.lines == ("Typ uw code", "en druk op #")
    finally:
        rig.close()


def test_reboot_with_door_closed_and_parcel_gone_records_the_pickup():
    rig = Rig("app-resume", codes=[("12345678", "3", 0)])
    try:
        rig.type("12345678#")
        rig.board.closed[2].level = 0
        rig.run(200)
        # power cut: the resident takes the parcel and shuts the door while the locker is off
        rig.board.parcels[2].level = 0
        rig.board.closed[2].level = 1
        rig.boot()
        rig.run(500)
        pickups = rig.events("pickup")
        assert [p["id"] for p in pickups] == [100]
    finally:
        rig.close()


def test_reboot_before_the_door_opened_gives_the_code_back():
    rig = Rig("app-undo", codes=[("12345678", "4", 0)])
    try:
        rig.type("12345678#")
        # cut before the door ever opened: parcel still inside, door shut
        rig.boot()
        rig.run(500)
        assert rig.events("pickup_undone")
        rig.type("12345678#")
        assert rig.board.display.lines == ("Deur 4", "gaat nu open")
    finally:
        rig.close()


def test_the_take_screen_names_the_item_the_host_sent():
    rig = Rig("app-item", codes=[("12345678", "2", 0, 3), ("23456789", "3", 0)])
    try:
        rig.type("12345678#")
        rig.board.closed[1].level = 0
        rig.run(200)
        assert rig.board.display.lines == ("Neem uw zakken", "Sluit deur 2")
        rig.board.parcels[1].level = 0
        rig.board.closed[1].level = 1
        rig.run(200)
        rig.type("23456789#")  # no item from the host: a parcel
        rig.board.closed[2].level = 0
        rig.run(200)
        assert rig.board.display.lines == ("Neem uw pakket", "Sluit deur 3")
    finally:
        rig.close()


def test_d_takes_a_mistyped_digit_back():
    rig = Rig("app-back", codes=[("12345678", "2", 0)])
    try:
        rig.type("12345679")
        assert rig.board.display.lines == ("Uw code:", "********")
        rig.type("D")
        assert rig.board.display.lines == ("Uw code:", "*******")
        rig.type("8#")
        assert rig.energized_doors() == [1]
        assert rig.events("denied") == []
        rig.type("1D")  # every digit taken back: the start screen again
        assert rig.board.display.lines == ("Typ uw code", "en druk op #")
    finally:
        rig.close()


def test_the_lock_bus_is_left_free_while_a_code_is_typed():
    rig = Rig("app-lockbus", codes=[("12345678", "2", 0)], board=LockBoardBoard)
    try:
        board = rig.board
        uart = board.uart
        n = len(uart.sent)
        rig.run(300)
        assert len(board.status_reads(n)) >= 2  # idle: the board is read every poll_ms
        rig.type("1")  # (keys come in here, not through the keypad: no key is seen down first)
        n = len(uart.sent)
        rig.type("234567")
        rig.run(600)
        assert board.status_reads(n) == []  # digits typed: `#` may come next
        rig.type("8#")
        assert uart.sent[n] == bytes([0x02, 0x01, 0x31, 0x03, 0x37])  # door 2's unlock, first
        assert uart.unlocked == [(0, 1)]
        rig.run(300)
        assert len(board.status_reads(n)) >= 2  # the entry is wiped: read as before
        n = len(uart.sent)
        board.cols[0].level = 0  # keys held down (not debounced yet): one may be `#`
        rig.run(1500)
        assert board.status_reads(n) == []
        board.cols[0].level = 1
        rig.run(300)
        assert board.status_reads(n)
    finally:
        rig.close()


class CountingLookups:
    """The locker's code store with its lookups counted."""

    def __init__(self, locker):
        self.count = 0
        store = locker.codes
        real = store.lookup

        def lookup(code, now_epoch):
            self.count += 1
            return real(code, now_epoch)

        store.lookup = lookup


def hold(rig, key, ms):
    rig.board.held = rig.board.keys.index(key)
    rig.run(ms)


def test_the_code_is_looked_up_once_while_hash_is_debounced_and_opens_on_its_report():
    rig = Rig("app-early", codes=[("12345678", "2", 0)], board=KeyBoard)
    try:
        lookups = CountingLookups(rig.locker)
        rig.type("12345678")
        hold(rig, "#", 10)  # down, not reported yet (key_debounce_ms 20)
        assert lookups.count == 1
        assert rig.energized_doors() == []  # nothing moves before the key is reported
        hold(rig, "#", 30)
        assert rig.energized_doors() == [1]
        assert lookups.count == 1  # the report used that lookup: not done twice
        rig.board.held = None
        rig.run(100)
        assert [e["id"] for e in rig.events("unlock")] == [100]
    finally:
        rig.close()


def test_the_idle_prompt_shows_each_language_in_turn():
    cfg = settings({"locker_id": "t1", "idle_turn_ms": 3000, "code_capacity": 64})
    rig = Rig("app-idle-turn", cfg=cfg)
    try:
        seen = [rig.board.display.lines]
        for _ in range(3):
            rig.run(3000)
            seen.append(rig.board.display.lines)
        assert seen == [
            ("Typ uw code", "en druk op #"),
            ("Tapez votre code", "et validez par #"),
            ("Type your code", "then press #"),
            ("Typ uw code", "en druk op #"),
        ]
    finally:
        rig.close()


def test_a_key_under_another_languages_prompt_answers_in_the_default_language():
    cfg = settings({"locker_id": "t1", "idle_turn_ms": 3000, "entry_timeout_ms": 5000, "code_capacity": 64})
    rig = Rig("app-idle-key", cfg=cfg)
    try:
        rig.run(3000)
        assert rig.board.display.lines[0] == "Tapez votre code"
        rig.type("1")
        assert rig.board.display.lines[0] == "Uw code:"
        rig.type("*")  # cleared: the turns start again from the default language
        assert rig.board.display.lines[0] == "Typ uw code"
        rig.run(3000)
        assert rig.board.display.lines[0] == "Tapez votre code"
        rig.type("*")  # the language key, as before
        assert rig.board.display.lines[0] == "Français"
        rig.run(cfg.message_ms)
        assert rig.board.display.lines[0] == "Typ uw code"
    finally:
        rig.close()


def test_no_turns_when_the_setting_is_off():
    cfg = settings({"locker_id": "t1", "idle_turn_ms": 0, "code_capacity": 64})
    rig = Rig("app-idle-off", cfg=cfg)
    try:
        rig.run(10000)
        assert rig.board.display.lines == ("Typ uw code", "en druk op #")
    finally:
        rig.close()


def test_the_help_line_gives_the_number_outside_the_desks_hours():
    rig = Rig("app-help", codes=[("12345678", "1", T0 - 10)])
    try:
        rig.type("12345678#")  # no desk settings from the host: ask at the desk, as before
        assert rig.board.display.lines == ("Code is verlopen", "Vraag het loket")
        from locker import desk, lazy

        now = rig.locker.clock.now(rig.ticks.now)
        hours = {"phone": "020 1234567", "open": [[now - 3600, now + 60], [now + 7200, now + 9000]], "tag": "t"}
        lazy.load("desk").command(rig.locker, hours)
        lazy.drop("desk")
        rig.run(rig.cfg.message_ms)
        rig.type("12345678#")  # open: ask at the desk
        assert rig.board.display.lines == ("Code is verlopen", "Vraag het loket")
        rig.run(rig.cfg.message_ms)
        rig.ticks.advance(61000)  # closed: the number
        rig.type("12345678#")
        assert rig.board.display.lines == ("Code is verlopen", "Bel 020 1234567")
        rig.run(rig.cfg.message_ms)
        rig.boot()  # kept on the board
        rig.ticks.advance((now + 7300 - rig.locker.clock.now(rig.ticks.now)) * 1000)
        rig.type("*12345678#")  # open again, in French
        assert rig.board.display.lines == ("Code expiré", "Voir l'accueil")
        rig.ticks.advance(1800 * 1000)  # past the last interval the host sent: the number
        rig.type("12345678#")
        assert rig.board.display.lines == ("Code expiré", "Tél 020 1234567")
        assert desk.PATH == "desk.bin"
    finally:
        rig.close()


def test_a_hash_that_bounces_opens_nothing_and_a_code_removed_meanwhile_is_not_used():
    rig = Rig("app-early-bounce", codes=[("12345678", "2", 0)], board=KeyBoard)
    try:
        lookups = CountingLookups(rig.locker)
        rig.type("12345678")
        hold(rig, "#", 10)
        rig.board.held = None  # a bounce: released before it was reported
        rig.run(100)
        assert lookups.count == 1 and rig.energized_doors() == []
        assert rig.locker.entry.length == 8  # the entry is as it was
        hold(rig, "#", 10)  # pressed again: looked up again
        assert lookups.count == 2
        rig.locker.codes.replace(2, [])  # the host removes the code while # is debounced
        hold(rig, "#", 30)
        assert lookups.count == 3  # looked up again at the report: the table changed
        assert rig.energized_doors() == []
        assert rig.events("denied")[-1]["r"] == "wrong"
    finally:
        rig.close()
