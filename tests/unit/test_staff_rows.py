# Door-free code rows (staff PINs, returns, deliveries: label "*", door byte 0xFF) and the kind byte's
# size and low-door bits, through the command dispatcher into the code store.
import os

from cmdrig import KEY, Rt, wire

import fakes
from locker import codes as C
from locker.hmac256 import HmacKey

NO_DOOR = 0xFF  # the door byte of a door-free kind (codes.bin)

LABELS = ["1", "2", "3", "4"]


class _Locker:
    """Just what codes.apply needs of a Locker (a whole one does not fit 128K with the dispatcher)."""

    def __init__(self):
        self.labels = LABELS
        self.codes = C.CodeStore(KEY, LABELS, capacity=16)
        self.codes.replace(1, [])
        self.events = []

    def record(self, kind, door, extra, now_ms, to_host=True):
        self.events.append(kind)


def test_code_rows_of_door_free_kinds_over_the_protocol():
    from binascii import hexlify

    from locker import commands

    home = os.getcwd()
    os.chdir(fakes.scratch_dir("staff-rows"))
    lk = _Locker()
    try:
        c = commands.Commands(Rt(lk))
        h = HmacKey(KEY)
        tag = hexlify(C.tag(h, "*", "90909090")).decode()
        ptag = hexlify(C.tag(h, "2", "80808080")).decode()
        seq = 1
        for row in (
            [tag, "*", 0, 0, 555],  # a pickup needs a door
            [ptag, "2", C.KIND_RETURN, 0, 556],  # a return is door-free
            [tag, "*", 128 | C.KIND_DELIVERY, 0, 555],  # kind byte past 127
            [tag, "*", 4, 0, 555],  # no such kind
        ):
            seq += 1
            args = {"base": 1, "rev": 2, "add": [row]}
            r = c.handle(wire("codes.apply", args, seq, "r%d" % seq), 0)
            assert not r["ok"] and r["error"] == "bad_args", row
        rows = [[tag, "*", C.KIND_DELIVERY | 0x70, 0, 555], [ptag, "2", 0x10, 0, 556]]
        r = c.handle(wire("codes.apply", {"base": 1, "rev": 2, "add": rows}, 99, "ok"), 0)
        assert r["ok"] and r["rev"] == 2
        assert lk.codes.find_id(555) == (NO_DOOR, C.KIND_DELIVERY | 0x70, 0)
        assert lk.codes.lookup(b"90909090", None) == (C.OK, None, 555, C.KIND_DELIVERY | 0x70)
        assert lk.codes.lookup(b"80808080", None) == (C.OK, 1, 556, 0x10)
    finally:
        os.chdir(home)
