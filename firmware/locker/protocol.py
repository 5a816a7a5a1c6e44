# Signed messages between the host and a locker: shared, unchanged, by the firmware and the host
# tools (which import this very file), so the two ends can never disagree on a message.
#
# Wire form of a signed message: 64 hex digits of HMAC-SHA256(locker key, payload), one space,
# then the payload (compact JSON, UTF-8). The signature covers the payload bytes exactly as sent,
# so nobody has to re-serialise JSON the same way on both ends.
#
# A command's payload: {"v": 1, "lid": locker id, "seq": n, "exp": epoch, "now": epoch,
#                       "tx": transaction id, "op": operation, "args": {...}}
#
# cmdseq.bin (a framed file, store.save): the last admitted seq u64, then the last transaction ids
# that acted, oldest first, separated by "\n". The first version held the u64 alone, which reads as
# the same format with no transaction id.
import json
import struct
from binascii import hexlify, unhexlify

from micropython import const

from locker import hmac256, store

VERSION = const(1)
_MAX_MESSAGE = const(8192)  # host -> locker (docs/protocol.md)
_TX_MEMORY = const(8)  # transaction ids remembered
_MAX_TX = const(64)  # characters in a transaction id
_SIG_HEX = const(64)
_U32 = const(0xFFFFFFFF)

# Refusal reasons, reported as events.
_BAD_SIGNATURE = const("bad_signature")
_MALFORMED = const("malformed")
_WRONG_LOCKER = const("wrong_locker")
_REPLAY = const("replay")
EXPIRED = "expired"
TOO_LARGE = "too_large"
_RETAINED = const("retained")


class Refused(Exception):
    def __init__(self, reason, detail="", op=None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.op = op  # the command's op when its payload could be read (authentic), else None


def sign(hkey, payload):
    """payload: bytes. Returns the signed wire form."""
    return hexlify(hkey.digest(payload)) + b" " + payload


def open_signed(hkey, wire):
    """Check the signature; returns the payload bytes or raises Refused."""
    if len(wire) > _MAX_MESSAGE:
        raise Refused(TOO_LARGE)
    if len(wire) < _SIG_HEX + 2 or wire[_SIG_HEX] != 32:  # 32 = ord(" ")
        raise Refused(_MALFORMED, "no signature")
    try:
        sig = unhexlify(wire[:_SIG_HEX])
    except ValueError:
        raise Refused(_MALFORMED, "signature not hex")
    payload = wire[_SIG_HEX + 1 :]
    if not hmac256.equal(sig, hkey.digest(payload)):
        raise Refused(_BAD_SIGNATURE)
    return payload


def open_message(hkey, wire):
    """A signed version-1 message (either direction) as a dict, or raises Refused."""
    payload = open_signed(hkey, wire)
    try:
        msg = json.loads(payload)
    except (ValueError, RuntimeError, MemoryError):  # deep nesting: recursion limit (RuntimeError) or heap
        raise Refused(_MALFORMED, "payload not JSON")
    if not isinstance(msg, dict) or msg.get("v") != VERSION:
        raise Refused(_MALFORMED, "not a version-1 message")
    return msg


def encode(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


# --- messages from a locker (built here so the host's checks and the firmware share them) --------


def topic(lid, leaf):
    return "lockers/%s/%s" % (lid, leaf)


def event_payload(lid, seq, ev):
    """ev: the event's JSON bytes as stored in the outbox, carried verbatim (not re-serialised)."""
    return b'{"v":1,"lid":' + encode(lid) + b',"seq":%d,"ev":' % seq + bytes(ev) + b"}"


def reply(lid, cmd, result):
    """result (a dict, extended in place) as the reply to cmd: with v, lid, the command's tx and seq."""
    result["v"] = VERSION
    result["lid"] = lid
    result["tx"] = cmd.get("tx")
    result["cseq"] = cmd.get("seq")
    return result


def reply_payload(lid, cmd, result):
    return encode(reply(lid, cmd, result))


def will_payload(lid):
    return b'{"v":1,"lid":' + encode(lid) + b',"online":false}'


# --- commands --------------------------------------------------------------------------------------


class CommandGate:
    """Admits a signed command once: right locker, fresh sequence, not expired, not retained.

    The last admitted sequence number is kept on flash so a replay after a reboot is refused too,
    with the last TX_MEMORY transaction ids that acted (remember()), so a command the host sends
    again under a new seq acts once (seen()). `ack` is exempt from the sequence rule and writes
    nothing here: it is idempotent and touches nothing but the outbox.

    While the last sequence is unknown (cmdseq.bin damaged or gone: last_seq 0), a command must
    also be signed no earlier than `floor`, the latest `now` a signed command carried (kept apart:
    locker.clock's `vouched`), so an old command is not admitted on a lagging clock.

    `challenge`: a nonce the locker offers in its status (set by the caller, None: none). A `time`
    command that echoes it (args.nonce) was signed after the locker offered it: it is fresh whatever
    the locker's clock says, so neither `exp` nor `floor` applies to it; the sequence rule does. It
    is taken once (`proven` says so after admit()), so that is how a clock that runs ahead gets back.
    """

    def __init__(self, hkey, locker_id, path="cmdseq.bin"):
        self.hkey = hkey
        self.locker_id = locker_id
        self.path = path
        self.last_seq = 0
        self.txs = []  # oldest first
        self.problem = None
        self.challenge = None
        self.proven = False  # the last admitted command answered the challenge

    def load(self):
        try:
            raw = store.load(self.path)
        except store.Corrupt as exc:
            # Unknown last sequence: every sequence is taken as fresh until the host's next command
            # re-establishes it; meanwhile expiry bounds a replay (docs/design.md). Reported.
            self.problem = str(exc)
            return
        if raw is None:
            return
        if len(raw) < 8:
            self.problem = "%s: bad contents" % self.path
            return
        self.last_seq = struct.unpack_from("<Q", raw)[0]
        self.txs = raw[8:].decode().split("\n")[-_TX_MEMORY:] if len(raw) > 8 else []

    def _save(self):
        store.save(self.path, struct.pack("<Q", self.last_seq) + "\n".join(self.txs).encode())

    def admit(self, wire, now_epoch, retained=False, floor=None):
        """Returns the command dict, or raises Refused. now_epoch None = clock unknown."""
        self.proven = False
        cmd = open_message(self.hkey, wire)
        seq, exp, op, tx = cmd.get("seq"), cmd.get("exp"), cmd.get("op"), cmd.get("tx")
        if not isinstance(op, str):
            raise Refused(_MALFORMED, "op is required")
        op = op[:24]  # it goes into a refused event: bounded
        if not isinstance(seq, int) or not isinstance(exp, int) or not 0 <= seq < 1 << 63:
            raise Refused(_MALFORMED, "seq and exp are required", op)
        sent = cmd.get("now")
        if not 0 <= exp <= _U32 or (sent is not None and not (isinstance(sent, int) and 0 <= sent <= _U32)):
            raise Refused(_MALFORMED, "exp and now are epoch seconds (u32)", op)  # the clock keeps u32
        if tx is not None and not (isinstance(tx, str) and 0 < len(tx) <= _MAX_TX and "\n" not in tx):
            raise Refused(_MALFORMED, "bad tx", op)
        if retained:
            raise Refused(_RETAINED, "", op)
        if cmd.get("lid") != self.locker_id:
            raise Refused(_WRONG_LOCKER, "", op)
        ack = op == "ack"
        if not ack and seq <= self.last_seq:
            raise Refused(_REPLAY, "seq %d <= %d" % (seq, self.last_seq), op)
        args = cmd.get("args")
        nonce = args.get("nonce") if op == "time" and isinstance(args, dict) else None
        proven = nonce is not None and nonce == self.challenge
        if not proven:
            if not ack and self.last_seq == 0 and floor is not None and not (isinstance(sent, int) and sent >= floor):
                raise Refused(_REPLAY, "sequence unknown; now %s < %d" % (sent, floor), op)
            # With the clock unknown, the host's signed send time is the best bound we have.
            reference = now_epoch if now_epoch is not None else sent if isinstance(sent, int) else None
            if reference is not None and exp < reference:
                raise Refused(EXPIRED, "", op)
        else:
            self.challenge = None  # taken once
            self.proven = True
        if not ack:
            self.last_seq = seq
            self._save()
        return cmd

    def seen(self, tx):
        """True when a command with this transaction id has already acted."""
        return tx is not None and tx in self.txs

    def remember(self, tx):
        """The admitted command with this transaction id has acted: keep it (on flash) to answer a
        re-send as a duplicate. Called after the command's own write, so a power cut between the
        two lets the re-send act (rather than be answered as done when it was not)."""
        if tx is None or tx in self.txs:
            return
        self.txs.append(tx)
        if len(self.txs) > _TX_MEMORY:
            self.txs.pop(0)
        self._save()
