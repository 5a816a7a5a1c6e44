# The technician's console (USB serial on a board, stdin in the simulator): a few read-only words
# for people, and signed commands for tools. A signed command is admitted exactly like one that
# arrives over the network, so a console is no way around the locker's checks.
import json


def reply(obj):
    print("re|" + json.dumps(obj))


class Console:
    def __init__(self, runtime):
        self.rt = runtime

    def handle(self, line, now_ms):
        rt = self.rt
        if line == b"status":
            status = rt.locker.status(now_ms) if rt.locker is not None else {}
            status["safe_mode"] = rt.safe_reason
            status["locker_id"] = rt.cfg.locker_id
            status.update(self.health())
            reply(status)
        elif line.startswith(b"log"):
            n = int(line[3:] or 20) if line[3:].strip().isdigit() else 20
            reply({"log": rt.locker.audit.tail(n) if rt.locker is not None else []})
        elif len(line) > 65 and line[64] == 32:
            self.command(line, now_ms)
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
