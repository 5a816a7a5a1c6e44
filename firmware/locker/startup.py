# Runtime.boot()'s work (locker.runtime): settings, board, code table, boot counter, clock, the
# locker. Imported for the boot and dropped again once it is done, with the other boot-only modules.
import gc
import json

from locker import store
from locker.runtime import _unload, log

_VERSION = "0.1.0"


def boot(rt, now):
    from locker import config

    rt.cfg = config.load()
    key = config.load_key()
    config = None
    _unload("config")  # boot-only: its tables go before the big imports below
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
    if key is not None and labels is not None:
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
    from locker.safemode import BootCounter

    store.cleanup()
    for problem in rt.cfg.problems:
        log(problem)
    counter = BootCounter(rt.cfg.safe_mode_boots)
    if counter.start():
        rt.safe_reason = rt.safe_reason or "%d failed boots in a row" % rt.cfg.safe_mode_boots
    rt.counter = counter
    if key is None and rt.safe_reason is None:
        rt.safe_reason = "not provisioned: locker.key missing or malformed"
    rt.clock = WallClock()
    rt.clock.boot(system.wall_clock(), now)
    rt.key = key
    rt.reset_cause = system.reset_cause()
    spec = labels = None  # parsed board.json: not needed once the board is built
    if rt.safe_reason is None:
        from locker.app import Locker

        rt.locker = Locker(rt.board, rt.cfg, key, rt.clock, now, codes)
        rt.locker.record("boot", None, {"cause": rt.reset_cause, "v": _VERSION}, now)
        # Settings and the boot counter were read before the locker could record anything.
        for problem in rt.cfg.problems + ([counter.problem] if counter.problem else []):
            rt.locker.record("problem", None, {"m": problem[:80]}, now)
    else:
        log("SAFE MODE:", rt.safe_reason)
        codes = None  # give the table back: safe mode never checks a code
        if rt.board is not None:
            rt.board.all_off()
            _show_safe(rt)


def _show_safe(rt):
    from locker import messages

    lines = messages.render(rt.cfg.language, "out_of_service")
    if rt.board.display is not None:
        rt.board.display.show(lines)
    print("display|%s|%s" % lines)
