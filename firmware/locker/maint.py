# Technicians' operations (docs/maintenance.md): diagnostics, the keypad walk-through of the
# self-test, and application updates (locker.update, imported for an `app.*`). Imported by
# locker.commands for each such command and dropped after it (with locker.update): a locker holds
# them only while a technician's command runs.
import gc

from micropython import const

from locker.ticks import ticks_add

_KEYS_MS = const(120_000)  # the keypad echo switches itself off after this


def run(rt, op, args, now_ms):
    if op == "diag":
        return {"ok": True, "diag": diag(rt, now_ms)}
    if op == "selftest.keys":
        return keys(rt, args, now_ms)
    if op == "repl.open":
        return repl_open()
    if op in ("app.begin", "app.files", "app.chunk", "app.commit", "app.status", "app.abort"):
        from locker import update

        return update.run(rt, op, args, now_ms)
    return {"ok": False, "error": "unknown_op"}


def repl_open():
    """Ctrl-C on the USB console stops the application into the REPL again, until the next reset:
    the technician's way into a production board (boot.py turned Ctrl-C off) without re-flashing it."""
    import micropython

    micropython.kbd_intr(3)
    print("log| console: Ctrl-C reaches the REPL until the next reset (repl.open)")
    return {"ok": True, "until": "reset"}


def keys(rt, args, now_ms):
    lk = rt.locker
    if lk is None:
        return {"ok": False, "error": "safe_mode"}
    on = args.get("on")
    if not isinstance(on, bool):
        raise ValueError("on")
    if on:
        until = ticks_add(now_ms, _KEYS_MS)
        lk.key_echo_until = until or 1  # 0 means off
    else:
        lk.key_echo_until = 0
    board = rt.board
    return {"ok": True, "on": on, "s": _KEYS_MS // 1000 if on else 0, "keys": board.keys if board is not None else ""}


def app_root():
    """Where the running application is, by boot.py's rule: app/ on the filesystem when there is one
    (an update put it there), else the romfs partition (/rom) when it holds an application."""
    import os

    try:
        os.stat("app")
        return "app"
    except OSError:
        pass
    try:
        os.stat("/rom/app.json")
        return "/rom"
    except OSError:
        return "app"


def app_version():
    """The running application as {v: version, h: first 12 hex digits of SHA-256(app/app.json)}, or
    None when it was installed without a manifest (a development tree). The manifest is hashed in
    blocks and its version read from the first (it comes first): it is never parsed whole."""
    import hashlib
    from binascii import hexlify

    try:
        f = open(app_root() + "/app.json", "rb")
    except OSError:
        return None
    h = hashlib.sha256()
    buf = bytearray(256)
    mv = memoryview(buf)
    head = None
    with f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            if head is None:
                head = bytes(mv[:n])
            h.update(mv[:n])
    v = None
    i = head.find(b'"version"') if head else -1
    if i >= 0:
        a = head.find(b'"', head.find(b":", i) + 1)
        b = head.find(b'"', a + 1)
        if 0 < a < b:
            v = head[a + 1 : b].decode()
    return {"v": v, "h": hexlify(h.digest()).decode()[:12]}


def _json(path):
    import json

    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def diag(rt, now_ms):
    """The diagnostics record (docs/protocol.md, "diag"): works in safe mode too."""
    import sys

    lk = rt.locker
    cs = lk.codes if lk is not None else None
    doors = []
    if lk is not None:
        from locker.doors import name_of_state

        bank = lk.doors
        for i in range(len(lk.labels)):
            doors.append({"d": lk.labels[i], "s": name_of_state(bank.state(i)), "full": bank.has_parcel(i)})
    trial = rt.trial
    out = {
        "fw": getattr(rt, "fw", None),
        "mp": "%d.%d.%d" % sys.implementation.version[:3],
        "app": app_version(),
        "up": rt.uptime_ms(now_ms) // 1000,
        "reset": getattr(rt, "reset_cause", None),
        "safe": rt.safe_reason,
        "doors": doors,
        "outbox": len(lk.outbox) if lk is not None else 0,
        "lost": lk.outbox.dropped if lk is not None else 0,
        "codes": cs.count() if cs is not None else 0,
        "rev": cs.revision if cs is not None else 0,
        "trial": {"v": trial.get("v"), "n": trial.get("n"), "k": trial.get("k")} if trial else None,
        "rollback": _json("app.rolled") or _json("app.rb"),
    }
    gc.collect()
    out["heap_free"] = gc.mem_free() if hasattr(gc, "mem_free") else None  # None: CPython (tests)
    out["heap_used"] = gc.mem_alloc() if hasattr(gc, "mem_alloc") else None
    return out
