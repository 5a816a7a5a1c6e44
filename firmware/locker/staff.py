# A staff session at the keypad (docs/operation.md, "At the locker: staff"): opened by a staff PIN
# (locker.flows.code), it has the keys until `*` on the menu, or until staff walk away: staff_idle_ms
# without a key at any of its screens (the menu, a number being typed, after a door job finished),
# staff_timeout_ms without a key or the door moving while a door of the session stands open. The
# short one is what keeps the next person at the keypad out of a session left open. Nothing typed
# here is looked up as a code: a resident's code typed during a session opens nothing. Imported with
# the session and dropped after it (locker.flows.idle).
#
# Menu: 1 load a prepared delivery by its number, 2 load by size (S/M/L), 3 take back the items
# whose code expired and the returns (one door at a time), 4 a door out of / back in service (its
# label, then #).
from micropython import const

from locker import codes as C
from locker import flows as F
from locker.ticks import ticks_diff

_MENU = const(0)
_NUMBER = const(1)
_SIZE = const(2)
_DOOR = const(3)
_BUSY = const(4)  # a door is open for this session: close it first
_NEXT = const(5)  # taking back: # = the next door
_STICKY = const(-1)
_STAR = const(42)
_HASH = const(35)
_BACKSPACE = const(68)  # "D" on a 4x4 keypad: the last digit typed goes (locker.entry)
_SCREENS = const(("staff_menu", "staff_number", "staff_size", "staff_door", None, "staff_next"))


class Session:
    def __init__(self, lk, staff_id, now_ms):
        self.lk = lk
        self.sid = staff_id
        self.last = now_ms
        self.mode = _MENU
        self.typed = ""
        self.door = -1  # the door of this session's job
        self.todo = None  # take-back: the (door, code id) left to open
        self._screen(now_ms)

    def _screen(self, now_ms):
        lk = self.lk
        key = _SCREENS[self.mode]
        if key is not None:
            lk.show(key, self.typed if self.mode in (_NUMBER, _DOOR) else None, _STICKY, now_ms)
        elif self.door in lk.jobs:  # busy: what to do with the door
            key = "staff_take" if lk.jobs[self.door][0] == F.J_TAKE else "staff_open"
            lk.show(key, lk.labels[self.door], _STICKY, now_ms)

    def _to(self, mode, now_ms):
        self.mode = mode
        self.typed = ""
        self._screen(now_ms)

    def _say(self, key, arg, now_ms, sound="WRONG"):
        """A message for message_ms, then the current screen again (tick)."""
        self.lk.beep(sound, now_ms)
        self.lk.show(key, arg, self.lk.cfg.message_ms, now_ms)

    def key(self, ch, now_ms):
        import gc

        gc.collect()  # a person's pace: the session's heap is short, its garbage goes at once
        self.last = now_ms
        m = self.mode
        c = ch - 48 if 48 <= ch <= 57 else -1
        if m == _BUSY:
            return
        if ch == _STAR:
            if m == _MENU:
                self.end("done", now_ms)
            else:
                self.todo = None
                self._to(_MENU, now_ms)
        elif m == _MENU:
            if ch == _HASH:
                self.end("done", now_ms)
            elif c == 1:
                self._to(_NUMBER, now_ms)
            elif c == 2:
                self._to(_SIZE, now_ms)
            elif c == 3:
                self.take_back(now_ms)
            elif c == 4:
                self._to(_DOOR, now_ms)
        elif m == _NUMBER or m == _DOOR:
            if c >= 0 and len(self.typed) < (6 if m == _NUMBER else 3):
                self.typed += chr(ch)
                self._screen(now_ms)
            elif ch == _BACKSPACE and self.typed:
                self.typed = self.typed[:-1]
                self._screen(now_ms)
            elif ch == _HASH and self.typed:
                typed = self.typed
                self.typed = ""
                if m == _NUMBER:
                    self.load_delivery(int(typed), now_ms)
                else:
                    self.service(typed, now_ms)
        elif m == _SIZE:
            if 1 <= c <= 3:
                self.load(0, c << 4, now_ms)
        elif m == _NEXT and ch == _HASH:
            self.take_back(now_ms)

    def tick(self, now_ms):
        lk = self.lk
        limit = lk.cfg.staff_timeout_ms
        if self.mode != _BUSY and lk.cfg.staff_idle_ms < limit:
            limit = lk.cfg.staff_idle_ms
        if ticks_diff(now_ms, self.last) >= limit:
            self.end("timeout", now_ms)
        elif lk.showing() == "idle":  # a message went by: the session's screen again
            self._screen(now_ms)

    def load_delivery(self, number, now_ms):
        lk = self.lk
        rec = lk.codes.find_id(number)
        if rec is None or rec[1] & C.KIND_MASK != C.KIND_DELIVERY:
            self._say("staff_unknown", None, now_ms)
            return
        now = lk.clock.now(now_ms)
        if lk.codes.state_of(number)[0] or (rec[2] and now is not None and now >= rec[2]):
            self._say("staff_done_already", None, now_ms)
            return
        self.load(number, rec[1], now_ms)

    def load(self, number, kind, now_ms):
        door, low = F.pick_door(self.lk, kind)
        if door < 0:
            self._say("staff_no_door", None, now_ms)
            return
        self._start(F.J_LOAD, door, number, low if kind & 64 else None, now_ms)

    def _start(self, job, door, cid, low, now_ms):
        self.door = door
        self.mode = _BUSY
        F.start(self.lk, job, door, cid, self.sid, low, now_ms)

    def take_back(self, now_ms):
        lk = self.lk
        if self.todo is None:
            self.todo = F.to_take_back(lk, lk.clock.now(now_ms))
        while self.todo:
            door, cid = self.todo.pop(0)
            if door not in lk.jobs and door not in lk.pending and not lk.doors.out_of_service(door):
                self._start(F.J_TAKE, door, cid, None, now_ms)
                return
        self.todo = None
        self.mode = _MENU
        self._say("staff_none", None, now_ms)

    def job_done(self, job, now_ms):
        """The door of this session's job closed (or never opened): back to the menu, or, taking
        back, to the next door."""
        self.last = now_ms
        self.door = -1
        self.mode = _NEXT if job == F.J_TAKE and self.todo is not None else _MENU
        if self.mode == _NEXT and not self.todo:
            self.todo = None
            self.mode = _MENU

    def service(self, label, now_ms):
        lk = self.lk
        if label not in lk.labels:
            self._say("staff_unknown", None, now_ms)
            return
        door = lk.labels.index(label)
        on = lk.doors.out_of_service(door)  # out: back in; in: out
        from locker import doorops

        try:
            doorops.set_service(lk, door, on, "staff", self.sid, now_ms)
        except OSError:
            self._say("no_codes", None, now_ms)
            return
        finally:
            doorops.drop(lk)
        self.mode = _MENU
        self._say("staff_on" if on else "staff_off", label, now_ms, "ACCEPTED")

    def end(self, why, now_ms):
        lk = self.lk
        if self.door >= 0:
            F.abandon(lk, self.door, now_ms)
        lk.staff = None
        lk.record("staff_out", None, {"staff": self.sid, "r": why}, now_ms)
        lk.show("staff_bye", None, lk.cfg.message_ms, now_ms)
        F.idle(lk)
