# The hot loop allocates nothing (docs/design.md, "Conventions"): Locker.poll with keys being typed
# on the matrix, a door opening and closing, and the display showing timed screens. Under MicroPython
# every poll in which nothing happens runs with the heap locked (micropython.heap_lock), so any
# allocation there is a MemoryError; the polls in which something does happen (a debounced key, a
# door event, a screen that changes) may allocate and run unlocked. On CPython the same loop runs
# without the lock.
import micropython

import fakes
from locker import codes as C
from locker.app import Locker
from locker.clock import WallClock
from locker.config import settings
from locker.hmac256 import HmacKey

KEY = b"k" * 32
T0 = 1_790_000_000
LABELS = ["1", "2", "3", "4"]
KEYS = "123456789*0#"
STEP = 5  # ms per poll (scan_ms)
KEY_DEBOUNCE = 20
SENSOR_DEBOUNCE = 50
LOCKABLE = hasattr(micropython, "heap_lock")


class Line:
    """A pin that holds its level and keeps no history (the rig's pins must not allocate either)."""

    def __init__(self, level):
        self.level = level

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0


class Column:
    """A keypad column: low while the key pressed on it has its row driven low."""

    def __init__(self, matrix, index):
        self.matrix = matrix
        self.index = index

    def value(self, v=None):
        k = self.matrix.pressed
        if k < 0 or k % 3 != self.index or self.matrix.rows[k // 3].level:
            return 1
        return 0


class Display:
    def __init__(self):
        self.shown = 0
        self.lines = None

    def show(self, lines):
        self.shown += 1
        self.lines = lines


class Board:
    def __init__(self):
        self.labels = LABELS
        self.rows = [Line(1) for _ in range(4)]
        self.cols = [Column(self, c) for c in range(3)]
        self.pressed = -1  # index in KEYS of the key held down, -1: none
        self.keys = KEYS
        self.solenoids = [Line(0) for _ in LABELS]
        self.closed = [Line(1) for _ in LABELS]
        self.parcels = [Line(1) for _ in LABELS]
        self.buzzer = None
        self.led = None
        self.display = Display()

    def refresh(self):
        pass

    def all_off(self):
        for pin in self.solenoids:
            pin.value(0)


class Rig:
    def __init__(self, **settings_over):
        self.dir = fakes.scratch_dir("hot-loop")
        import os

        self.home = os.getcwd()
        os.chdir(self.dir)
        self.now = 1000
        self.board = Board()
        rows = [(C.tag(HmacKey(KEY), "2", b"48291357"), 1, C.KIND_PICKUP, 0, 501)]
        C.CodeStore(KEY, LABELS, capacity=16).replace(1, rows)
        raw = {
            "locker_id": "t1",
            "code_capacity": 16,
            "scan_ms": STEP,
            "key_debounce_ms": KEY_DEBOUNCE,
            "sensor_debounce_ms": SENSOR_DEBOUNCE,
            "grace_ms": 0,
        }
        raw.update(settings_over)  # (MicroPython's dict displays take no **)
        cfg = settings(raw)
        clock = WallClock()
        clock.boot(T0, self.now)
        self.locker = Locker(self.board, cfg, KEY, clock, self.now)
        self.locked_polls = 0
        self.active(400)  # the boot's settling

    def close(self):
        import os

        os.chdir(self.home)

    def active(self, ms):
        """Polls in which something happens: they may allocate."""
        end = self.now + ms
        while self.now < end:
            self.now += STEP
            self.locker.poll(self.now)

    def steady(self, ms):
        """Polls in which nothing new happens: the heap locked (MicroPython)."""
        end = self.now + ms
        lk = self.locker
        while self.now < end:
            self.now += STEP
            if LOCKABLE:
                micropython.heap_lock()
            try:
                lk.poll(self.now)
            finally:
                if LOCKABLE:
                    micropython.heap_unlock()
            self.locked_polls += 1

    def key(self, ch):
        """A key pressed and held (its debounce: steady), reported (active), held on (steady), then
        released (steady: a release reports nothing)."""
        self.board.pressed = KEYS.index(ch)
        self.steady(KEY_DEBOUNCE - 2 * STEP)
        self.active(3 * STEP)
        self.steady(60)
        self.board.pressed = -1
        self.steady(KEY_DEBOUNCE + 2 * STEP)


def test_the_poll_allocates_nothing_while_keys_doors_and_the_display_are_busy():
    rig = Rig()
    try:
        lk = rig.locker
        board = rig.board
        rig.steady(200)  # idle: the idle text on the display
        lk.show("wrong", None, 1000, rig.now)  # a timed screen, counting down
        rig.active(STEP)  # drawn
        rig.steady(800)
        rig.active(300)  # back to idle
        rig.steady(100)
        for ch in "4829135":
            rig.key(ch)
        assert lk.entry.length == 7 and board.display.shown > 7
        rig.key("7")
        board.pressed = KEYS.index("#")  # the code submitted: the door's latch opens
        rig.active(STEP)  # seen down: the code is looked up now, while `#` is debounced
        rig.steady(KEY_DEBOUNCE - 3 * STEP)
        rig.active(3 * STEP)
        assert board.solenoids[1].level == 1
        rig.steady(100)  # the pulse on, the key still held
        board.pressed = -1
        rig.steady(100)
        board.closed[1].level = 0  # the spring opens the door
        rig.steady(SENSOR_DEBOUNCE - 2 * STEP)
        rig.active(400)  # opened; the pulse ends
        assert board.solenoids[1].level == 0
        board.parcels[1].level = 0  # the parcel taken
        rig.steady(SENSOR_DEBOUNCE - 2 * STEP)
        rig.active(4 * STEP)
        rig.steady(500)  # the door stands open, "take your parcel" on the display
        board.closed[1].level = 1
        rig.steady(SENSOR_DEBOUNCE - 2 * STEP)
        rig.active(4 * STEP)  # closed: the pickup is recorded, "thank you" shown
        rig.steady(1000)
        kinds = [line.split('"k": "')[1].split('"')[0] for line in lk.audit.tail(10)]
        assert "opened" in kinds and "pickup" in kinds, kinds
        assert rig.locked_polls > 500
    finally:
        rig.close()


def test_the_idle_prompts_turns_allocate_nothing_between_them():
    # The idle prompt shows each language in turn (idle_turn_ms): a turn redraws the display (an
    # active poll); every poll between two turns runs with the heap locked.
    turn = 200
    rig = Rig(idle_turn_ms=turn)
    try:
        lk = rig.locker
        board = rig.board
        texts = lk.idle_texts
        assert len(texts) == 3 and len(set(texts)) == 3, texts  # nl, fr, en: three different prompts
        # The boot's settling (400 ms of polls from the construction at tick 1000) saw the turns at
        # 1200 and 1400: the next one is due on the poll at 1600.
        assert board.display.lines == texts[2]
        seen = []
        for _ in range(6):
            rig.steady(turn - STEP)
            assert board.display.lines == texts[seen[-1] if seen else 2], "no turn before it is due"
            shown = board.display.shown
            rig.active(STEP)
            assert board.display.shown == shown + 1, "a turn redraws the display once"
            seen.append(texts.index(board.display.lines))
        assert seen == [0, 1, 2, 0, 1, 2], seen
        assert rig.locked_polls == 6 * (turn // STEP - 1)
    finally:
        rig.close()
