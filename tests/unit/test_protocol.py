# Signed commands: the locker admits a command once, from its own host, before it expires.
import json

import fakes
from locker import protocol
from locker.hmac256 import HmacKey

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
    assert _refused(gate, wire) == protocol.REPLAY


def test_replay_is_refused_after_a_reboot():
    gate, d = _gate("proto-reboot")
    gate.admit(_cmd(10), NOW)
    again = protocol.CommandGate(KEY, "L1", d + "/cmdseq.bin")
    again.load()
    assert _refused(again, _cmd(10)) == protocol.REPLAY
    assert _refused(again, _cmd(9)) == protocol.REPLAY
    assert again.admit(_cmd(11), NOW)["seq"] == 11


def test_forged_expired_foreign_and_retained_commands_are_refused():
    gate, _ = _gate("proto-bad")
    assert _refused(gate, _cmd(1, key=OTHER)) == protocol.BAD_SIGNATURE
    assert _refused(gate, _cmd(2, exp=NOW - 1)) == protocol.EXPIRED
    assert _refused(gate, _cmd(3, lid="L2")) == protocol.WRONG_LOCKER
    assert _refused(gate, _cmd(4), retained=True) == protocol.RETAINED
    # none of the refusals moved the sequence forward
    assert gate.last_seq == 0


def test_a_flipped_payload_byte_breaks_the_signature():
    gate, _ = _gate("proto-flip")
    wire = bytearray(_cmd(7))
    wire[-3] ^= 1
    assert _refused(gate, bytes(wire)) == protocol.BAD_SIGNATURE


def test_malformed_input_is_refused_not_raised():
    gate, _ = _gate("proto-junk")
    for junk in (b"", b"hello", b"x" * 64 + b" {}", b"0" * 64 + b"{}", b"0" * 65):
        assert _refused(gate, junk) in (protocol.MALFORMED, protocol.BAD_SIGNATURE), junk
    unsigned_json = protocol.sign(KEY, b"[1, 2]")
    assert _refused(gate, unsigned_json) == protocol.MALFORMED
    not_json = protocol.sign(KEY, b"{nope")
    assert _refused(gate, not_json) == protocol.MALFORMED
    no_seq = protocol.sign(KEY, protocol.encode({"v": 1, "lid": "L1", "op": "x", "exp": NOW + 5}))
    assert _refused(gate, no_seq) == protocol.MALFORMED
    assert _refused(gate, b"0" * (protocol.MAX_MESSAGE + 1)) == protocol.TOO_LARGE


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
