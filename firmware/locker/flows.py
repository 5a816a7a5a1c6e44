# The locker's door flows besides a pickup: staff loads and take-backs (the keys are locker.staff's),
# a resident's return, a door opened by the host, doors out of service, and settling all of those
# after a power cut. Imported by the app when one of them starts (Locker.flows()) and dropped again
# once no staff session and no such door job is left (idle()): a locker where nobody loads or returns
# never holds this code.
#
# A door job is lk.jobs[door] = [job, code id, staff id, low, seen open]; `low` is None when no low
# door was asked for, else 1/0 (got one or not). The journal is on flash before the latch moves
# (codes.loading() for a load, consume() for a return or a take-back), and an outcome's event is in
# the outbox before the journal says it is done: a power cut repeats an event, never loses one.
import struct

from micropython import const

from locker import codes as C
from locker import doors as D

J_LOAD = const(1)
J_RETURN = const(2)
J_TAKE = const(3)
_STICKY = const(-1)
# The staff id of the last load or take-back started, and for a take-back " <code id>" after it, until
# its door is settled: after a power cut that code's consumed journal entry is a take-back, not a
# resident's pickup (locker.appinit.settle, locker.doorops.settle).
_STAFF = const("staff.bin")
# The doors the locker knows hold an item (lk.held: door -> the code id it came with, 0 for a load by
# size), door u8 | code id u32 each, store.save framing: a loaded delivery, a return, an item a
# take-back left inside. Such a door is never given to another item, parcel sensor or not, until the
# item is picked up or taken back; loaded by appinit.init, as service.bin.
_HELD = const("held.bin")


def idle(lk):
    """Drop this module (and the staff session's) when nothing uses them any more."""
    if lk.staff is None and not lk.jobs:
        from locker import lazy, messages

        messages.drop_staff_text()
        lazy.drop("flows", "staff")


def reserved(cs):
    """A bytearray, 1 per door some code holds: a pickup code not used up, or a journal entry
    (consumed, loaded, loading). Expired pickups count: their item is still inside."""
    nd = len(cs.prefixes)
    out = bytearray(nd)
    buf = cs.buf
    for i in range(cs.n):
        off = i * C.RECORD_SIZE + C.TAG_SIZE
        door = buf[off]
        if door < nd and not buf[off + 1] & C.KIND_MASK:
            if cs.state_of(struct.unpack_from("<I", buf, off + 6)[0])[0] != C.STATE_COMPLETED:
                out[door] = 1
    for cid, door, st in cs.used():
        if st != C.STATE_COMPLETED and door < nd:
            out[door] = 1
    return out


def expired(cs, now_epoch):
    """(door, code id) of the items whose code expired and that are still in their door (a pickup
    code never used, a loaded delivery), by door."""
    out = []
    if now_epoch is None:
        return out
    nd = len(cs.prefixes)
    buf = cs.buf
    for i in range(cs.n):
        door, kind, expiry, cid = struct.unpack_from("<BBII", buf, i * C.RECORD_SIZE + C.TAG_SIZE)
        if not expiry or now_epoch < expiry:
            continue
        st, jd = cs.state_of(cid)
        kind &= C.KIND_MASK
        if kind == C.KIND_PICKUP and door < nd and st == 0:
            out.append((door, cid))
        elif kind == C.KIND_DELIVERY and st == C.STATE_LOADED and jd < nd:
            out.append((jd, cid))
    out.sort()
    return out


def hold(lk, door, cid):
    """Door `door` holds an item (cid: the code id it came with), or (cid None) is empty again. On
    flash: a hold before the journal says the job is done, a release after the pickup or take-back
    is journalled, so a power cut at worst leaves a door held (staff find it empty), never frees a
    full one."""
    h = lk.held
    if cid is None:
        if h.pop(door, None) is None:
            return
    elif h.get(door) == cid:
        return
    else:
        h[door] = cid
    from locker import store

    try:
        store.save(_HELD, b"".join([struct.pack("<BI", d, h[d]) for d in h]))
    except OSError:  # a failing flash: the door stays held for this boot, the job's events go on
        pass


def to_take_back(lk, now_epoch):
    """(door, code id) a take-back offers, by door: the items whose code expired (expired()) and the
    doors holding an item no code waits for (a return, an item whose code the host withdrew). A load
    by size (code id 0) is not offered: it waits for the pickup code the host issues for its door."""
    out = expired(lk.codes, now_epoch)
    held = reserved(lk.codes)
    for door in lk.held:
        cid = lk.held[door]
        if cid and door < len(held) and not held[door]:
            out.append((door, cid))
    out.sort()
    return out


def pick_door(lk, kind):
    """(door, got a low one) for an item of this kind byte, (-1, 0) when none is free. Free: closed,
    locked, no parcel sensed, in service, no code holds it, no item the locker knows of in it (held),
    no job on it. A low door first when one is wanted; then the smallest that fits; a low door last
    when none is wanted (kept for those who need one)."""
    board = lk.board
    sizes = getattr(board, "sizes", None)
    lows = getattr(board, "low", None)
    want = (kind >> 4) & 3
    want_low = kind & 64
    held = reserved(lk.codes)
    doors = lk.doors
    best = -1
    best_key = None
    for d in range(len(lk.labels)):
        size = sizes[d] if sizes else 2
        if (
            size < want
            or held[d]
            or d in lk.held
            or d in lk.jobs
            or d in lk.pending
            or doors.out_of_service(d)
            or (lk.lockbus is not None and not lk.lockbus.online(d))
            or doors.state(d) != D.LOCKED
            or not doors.is_closed(d)
            or doors.has_parcel(d)
        ):
            continue
        low = 1 if lows and lows[d] else 0
        key = ((1 - low) if want_low else 0, size, low, d)
        if best_key is None or key < best_key:
            best, best_key = d, key
    return best, (1 if best >= 0 and lows and lows[best] else 0)


def start(lk, job, door, cid, staff, low, now_ms):
    """Journal, then the latch: door `door` opens for a load, a return or a take-back."""
    g = lk.grace
    if g is not None and g[1] == door:
        lk.grace = None  # the door gets another item: the last pickup's code no longer reopens it
    if job != J_RETURN:
        from locker import store

        store.save(_STAFF, b"%d %d" % (staff, cid) if job == J_TAKE else b"%d" % staff)
    if job == J_LOAD:
        lk.codes.loading(cid, door)
    else:
        lk.codes.consume(cid, door)
    lk.jobs[door] = [job, cid, staff, low, 0]
    lk.doors.request_unlock(door, now_ms)
    lk.doors.poll(now_ms)
    lk.beep("ACCEPTED", now_ms)
    lk.show("opening", lk.labels[door], lk.cfg.message_ms, now_ms)


def code(lk, cid, kind, now_ms):
    """A door-free code typed at the keypad, usable (lookup OK): a staff PIN, a return, a delivery
    not loaded yet."""
    k = kind & C.KIND_MASK
    if k == C.KIND_STAFF:
        from locker import lazy

        session = lazy.load("staff").Session
        lk.beep("ACCEPTED", now_ms)
        lk.record("staff_in", None, {"staff": cid}, now_ms)
        lk.staff = session(lk, cid, now_ms)
    elif k == C.KIND_RETURN:
        door, low = pick_door(lk, kind)
        if door < 0:
            lk.beep("WRONG", now_ms)
            lk.show("no_door", None, lk.cfg.message_ms, now_ms)
            lk.record("denied", None, {"r": "no_door", "id": cid}, now_ms)
        else:
            start(lk, J_RETURN, door, cid, 0, low if kind & 64 else None, now_ms)
    else:  # a delivery staff have not loaded yet
        lk.beep("WRONG", now_ms)
        lk.show("not_yet", None, lk.cfg.message_ms, now_ms)
        lk.record("denied", None, {"r": "not_loaded", "id": cid}, now_ms)
    idle(lk)


def outcome(lk, job, door, cid, staff, low, full, now_ms):
    """The door of a job closed (full: the parcel sensor, None without one). Event, then journal."""
    label = lk.labels[door]
    ms = lk.cfg.message_ms
    if job == J_RETURN:
        if full is False:
            lk.record("return_empty", door, {"id": cid}, now_ms)
            lk.codes.release(cid)
            lk.show("return_empty", None, ms, now_ms)
        else:
            hold(lk, door, cid)
            ev = {"id": cid}
            if full is None:
                ev["sensor"] = 0
            lk.record("returned", door, ev, now_ms)
            lk.codes.complete(cid)
            lk.show("returned", None, ms, now_ms)
        return
    ev = {"id": cid, "staff": staff}
    if job == J_LOAD:
        if full is False:
            lk.record("load_empty", door, ev, now_ms)
            lk.codes.release(cid)
            lk.show("staff_empty", label, ms, now_ms)
        else:
            hold(lk, door, cid)
            if low is not None:
                ev["low"] = low
            if full is None:
                ev["sensor"] = 0
            lk.record("loaded", door, ev, now_ms)
            lk.codes.loaded(cid, door)
            lk.show("staff_loaded", label, ms, now_ms)
    elif full:  # a take-back, and the item is still inside: it stays as it was
        hold(lk, door, lk.held.get(door, cid))
        lk.codes.release(cid)
        lk.record("closed_full", door, ev, now_ms)
        _taken(staff)
        lk.show("still_full", label, ms, now_ms)
    else:
        lk.record("taken_back", door, ev, now_ms)
        lk.codes.complete(cid)
        hold(lk, door, None)
        _taken(staff)
        lk.show("staff_taken", label, ms, now_ms)


def _taken(staff):
    """A take-back is settled: its code id leaves staff.bin (a later cut of that code's door is no
    take-back). Best effort: a failed write only leaves a settled code named there."""
    from locker import store

    try:
        store.save(_STAFF, b"%d" % staff)
    except OSError:
        pass


def door_event(lk, kind, door, now_ms):
    """A door event for a door with a job; False: not one of ours (the app records it as usual)."""
    j = lk.jobs[door]
    job = j[0]
    staff = lk.staff
    if staff is not None and kind <= D.EV_JAMMED:
        staff.last = now_ms  # the door moving is the session in use (an alarm is not)
    if kind == D.EV_OPENED:
        j[4] = 1
        lk.beep("DOOR_OPEN", now_ms)
        label = lk.labels[door]
        key = "return_open" if job == J_RETURN else "staff_open" if job == J_LOAD else "staff_take"
        lk.show(key, label, _STICKY, now_ms)
        lk.record("opened", door, None, now_ms)
        return True
    if kind == D.EV_CLOSED:
        del lk.jobs[door]
        lk.doors.acknowledge(door)
        outcome(lk, job, door, j[1], j[2], j[3], lk.doors.has_parcel(door), now_ms)
    elif kind == D.EV_JAMMED:  # never seen open: nothing happened, the code is as it was
        del lk.jobs[door]
        lk.codes.release(j[1])
        if job == J_TAKE:
            _taken(j[2])
        lk.beep("WRONG", now_ms)
        lk.show("jammed", lk.labels[door], lk.cfg.message_ms, now_ms)
        lk.record("jammed", door, {"id": j[1]}, now_ms)
        if job == J_LOAD:
            lk.record("load_abandoned", door, {"id": j[1], "staff": j[2]}, now_ms)
    else:
        return False
    if staff is not None:
        staff.job_done(job, now_ms)
    idle(lk)
    return True


def abandon(lk, door, now_ms):
    """The staff session ended with its door job unfinished (timeout): the load is abandoned; a door
    left open is reported `left_open` by the door bank as for any door."""
    j = lk.jobs.pop(door, None)
    if j is None:
        return
    lk.codes.release(j[1])
    if j[0] == J_LOAD:
        lk.record("load_abandoned", door, {"id": j[1], "staff": j[2]}, now_ms)
    elif j[0] == J_TAKE:
        _taken(j[2])
