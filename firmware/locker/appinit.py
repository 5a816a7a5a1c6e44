# The Locker's run-once and rare parts (locker.app): its construction at boot, settling what a power
# cut interrupted, and the status summary. Imported for the call and dropped after it, so that the
# running locker does not hold their bytecode. `lk` is the Locker.
from micropython import const

from locker.ticks import ticks_add

_STICKY = const(-1)  # as in locker.app
_STAFF = const("staff.bin")  # the staff id, and a take-back's code id (locker.flows)
_SERVICE = const("service.bin")  # the door indices out of service (store.save framing; locker.doorops)
_HELD = const("held.bin")  # the doors holding an item, with its code id (locker.flows.hold)


def init(lk, key, now_ms, codes):
    """Fills in the Locker's parts (declared in Locker.__init__). Returns what a reboot interrupted:
    (the journal's pickups and loads to settle, the doors found open at boot, ticks when to settle
    them: once the door sensors have settled)."""
    cfg = lk.cfg
    # The idle prompt in every language, default first, rendered once (each language's text is
    # loaded once, the default last, so it stays): its turns then build no string in the poll.
    # First thing, so that the other texts' passing blocks are not holes among what stays.
    from locker import messages

    langs = [cfg.language] + [lang for lang in messages.LANGUAGES if lang != cfg.language]
    texts = [messages.render(lang, "idle") for lang in reversed(langs)]
    texts.reverse()
    lk.idle_texts = tuple(texts)
    from locker.codes import CodeStore

    board = lk.board
    # The code store's table is the one large allocation: the runtime makes it right after
    # the board, before the other modules' imports fragment the heap.
    lk.codes = codes or CodeStore(key, board.labels, capacity=cfg.code_capacity)
    lk.problems = lk.codes.load()

    from locker.audit import AuditLog
    from locker.doors import DoorBank
    from locker.entry import CodeEntry
    from locker.keypad import MatrixKeypad
    from locker.outbox import Outbox
    from locker.throttle import Throttle

    lk.throttle = Throttle(
        free_failures=cfg.throttle_free,
        base_delay_ms=cfg.throttle_base_ms,
        max_delay_ms=cfg.throttle_max_ms,
        decay_ms=cfg.throttle_decay_ms,
    )
    # A damaged count is reported, and restarts at free; a wait goes on from the stored failure's time.
    lk.problems.extend(lk.throttle.load(now_ms, lk.clock.now(now_ms)))
    if lk.clock.problem:
        lk.problems.append(lk.clock.problem)
    lk.outbox = Outbox(capacity=cfg.outbox_capacity)
    lk.problems.extend(lk.outbox.load())
    lk.audit = AuditLog()
    lk.keypad = MatrixKeypad(board.rows, board.cols, board.keys, debounce_ms=cfg.key_debounce_ms)
    lk.entry = CodeEntry(min_len=cfg.code_min, max_len=cfg.code_max, timeout_ms=cfg.entry_timeout_ms)
    lk.doors = DoorBank(
        board.solenoids,
        board.closed,
        board.parcels,
        pulse_ms=cfg.pulse_ms,
        gap_ms=cfg.pulse_gap_ms,
        confirm_ms=cfg.confirm_ms,
        retries=cfg.unlock_retries,
        open_alarm_ms=cfg.open_alarm_ms,
        sensor_debounce_ms=cfg.sensor_debounce_ms,
        now_ms=now_ms,
    )
    # pickups interrupted by a reboot (consumed), and loads (flows), with the doors found open at
    # boot that no journal entry explains
    resume = lk.codes.pending() + lk.codes.pending(5)
    open_at_boot = [d for d in range(len(lk.labels)) if not lk.doors.is_closed(d)]
    resume_at = ticks_add(now_ms, 4 * cfg.sensor_debounce_ms + 2 * cfg.scan_ms)
    lk.show("idle", None, _STICKY, now_ms)
    from locker import store

    try:  # the doors staff or the host took out of service (locker.flows.set_service)
        for d in store.load(_SERVICE) or b"":
            if d < len(lk.labels):
                lk.doors.set_out_of_service(d, True)
    except Exception as exc:  # damaged: every door in service, and the host hears of it
        lk.problems.append("%s: %s" % (_SERVICE, exc))
    try:
        there = store.load("desk.bin") is not None  # read whole again below: small, and rare
    except store.Corrupt:
        there = True
    if there:  # locker.desk only then: a locker the host never sent them to does not load it
        from locker import lazy

        try:
            lk.desk, problem = lazy.load("desk").load()
        finally:
            lazy.drop("desk")
        if problem:
            lk.problems.append(problem)
    try:
        raw = store.load(_HELD) or b""
        if len(raw) % 5:
            raise ValueError("length %d" % len(raw))
        import struct

        for i in range(0, len(raw), 5):
            d, cid = struct.unpack_from("<BI", raw, i)
            if d < len(lk.labels):
                lk.held[d] = cid
    except Exception as exc:  # damaged: the sensors and the codes still hold their doors
        lk.problems.append("%s: %s" % (_HELD, exc))
    for problem in lk.problems:
        lk.record("problem", None, {"m": problem[:80]}, now_ms)
    bus = lk.lockbus
    if bus is not None:  # the boards silent at boot, then every change as it happens (hal.lockboard)
        ev = bus.events.get()
        while ev >= 0:
            lk.record("lockboard", None, {"a": ev & 0xFF, "r": "up" if ev >> 8 else "down"}, now_ms)
            ev = bus.events.get()
        bus.report = lk.record
    return resume, open_at_boot, resume_at


def settle(lk, resume, open_at_boot, now_ms):
    """After a reboot: finish or undo the pickups a power cut interrupted (`resume`: (code id, door)
    of the journal's consumed and loading entries); a door open at boot (`open_at_boot`) that none of
    them explains was opened by nobody: forced (with the alarm), even if it shut since."""
    cs = lk.codes
    staff, taking = last_staff()
    from locker import doors as D

    for d in open_at_boot:
        # a take-back of a held item whose code has no open journal entry (a return) is staff.bin's
        if not (d in [door for _, door in resume] or taking and lk.held.get(d) == taking):
            lk.on_door_event(D.EV_FORCED, d, now_ms)
    for c, _ in resume:  # a load, a return or a take-back cut short: locker.doorops settles those
        if cs.state_of(c)[0] != 1 or (cs.find_id(c) or b"\0\0")[1] & 15 == 2 or c == taking:
            from locker import doorops

            try:
                resume = doorops.settle(lk, resume, now_ms, staff, taking)
            finally:
                doorops.drop(lk)
            break
    for code_id, door in resume:
        if door >= len(lk.labels):
            continue
        if not lk.doors.is_closed(door):
            # Still open: the resident is (or was) at it. Wait for it to close.
            lk.pending[door] = code_id
            lk.doors.assume_open(door, now_ms)
        elif lk.doors.has_parcel(door):
            # Closed with the parcel inside: the door never opened, or the parcel went back in.
            lk.codes.release(code_id)
            lk.record("pickup_undone", door, {"id": code_id}, now_ms)
        else:
            lk.complete_pickup(door, code_id, now_ms, confirmed=lk.doors.has_parcel(door) is not None)


def last_staff():
    """(staff id, code id of a take-back in progress or None) from staff.bin (locker.flows);
    damaged: (0, None), staff "not known" and no take-back."""
    from locker import store

    try:
        f = (store.load(_STAFF) or b"0").split()
        return int(f[0]), (int(f[1]) if len(f) > 1 else None)
    except Exception:
        return 0, None


def status(lk, now_ms):
    """A summary for the console and diagnostics: no secrets, no codes."""
    from locker import doors as D

    return {
        "codes": lk.codes.count(),
        "rev": lk.codes.revision,
        "outbox": len(lk.outbox),
        "failures": lk.throttle.failures,
        "time": lk.clock.now(now_ms),
        "time_known": lk.clock.known,
        "doors": [D.name_of_state(lk.doors.state(i)) for i in range(len(lk.labels))],
        "pending": [lk.labels[d] for d in lk.pending],
    }
