# The asyncio glue: boots the board, decides normal or safe mode, and runs the long-lived tasks.
# Every task checks in with the supervisor; the watchdog is fed only while all of them do.
# Any exception that escapes the application, in the boot or in a task, switches the solenoids off,
# is logged and resets the board: a board must never sit at the REPL with its latches as they were.
# The reset boot counts as failed (safemode.BootCounter), so a crash at every boot ends in safe mode.
import asyncio
import gc
import os
import sys

from micropython import const

from locker import lazy
from locker.log import log
from locker.ticks import ticks_diff, ticks_ms

_HOUSEKEEPING_MS = const(500)
_WATCHDOG_CHECK_MS = const(1000)
# Armed before the boot, so a boot that hangs is reset too; the watchdog task re-times it.
_BOOT_WATCHDOG_MS = const(30_000)


class Runtime:
    def __init__(self):
        # Set by the boot (locker.startup) unless it stopped in safe mode before:
        self.cfg = None  # locker.config's settings
        self.counter = None  # safemode.BootCounter: this boot counted, marked good after boot_ok_ms
        self.key = None  # locker.key's bytes; None: not provisioned
        self.board = None  # hal.board.Board
        self.clock = None  # locker.clock.WallClock
        self.fw = None  # the application's version
        self.locker = None  # app.Locker; None: safe mode
        self.safe_reason = None
        self.started_ms = ticks_ms()
        # Uptime adds up differences between nearby ticks: a single ticks_diff from boot would
        # wrap after 2**29 ms (6.2 days).
        self._up_ms = 0
        self._up_at = self.started_ms
        self.net = None  # parsed net.json (startup); None: an offline locker
        self.uplink = None
        self.reset_cause = None  # startup: hal.system.reset_cause()
        self.trial = None  # app.trial (boot.py): the application is on trial until healthy
        self.online_at = None  # on trial: ticks when the uplink was last seen coming up (locker.trial)
        self.commands = None  # commands.Commands, made on the first command (locker.commands.get)

    # --- boot ---------------------------------------------------------------------------------

    def boot(self):
        now = ticks_ms()
        # The boot interleaves garbage (imports, parsing) with objects that live for good. Collecting
        # every few KB keeps those objects packed low in the heap instead of strewn across it between
        # small holes: the running locker then finds contiguous free blocks. Boot only (a collection
        # in the keypad loop would show in the latency).
        gc.threshold(4096)
        from locker import startup  # boot-only: the work is there, the module goes afterwards

        startup.boot(self, now)  # the uplink too, with a net.json
        startup = None
        # Boot-only modules go: their tables and bytecode are heap the running locker can use.
        lazy.drop("startup", "safemode")
        from locker import trial  # application updates: a trial to watch, a rollback to report

        trial.boot(self, now)
        trial = None
        if self.trial is None:
            lazy.drop("trial")
        gc.threshold(-1)
        gc.collect()
        mode = "safe" if self.locker is None else "normal"
        log("ready", mode, ticks_diff(ticks_ms(), now), "ms", "heap", gc.mem_alloc())

    def uptime_ms(self, now):
        """Milliseconds since boot, valid for years (housekeeping folds it every 500 ms)."""
        return self._up_ms + ticks_diff(now, self._up_at)

    # --- tasks --------------------------------------------------------------------------------

    async def io_task(self, sup, slot):
        locker = self.locker
        period = self.cfg.scan_ms
        while True:
            now = ticks_ms()
            locker.poll(now)
            sup.check_in(slot, now)
            await asyncio.sleep_ms(period)

    async def housekeeping_task(self, sup, slot):
        from hal import system

        boot_ok = False
        while True:
            now = ticks_ms()
            up = self.uptime_ms(now)
            self._up_ms, self._up_at = up, now
            self.clock.tick(now)
            if not boot_ok and up >= self.cfg.boot_ok_ms:
                boot_ok = True
                self.counter.mark_good()
                log("boot marked good")
            if self.trial is not None:
                from locker import trial

                if trial.check(self, sup, now, up):
                    lazy.drop("trial")
                trial = None
            if self.locker is None and up >= self.cfg.safe_mode_reboot_ms:
                log("safe mode over: rebooting")
                system.reset()
            gc.collect()  # here, not in the keypad loop
            sup.check_in(slot, now)
            await asyncio.sleep_ms(_HOUSEKEEPING_MS)

    async def watchdog_task(self, sup):
        from hal import system

        wdt = system.watchdog(self.cfg.watchdog_ms)
        warned = False
        while True:
            now = ticks_ms()
            if sup.healthy(now):
                wdt.feed()
                warned = False
            elif not warned:
                warned = True
                log("watchdog starving; silent tasks:", sup.stale(now))
            await asyncio.sleep_ms(_WATCHDOG_CHECK_MS)

    async def console_task(self):
        # locker.console is imported for a line and dropped after it: most boards never see a
        # console, and a technician's session is a few lines (an update's chunks one line each).
        reader = asyncio.StreamReader(sys.stdin)
        line = bytearray()
        while True:
            # A byte at a time: readline() blocks the whole loop on a line not ended yet (slow typing,
            # the Ctrl-C mpremote sends to a production board) until the watchdog resets the board.
            c = await reader.read(1)
            if not c:
                await asyncio.sleep_ms(1000)  # stdin closed (no console attached)
                continue
            line += c
            if line[-1] != 10:  # b"\n"
                continue
            try:
                lazy.load("console").Console(self).handle(bytes(line).strip(), ticks_ms())
            finally:
                lazy.drop("console")
            line = bytearray()

    def on_exception(self, loop, context):
        self.crashed("task crashed: %s" % context.get("message"), context.get("exception"))

    def crashed(self, what, exc):
        """Fail secure and start again: the latches off first, then the log, then the reset, each
        one attempted even when the one before it failed."""
        try:
            if self.board is not None:
                self.board.all_off()
        finally:
            try:
                gc.collect()  # after a MemoryError, the log needs a little heap
                log(what, repr(exc))
                if exc is not None:
                    sys.print_exception(exc)
            finally:
                from hal import system  # imported by main() already: costs no heap here

                system.reset()

    async def run(self):
        from locker.supervisor import Supervisor

        asyncio.get_event_loop().set_exception_handler(self.on_exception)
        now = ticks_ms()
        sup = Supervisor(self.cfg.task_silence_ms)
        if self.locker is not None:
            asyncio.create_task(self.io_task(sup, sup.register("io", now)))
        asyncio.create_task(self.housekeeping_task(sup, sup.register("housekeeping", now)))
        asyncio.create_task(self.console_task())
        if self.uplink is not None:
            # Not registered with the supervisor: waiting for a broker must not starve the watchdog.
            asyncio.create_task(self.uplink.run())
        await self.watchdog_task(sup)


def _arm_boot_watchdog(system):
    try:
        os.stat("app.trial")
        return  # the loader (boot.py) armed it with the trial's own timeout
    except OSError:
        pass
    system.watchdog(_BOOT_WATCHDOG_MS)


def main():
    from hal import system  # now: the crash handler must not need an import (heap) to reset

    rt = Runtime()
    try:
        _arm_boot_watchdog(system)
        rt.boot()
        asyncio.run(rt.run())
    except Exception as exc:  # not KeyboardInterrupt: a technician's Ctrl-C reaches the REPL
        rt.crashed("crashed:", exc)
    finally:
        if rt.board is not None:
            rt.board.all_off()
