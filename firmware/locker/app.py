# The locker application: wires keypad -> entry -> code store -> doors -> feedback, and records
# events. `Locker` is plain logic over a board object (hal.board.Board or a test double) and a
# now_ms; `main()` is the thin asyncio glue that runs it on the real (or simulated) hardware.
import json

from micropython import const

from locker import lazy, messages
from locker.ticks import ticks_add, ticks_diff

_STICKY = const(-1)  # a screen that stays until something else replaces it
# Codes refused during a throttle wait reach the host at most once a minute, counted: staff can be
# alerted to someone at the keypad, and a finger on # cannot wear the flash.
_REFUSALS_EVERY_MS = const(60000)
_HASH = const(35)  # "#"


class Locker:
    """The resident's flow and the door bookkeeping. No hardware, no clock of its own."""

    def __init__(self, board, cfg, key, clock, now_ms, codes=None):
        self.board = board
        self.cfg = cfg
        self.clock = clock
        self.labels = board.labels
        self.lockbus = getattr(board, "lockbus", None)  # RS485 lock boards (hal.lockboard), if the board has them
        # Made by locker.appinit.init:
        self.codes = None  # codes.CodeStore
        self.problems = None  # what loading the files found, recorded as `problem` events
        self.throttle = None
        self.outbox = None
        self.audit = None
        self.keypad = None
        self.entry = None
        self.doors = None  # doors.DoorBank
        self.pending = {}  # door index -> code id, for doors opened for a pickup not complete yet
        self.unseen = 0  # a bit per door of those not seen open yet: the first opening resets the throttle
        # door index -> [job, code id, staff id, low wanted/got]: doors opened to load, take back
        # or return an item (locker.flows)
        self.jobs = {}
        self.held = {}  # door index -> the code id its item came with (0: a load by size)
        self.staff = None  # a staff session (locker.staff) while one is open
        self.grace = None  # (code id, door, ticks until, door unlock count): the last pickup's door may open again
        self.key_echo_until = 0  # ticks; while set and not past, keys are echoed (locker.maint)
        self.notify = None  # the uplink's wake-up: called after an event went into the outbox
        self.lang = cfg.language
        self._refusals = 0  # codes refused during waits, not reported yet (_report_refusals)
        self._refusals_at = None  # ticks of the last wait_refused event
        # The typed code's lookup, done while `#` is being debounced (_look_early): (the store's
        # changes count then, the answer); 0: no answer to keep (too short an entry).
        self._early = None
        # What is on the display: what show() asked for, and what was last drawn.
        self._screen = None
        self._screen_arg = None
        self._screen_until = 0
        self._shown_key = None
        self._shown_arg = None
        self._shown_lang = None
        self._shown_idle = 0
        # The idle prompt in every language, the default first (appinit), and which one is on
        # screen until when (ticks): it turns on a timer (cfg.idle_turn_ms).
        self.idle_texts = ()
        self._idle_i = 0
        self._idle_at = 0
        self.desk = (None, (), "")  # the desk's phone and opening times for the help line (locker.desk)
        # What a reboot interrupted, settled once the door sensors have settled (appinit.settle):
        # the journal's pickups and loads, and the doors found open at boot; None: nothing to settle.
        self._resume = None
        self._open_at_boot = None
        self._resume_at = 0
        # The construction runs once: its code is in locker.appinit, dropped again after it.
        try:
            resume, open_at_boot, self._resume_at = lazy.load("appinit").init(self, key, now_ms, codes)
        finally:
            lazy.drop("appinit")
        if resume or open_at_boot:
            self._resume, self._open_at_boot = resume, open_at_boot

    # --- the hot loop -------------------------------------------------------------------------

    def poll(self, now_ms):
        board = self.board
        board.refresh()
        keypad = self.keypad
        keypad.scan(now_ms)
        ev = keypad.events.get()
        while ev >= 0:
            self.on_key(ev, now_ms)
            ev = keypad.events.get()
        if keypad.settling() == _HASH:
            if self._early is None:
                self._look_early(now_ms)
        elif self._early is not None:
            self._early = None  # `#` was reported (and used it) or bounced
        if self.lockbus is not None:  # no status exchange while a code is typed (hal.lockboard)
            self.lockbus.keypad(keypad.keys_down() > 0, self.entry.length)
        if self.entry.tick(now_ms):
            self.show("idle", None, _STICKY, now_ms)
        if self.staff is not None:
            self.staff.tick(now_ms)
        self._drain_doors(now_ms)
        if self._resume is not None and ticks_diff(now_ms, self._resume_at) >= 0:
            self._settle_interrupted(now_ms)
        if self.throttle.failures:
            self.throttle.settle(now_ms)  # the count decays with quiet time
        if self._refusals and not 0 <= ticks_diff(now_ms, self._refusals_at) < _REFUSALS_EVERY_MS:
            self._report_refusals(now_ms)
        if board.buzzer is not None:
            board.buzzer.update(now_ms)
        self._refresh_screen(now_ms)

    def _drain_doors(self, now_ms):
        doors = self.doors
        doors.poll(now_ms)
        ev = doors.events.get()
        while ev >= 0:
            self.on_door_event(ev >> 8, ev & 0xFF, now_ms)
            ev = doors.events.get()

    # --- keys and codes -----------------------------------------------------------------------

    def on_key(self, ch, now_ms):
        from locker import entry as E

        if self.key_echo_until:
            if ticks_diff(self.key_echo_until, now_ms) > 0:
                print("key|%s" % (chr(ch) if isinstance(ch, int) else ch))
                return
            self.key_echo_until = 0
        self.beep("KEY_CLICK", now_ms)
        if self.staff is not None:  # a staff session: its menu has the keys, no code is looked up
            self.staff.key(ch if isinstance(ch, int) else ord(ch), now_ms)
            return
        # The idle prompt's turns do not change the language: most residents read the default one
        # and must not get another's screens by chance; "*" picks one, as the prompts' screen says.
        result = self.entry.key(ch, now_ms)
        if result == E.DIGIT or result == E.FULL or (result == E.BACK and self.entry.length):
            self.show("entry", self.entry.masked(), self.cfg.entry_timeout_ms, now_ms)
        elif result == E.CLEARED or result == E.BACK:
            self.show("idle", None, _STICKY, now_ms)
        elif result == E.LANGUAGE:
            self.lang = messages.next_language(self.lang)
            self.show("language", None, self.cfg.message_ms, now_ms)
        elif result == E.TOO_SHORT:
            self.beep("WRONG", now_ms)
            self.show("too_short", self.cfg.code_min, self.cfg.message_ms, now_ms)
        elif result == E.SUBMIT:
            self.submit(now_ms)

    def _look_early(self, now_ms):
        """`#` is down, reported after key_debounce_ms unless it bounces: the lookup (the HMAC
        tag of every door) is done now, so the door opens on the report without it. The lookup
        changes nothing; the answer is used only by that `#`, while the store is unchanged."""
        entry = self.entry
        self._early = 0
        if self.staff is None and not self.key_echo_until and entry.min_len <= entry.length <= entry.max_len:
            self._early = (self.codes.changes, self.codes.lookup(entry.code(), self.clock.now(now_ms)))

    def submit(self, now_ms):
        from locker import codes as C

        wait = self.throttle.wait_ms(now_ms)
        if wait > 0:
            self.entry.wipe()
            self.beep("WRONG", now_ms)
            secs = (wait + 999) // 1000
            if secs > 120:
                self.show("wait_min", (secs + 59) // 60, self.cfg.message_ms, now_ms)
            else:
                self.show("wait", secs, self.cfg.message_ms, now_ms)
            self.record("denied", None, {"r": "throttled"}, now_ms, to_host=False)
            self._refusals += 1
            if self._refusals_at is None or not 0 <= ticks_diff(now_ms, self._refusals_at) < _REFUSALS_EVERY_MS:
                self._report_refusals(now_ms)
            return
        early = self._early
        self._early = None
        if early and early[0] == self.codes.changes:
            status, door, code_id, kind = early[1]
        else:
            status, door, code_id, kind = self.codes.lookup(self.entry.code(), self.clock.now(now_ms))
        # The digits leave memory as soon as they are checked: nothing can replay them later.
        self.entry.wipe()
        k = kind & C.KIND_MASK if kind is not None else 0
        if status == C.OK and door is not None and (k == C.KIND_PICKUP or k == C.KIND_DELIVERY):
            offline = self.lockbus is not None and not self.lockbus.online(door)
            if self.doors.out_of_service(door) or offline:
                # A door whose lock board is silent is in an unknown state: not opened; the code
                # stays valid for when the board answers again.
                self.beep("WRONG", now_ms)
                self.show("door_oos", None, self.cfg.message_ms, now_ms)
                reason = "lockboard" if offline else "out_of_service"
                self.record("denied", door, {"r": reason, "id": code_id}, now_ms)
            else:
                self.open_for_pickup(door, code_id, now_ms)
        elif status == C.OK:  # a staff PIN, a return code, a delivery not loaded yet
            self.flows().code(self, code_id, kind, now_ms)
        elif status == C.USED and self._reopen(door, code_id, now_ms):
            pass
        elif status == C.EXPIRED:
            self.beep("WRONG", now_ms)
            self.show("expired", None, self.cfg.message_ms, now_ms)
            self.record("denied", door, {"r": "expired", "id": code_id}, now_ms)
        elif status == C.USED:
            self.beep("WRONG", now_ms)
            self.show("used", None, self.cfg.message_ms, now_ms)
            self.record("denied", door, {"r": "used", "id": code_id}, now_ms)
        else:
            # The wall clock only when known: after a reboot the wait goes on from that time.
            self.throttle.failure(now_ms, self.clock.now(now_ms) if self.clock.known else None)
            self.beep("WRONG", now_ms)
            self.show("wrong", None, self.cfg.message_ms, now_ms)
            failures = self.throttle.failures
            self.record("denied", None, {"r": "wrong", "n": failures}, now_ms)
            if failures % 100 == 0:
                # NIST's "stronger response": no lockout (a stranger must not lock residents
                # out), but the host is told someone is working through the code space.
                self.record("throttled", None, {"n": failures}, now_ms)

    def _report_refusals(self, now_ms):
        """`wait_refused`: the codes refused during throttle waits since the last one (c)."""
        self.record("wait_refused", None, {"c": self._refusals, "n": self.throttle.failures}, now_ms)
        self._refusals = 0
        self._refusals_at = now_ms

    def _reopen(self, door, code_id, now_ms):
        """The same code again within the grace period after its pickup: the same door opens. Any
        other unlock of that door since (staff, the host, another code) ended the period."""
        g = self.grace
        if g is None or g[0] != code_id or g[1] != door or ticks_diff(g[2], now_ms) <= 0:
            return False
        if g[3] != self.doors.unlocks[door]:
            self.grace = None
            return False
        if self.doors.out_of_service(door) or (self.lockbus is not None and not self.lockbus.online(door)):
            return False
        if not self.doors.request_unlock(door, now_ms):
            return False
        self._start_grace(code_id, door, now_ms)
        self.doors.poll(now_ms)
        self.beep("ACCEPTED", now_ms)
        self.show("reopen", self.labels[door], self.cfg.message_ms, now_ms)
        self.record("reopened", door, {"id": code_id}, now_ms)
        return True

    def open_for_pickup(self, door, code_id, now_ms):
        # Consumed on flash BEFORE the latch moves: a power cut can never bring the code back.
        self.codes.consume(code_id, door)
        self.pending[door] = code_id
        self.unseen |= 1 << door
        if self.doors.energized() >= 0 and self.doors.energized() != door:
            self.show("busy", None, self.cfg.message_ms, now_ms)
        else:
            self.show("opening", self.labels[door], self.cfg.message_ms, now_ms)
        self.doors.request_unlock(door, now_ms)
        self.doors.poll(now_ms)  # energize now, not on the next loop
        self.beep("ACCEPTED", now_ms)
        self.record("unlock", door, {"id": code_id}, now_ms)

    # --- doors --------------------------------------------------------------------------------

    def on_door_event(self, kind, door, now_ms):
        from locker import doors as D

        label = self.labels[door]
        if door in self.jobs and self.flows().door_event(self, kind, door, now_ms):
            return
        if kind == D.EV_OPENED:
            if self.unseen >> door & 1:
                # Only a code used up by its door opening resets the count, and only the first time:
                # a code that works again (a return, a jammed latch, a reopen within the grace
                # period) could otherwise reset it between guesses at will.
                self.unseen &= ~(1 << door)
                self.throttle.success()
            if door in self.pending:
                self.beep("DOOR_OPEN", now_ms)
                self.show(messages.take_key(self.codes.item_of(self.pending[door])), label, _STICKY, now_ms)
            self.record("opened", door, None, now_ms)
        elif kind == D.EV_CLOSED:
            self.on_closed(door, now_ms)
        elif kind == D.EV_JAMMED:
            # The door was never seen open: the resident got nothing, so the code works again
            # ("Probeer opnieuw"), and the host hears of the jammed latch.
            code_id = self.pending.pop(door, None)
            self.unseen &= ~(1 << door)
            if code_id is not None:
                self.codes.release(code_id)
            self.beep("WRONG", now_ms)
            self.show("jammed", label, self.cfg.message_ms, now_ms)
            self.record("jammed", door, {"id": code_id}, now_ms)
        elif kind == D.EV_LEFT_OPEN:
            self.beep("CLOSE_DOOR", now_ms)
            self.show("close", label, _STICKY, now_ms)
            self.record("left_open", door, None, now_ms)
        elif kind == D.EV_FORCED:
            self.beep("ALARM", now_ms)
            self.record("forced", door, None, now_ms)
        elif kind == D.EV_SENSOR_SUSPECT:
            self.record("sensor_suspect", door, None, now_ms)
        elif kind == D.EV_RETRY:
            self.record("unlock_retry", door, None, now_ms, to_host=False)

    def on_closed(self, door, now_ms):
        code_id = self.pending.get(door)
        if code_id is None:
            self.doors.acknowledge(door)
            self.record("closed", door, None, now_ms)
            return
        if self.doors.has_parcel(door):
            # Shut with the parcel still inside: the pickup is not done.
            self.doors.acknowledge(door)
            self._start_grace(code_id, door, now_ms)
            self.show("still_full", self.labels[door], self.cfg.message_ms, now_ms)
            self.record("closed_full", door, {"id": code_id}, now_ms)
            return
        self.complete_pickup(door, code_id, now_ms, confirmed=self.doors.has_parcel(door) is not None)
        self._start_grace(code_id, door, now_ms)  # not after a reboot's settling

    def _start_grace(self, code_id, door, now_ms):
        # The door's unlock count now: the period ends at the next unlock of that door by anyone.
        self.grace = (code_id, door, ticks_add(now_ms, self.cfg.grace_ms), self.doors.unlocks[door])

    def complete_pickup(self, door, code_id, now_ms, confirmed=True):
        # The event is on flash before the journal says "done": a cut in between repeats the event
        # (same id, the host applies it once) but never loses it.
        extra = {"id": code_id}
        if not confirmed:
            extra["sensor"] = 0
        self.record("pickup", door, extra, now_ms)
        self.codes.complete(code_id)
        if door in self.held:  # a staff load or a return emptied: the door is free again
            flows = self.flows()
            flows.hold(self, door, None)
            flows.idle(self)
        self.pending.pop(door, None)
        self.doors.acknowledge(door)
        if self._screen != "wrong":
            self.show("thanks", None, self.cfg.message_ms, now_ms)

    def _settle_interrupted(self, now_ms):
        """After a reboot: finish or undo the pickups (and loads, returns) a power cut interrupted."""
        resume, open_at_boot = self._resume, self._open_at_boot
        self._resume = self._open_at_boot = None
        try:
            lazy.load("appinit").settle(self, resume, open_at_boot, now_ms)
        finally:
            lazy.drop("appinit")

    def flows(self):
        """locker.flows (staff loads, returns, service): imported when used, dropped when idle."""
        return lazy.load("flows")

    # --- feedback and records -----------------------------------------------------------------

    def beep(self, name, now_ms):
        buzzer = self.board.buzzer
        if buzzer is not None:
            from hal import buzzer as B

            buzzer.play(getattr(B, name), now_ms)

    def show(self, key, arg, ms, now_ms):
        if arg is None and key in messages.HELP_KEYS:
            arg = self.help_phone(now_ms)  # None: "ask at the desk"
        if ms == _STICKY and self.lang != self.cfg.language:
            # A resident's language choice lasts while they use the keypad, then resets.
            ms = self.cfg.entry_timeout_ms
        self._screen = key
        self._screen_arg = arg
        self._screen_until = _STICKY if ms == _STICKY else ticks_add(now_ms, ms)
        if key == "idle":
            self._idle_i = 0  # the prompt starts in the default language
            self._idle_at = ticks_add(now_ms, self.cfg.idle_turn_ms)

    def help_phone(self, now_ms):
        """The desk's phone number while the desk is closed (by the host's opening times, which
        the locker's clock falls in or not), else None: the help line says to ask at the desk.
        Without a number from the host, always None, as before."""
        phone, spans, _ = self.desk
        if phone is None:
            return None
        now = self.clock.now(now_ms)
        if now is not None:
            for i in range(0, len(spans), 2):
                if spans[i] <= now < spans[i + 1]:
                    return None
        return phone

    def showing(self):
        """The screen show() last asked for (a key of locker.messages)."""
        return self._screen

    def _refresh_screen(self, now_ms):
        if self._screen_until != _STICKY and ticks_diff(now_ms, self._screen_until) >= 0:
            self.lang = self.cfg.language  # the next resident starts in the default language
            self.show("idle", None, _STICKY, now_ms)
        # The idle prompt in each language in turn, unless a resident chose a language: the texts
        # were rendered at boot (idle_texts) and a turn only moves an index, so a poll between
        # turns allocates nothing.
        rotating = self._screen == "idle" and self.lang == self.cfg.language
        if rotating and self.cfg.idle_turn_ms and ticks_diff(now_ms, self._idle_at) >= 0:
            self._idle_i = (self._idle_i + 1) % len(self.idle_texts)
            self._idle_at = ticks_add(now_ms, self.cfg.idle_turn_ms)
        # Field by field: a tuple of them, built on every poll, was the hot loop's allocation.
        if (
            self._screen != self._shown_key
            or self._screen_arg != self._shown_arg
            or self.lang != self._shown_lang
            or self._idle_i != self._shown_idle
        ):
            self._shown_key, self._shown_arg, self._shown_lang = self._screen, self._screen_arg, self.lang
            self._shown_idle = self._idle_i
            if rotating:
                lines = self.idle_texts[self._idle_i]
            else:
                lines = messages.render(self.lang, self._screen, self._screen_arg)
            display = self.board.display
            if display is not None:
                display.show(lines)
            print("display|%s|%s" % lines)

    def record(self, kind, door, extra, now_ms, to_host=True):
        """An event for the audit log and (to_host) the outbox. Never carries a code."""
        ev = {"k": kind, "t": self.clock.now(now_ms)}
        if door is not None:
            ev["d"] = self.labels[door]
        if extra:
            ev.update(extra)
        line = json.dumps(ev)
        self.audit.append(line)
        if to_host:
            self.outbox.put(line.encode())
            if self.notify is not None:
                self.notify()
        print("event", line)

    def status(self, now_ms):
        """A summary for the console and diagnostics: no secrets, no codes."""
        try:
            return lazy.load("appinit").status(self, now_ms)
        finally:
            lazy.drop("appinit")
