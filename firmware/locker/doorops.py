# The rare door operations (locker.flows's other half): a door opened by the host (door.open), a
# door out of or back in service (door.service, or a staff session), and settling the returns,
# loads and take-backs a power cut interrupted. Imported for the call and dropped after it (drop()).
import sys

from micropython import const

from locker import codes as C
from locker import lazy

_SERVICE = const("service.bin")  # as in locker.app


def drop(lk):
    """This module goes (and locker.flows, when nothing uses it)."""
    lazy.drop("doorops")
    flows = sys.modules.get("locker.flows")
    if flows is not None:
        flows.idle(lk)


def command(lk, op, args, now_ms):
    """door.open {door, by, r?} and door.service {door, on, by} (locker.commands): exactly the
    schema's types, else ValueError (bad_args)."""
    label = args.get("door")
    by = args.get("by")
    if not isinstance(label, str) or label not in lk.labels:
        raise ValueError("door")
    if not isinstance(by, str) or not 0 < len(by) <= 32:
        raise ValueError("by: 1-32 characters")
    door = lk.labels.index(label)
    if op == "door.open":
        why = args.get("r")
        if why is not None and not (isinstance(why, str) and len(why) <= 64):
            raise ValueError("r: at most 64 characters")
        return remote_open(lk, door, by, why, now_ms)
    on = args.get("on")
    if not isinstance(on, bool):
        raise ValueError("on: true or false")
    return set_service(lk, door, on, "by", by, now_ms)


def settle(lk, resume, now_ms, staff, taking):
    """After a reboot: the returns, loads and take-backs a power cut interrupted; the pickups are left
    to the app (returned). A door still open becomes a job again. `staff`, `taking`: staff.bin's
    staff id and take-back code id (locker.appinit.last_staff)."""
    from locker import flows as F

    out = []
    doors = lk.doors
    n = len(lk.labels)
    for cid, door in resume:
        st, _ = lk.codes.state_of(cid)
        rec = lk.codes.find_id(cid) if st == C.STATE_CONSUMED else None
        if st == C.STATE_LOADING:
            job = F.J_LOAD
        elif rec is not None and rec[1] & C.KIND_MASK == C.KIND_RETURN:
            job = F.J_RETURN
        elif st == C.STATE_CONSUMED and cid == taking:
            job = F.J_TAKE
        else:
            out.append((cid, door))
            continue
        if door >= n:
            continue
        if not doors.is_closed(door):
            lk.jobs[door] = [job, cid, staff, None, 1]
            doors.assume_open(door, now_ms)
        elif job == F.J_LOAD and doors.has_parcel(door) is False:
            lk.codes.release(cid)
            lk.record("load_abandoned", door, {"id": cid, "staff": staff}, now_ms)
        else:
            F.outcome(lk, job, door, cid, staff, None, doors.has_parcel(door), now_ms)
    return out


def remote_open(lk, door, by, why, now_ms):
    """door.open from the host (signed; who asked is in `by`)."""
    doors = lk.doors
    if doors.out_of_service(door):
        return {"ok": False, "error": "out_of_service"}
    if door in lk.jobs or not doors.request_unlock(door, now_ms):
        return {"ok": False, "error": "busy"}
    doors.poll(now_ms)
    lk.beep("ACCEPTED", now_ms)
    lk.show("opening", lk.labels[door], lk.cfg.message_ms, now_ms)
    ev = {"by": by}
    if why:
        ev["r"] = why
    lk.record("remote_open", door, ev, now_ms)
    return {"ok": True, "d": lk.labels[door]}


def set_service(lk, door, on, who, name, now_ms):
    """A door out of service (on False) or back in (on True); on flash first (service.bin), then in
    force. who: "staff" (name: staff id) or "by" (the host's `by`)."""
    from locker import store

    doors = lk.doors
    out = bytearray()
    for d in range(len(lk.labels)):
        if (d != door and doors.out_of_service(d)) or (d == door and not on):
            out.append(d)
    store.save(_SERVICE, bytes(out))
    doors.set_out_of_service(door, not on)
    lk.record("door_service", door, {"on": bool(on), who: name}, now_ms)
    return {"ok": True, "d": lk.labels[door], "on": bool(on)}
