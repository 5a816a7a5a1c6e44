# The desk's phone number and opening times (docs/protocol.md, "desk"): the help line of the messages
# that send a resident to the desk says "ask at the desk" while it is open and gives the number
# otherwise. The host sends them with a signed `desk` command; desk.bin keeps them across reboots.
# Imported at boot and for the command, then dropped (locker.lazy): the running locker holds only
# Locker.desk, (phone, open intervals, tag).
#
# `open` is a list of [start, end) epoch-second intervals, worked out by the host from the desk's
# hours in its time zone for the days ahead (the host renews them daily): the locker needs no
# calendar and no time zone, and a locker the host has not reached for longer gives the number,
# as it does while its clock is unknown.
import json

from micropython import const

from locker import store

PATH = "desk.bin"
_PHONE_MAX = const(12)  # locker.messages.PHONE_MAX: the help line's room for the number
_INTERVALS_MAX = const(64)
_TAG_MAX = const(16)
_U32 = const(0xFFFFFFFF)
NONE = (None, (), "")  # nothing from the host: "ask at the desk", as before


def parse(args):
    """A `desk` command's args -> (phone, intervals, tag); ValueError names what is wrong."""
    phone = args.get("phone")
    if phone is not None:
        if not isinstance(phone, str) or not 0 < len(phone) <= _PHONE_MAX:
            raise ValueError("phone: 1-%d characters" % _PHONE_MAX)
        for ch in phone:
            if ch not in "0123456789 +-()/.":
                raise ValueError("phone: digits, spaces and + - ( ) / . only")
    spans = args.get("open")
    if spans is None:
        spans = []
    if not isinstance(spans, list) or len(spans) > _INTERVALS_MAX:
        raise ValueError("open: at most %d intervals" % _INTERVALS_MAX)
    flat = []
    for span in spans:
        if not isinstance(span, list) or len(span) != 2:
            raise ValueError("open: [start, end] pairs")
        start, end = span
        for v in span:
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _U32:
                raise ValueError("open: epoch seconds")
        if end <= start:
            raise ValueError("open: end after start")
        flat.append(start)
        flat.append(end)
    tag = args.get("tag", "")
    if not isinstance(tag, str) or len(tag) > _TAG_MAX:
        raise ValueError("tag: at most %d characters" % _TAG_MAX)
    return (phone, tuple(flat), tag)


def load(path=PATH):
    """(phone, intervals, tag) from desk.bin; (NONE, problem or None) when missing or damaged."""
    try:
        raw = store.load(path)
        if raw is None:
            return NONE, None
        return parse(json.loads(raw)), None
    except (store.Corrupt, ValueError, TypeError, AttributeError) as exc:
        return NONE, "%s: %s" % (path, exc)


def command(lk, args):
    """The `desk` command: checked whole, written, then in use."""
    desk = parse(args)
    phone, flat, tag = desk
    spans = [[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)]
    store.save(PATH, json.dumps({"phone": phone, "open": spans, "tag": tag}).encode())
    lk.desk = desk
    return {"ok": True}
