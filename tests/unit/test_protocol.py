# Signed commands: the locker admits a command once, from its own host, before it expires.
import json

import fakes
from locker import protocol
from locker.hmac256 import HmacKey

# the refusal reasons on the wire (docs/protocol.md) and the firmware's limits
MAX_MESSAGE = 8192
MAX_TX = 64
BAD_SIGNATURE = "bad_signature"
MALFORMED = "malformed"
WRONG_LOCKER = "wrong_locker"
REPLAY = "replay"
RETAINED = "retained"

KEY = HmacKey(b"p" * 32)
OTHER = HmacKey(b"q" * 32)
NOW = 1_790_000_000


def _cmd(seq, exp=NOW + 300, lid="L1", op="status", key=KEY, **extra):
    body = {"v": 1, "lid": lid, "seq": seq, "exp": exp, "now": NOW, "tx": "t%d" % seq, "op": op, "args": {}}
    body.update(extra)
    return protocol.sign(key, protocol.encode(body))


def _gate(name):
    d = fakes.scratch_dir(name)
    gate = protocol.CommandGate(KEY, "L1", d + "/cmdseq.bin")
    gate.load()
    return gate, d


def _refused(gate, wire, now=NOW, retained=False):
    try:
        gate.admit(wire, now, retained)
    except protocol.Refused as exc:
        return exc.reason
    return None


def test_a_good_command_is_admitted_once():
    gate, _ = _gate("proto-ok")
    wire = _cmd(5)
    assert gate.admit(wire, NOW)["op"] == "status"
    assert _refused(gate, wire) == REPLAY


def test_replay_is_refused_after_a_reboot():
    gate, d = _gate("proto-reboot")
    gate.admit(_cmd(10), NOW)
    again = protocol.CommandGate(KEY, "L1", d + "/cmdseq.bin")
    again.load()
    assert _refused(again, _cmd(10)) == REPLAY
    assert _refused(again, _cmd(9)) == REPLAY
    assert again.admit(_cmd(11), NOW)["seq"] == 11


def test_forged_expired_foreign_and_retained_commands_are_refused():
    gate, _ = _gate("proto-bad")
    assert _refused(gate, _cmd(1, key=OTHER)) == BAD_SIGNATURE
    assert _refused(gate, _cmd(2, exp=NOW - 1)) == protocol.EXPIRED
    assert _refused(gate, _cmd(3, lid="L2")) == WRONG_LOCKER
    assert _refused(gate, _cmd(4), retained=True) == RETAINED
    # none of the refusals moved the sequence forward
    assert gate.last_seq == 0


def test_a_flipped_payload_byte_breaks_the_signature():
    gate, _ = _gate("proto-flip")
    wire = bytearray(_cmd(7))
    wire[-3] ^= 1
    assert _refused(gate, bytes(wire)) == BAD_SIGNATURE


def test_malformed_input_is_refused_not_raised():
    gate, _ = _gate("proto-junk")
    for junk in (b"", b"hello", b"x" * 64 + b" {}", b"0" * 64 + b"{}", b"0" * 65):
        assert _refused(gate, junk) in (MALFORMED, BAD_SIGNATURE), junk
    unsigned_json = protocol.sign(KEY, b"[1, 2]")
    assert _refused(gate, unsigned_json) == MALFORMED
    not_json = protocol.sign(KEY, b"{nope")
    assert _refused(gate, not_json) == MALFORMED
    no_seq = protocol.sign(KEY, protocol.encode({"v": 1, "lid": "L1", "op": "x", "exp": NOW + 5}))
    assert _refused(gate, no_seq) == MALFORMED
    assert _refused(gate, b"0" * (MAX_MESSAGE + 1)) == protocol.TOO_LARGE


def test_clock_unknown_uses_the_signed_send_time():
    gate, _ = _gate("proto-clock")
    wire = _cmd(3, exp=NOW + 60)
    assert gate.admit(wire, None)["seq"] == 3
    stale = protocol.sign(KEY, protocol.encode({"v": 1, "lid": "L1", "seq": 4, "exp": NOW - 10, "now": NOW, "op": "x"}))
    assert _refused(gate, stale, now=None) == protocol.EXPIRED


def test_wire_form_is_signature_space_payload():
    wire = _cmd(1)
    sig, payload = wire.split(b" ", 1)
    assert len(sig) == 64
    assert json.loads(payload)["seq"] == 1


def _ack(seq, seqs=(1,), key=KEY, exp=NOW + 300):
    body = {"v": 1, "lid": "L1", "seq": seq, "exp": exp, "now": NOW, "tx": "a%d" % seq, "op": "ack"}
    body["args"] = {"seqs": list(seqs)}
    return protocol.sign(key, protocol.encode(body))


def test_ack_is_exempt_from_the_sequence_but_not_from_the_other_checks():
    gate, d = _gate("proto-ack")
    gate.admit(_cmd(50), NOW)
    from locker import store

    store.reset_counter()
    assert gate.admit(_ack(3), NOW)["op"] == "ack"  # below the last seq: fine for an ack
    assert gate.admit(_ack(3), NOW)["op"] == "ack"  # and again (idempotent)
    assert store.bytes_written() == 0  # nothing written for it
    assert gate.last_seq == 50
    assert _refused(gate, _ack(4, key=OTHER)) == BAD_SIGNATURE
    assert _refused(gate, _ack(5), retained=True) == RETAINED
    assert _refused(gate, _ack(6, exp=NOW - 1)) == protocol.EXPIRED
    assert _refused(gate, _cmd(50)) == REPLAY  # the others still are not


def test_refusals_carry_the_op_when_the_payload_was_authentic():
    gate, _ = _gate("proto-op")
    gate.admit(_cmd(9, op="codes.apply"), NOW)
    for wire, retained, reason, op in (
        (_cmd(9, op="codes.apply"), False, REPLAY, "codes.apply"),
        (_cmd(10, op="time"), True, RETAINED, "time"),
        (_cmd(11, lid="L2", op="status"), False, WRONG_LOCKER, "status"),
        (_cmd(12, op="x" * 100, exp=NOW - 5), False, protocol.EXPIRED, "x" * 24),
        (_cmd(13, key=OTHER, op="status"), False, BAD_SIGNATURE, None),
    ):
        try:
            gate.admit(wire, NOW, retained)
            raise AssertionError("admitted")
        except protocol.Refused as exc:
            assert (exc.reason, exc.op) == (reason, op), (exc.reason, exc.op)


def test_transactions_are_remembered_across_a_reboot_and_only_the_last_eight():
    gate, d = _gate("proto-tx")
    gate.admit(_cmd(1), NOW)
    assert not gate.seen("t1")
    gate.remember("t1")
    assert gate.seen("t1") and not gate.seen("t2") and not gate.seen(None)
    for i in range(2, 10):
        gate.admit(_cmd(i), NOW)
        gate.remember("t%d" % i)
    again = protocol.CommandGate(KEY, "L1", d + "/cmdseq.bin")
    again.load()
    assert again.problem is None and again.last_seq == 9
    assert not again.seen("t1")  # pushed out by eight newer ones
    assert all(again.seen("t%d" % i) for i in range(2, 10))


def test_the_first_cmdseq_format_still_loads():
    from locker import store

    d = fakes.scratch_dir("proto-old")
    import struct

    store.save(d + "/cmdseq.bin", struct.pack("<Q", 77))
    gate = protocol.CommandGate(KEY, "L1", d + "/cmdseq.bin")
    gate.load()
    assert gate.problem is None and gate.last_seq == 77 and gate.txs == []
    assert _refused(gate, _cmd(77)) == REPLAY
    assert gate.admit(_cmd(78), NOW)["seq"] == 78


def test_a_corrupt_cmdseq_is_reported_and_expiry_still_holds():
    d = fakes.scratch_dir("proto-corrupt")
    with open(d + "/cmdseq.bin", "wb") as f:
        f.write(b"LK\x01garbage")
    gate = protocol.CommandGate(KEY, "L1", d + "/cmdseq.bin")
    gate.load()
    assert gate.problem and "cmdseq.bin" in gate.problem
    assert gate.last_seq == 0
    assert _refused(gate, _cmd(5, exp=NOW - 1)) == protocol.EXPIRED
    assert gate.admit(_cmd(5), NOW)["seq"] == 5
    assert _refused(gate, _cmd(5)) == REPLAY
    again = protocol.CommandGate(KEY, "L1", d + "/cmdseq.bin")
    again.load()  # the admission rewrote the file whole
    assert again.problem is None and again.last_seq == 5


def test_bad_tx_is_malformed():
    gate, _ = _gate("proto-badtx")
    assert _refused(gate, _cmd(1, tx=5)) == MALFORMED
    assert _refused(gate, _cmd(2, tx="x" * (MAX_TX + 1))) == MALFORMED
    assert _refused(gate, _cmd(3, tx="")) == MALFORMED
    assert _refused(gate, _cmd(3, tx="a\nb")) == MALFORMED  # the separator in cmdseq.bin
    assert gate.admit(_cmd(4, tx=None), NOW)["tx"] is None


def test_locker_messages_are_built_and_checked_with_the_same_file():
    assert protocol.topic("hall-1", "events") == "lockers/hall-1/events"
    ev = b'{"k": "pickup", "t": 1795600000, "d": "A1", "id": 9001}'  # as stored: kept byte for byte
    payload = protocol.event_payload("hall-1", 1207, ev)
    assert payload == b'{"v":1,"lid":"hall-1","seq":1207,"ev":' + ev + b"}"
    msg = protocol.open_message(KEY, protocol.sign(KEY, payload))
    assert msg["seq"] == 1207 and msg["ev"]["id"] == 9001
    will = protocol.will_payload("hall-1")
    assert will == b'{"v":1,"lid":"hall-1","online":false}'
    assert json.loads(will) == {"v": 1, "lid": "hall-1", "online": False}
    cmd = {"v": 1, "lid": "hall-1", "seq": 1795600000123, "tx": "9f2c61d04a7e", "op": "codes.apply"}
    rep = json.loads(protocol.reply_payload("hall-1", cmd, {"ok": True, "rev": 43, "count": 38}))
    want = {"v": 1, "lid": "hall-1", "tx": "9f2c61d04a7e", "cseq": 1795600000123, "ok": True, "rev": 43}
    want["count"] = 38
    assert rep == want


def test_open_message_refuses_forged_and_foreign_versions():
    for wire, reason in (
        (protocol.sign(OTHER, b'{"v":1}'), BAD_SIGNATURE),
        (protocol.sign(KEY, b'{"v":2}'), MALFORMED),
        (protocol.sign(KEY, b"[1]"), MALFORMED),
        (protocol.sign(KEY, b"{oops"), MALFORMED),
        (b"short", MALFORMED),
    ):
        try:
            protocol.open_message(KEY, wire)
            raise AssertionError("opened")
        except protocol.Refused as exc:
            assert exc.reason == reason, (wire, exc.reason)
    assert protocol.open_message(KEY, protocol.sign(KEY, b'{"v":1,"x":2}')) == {"v": 1, "x": 2}
