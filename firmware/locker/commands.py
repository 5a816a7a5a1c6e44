# The host's commands, from the network (locker.uplink) or the console: one gate, one sequence, one
# dispatcher (docs/protocol.md, "Commands"). Imported on the first command; get(rt) shares one
# instance per runtime.
#
# A refused command is recorded as a `refused` event, at most one per reason per 10 s: the refusals
# in between are counted into the next one (`n`), so a stream of forgeries cannot wear the flash.
import gc

from micropython import const

from locker import lazy, protocol
from locker.ticks import ticks_diff

_REFUSED_MS = const(10_000)  # one refused event per reason per this
_MAX_ROWS = const(64)  # code rows per message: keeps one message well inside the heap
_U32 = const(0xFFFFFFFF)
_ITEM_MAX = const(255)
# The clock challenge (docs/protocol.md, "The clock"): a nonce in the status, renewed when the one on
# offer is older than _NONCE_RENEW_MS, taken by a `time` echoing it within _NONCE_MS of its offer.
_NONCE_RENEW_MS = const(60_000)
_NONCE_MS = const(120_000)

# Ops after which the tx is remembered (they change the store; the others are safe to run twice).
_CODES = const(("codes.apply", "codes.replace", "codes.snapshot"))
# Technicians' ops (diagnostics, self-test, application updates, the REPL of a production board)
# live in locker.maint (and locker.update), imported for each one and dropped after it.
_MAINT = const(("diag", "selftest", "app", "repl"))
# Those whose tx is remembered: they act once, a re-send is answered as a duplicate. app.chunk is
# idempotent by offset; app.status, diag and selftest.keys change nothing that matters twice.
_MAINT_ONCE = const(("app.begin", "app.files", "app.commit", "app.abort"))
# One door, asked for by someone on the host (locker.flows): tx remembered, a re-sent door.open opens once.
_DOOR = const(("door.open", "door.service"))
_DESK = const("desk")  # the desk's phone and opening times (locker.desk): written whole, safe to run twice


def get(rt):
    """The runtime's one Commands (console and network share its gate and sequence)."""
    c = getattr(rt, "commands", None)
    if c is None:
        c = rt.commands = Commands(rt)
    return c


class Commands:
    def __init__(self, rt):
        self.rt = rt
        self.gate = None
        if rt.key is not None:
            from locker.hmac256 import HmacKey

            self.gate = protocol.CommandGate(HmacKey(rt.key), rt.cfg.locker_id)
            self.gate.load()
        self._problem = self.gate.problem if self.gate is not None else None  # recorded on a command
        self._refusals = {}  # reason -> [ticks of its last event, refusals since, their last op]
        self._snap = None  # a locker.snapshot.Snapshot while one is staged
        self._nonce_at = 0  # ticks when the gate's challenge was offered
        # An authentic command refused as expired: the clock may be off, so the uplink publishes
        # the status (with a fresh challenge) now rather than in 5 minutes.
        self.status_due = False

    def handle(self, wire, now_ms, retained=False, answer_refusals=False):
        """-> the reply dict (with v, lid, tx, cseq, ok), or None: no reply (a refusal over the
        network, an ack)."""
        rt = self.rt
        lid = rt.cfg.locker_id
        if self.gate is None:
            return {"v": 1, "lid": lid, "ok": False, "error": "not_provisioned"} if answer_refusals else None
        if self._problem is not None and rt.locker is not None:
            rt.locker.record("problem", None, {"m": self._problem[:80]}, now_ms)
            self._problem = None
        gate = self.gate
        if gate.challenge is not None and ticks_diff(now_ms, self._nonce_at) > _NONCE_MS:
            gate.challenge = None
        try:
            cmd = gate.admit(wire, rt.clock.now(now_ms), retained, rt.clock.vouched)
        except protocol.Refused as exc:
            self._refused(exc.reason, exc.op, 1, now_ms)
            if not answer_refusals:
                return None
            return {"v": 1, "lid": lid, "ok": False, "error": exc.reason, "detail": exc.detail}
        op = cmd["op"]
        args = cmd.get("args")
        if not isinstance(args, dict):
            args = {}
        if op == "ack":  # no clock, no reply, no write but the outbox's (a replayed ack does nothing)
            seqs = args.get("seqs")
            if rt.locker is not None and isinstance(seqs, list):
                for s in seqs:
                    if isinstance(s, int):
                        rt.locker.outbox.ack(s)
            return None
        sent = cmd.get("now")
        if isinstance(sent, int):
            rt.clock.host_time(sent, now_ms, gate.proven)
        tx = cmd.get("tx")
        if self.gate.seen(tx):
            return protocol.reply(lid, cmd, {"ok": True, "dup": True})
        try:
            result = self._run(op, args, now_ms)
        except OSError as exc:  # flash full or failing: the store is as it was, the locker runs on
            result = {"ok": False, "error": "storage", "detail": str(exc)}
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            detail = str(exc)
            result = {"ok": False, "error": "capacity" if detail == "capacity" else "bad_args", "detail": detail}
        if result["ok"] and (op in _CODES or op in _DOOR or op in _MAINT_ONCE):
            self.gate.remember(tx)
        return protocol.reply(lid, cmd, result)

    def tick(self, now_ms):
        """Housekeeping: abandons a stalled snapshot, records refusals counted but not yet reported."""
        if self._snap is not None and self._snap.tick(now_ms):
            self._drop_snapshot()
        for reason in self._refusals:
            r = self._refusals[reason]
            if r[1] and ticks_diff(now_ms, r[0]) >= _REFUSED_MS:
                self._refused(reason, r[2], 0, now_ms)

    # --- refusals --------------------------------------------------------------------------------

    def _refused(self, reason, op, n, now_ms):
        r = self._refusals.get(reason)
        if r is None:
            r = self._refusals[reason] = [now_ms, 0, op]
            due = True
        else:
            d = ticks_diff(now_ms, r[0])
            due = d < 0 or d >= _REFUSED_MS  # d < 0: the ticks wrapped, it is long ago
        r[1] += n
        if op is not None:
            r[2] = op
        if due and n and reason == protocol.EXPIRED and op is not None:
            self.status_due = True
        if due and r[1]:
            locker = self.rt.locker
            if locker is not None:  # safe mode records nothing
                locker.record("refused", None, {"r": reason, "op": r[2], "n": r[1]}, now_ms)
            r[0] = now_ms
            r[1] = 0
            r[2] = None

    # --- the operations --------------------------------------------------------------------------

    def _run(self, op, args, now_ms):
        if op == "status":
            return {"ok": True, "status": self.status(now_ms, True)}
        if op == "time":
            return {"ok": True}  # the clock was set from `now` above
        if op.split(".")[0] in _MAINT:
            try:
                return lazy.load("maint").run(self.rt, op, args, now_ms)
            finally:
                lazy.drop("maint", "update")  # an update's state is on flash, between its commands
        if op not in _CODES and op not in _DOOR and op != _DESK:
            return {"ok": False, "error": "unknown_op"}
        locker = self.rt.locker
        if locker is None:
            return {"ok": False, "error": "safe_mode"}
        if op == _DESK:
            try:
                return lazy.load("desk").command(locker, args)
            finally:
                lazy.drop("desk")
        if op in _DOOR:
            doorops = lazy.load("doorops")
            try:
                return doorops.command(locker, op, args, now_ms)
            finally:
                doorops.drop(locker)
        cs = locker.codes
        if op == "codes.snapshot":
            return self._snapshot(args, now_ms)
        self._drop_snapshot()  # apply and replace write codes.bin.tmp too
        rev = args["rev"]
        if not isinstance(rev, int) or not 0 <= rev <= _U32:
            raise ValueError("rev")
        if op == "codes.apply":
            if args.get("base") != cs.revision:
                return {"ok": False, "error": "revision_mismatch", "rev": cs.revision}
            dels = _list(args.get("del"), "del")
            for i in dels:
                if not _u32(i) or not i:
                    raise ValueError("del: code ids")
            cs.apply(rev, self._rows(_list(args.get("add"), "add")), dels)
        else:
            codes = args.get("codes")
            if not isinstance(codes, list):  # required: a replace without it would empty the store
                raise ValueError("codes")
            cs.replace(rev, self._rows(codes))
        return {"ok": True, "rev": cs.revision, "count": cs.count()}

    def _rows(self, rows):
        """The rows of a message as CodeStore records, converted in place: each JSON row gives way
        to its record as it is read, so a 64-row message is never on the heap twice."""
        if len(rows) > _MAX_ROWS:
            raise ValueError("at most %d codes per command" % _MAX_ROWS)
        from binascii import unhexlify

        labels = self.rt.locker.labels
        for i in range(len(rows)):
            row = rows[i]
            if not isinstance(row, (list, tuple)):
                raise ValueError("code row")
            item = row_item(row)  # checks the length too; no slice: 64 rows convert allocating nothing more
            tag_hex, label, kind, expiry, code_id = row[0], row[1], row[2], row[3], row[4]
            # Exactly the schema's types: no int() coercion of strings, floats or dicts.
            if not _u32(code_id) or not code_id:
                raise ValueError("code id")
            if not _u32(kind) or kind > 127 or not _u32(expiry) or not isinstance(tag_hex, str) or len(tag_hex) != 32:
                raise ValueError("code row")
            # kinds 1..3 are door-free: label "*", door byte 0xFF (the store checks the kind)
            if (label == "*") != bool(kind & 15):
                raise ValueError("code row: door")
            rows[i] = (unhexlify(tag_hex), 0xFF if kind & 15 else labels.index(label), kind, expiry, code_id, item)
        return rows

    def _snapshot(self, args, now_ms):
        s = self._snap
        if s is None:
            s = self._snap = lazy.load("snapshot").Snapshot(self.rt.locker.codes)
        result = s.part(args, self.rt.locker.labels, now_ms)
        if not s.staging:
            self._drop_snapshot()
        return result

    def _drop_snapshot(self):
        if self._snap is not None:
            self._snap.abandon()
            self._snap = None
            lazy.drop("snapshot")

    # --- status ----------------------------------------------------------------------------------

    def status(self, now_ms, doors=False):
        """The status message's fields (docs/protocol.md, "status"); doors: with each door's state."""
        rt = self.rt
        locker = rt.locker
        cs = locker.codes if locker is not None else None
        gc.collect()
        st = {
            "v": 1,
            "lid": rt.cfg.locker_id,
            "online": True,
            "mode": "normal" if locker is not None else "safe",
            "fw": getattr(rt, "fw", None),
            "rev": cs.revision if cs is not None else 0,
            "snap": cs.damaged if cs is not None else False,
            "codes": cs.count() if cs is not None else 0,
            "outbox": len(locker.outbox) if locker is not None else 0,
            "lost": locker.outbox.dropped if locker is not None else 0,  # the outbox was full: oldest dropped
            "t": rt.clock.now(now_ms),
            "time_known": rt.clock.known,  # false: `t` is an estimate since a power cut (docs/security.md)
            "up": rt.uptime_ms(now_ms) // 1000,
            "heap": gc.mem_free() if hasattr(gc, "mem_free") else None,  # None: CPython (tests)
            # The last admitted command seq: where a host that lost its own count goes on from.
            "cseq": self.gate.last_seq if self.gate is not None else 0,
            "items": True,  # this firmware reads a code row's item: the host may send it
        }
        if locker is not None:
            st["desk"] = locker.desk[2]  # the tag of the desk settings it holds ("": none)
        nonce = self._nonce(now_ms)
        if nonce is not None:
            st["nonce"] = nonce
        if doors:
            out = []
            if locker is not None:
                from locker.doors import name_of_state

                bank = locker.doors
                for i in range(len(locker.labels)):
                    out.append({"d": locker.labels[i], "s": name_of_state(bank.state(i)), "full": bank.has_parcel(i)})
            st["doors"] = out
        return st

    def _nonce(self, now_ms):
        """The clock challenge on offer (a new one when it was taken or is getting old)."""
        gate = self.gate
        if gate is None:
            return None
        if gate.challenge is None or ticks_diff(now_ms, self._nonce_at) >= _NONCE_RENEW_MS:
            from binascii import hexlify
            from os import urandom

            gate.challenge = hexlify(urandom(8)).decode()
            self._nonce_at = now_ms
        return gate.challenge


def _u32(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _U32


def _list(v, name):
    """An optional list argument: absent or null is empty; anything else but a list is refused."""
    if v is None:
        return []
    if not isinstance(v, list):
        raise ValueError(name)
    return v


def row_item(row):
    """A code row's item number: its 6th element, 0 (a parcel) in a row from a host before items."""
    if len(row) == 5:
        return 0
    if len(row) != 6:  # a newer host's longer row is refused whole, never half read
        raise ValueError("code row: 5 or 6 fields")
    item = row[5]
    if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item <= _ITEM_MAX:
        raise ValueError("code row: item")
    return item
