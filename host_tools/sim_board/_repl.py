# The REPL a board drops to when its program raises (loaded by _launch only then): the traceback is
# printed, the REPL reported on the control channel ({"ev":"repl"}), and the board sits there,
# alive, latches as they were, until its watchdog (if armed) or a reset ends the process with the
# reset's status, as any other reset does.
import json
import sys

import _simboard as _sb
import machine


def stay(e):
    sys.print_exception(e)
    try:
        if _sb.name is None:  # never touched the hardware: the hello says it (lockertools.sim)
            _sb.repl = repr(e)
            _sb.up()
        else:
            _sb._ev('"ev":"repl","error":%s' % json.dumps(repr(e)))
    except Exception:  # noqa: BLE001 - no board.json, no controller: a silent REPL
        pass
    while True:
        machine.idle()
