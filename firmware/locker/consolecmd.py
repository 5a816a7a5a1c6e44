# The console's signed commands (locker.console imports this on the first one): admitted exactly
# like a command from the network, then run. `con` is the locker.console.Console.
from binascii import unhexlify

from locker.console import reply

_MAX_BATCH = 64  # codes per command: keeps one message well inside the heap


def gate(con):
    if con._gate is None and con.rt.key is not None:
        from locker.hmac256 import HmacKey
        from locker.protocol import CommandGate

        con._gate = CommandGate(HmacKey(con.rt.key), con.rt.cfg.locker_id)
        con._gate.load()
    return con._gate


def command(con, wire, now_ms):
    from locker import protocol

    rt = con.rt
    g = gate(con)
    if g is None:
        reply({"ok": False, "error": "not_provisioned"})
        return
    try:
        cmd = g.admit(wire, rt.clock.now(now_ms))
    except protocol.Refused as exc:
        reply({"ok": False, "error": exc.reason, "detail": exc.detail})
        if rt.locker is not None:
            rt.locker.record("refused", None, {"r": exc.reason}, now_ms)
        return
    sent = cmd.get("now")
    if isinstance(sent, int) and (not rt.clock.known or abs(sent - rt.clock.now(now_ms)) > 2):
        rt.clock.set(sent, now_ms)
    try:
        result = dispatch(con, cmd, now_ms)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        result = {"ok": False, "error": "bad_args", "detail": str(exc)}
    result["tx"] = cmd.get("tx")
    reply(result)


def dispatch(con, cmd, now_ms):
    op, args = cmd["op"], cmd.get("args") or {}
    locker = con.rt.locker
    if op == "time":
        return {"ok": True}
    if locker is None:
        return {"ok": False, "error": "safe_mode"}
    store = locker.codes
    if op == "codes.apply":
        if args.get("base") != store.revision:
            return {"ok": False, "error": "revision_mismatch", "rev": store.revision}
        adds, removes = _records(con, args.get("add") or []), args.get("del") or []
        store.apply(int(args["rev"]), adds, [int(i) for i in removes])
        return {"ok": True, "rev": store.revision, "count": store.count()}
    if op == "codes.replace":
        store.replace(int(args["rev"]), _records(con, args.get("codes") or []))
        return {"ok": True, "rev": store.revision, "count": store.count()}
    if op == "status":
        return {"ok": True, "status": locker.status(now_ms)}
    return {"ok": False, "error": "unknown_op"}


def _records(con, rows):
    if len(rows) > _MAX_BATCH:
        raise ValueError("at most %d codes per command" % _MAX_BATCH)
    from locker.codes import TAG_SIZE

    labels = con.rt.locker.labels
    out = []
    for tag_hex, label, kind, expiry, code_id in rows:
        tag = unhexlify(tag_hex)
        if len(tag) != TAG_SIZE:
            raise ValueError("tag must be %d bytes" % TAG_SIZE)
        out.append((tag, labels.index(label), int(kind), int(expiry), int(code_id)))
    return out
