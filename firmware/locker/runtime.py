# The asyncio glue: boots the board, decides normal or safe mode, and runs the long-lived tasks.
# Every task checks in with the supervisor; the watchdog is fed only while all of them do.
# Any exception that escapes a task switches the solenoids off and resets the board.
import asyncio
import gc
import sys

from micropython import const

from locker import store
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
        import json

        now = ticks_ms()
        from locker import config

        self.cfg = config.load()
        key = config.load_key()
        try:
            with open("board.json") as f:
                spec = json.load(f)
            labels = [str(d["label"]) for d in spec["doors"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            spec, labels = None, None
            self.safe_reason = "board.json: %s" % exc
        # The code table is the one large block of heap (13 KB for 512 codes): it is taken first,
        # while the heap is still whole. The latches are held off by their drivers' gate
        # pull-downs from reset until Board() drives them, a few milliseconds later.
        codes = None
        if key is not None and labels is not None:
            from locker.codes import CodeStore

            gc.collect()
            codes = CodeStore(key, labels, capacity=self.cfg.code_capacity)
        if spec is not None:
            from hal.board import Board

            try:
                self.board = Board(spec)  # switches every solenoid off first thing
            except Exception as exc:  # a board we cannot drive: safe mode, console only
                self.safe_reason = "board: %s" % exc
                log("board failed:", exc)
        from hal import system
        from locker.clock import WallClock
        from locker.safemode import BootCounter

        store.cleanup()
        for problem in self.cfg.problems:
            log(problem)
        counter = BootCounter(self.cfg.safe_mode_boots)
        if counter.start():
            self.safe_reason = self.safe_reason or "%d failed boots in a row" % self.cfg.safe_mode_boots
        self.counter = counter
        if key is None and self.safe_reason is None:
            self.safe_reason = "not provisioned: locker.key missing or malformed"
        self.clock = WallClock()
        self.clock.boot(system.wall_clock(), now)
        self.key = key
        self.reset_cause = system.reset_cause()
        spec = labels = None  # parsed board.json: not needed once the board is built
        if self.safe_reason is None:
            from locker.app import Locker

            self.locker = Locker(self.board, self.cfg, key, self.clock, now, codes)
            self.locker.record("boot", None, {"cause": self.reset_cause, "v": _VERSION}, now)
            # Settings and the boot counter were read before the locker could record anything.
            for problem in self.cfg.problems + ([counter.problem] if counter.problem else []):
                self.locker.record("problem", None, {"m": problem[:80]}, now)
        else:
            log("SAFE MODE:", self.safe_reason)
            codes = None  # give the table back: safe mode never checks a code
            if self.board is not None:
                self.board.all_off()
                self._show_safe()
        gc.collect()
        mode = "safe" if self.locker is None else "normal"
        # Boot-only modules go: their tables and bytecode are heap the running locker can use.
        for name in ("locker.config", "locker.safemode"):
            sys.modules.pop(name, None)
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
