# An application on trial after an update (docs/maintenance.md; firmware/boot.py counts the boots).
# Imported at boot and, while a trial lasts, by the housekeeping task; dropped otherwise, so a locker
# that is not on trial holds none of this. `rt` is the locker.runtime.Runtime.
import json
import os

from locker.log import log
from locker.ticks import ticks_diff


def boot(rt, now):
    """Read app.trial (a trial to watch) and report a rollback boot.py made, once."""
    try:
        with open("app.trial") as f:
            rt.trial = json.load(f)
        log("application on trial:", rt.trial.get("v"))
    except (OSError, ValueError, AttributeError):
        rt.trial = None
    if rt.locker is None:
        return  # safe mode records nothing: reported on the next normal boot
    try:
        with open("app.rolled") as f:
            rb = json.load(f)
        ev = {"from": rb.get("from"), "to": rb.get("to"), "n": rb.get("n")}
        rt.locker.record("app_rollback", None, ev, now)
        os.rename("app.rolled", "app.rb")  # reported once; diag reads app.rb
    except (OSError, ValueError, AttributeError):
        pass


def check(rt, sup, now, up):
    """Healthy once the main loop runs in normal mode for ok_s, online to the broker for ok_s too
    when the locker has a net.json. Then app.trial goes: the update is kept. True when kept."""
    t = rt.trial
    if rt.locker is None or not sup.healthy(now):
        rt.online_at = None
        return False
    ok_ms = t.get("ok_s", 60) * 1000
    if rt.net is not None:
        if rt.uplink is None or not rt.uplink.client.connected:
            rt.online_at = None
            return False
        if rt.online_at is None:
            rt.online_at = now
        if ticks_diff(now, rt.online_at) < ok_ms:
            return False
    elif up < ok_ms:
        return False
    try:
        os.remove("app.trial")
    except OSError:
        pass
    rt.trial = None
    rt.locker.record("app_ok", None, {"v": t.get("v")}, now)
    log("application", t.get("v"), "healthy: update kept")
    return True
