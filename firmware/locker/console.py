# The technician's console (USB serial on a board, stdin in the simulator): a few read-only words
# for people, and signed commands for tools. A signed command is admitted exactly like one that
# arrives over the network, so a console is no way around the locker's checks.
import json
from binascii import unhexlify

_MAX_BATCH = 64  # codes per command: keeps one message well inside the heap


def reply(obj):
    print("re|" + json.dumps(obj))


class Console:
    def __init__(self, runtime):
        self.rt = runtime
        self._gate = None

    def gate(self):
        if self._gate is None and self.rt.key is not None:
            from locker.hmac256 import HmacKey
            from locker.protocol import CommandGate

            self._gate = CommandGate(HmacKey(self.rt.key), self.rt.cfg.locker_id)
            self._gate.load()
        return self._gate

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
        from locker import protocol

        rt = self.rt
        gate = self.gate()
        if gate is None:
            reply({"ok": False, "error": "not_provisioned"})
            return
        try:
            cmd = gate.admit(wire, rt.clock.now(now_ms))
        except protocol.Refused as exc:
            reply({"ok": False, "error": exc.reason, "detail": exc.detail})
            if rt.locker is not None:
                rt.locker.record("refused", None, {"r": exc.reason}, now_ms)
            return
        sent = cmd.get("now")
        if isinstance(sent, int) and (not rt.clock.known or abs(sent - rt.clock.now(now_ms)) > 2):
            rt.clock.set(sent, now_ms)
        try:
            result = self.dispatch(cmd, now_ms)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            result = {"ok": False, "error": "bad_args", "detail": str(exc)}
        result["tx"] = cmd.get("tx")
        reply(result)

    def dispatch(self, cmd, now_ms):
        op, args = cmd["op"], cmd.get("args") or {}
        locker = self.rt.locker
        if op == "time":
            return {"ok": True}
        if locker is None:
            return {"ok": False, "error": "safe_mode"}
        store = locker.codes
        if op == "codes.apply":
            if args.get("base") != store.revision:
                return {"ok": False, "error": "revision_mismatch", "rev": store.revision}
            adds, removes = self._records(args.get("add") or []), args.get("del") or []
            store.apply(int(args["rev"]), adds, [int(i) for i in removes])
            return {"ok": True, "rev": store.revision, "count": store.count()}
        if op == "codes.replace":
            store.replace(int(args["rev"]), self._records(args.get("codes") or []))
            return {"ok": True, "rev": store.revision, "count": store.count()}
        if op == "status":
            return {"ok": True, "status": locker.status(now_ms)}
        return {"ok": False, "error": "unknown_op"}

    def _records(self, rows):
        if len(rows) > _MAX_BATCH:
            raise ValueError("at most %d codes per command" % _MAX_BATCH)
        from locker.codes import TAG_SIZE

        labels = self.rt.locker.labels
        out = []
        for tag_hex, label, kind, expiry, code_id in rows:
            tag = unhexlify(tag_hex)
            if len(tag) != TAG_SIZE:
                raise ValueError("tag must be %d bytes" % TAG_SIZE)
            out.append((tag, labels.index(label), int(kind), int(expiry), int(code_id)))
        return out
