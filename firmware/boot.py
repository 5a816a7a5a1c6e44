# The loader: runs before main.py on every reset. It is installed once, by provisioning, and never
# replaced by an application update, so it must stay small and correct (docs/maintenance.md):
#
# - app.swap (written last by the `app.commit` command, once app.new/ is complete and checked):
#   swap it in: app -> app.old, app.new -> app, then app.trial, then app.swap goes. Every step is a
#   rename or can be redone, so a power cut anywhere leaves a state this code finishes next boot.
# - app.trial: the new application is on trial. Each boot counts; when it has had its k boots
#   without reaching "healthy" (locker.runtime then deletes app.trial), the previous application is
#   put back (app -> app.bad, app.old -> app) and app.rolled says so (reported as `app_rollback`).
#   A trial boot arms the watchdog: an application that dies before its own main loop runs is reset.
# - then the application goes first on sys.path: app/ on the filesystem when there is one (an update or
#   a filesystem install put it there), else the application in the romfs partition (/rom, where
#   MicroPython mounts it before boot.py runs: its modules run in place, off the heap), installed
#   there by provisioning when the image has the partition. On a production board, Ctrl-C is off.
#
# hal.board switches the solenoids off as the first thing main.py does (gate pull-downs hold them
# off until then); nothing here touches a pin.
# It repeats a few lines of locker/update.py on purpose: the loader must not import the
# application it may roll back.
import gc
import json
import os
import sys

_ROM = "/rom"  # the romfs partition's mount point; the application's manifest is at its root


def _is(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _rm(p):
    try:
        st = os.stat(p)
    except OSError:
        return
    if st[0] & 0x4000:
        for name in os.listdir(p):
            _rm(p + "/" + name)
        os.rmdir(p)
    else:
        os.remove(p)


def _read(p):
    try:
        with open(p) as f:
            v = json.load(f)
        return v if isinstance(v, dict) else None
    except (OSError, ValueError):
        return None


def _write(p, v):
    with open(p + ".tmp", "w") as f:
        json.dump(v, f)
    os.rename(p + ".tmp", p)


def _loader():
    s = _read("app.swap")
    if s is not None:
        if _is("app.new"):
            if _is("app"):
                _rm("app.old")
                os.rename("app", "app.old")
            os.rename("app.new", "app")
        _rm("app.bad")
        s["n"] = 0
        _write("app.trial", s)
        os.remove("app.swap")
        print("log| boot: application", s.get("v"), "swapped in, on trial")
    t = _read("app.trial")
    if t is None:
        return
    n = t.get("n", 0)
    if n >= t.get("k", 3):
        # The previous application is app.old/, or, after the first update of a board installed in
        # its romfs partition, the one in /rom, which runs again once app/ is out of the way.
        if _is("app.old") or _is(_ROM + "/app.json"):
            if _is("app"):
                _rm("app.bad")
                os.rename("app", "app.bad")
            if _is("app.old"):
                os.rename("app.old", "app")
        _write("app.rolled", {"from": t.get("v"), "to": t.get("prev"), "n": n})
        os.remove("app.trial")
        print("log| boot: application", t.get("v"), "not healthy after", n, "boots: rolled back to", t.get("prev"))
        return
    t["n"] = n + 1
    _write("app.trial", t)
    print("log| boot: trial boot", n + 1, "of", t.get("k", 3), "for", t.get("v"))
    from machine import WDT

    WDT(timeout=t.get("wdt", 30000))


try:
    _loader()
except Exception as e:  # never stop the locker from starting: the old application still runs
    print("log| boot: loader failed:", repr(e))
# A production board (provisioned with --production: production.json): Ctrl-C on the USB console no
# longer stops the application into the REPL, it arrives as a byte like any other. Here because the
# loader is never replaced by an update; a signed `repl.open` turns Ctrl-C back on until the next reset.
if _is("production.json"):
    import micropython

    micropython.kbd_intr(-1)
_app = "app" if _is("app") or not _is(_ROM + "/app.json") else _ROM
if _app in sys.path:
    sys.path.remove(_app)
sys.path.insert(0, _app)
_loader = _read = _write = _rm = _is = _app = _ROM = None
gc.collect()
