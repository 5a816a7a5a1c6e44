# Signed commands for the dispatcher tests (test_staff_rows, test_staff_grace): a runtime with just
# what locker.commands needs, and a command signed with the test key. Small on purpose: importing it
# brings no Locker into a 128K heap.
from locker.hmac256 import HmacKey

KEY = b"k" * 32
T0 = 1_790_000_000


class _Cfg:
    locker_id = "t1"


class Rt:
    def __init__(self, locker):
        from locker.clock import WallClock

        self.key = KEY
        self.cfg = _Cfg()
        self.clock = WallClock()
        self.clock.boot(T0, 0)
        self.locker = locker


def wire(op, args, seq, tx):
    from locker import protocol

    cmd = {"v": 1, "lid": "t1", "seq": seq, "now": T0, "exp": T0 + 300, "tx": tx, "op": op, "args": args}
    return protocol.sign(HmacKey(KEY), protocol.encode(cmd))
