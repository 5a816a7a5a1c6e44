# The ESP32's start-up for a flash folder that holds the loader and the application
# (lockertools.sim.VirtualBoard(app_on_flash=True), `micropython -m _launch`): boot.py, then main.py,
# both from the flash folder (cwd), as the board runs them. When main.py raises, a board drops to
# the REPL and sits there until its watchdog (if armed) resets it: so does this.
import sys


def _run(name):
    try:
        with open(name) as f:
            src = f.read()
    except OSError:
        return
    exec(src, {"__name__": "__main__"})


_run("boot.py")
try:
    _run("main.py")
except SystemExit:
    raise
except KeyboardInterrupt as e:  # Ctrl-C on the console: main.py stops and the REPL starts (given by
    sys.print_exception(e)  # `micropython -i`, as lockertools.provision.virtual.UsbUart runs a board)
except BaseException as e:  # noqa: BLE001 - what a board's REPL would print
    sys.print_exception(e)
    import machine

    while True:
        machine.idle()
