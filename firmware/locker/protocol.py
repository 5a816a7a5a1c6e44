# Signed messages between the host and a locker: shared, unchanged, by the firmware and the host
# tools (which import this very file), so the two ends can never disagree on a message.
#
# Wire form of a signed message: 64 hex digits of HMAC-SHA256(locker key, payload), one space,
# then the payload (compact JSON, UTF-8). The signature covers the payload bytes exactly as sent,
# so nobody has to re-serialise JSON the same way on both ends.
#
# A command's payload: {"v": 1, "lid": locker id, "seq": n, "exp": epoch, "now": epoch,
#                       "tx": transaction id, "op": operation, "args": {...}}
import json
import struct
from binascii import hexlify, unhexlify

from micropython import const

from locker import hmac256, store

VERSION = const(1)
MAX_MESSAGE = const(16384)
_SIG_HEX = const(64)

# Refusal reasons, reported as events.
BAD_SIGNATURE = "bad_signature"
MALFORMED = "malformed"
WRONG_LOCKER = "wrong_locker"
REPLAY = "replay"
EXPIRED = "expired"
TOO_LARGE = "too_large"
RETAINED = "retained"


class Refused(Exception):
    def __init__(self, reason, detail=""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def sign(hkey, payload):
    """payload: bytes. Returns the signed wire form."""
    return hexlify(hkey.digest(payload)) + b" " + payload


def open_signed(hkey, wire):
    """Check the signature; returns the payload bytes or raises Refused."""
    if len(wire) > MAX_MESSAGE:
        raise Refused(TOO_LARGE)
    if len(wire) < _SIG_HEX + 2 or wire[_SIG_HEX] != 32:  # 32 = ord(" ")
        raise Refused(MALFORMED, "no signature")
    try:
        sig = unhexlify(wire[:_SIG_HEX])
    except ValueError:
        raise Refused(MALFORMED, "signature not hex")
    payload = wire[_SIG_HEX + 1 :]
    if not hmac256.equal(sig, hkey.digest(payload)):
        raise Refused(BAD_SIGNATURE)
    return payload


def encode(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


class CommandGate:
    """Admits a signed command once: right locker, fresh sequence, not expired, not retained.

    The last accepted sequence number is kept on flash so a replay after a reboot is refused too.
    """

    def __init__(self, hkey, locker_id, path="cmdseq.bin"):
        self.hkey = hkey
        self.locker_id = locker_id
        self.path = path
        self.last_seq = 0
        self.problem = None

    def load(self):
        try:
            raw = store.load(self.path)
            if raw is not None and len(raw) == 8:
                self.last_seq = struct.unpack("<Q", raw)[0]
        except store.Corrupt as exc:
            # Unknown last sequence: refuse nothing older than we can prove; the host's next
            # command (with a higher seq) re-establishes it. Reported, not fatal.
            self.problem = str(exc)

    def admit(self, wire, now_epoch, retained=False):
        """Returns the command dict, or raises Refused. now_epoch None = clock unknown."""
        payload = open_signed(self.hkey, wire)
        if retained:
            raise Refused(RETAINED)
        try:
            cmd = json.loads(payload)
        except ValueError:
            raise Refused(MALFORMED, "payload not JSON")
        if not isinstance(cmd, dict) or cmd.get("v") != VERSION:
            raise Refused(MALFORMED, "not a version-1 command")
        seq, exp, op = cmd.get("seq"), cmd.get("exp"), cmd.get("op")
        if not isinstance(seq, int) or not isinstance(exp, int) or not isinstance(op, str) or seq >= 1 << 63:
            raise Refused(MALFORMED, "seq, exp and op are required")
        if cmd.get("lid") != self.locker_id:
            raise Refused(WRONG_LOCKER)
        if seq <= self.last_seq:
            raise Refused(REPLAY, "seq %d <= %d" % (seq, self.last_seq))
        sent = cmd.get("now")
        # With the clock unknown, the host's signed send time is the best bound we have.
        reference = now_epoch if now_epoch is not None else sent if isinstance(sent, int) else None
        if reference is not None and exp < reference:
            raise Refused(EXPIRED)
        self.last_seq = seq
        store.save(self.path, struct.pack("<Q", seq))
        return cmd
