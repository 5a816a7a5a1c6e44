# The command dispatcher shared by the console and the network: refusals (silent, recorded once per
# 10 s), ack, transactions acting once across reboots, code updates, snapshots, safe mode.
import json
import os
import sys
from binascii import hexlify

import fakes
from locker import codes, commands, hmac256, protocol, store
from locker.clock import WallClock
from locker.outbox import Outbox

KEY = b"commands unit test key, 32 bytes"
OTHER = b"someone else's key, also 32 byte"
DOORS = ("A1", "A2", "B1")
HKEY = hmac256.HmacKey(KEY)
NOW = 1_790_000_000


class FakeDoors:
    def state(self, i):
        return 0

    def has_parcel(self, i):
        return True if i == 0 else None


class FakeLocker:
    def __init__(self):
        self.labels = DOORS
        self.codes = codes.CodeStore(KEY, DOORS, capacity=32)
        self.problems = self.codes.load()
        self.outbox = Outbox(capacity=50)
        self.outbox.load()
        self.doors = FakeDoors()
        self.events = []
        self.desk = (None, (), "")

    def record(self, kind, door, extra, now_ms, to_host=True):
        ev = {"k": kind}
        if extra:
            ev.update(extra)
        self.events.append(ev)
        self.outbox.put(json.dumps(ev).encode())


class Cfg:
    locker_id = "L1"


class Rt:
    def __init__(self, safe=False, rtc=NOW):
        self.key = KEY
        self.cfg = Cfg()
        self.clock = WallClock()
        self.clock.boot(rtc, 0)
        self.started_ms = 0
        self.locker = None if safe else FakeLocker()

    def uptime_ms(self, now_ms):
        return now_ms - self.started_ms


class Rig:
    """A runtime in a scratch directory; reboot() builds a new one over the same flash."""

    def __init__(self, name, safe=False, rtc=NOW):
        import gc

        gc.collect()  # the earlier tests' lockers go before this one is built (128K under MicroPython)
        self.home = os.getcwd()
        self.dir = fakes.scratch_dir(name)
        os.chdir(self.dir)
        self.seq = 1000
        self.rt = Rt(safe, rtc)

    def reboot(self, safe=False, rtc=NOW):
        self.rt = Rt(safe, rtc)

    def close(self):
        os.chdir(self.home)

    def wire(self, op, args=None, tx=None, key=KEY, lid="L1", exp=None, seq=None, now=NOW):
        if seq is None:
            self.seq += 1
            seq = self.seq
        body = {"v": 1, "lid": lid, "seq": seq, "now": now, "exp": now + 300 if exp is None else exp}
        body["tx"] = tx or "tx%d" % seq
        body["op"] = op
        body["args"] = args or {}
        return protocol.sign(hmac256.HmacKey(key), protocol.encode(body))

    def send(self, wire, now_ms=0, retained=False, console=False):
        return commands.get(self.rt).handle(wire, now_ms, retained, console)

    def events(self, kind="refused"):
        return [e for e in self.rt.locker.events if e["k"] == kind]


def _rec(i, door=None):
    door = i % len(DOORS) if door is None else door
    return (codes.tag(HKEY, DOORS[door], "%08d" % (i * 7919 + 1000)), door, 0, 0, 1000 + i)


def _row(rec):
    return [hexlify(rec[0]).decode(), DOORS[rec[1]], rec[2], rec[3], rec[4]]


def _rows(recs):
    return [_row(r) for r in sorted(recs)]


def test_one_instance_per_runtime():
    rig = Rig("cmd-get")
    try:
        assert commands.get(rig.rt) is commands.get(rig.rt)
    finally:
        rig.close()


def test_refused_commands_get_no_reply_and_are_recorded_once_per_10_s():
    rig = Rig("cmd-refused")
    try:
        assert rig.send(rig.wire("status")) is not None  # seq 1001
        store.reset_counter()
        for i in range(30):  # a stream of forgeries
            assert rig.send(rig.wire("codes.apply", key=OTHER), now_ms=i * 100) is None
        assert rig.send(rig.wire("status", seq=1001), now_ms=100) is None  # replay
        assert rig.send(rig.wire("status", lid="L2"), now_ms=200) is None
        assert rig.send(rig.wire("time", exp=NOW - 1), now_ms=300) is None
        assert rig.send(rig.wire("time"), now_ms=400, retained=True) is None
        got = [(e["r"], e["op"], e["n"]) for e in rig.events()]
        assert got == [
            ("bad_signature", None, 1),
            ("replay", "status", 1),
            ("wrong_locker", "status", 1),
            ("expired", "time", 1),
            ("retained", "time", 1),
        ], got
        written = store.bytes_written()
        assert written < 5 * 400, written  # five events, not 34
        # the 29 forgeries held back are folded into the next event, after 10 s
        assert rig.send(rig.wire("status", key=OTHER), now_ms=10_000) is None
        assert [(e["r"], e["n"]) for e in rig.events()][5:] == [("bad_signature", 30)]
        # ... or reported by the housekeeping when no further refusal comes
        rig.send(rig.wire("status", key=OTHER), now_ms=12_000)
        rig.send(rig.wire("status", key=OTHER), now_ms=13_000)
        c = commands.get(rig.rt)
        c.tick(19_999)
        assert len(rig.events()) == 6
        c.tick(20_000)
        assert [(e["r"], e["n"]) for e in rig.events()][6:] == [("bad_signature", 2)]
        c.tick(40_000)
        assert len(rig.events()) == 7
        # nothing held back: the next one is recorded at once
        rig.send(rig.wire("status", key=OTHER), now_ms=40_001)
        assert [(e["r"], e["n"]) for e in rig.events()][7:] == [("bad_signature", 1)]
    finally:
        rig.close()


def test_the_console_answers_refusals():
    rig = Rig("cmd-console")
    try:
        r = rig.send(rig.wire("status", key=OTHER), console=True)
        assert r["ok"] is False and r["error"] == "bad_signature" and r["lid"] == "L1"
        r = rig.send(b"0" * 64 + b" {}", console=True)
        assert r["error"] == "bad_signature"
        assert len(rig.events()) == 1  # recorded once all the same (rate limit)
    finally:
        rig.close()


def test_ack_is_exempt_from_the_sequence_writes_only_the_outbox_and_gets_no_reply():
    rig = Rig("cmd-ack")
    try:
        ob = rig.rt.locker.outbox
        a = ob.put(b'{"k":"x"}')
        b = ob.put(b'{"k":"y"}')
        assert rig.send(rig.wire("time", seq=5000))["ok"]
        with open("cmdseq.bin", "rb") as f:
            seqfile = f.read()
        assert rig.send(rig.wire("ack", {"seqs": [a, 99999, "junk"]}, seq=17)) is None  # an old seq
        assert ob.after(0)[0] == b and len(ob) == 1
        assert rig.send(rig.wire("ack", {"seqs": [a]}, seq=17)) is None  # the same again: harmless
        assert rig.send(rig.wire("ack", {"seqs": [b]}, key=OTHER)) is None  # forged
        assert len(ob) == 2 and ob.after(a)[0] == b  # (plus the refused event)
        assert rig.send(rig.wire("ack", {"seqs": [b]}), retained=True) is None
        assert rig.send(rig.wire("ack", {"seqs": [b]}, exp=NOW - 1)) is None
        assert ob.after(a)[0] == b
        assert [e["r"] for e in rig.events()] == ["bad_signature", "retained", "expired"]
        with open("cmdseq.bin", "rb") as f:
            assert f.read() == seqfile
        assert rig.send(rig.wire("ack", {"seqs": [b]}), console=True) is None
        assert ob.after(a)[0] != b
    finally:
        rig.close()


def test_ack_does_not_set_the_clock():
    rig = Rig("cmd-ack-clock", rtc=None)
    try:
        rig.send(rig.wire("ack", {"seqs": []}))
        assert not rig.rt.clock.known
        rig.send(rig.wire("time"))
        assert rig.rt.clock.known and rig.rt.clock.now(0) == NOW
    finally:
        rig.close()


def test_apply_and_a_resent_transaction_acts_once_across_a_reboot():
    rig = Rig("cmd-apply")
    try:
        add = {"base": 0, "rev": 2, "add": _rows([_rec(i) for i in range(5)]), "del": []}
        r = rig.send(rig.wire("codes.apply", add, tx="T1"))
        assert r == {"v": 1, "lid": "L1", "tx": "T1", "cseq": rig.seq, "ok": True, "rev": 2, "count": 5}, r
        dele = {"base": 2, "rev": 3, "add": [], "del": [1000, 1001]}
        assert rig.send(rig.wire("codes.apply", dele, tx="T2"))["count"] == 3
        # The host heard no reply and sends T1 again (new seq): not run again (it would now mismatch).
        r = rig.send(rig.wire("codes.apply", add, tx="T1"))
        assert r == {"v": 1, "lid": "L1", "tx": "T1", "cseq": rig.seq, "ok": True, "dup": True}, r
        rig.reboot()
        r = rig.send(rig.wire("codes.apply", add, tx="T1"))
        assert r["dup"] is True and rig.rt.locker.codes.count() == 3 and rig.rt.locker.codes.revision == 3
        r = rig.send(rig.wire("codes.apply", add, tx="T3"))
        assert r["error"] == "revision_mismatch" and r["rev"] == 3 and not r["ok"]
    finally:
        rig.close()


def test_a_failed_write_lets_the_resent_transaction_act():
    rig = Rig("cmd-storage")
    try:
        add = {"base": 0, "rev": 2, "add": _rows([_rec(1)])}

        def full(op, path):
            if op == "rename" and path.endswith("codes.bin"):
                raise OSError(28)

        store.set_fault_hook(full)
        try:
            r = rig.send(rig.wire("codes.apply", add, tx="T9"))
        finally:
            store.set_fault_hook(None)
        assert r["ok"] is False and r["error"] == "storage", r
        r = rig.send(rig.wire("codes.apply", add, tx="T9"))
        assert r["ok"] and r["rev"] == 2 and "dup" not in r
    finally:
        rig.close()


def test_errors():
    rig = Rig("cmd-errors")
    try:
        many = {"base": 0, "rev": 1, "add": _rows([_rec(i) for i in range(65)])}
        assert rig.send(rig.wire("codes.apply", many))["error"] == "bad_args"
        big = {"base": 0, "rev": 1, "add": _rows([_rec(i) for i in range(33)])}
        assert rig.send(rig.wire("codes.apply", big))["error"] == "capacity"
        bad_door = {"base": 0, "rev": 1, "add": [_row(_rec(1))[:1] + ["Z9", 0, 0, 5]]}
        assert rig.send(rig.wire("codes.apply", bad_door))["error"] == "bad_args"
        bad_id = {"base": 0, "rev": 1, "add": [_row(_rec(1))[:4] + [0]]}
        assert rig.send(rig.wire("codes.apply", bad_id))["error"] == "bad_args"
        assert rig.send(rig.wire("codes.apply", {"base": 0, "rev": -1}))["error"] == "bad_args"
        assert rig.send(rig.wire("codes.apply", {"base": 0}))["error"] == "bad_args"
        assert rig.send(rig.wire("open.sesame"))["error"] == "unknown_op"
        assert rig.rt.locker.codes.revision == 0 and rig.rt.locker.codes.count() == 0
        # an error is not remembered: the same transaction may be tried again
        ok = {"base": 0, "rev": 1, "add": _rows([_rec(1)])}
        assert rig.send(rig.wire("codes.apply", {"base": 0}, tx="T5"))["error"] == "bad_args"
        assert rig.send(rig.wire("codes.apply", ok, tx="T5"))["rev"] == 1
    finally:
        rig.close()


def test_replace_for_the_tools():
    rig = Rig("cmd-replace")
    try:
        r = rig.send(rig.wire("codes.replace", {"rev": 4, "codes": _rows([_rec(i) for i in range(3)])}))
        assert r["ok"] and r["rev"] == 4 and r["count"] == 3
    finally:
        rig.close()


def test_status_and_time():
    rig = Rig("cmd-status", rtc=None)
    try:
        r = rig.send(rig.wire("time", now=NOW + 50), now_ms=3000)
        assert r["ok"] and rig.rt.clock.known and rig.rt.clock.now(3000) == NOW + 50
        st = rig.send(rig.wire("status", now=NOW + 54), now_ms=7500)["status"]
        assert st["mode"] == "normal" and st["rev"] == 0 and st["snap"] is False and st["codes"] == 0
        assert st["t"] == NOW + 54 and st["up"] == 7 and (st["heap"] is None or st["heap"] > 0) and st["online"] is True
        assert st["lost"] == 0
        rig.rt.locker.outbox.dropped = 3  # a full outbox dropped its oldest: the host must hear of it
        assert rig.send(rig.wire("status", now=NOW + 55), now_ms=8000)["status"]["lost"] == 3
        assert st["lid"] == "L1" and st["v"] == 1 and "fw" in st
        assert st["doors"] == [
            {"d": "A1", "s": "locked", "full": True},
            {"d": "A2", "s": "locked", "full": None},
            {"d": "B1", "s": "locked", "full": None},
        ]
        assert "doors" not in commands.get(rig.rt).status(7500)
    finally:
        rig.close()


def test_the_status_says_whether_the_time_is_known_and_the_last_admitted_seq():
    rig = Rig("cmd-status-seq", rtc=None)
    try:
        st = commands.get(rig.rt).status(0)
        assert st["t"] is None and st["time_known"] is False and st["cseq"] == 0
        rig.send(rig.wire("ack", {"seqs": [1]}, seq=5000))  # exempt from the sequence: not admitted as one
        assert commands.get(rig.rt).status(0)["cseq"] == 0
        st = rig.send(rig.wire("status", now=NOW), now_ms=1000)["status"]
        assert st["time_known"] is True and st["t"] == NOW and st["cseq"] == rig.seq
        # A power cut that took the RTC: the time is an estimate from clock.bin, the seq from cmdseq.bin.
        seq = rig.seq
        rig.rt = Rt(rtc=None)
        st = commands.get(rig.rt).status(2000)
        assert st["time_known"] is False and st["t"] is not None and st["cseq"] == seq
    finally:
        rig.close()


def test_safe_mode_answers_status_and_time_only():
    rig = Rig("cmd-safe", safe=True, rtc=None)
    try:
        st = rig.send(rig.wire("status"))["status"]
        assert st["mode"] == "safe" and st["doors"] == [] and st["codes"] == 0
        assert rig.send(rig.wire("time", now=NOW + 9))["ok"] and rig.rt.clock.now(0) == NOW + 9
        for op in ("codes.apply", "codes.snapshot", "codes.replace"):
            assert rig.send(rig.wire(op, {"rev": 1}))["error"] == "safe_mode"
        assert rig.send(rig.wire("ack", {"seqs": [1]})) is None
        assert rig.send(rig.wire("time", key=OTHER)) is None  # refused, and nowhere to record it
    finally:
        rig.close()


def test_not_provisioned():
    rig = Rig("cmd-nokey", safe=True)
    try:
        rig.rt.key = None
        assert rig.send(rig.wire("status")) is None
        rig.rt.commands = None
        assert rig.send(rig.wire("status"), console=True)["error"] == "not_provisioned"
    finally:
        rig.close()


def _snap_args(recs, sizes, rev):
    rows = _rows(recs)
    out = []
    p = 0
    for k in range(len(sizes)):
        chunk = rows[p : p + sizes[k]]
        out.append({"rev": rev, "part": k + 1, "parts": len(sizes), "total": len(rows), "codes": chunk})
        p += sizes[k]
    return out


def test_snapshot_through_the_dispatcher():
    rig = Rig("cmd-snap")
    try:
        rig.send(rig.wire("codes.replace", {"rev": 4, "codes": _rows([_rec(i) for i in range(3)])}))
        recs = [_rec(i) for i in range(10, 22)]
        parts = _snap_args(recs, [5, 5, 2], 9)
        r = rig.send(rig.wire("codes.snapshot", parts[0], tx="S1"), now_ms=100)
        assert r["ok"] and r["part"] == 1 and "locker.snapshot" in sys.modules
        # the host re-sends part 1 (same tx): a duplicate, the staging goes on
        assert rig.send(rig.wire("codes.snapshot", parts[0], tx="S1"), now_ms=200)["dup"]
        assert rig.send(rig.wire("codes.snapshot", parts[1], tx="S2"), now_ms=300)["part"] == 2
        r = rig.send(rig.wire("codes.snapshot", parts[2], tx="S3"), now_ms=400)
        assert r["ok"] and r["rev"] == 9 and r["count"] == 12
        assert "locker.snapshot" not in sys.modules  # dropped once done
        assert sorted(rig.rt.locker.codes.records()) == sorted(recs)
        # an apply in the middle of a snapshot abandons it (both write codes.bin.tmp)
        parts = _snap_args([_rec(i) for i in range(30, 36)], [3, 3], 11)
        assert rig.send(rig.wire("codes.snapshot", parts[0]))["ok"]
        assert rig.send(rig.wire("codes.apply", {"base": 9, "rev": 10, "add": [], "del": [1010]}))["count"] == 11
        assert rig.send(rig.wire("codes.snapshot", parts[1]))["error"] == "snapshot_order"
        assert rig.rt.locker.codes.revision == 10
        # a stalled one is abandoned by the housekeeping
        assert rig.send(rig.wire("codes.snapshot", parts[0]), now_ms=1000)["ok"]
        commands.get(rig.rt).tick(60_999)
        assert "codes.bin.tmp" in os.listdir(".")
        commands.get(rig.rt).tick(61_000)
        assert "codes.bin.tmp" not in os.listdir(".") and "locker.snapshot" not in sys.modules
        assert rig.send(rig.wire("codes.snapshot", parts[1]), now_ms=61_001)["error"] == "snapshot_order"
        assert rig.rt.locker.codes.revision == 10
    finally:
        rig.close()


def test_a_damaged_store_asks_for_a_snapshot_until_it_gets_one():
    rig = Rig("cmd-snapflag")
    try:
        rig.send(rig.wire("codes.replace", {"rev": 4, "codes": _rows([_rec(i) for i in range(3)])}))
        with open("codes.bin", "r+b") as f:
            f.seek(16 + 3)
            f.write(b"\x00\x01")
        rig.reboot()
        st = rig.send(rig.wire("status"))["status"]
        assert st["snap"] is True and st["rev"] == 0 and st["codes"] == 2
        for p in _snap_args([_rec(i) for i in range(3)], [3], 5):
            assert rig.send(rig.wire("codes.snapshot", p))["ok"]
        st = rig.send(rig.wire("status"))["status"]
        assert st["snap"] is False and st["rev"] == 5 and st["codes"] == 3
    finally:
        rig.close()


def test_a_corrupt_sequence_file_is_reported_once():
    rig = Rig("cmd-seqfile")
    try:
        with open("cmdseq.bin", "wb") as f:
            f.write(b"LK\x01junk")
        rig.reboot()
        assert rig.send(rig.wire("status"))["ok"]
        rig.send(rig.wire("status"))
        problems = rig.events("problem")
        assert len(problems) == 1 and "cmdseq.bin" in problems[0]["m"]
    finally:
        rig.close()


DAY = 86400


def test_a_damaged_sequence_file_with_a_lagging_clock_admits_nothing_signed_before_the_last_known_time():
    rig = Rig("cmd-floor")
    try:
        assert rig.send(rig.wire("status", now=NOW))["ok"]  # the host vouched for NOW
        for name in ("cmdseq.bin", "clock.bin"):
            with open(name, "wb") as f:
                f.write(b"LK\x01junk")
        rig.reboot(rtc=NOW - 3 * DAY)  # the RTC three days behind
        # A command signed two days before (a replay: the sequence that would refuse it is lost).
        old = rig.send(rig.wire("status", now=NOW - 2 * DAY), console=True)
        assert not old["ok"] and old["error"] == "replay"
        # One signed a minute before the last known time, its exp still ahead of the locker's clock.
        late = rig.send(rig.wire("status", now=NOW - 60), console=True)
        assert not late["ok"] and late["error"] == "replay"
        assert rig.rt.clock.now(0) == NOW  # the clock starts no earlier than the host's last word
        assert rig.send(rig.wire("status", now=NOW + 60))["ok"]  # the host's next command
        assert rig.send(rig.wire("status", now=NOW - 60))["ok"]  # sequence known again: seq rules
        assert rig.send(rig.wire("status", now=NOW + 61, seq=rig.seq - 1), console=True)["error"] == "replay"
    finally:
        rig.close()


def test_a_missing_sequence_file_after_commands_is_damage_too():
    rig = Rig("cmd-floor-gone")
    try:
        assert rig.send(rig.wire("status", now=NOW))["ok"]
        os.remove("cmdseq.bin")
        rig.reboot()
        assert rig.send(rig.wire("status", now=NOW - 30), console=True)["error"] == "replay"
        assert rig.send(rig.wire("status", now=NOW + 1))["ok"]
    finally:
        rig.close()


def _nonce(rig, now_ms=0):
    return commands.get(rig.rt).status(now_ms)["nonce"]


def test_a_clock_a_day_ahead_is_set_by_a_time_command_answering_its_challenge():
    rig = Rig("cmd-ahead", rtc=NOW + DAY)
    try:
        cmds = commands.get(rig.rt)
        refused = rig.send(rig.wire("time", now=NOW), console=True)
        assert refused["error"] == "expired"  # every host command is too old by this clock
        assert cmds.status_due  # the uplink shows the host the clock (and a challenge) at once
        nonce = _nonce(rig)
        assert len(nonce) == 16
        assert rig.send(rig.wire("time", {"nonce": "0" * 16}, now=NOW), console=True)["error"] == "expired"
        answer = rig.wire("time", {"nonce": nonce}, now=NOW)
        assert rig.send(answer, now_ms=1000)["ok"]
        clock = rig.rt.clock
        assert clock.known and clock.now(1000) == NOW and clock.vouched == NOW
        assert rig.send(answer, now_ms=2000, console=True)["error"] == "replay"  # the same command again
        assert rig.send(rig.wire("status", now=NOW + 2), now_ms=3000)["ok"]  # in step: ordinary commands pass
        assert _nonce(rig, 3000) != nonce  # taken once
    finally:
        rig.close()


def test_a_challenge_goes_stale_so_a_withheld_answer_does_not_set_the_clock():
    rig = Rig("cmd-stale", rtc=NOW + DAY)
    try:
        nonce = _nonce(rig)
        withheld = rig.wire("time", {"nonce": nonce}, now=NOW)
        assert rig.send(withheld, now_ms=121_000, console=True)["error"] == "expired"
        assert rig.rt.clock.now(121_000) == NOW + DAY + 121
        fresh = _nonce(rig, 121_000)
        assert fresh != nonce
        assert rig.send(rig.wire("time", {"nonce": fresh}, now=NOW + 121), now_ms=121_500)["ok"]
        assert rig.rt.clock.now(121_500) == NOW + 121
    finally:
        rig.close()


def test_a_clock_a_day_behind_is_set_by_the_time_command_too():
    rig = Rig("cmd-behind", rtc=NOW - DAY)
    try:
        assert rig.send(rig.wire("time", {"nonce": _nonce(rig)}, now=NOW))["ok"]
        assert rig.rt.clock.now(0) == NOW
    finally:
        rig.close()


def test_a_rows_item_reaches_the_store_and_a_row_without_one_is_a_parcel():
    rig = Rig("cmd-item")
    try:
        rows = _rows([_rec(i) for i in range(3)])
        rows[0].append(1)  # a document
        rows[2].append(0)
        r = rig.send(rig.wire("codes.replace", {"rev": 4, "codes": rows}))
        assert r["ok"] and r["count"] == 3, r
        cs = rig.rt.locker.codes
        ids = [row[4] for row in rows]
        assert [cs.item_of(i) for i in ids] == [1, 0, 0]
        add = [_row(_rec(5)) + [3]]
        r = rig.send(rig.wire("codes.apply", {"base": 4, "rev": 5, "add": add, "del": []}))
        assert r["ok"] and cs.item_of(1005) == 3, r
        parts = _snap_args([_rec(i) for i in range(10, 13)], [3], 6)
        parts[0]["codes"][1].append(2)
        r = rig.send(rig.wire("codes.snapshot", parts[0]))
        assert r["ok"] and r["count"] == 3, r
        assert cs.item_of(parts[0]["codes"][1][4]) == 2 and cs.item_of(parts[0]["codes"][0][4]) == 0
        for bad in ([_row(_rec(7)) + [256]], [_row(_rec(7)) + [True]], [_row(_rec(7)) + [1, 2]]):
            r = rig.send(rig.wire("codes.apply", {"base": 6, "rev": 7, "add": bad, "del": []}))
            assert r["error"] == "bad_args" and cs.revision == 6, r
        for bad in ([1], [2, 3]):  # the same checks in a snapshot's part
            parts = _snap_args([_rec(20)], [1], 8)
            parts[0]["codes"][0].extend(bad if len(bad) > 1 else [999])
            r = rig.send(rig.wire("codes.snapshot", parts[0]))
            assert r["error"] == "bad_args" and cs.revision == 6, r
    finally:
        rig.close()


def test_the_desk_command_is_kept_across_a_reboot_and_bad_args_change_nothing():
    rig = Rig("cmd-desk")
    try:
        assert commands.get(rig.rt).status(0)["desk"] == ""
        args = {"phone": "020 1234567", "open": [[NOW - 60, NOW + 3600]], "tag": "d1"}
        r = rig.send(rig.wire("desk", args))
        assert r["ok"], r
        assert rig.rt.locker.desk == ("020 1234567", (NOW - 60, NOW + 3600), "d1")
        assert commands.get(rig.rt).status(0)["desk"] == "d1"
        for bad in (
            {"phone": "0201234567890", "open": [], "tag": "d2"},  # longer than the help line's room
            {"phone": "020; rm", "open": [], "tag": "d2"},
            {"phone": "020", "open": [[NOW, NOW]], "tag": "d2"},
            {"phone": "020", "open": [[NOW, "x"]], "tag": "d2"},
            {"phone": "020", "open": [[NOW]], "tag": "d2"},
            {"phone": "020", "open": [], "tag": "x" * 17},
        ):
            r = rig.send(rig.wire("desk", bad))
            assert r["error"] == "bad_args" and not r["ok"], (bad, r)
            assert rig.rt.locker.desk[2] == "d1"
        from locker import desk

        assert desk.load() == (("020 1234567", (NOW - 60, NOW + 3600), "d1"), None)
        with open(desk.PATH, "r+b") as f:
            f.seek(-2, 2)
            f.write(b"!!")
        loaded, problem = desk.load()
        assert loaded == desk.NONE and problem is not None  # damaged: "ask at the desk", reported
    finally:
        rig.close()
