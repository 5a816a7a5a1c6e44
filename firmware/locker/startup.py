# Runtime.boot()'s work (locker.runtime): settings, board, code table, boot counter, clock, the
# locker. Imported for the boot and dropped again once it is done, with the other boot-only modules.
import gc
import json

from micropython import const

from locker import lazy, store
from locker.log import log

_VERSION = const("0.1.0")
# What a networked locker loads only for a command: technicians' ops, door commands, snapshots, the
# console, and the staff flows (locker.doorops takes locker.flows along).
_RARE = const(("maint", "update", "doorops", "snapshot", "staff", "console"))


def boot(rt, now):
    from locker import config

    rt.cfg = config.load()
    key = config.load_key()
    config = None
    lazy.drop("config")  # boot-only: its tables go before the big imports below
    from locker.safemode import BootCounter

    # Counted first: a boot that crashes or hangs anywhere after this counts as failed, so a fault
    # at every boot (a code table too big for the heap...) ends in safe mode, which skips the rest.
    counter = BootCounter(rt.cfg.safe_mode_boots)
    if counter.start():
        rt.safe_reason = "%d failed boots in a row" % rt.cfg.safe_mode_boots
    rt.counter = counter
    try:
        with open("board.json") as f:
            spec = json.load(f)
        labels = [str(d["label"]) for d in spec["doors"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        spec, labels = None, None
        rt.safe_reason = "board.json: %s" % exc
    # The code table is the one large block of heap (13 KB for 512 codes): it is taken first,
    # while the heap is still whole. The latches are held off by their drivers' gate
    # pull-downs from reset until Board() drives them, a few milliseconds later.
    codes = None
    if key is not None and labels is not None and rt.safe_reason is None:
        from locker.codes import CodeStore

        gc.collect()
        codes = CodeStore(key, labels, capacity=rt.cfg.code_capacity)
    if spec is not None:
        from hal.board import Board

        try:
            rt.board = Board(spec)  # switches every solenoid off first thing
        except Exception as exc:  # a board we cannot drive: safe mode, console only
            rt.safe_reason = "board: %s" % exc
            log("board failed:", exc)
    from hal import system
    from locker.clock import WallClock

    store.cleanup()
    for problem in rt.cfg.problems:
        log(problem)
    if key is None and rt.safe_reason is None:
        rt.safe_reason = "not provisioned: locker.key missing or malformed"
    rt.clock = WallClock(rtc=system.set_wall_clock)
    rt.clock.boot(system.wall_clock(), now)
    rt.key = key
    rt.reset_cause = system.reset_cause()
    rt.fw = _VERSION
    rt.net, net_problem = _net(spec)
    spec = labels = None  # parsed board.json: not needed once the board is built
    if net_problem is not None:
        log(net_problem)
    if rt.safe_reason is None:
        from locker.app import Locker

        rt.locker = Locker(rt.board, rt.cfg, key, rt.clock, now, codes)
        rt.locker.record("boot", None, {"cause": rt.reset_cause, "v": _VERSION}, now)
        # Settings and the boot counter were read before the locker could record anything.
        problems = rt.cfg.problems + ([counter.problem] if counter.problem else [])
        for problem in problems + ([net_problem] if net_problem else []):
            rt.locker.record("problem", None, {"m": problem[:80]}, now)
    else:
        log("SAFE MODE:", rt.safe_reason)
        codes = None  # give the table back: safe mode never checks a code
        if rt.board is not None:
            rt.board.all_off()
            _show_safe(rt)
    if rt.net is not None:
        _start_uplink(rt)


def _start_uplink(rt):
    # Imported only with a net.json: an offline board never loads the MQTT client. Built during
    # the boot, so its long-lived objects are packed with the others. The network is optional:
    # if it cannot be set up, the locker runs offline rather than crash into safe mode.
    if rt.key is None:
        log("net: not provisioned (no locker.key); offline")
        return
    _intern_rare()
    try:
        from locker.uplink import Uplink

        rt.uplink = Uplink(rt, rt.net)
    except Exception as exc:
        log("net: uplink failed; offline:", repr(exc))
        rt.uplink = None


def _intern_rare():
    """Load each rare module once and drop it again. What stays is what a first import never gives
    back: the module's names, interned for good. Interned now, they are packed with the boot's other
    long-lived objects, and the interpreter grows its table of names when it fills up (by one block
    of 1280 entries: 14 KB on this 64-bit port, 7.5 KB on the ESP32) while the heap is still whole.
    Left to the first use, say a technician's update after a day of commands, that one block could
    no longer be found in a heap with 60 KB free in small pieces (MemoryError, the update refused)."""
    import sys

    for name in _RARE:
        before = list(sys.modules)
        lazy.load(name)
        # with what it imported that the running locker does not hold (flows, with doorops)
        lazy.drop(*[m[7:] for m in sys.modules if m.startswith("locker.") and m not in before])


def _show_safe(rt):
    from locker import messages

    lines = messages.render(rt.cfg.language, "out_of_service")
    if rt.board.display is not None:
        rt.board.display.show(lines)
    print("display|%s|%s" % lines)


def _net(spec, path="net.json"):
    """net.json -> (settings, None); absent: (None, None), an offline locker; unusable: (None, problem),
    offline too. Never raises: a bad network file must not keep the doors shut. "ethernet": true takes
    the PHY's wiring from the board definition (`spec`, its "ethernet" section)."""
    try:
        with open(path) as f:
            n = json.load(f)
    except OSError:
        return None, None
    except ValueError:
        return None, "net: %s is not valid JSON; offline" % path
    try:
        b = n.get("broker") if isinstance(n, dict) else None
        if not isinstance(b, dict):
            raise ValueError("no broker")
        host = b.get("host")
        tls = b.get("tls", True)  # plain MQTT only when the file says so: the password travels in clear
        if not isinstance(host, str) or not host or not isinstance(tls, bool):
            raise ValueError("broker.host/tls")
        port = b.get("port", 8883 if tls else 1883)
        ka = n.get("keepalive", 30)
        for v, lo, hi in ((port, 1, 65535), (ka, 5, 3600)):
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError("port/keepalive out of range")
        for k in ("user", "password", "server_hostname"):
            if b.get(k) is not None and not isinstance(b[k], str):
                raise ValueError("broker.%s" % k)
        wifi = n.get("wifi")
        if wifi is not None and not (isinstance(wifi, dict) and isinstance(wifi.get("ssid"), str)):
            raise ValueError("wifi.ssid")
        lan = None
        if n.get("ethernet", False) is not False:
            if n["ethernet"] is not True or wifi is not None:
                raise ValueError("ethernet: true, without wifi")
            lan = spec.get("ethernet") if isinstance(spec, dict) else None
            if not isinstance(lan, dict):
                raise ValueError("ethernet: not in board.json")
        ca = None
        if tls:  # no CA, no connection: TLS never goes unverified
            ca_path = b.get("ca") or "ca.der"
            try:
                with open(ca_path, "rb") as f:
                    ca = f.read()
            except OSError:
                raise ValueError("CA %s missing" % ca_path)
    except (KeyError, TypeError, ValueError) as exc:
        return None, "net: %s unusable (%s); offline" % (path, exc)
    b["port"] = port
    b["tls"] = tls
    return {"wifi": wifi, "lan": lan, "broker": b, "keepalive": ka, "ca_der": ca}, None
