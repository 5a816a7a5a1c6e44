# The ESP32's start-up, as the simulated board runs it (`micropython -m _launch`, lockertools.sim):
# - a flash folder that holds the loader and the application (VirtualBoard(app_on_flash=True)):
#   boot.py, then main.py, both from the flash folder (cwd), as the board runs them;
# - otherwise the script named by LOCKER_SIM_SCRIPT (the firmware's main.py, or a test's program).
# When the program raises, a board prints the traceback and drops to the REPL, where it sits, alive,
# until its watchdog (if armed) resets it or someone presses reset: so does this (_repl, loaded
# only then).
import os
import sys


def _run(name):
    try:
        with open(name) as f:
            src = f.read()
    except OSError:
        return
    exec(src, {"__name__": "__main__"})


if os.getenv("LOCKER_SIM_ROMFS"):  # the board's romfs partition, mounted before boot.py (_simrom)
    import _simrom

    _simrom.mount_rom()
    del sys.modules["_simrom"]
    _simrom = None
_script = os.getenv("LOCKER_SIM_SCRIPT")
try:
    if _script:
        sys.path.insert(0, _script.rpartition("/")[0] or ".")  # as `micropython script.py` does
        _run(_script)
    else:
        _run("boot.py")
        _run("main.py")
except SystemExit:
    raise
except KeyboardInterrupt as e:  # Ctrl-C on the console: main.py stops and the REPL starts (given by
    sys.print_exception(e)  # `micropython -i`, as lockertools.provision.virtual.UsbUart runs a board)
except BaseException as e:  # noqa: BLE001 - what a board's REPL would do
    import _repl

    _repl.stay(e)
