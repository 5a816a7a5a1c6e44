# The asyncio glue: boots the board, decides normal or safe mode, and runs the long-lived tasks.
# Every task checks in with the supervisor; the watchdog is fed only while all of them do.
# Any exception that escapes a task switches the solenoids off and resets the board.
import asyncio
import gc
import sys

from micropython import const

from locker import config, store
from locker.ticks import ticks_diff, ticks_ms

_VERSION = "0.1.0"
_HOUSEKEEPING_MS = const(500)
_WATCHDOG_CHECK_MS = const(1000)


def log(*parts):
    print("log|", *parts)


class Runtime:
    def __init__(self):
        self.board = None
        self.locker = None
        self.safe_reason = None
        self.started_ms = ticks_ms()

    # --- boot ---------------------------------------------------------------------------------

    def boot(self):
        from hal import system
        from hal.board import Board
        from locker.clock import WallClock
        from locker.safemode import BootCounter

        now = ticks_ms()
        # Solenoids off before anything else can fail (Board switches them off first thing).
        try:
            self.board = Board.load()
        except Exception as exc:  # a board we cannot drive: stay in safe mode, console only
            self.safe_reason = "board: %s" % exc
            log("board failed:", exc)
        store.cleanup()
        self.cfg = config.load()
        for problem in self.cfg.problems:
            log(problem)
        counter = BootCounter(self.cfg.safe_mode_boots)
        if counter.start():
            self.safe_reason = self.safe_reason or "%d failed boots in a row" % self.cfg.safe_mode_boots
        self.counter = counter
        key = config.load_key()
        if key is None and self.safe_reason is None:
            self.safe_reason = "not provisioned: locker.key missing or malformed"
        self.clock = WallClock()
        self.clock.boot(system.wall_clock(), now)
        self.key = key
        self.reset_cause = system.reset_cause()
        if self.safe_reason is None:
            from locker.codes import CodeStore

            gc.collect()  # the code table is the one large block: take it while the heap is whole
            codes = CodeStore(key, self.board.labels, capacity=self.cfg.code_capacity)
            from locker.app import Locker

            self.locker = Locker(self.board, self.cfg, key, self.clock, now, codes)
            self.locker.record("boot", None, {"cause": self.reset_cause, "v": _VERSION}, now)
        else:
            log("SAFE MODE:", self.safe_reason)
            if self.board is not None:
                self.board.all_off()
                self._show_safe()
        gc.collect()
        mode = "safe" if self.locker is None else "normal"
        log("ready", mode, ticks_diff(ticks_ms(), now), "ms", "heap", gc.mem_alloc())

    def _show_safe(self):
        from locker import messages

        lines = messages.render(self.cfg.language, "out_of_service")
        if self.board.display is not None:
            self.board.display.show(lines)
        print("display|%s|%s" % lines)

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
            up = ticks_diff(now, self.started_ms)
            self.clock.tick(now)
            if not boot_ok and up >= self.cfg.boot_ok_ms:
                boot_ok = True
                self.counter.mark_good()
                log("boot marked good")
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
        console = None  # imported on the first line: most boards never see a console
        reader = asyncio.StreamReader(sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                await asyncio.sleep_ms(1000)  # stdin closed (no console attached)
                continue
            if console is None:
                from locker.console import Console

                console = Console(self)
            console.handle(line.strip(), ticks_ms())

    def on_exception(self, loop, context):
        # Fail secure: whatever broke, the latches are released first.
        if self.board is not None:
            self.board.all_off()
        exc = context.get("exception")
        print("log| task crashed:", context.get("message"))
        if exc is not None:
            sys.print_exception(exc)
        from hal import system

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
        await self.watchdog_task(sup)


def main():
    rt = Runtime()
    rt.boot()
    try:
        asyncio.run(rt.run())
    finally:
        if rt.board is not None:
            rt.board.all_off()
