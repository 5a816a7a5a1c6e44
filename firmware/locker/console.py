# The technician's console (USB serial on a board, stdin in the simulator): a few read-only words
# for people, and signed commands for tools. A signed command is admitted exactly like one that
# arrives over the network, so a console is no way around the locker's checks. A production board
# (production.json, written by provisioning's --production) admits signed commands only.
import json
import os

from micropython import const

_PRODUCTION = const("production.json")


def production():
    """True on a production board. The file's presence is what counts, whatever it holds."""
    try:
        os.stat(_PRODUCTION)
        return True
    except OSError:
        return False


def reply(obj):
    print("re|" + json.dumps(obj))


class Console:
    def __init__(self, runtime):
        self.rt = runtime
        self.signed_only = production()

    def handle(self, line, now_ms):
        rt = self.rt
        # What came before the line's last control character is not part of it: a tool that tried
        # to break into the REPL (Ctrl-C, Ctrl-A: data on a production board) leaves them in front.
        i = len(line)
        while i > 0 and line[i - 1] >= 32:
            i -= 1
        if i:
            line = line[i:]
        if len(line) > 65 and line[64] == 32:
            self.command(line, now_ms)
        elif self.signed_only:
            if line:
                reply({"ok": False, "error": "signed_only", "help": "<signed command> (a production board)"})
        elif line == b"status":
            status = rt.locker.status(now_ms) if rt.locker is not None else {}
            status["safe_mode"] = rt.safe_reason
            status["locker_id"] = rt.cfg.locker_id
            status.update(self.health())
            reply(status)
        elif line.startswith(b"log"):
            n = int(line[3:] or 20) if line[3:].strip().isdigit() else 20
            reply({"log": rt.locker.audit.tail(n) if rt.locker is not None else []})
        elif line:
            reply({"ok": False, "error": "unknown", "help": "status | log [n] | <signed command>"})

    def health(self):
        """Heap and flash-wear figures for diagnostics and benchmarks."""
        import gc

        import micropython

        from locker import store

        gc.collect()
        out = {"heap_used": gc.mem_alloc(), "heap_free": gc.mem_free(), "flash_bytes": store.bytes_written()}
        if hasattr(micropython, "mem_peak"):  # the unix port keeps a high-water mark
            out["heap_peak"] = micropython.mem_peak()
        return out

    def command(self, wire, now_ms):
        """A signed command: admitted, run and answered by locker.commands (imported on the first
        one: most consoles only ever ask for status), with the network's gate and sequence. Unlike
        the network, a console answers a refusal: whoever holds the cable can see the board anyway."""
        from locker import commands

        try:
            result = commands.get(self.rt).handle(wire, now_ms, answer_refusals=True)
        except MemoryError:  # a command too large for the heap now: refused, the locker runs on
            import gc

            gc.collect()
            result = {"v": 1, "lid": self.rt.cfg.locker_id, "ok": False, "error": "no_memory"}
        if result is not None:
            reply(result)
