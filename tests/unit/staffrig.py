# The rig of the test_staff* modules: a Locker on a fake board sized like esp32-4door, with a staff
# PIN, a delivery, a return and a pickup code. (Three modules, not one: under MicroPython each test
# module runs in one 128K heap.)

from test_app import KEY, LABELS, T0, FakeBoard
from test_app import Rig as AppRig

from locker import codes as C
from locker.config import settings
from locker.hmac256 import HmacKey

NO_DOOR = 0xFF  # the door byte of a door-free kind (codes.bin)

STAFF_PIN = "11223344"
DELIVERY = "55667788"
RETURN = "66554433"
PICKUP = "48291357"


class SizedBoard(FakeBoard):
    """esp32-4door's doors: 1 and 2 small and low, 3 medium, 4 large."""

    def __init__(self, clock):
        super().__init__(clock)
        self.sizes = bytearray([1, 1, 2, 3])
        self.low = [True, True, False, False]


class Rig(AppRig):
    """A locker with a staff PIN (id 7), a delivery (123456), a return (31, M) and a pickup for door 1."""

    def __init__(self, name, cfg=None, extra=(), parcels=(0,)):
        import gc

        gc.collect()  # the earlier tests' lockers go first (128K under MicroPython)
        self._extra = extra
        self._parcels = parcels
        # small tables: every test's modules share a 128K heap under MicroPython
        cfg = cfg or settings({"locker_id": "t1", "code_capacity": 16, "outbox_capacity": 40})
        AppRig.__init__(self, name, codes=(), cfg=cfg)

    def boot(self):
        if not hasattr(self, "_stocked"):
            self._stocked = True
            self.board = SizedBoard(self.ticks)
            for d in range(len(LABELS)):  # a parcel sensor reads 1 when a parcel is in (test_app)
                self.board.parcels[d].level = 1 if d in self._parcels else 0
            h = HmacKey(KEY)
            rows = [
                (C.tag(h, "*", STAFF_PIN), NO_DOOR, C.KIND_STAFF, T0 + 30 * 86400, 7),  # a long-lived PIN
                (C.tag(h, "*", DELIVERY), NO_DOOR, C.KIND_DELIVERY, T0 + 5 * 86400, 123456),
                (C.tag(h, "*", RETURN), NO_DOOR, C.KIND_RETURN | 0x20, T0 + 86400, 31),
                (C.tag(h, "1", PICKUP), 0, C.KIND_PICKUP, T0 + 86400, 11),
            ]
            C.CodeStore(KEY, LABELS, capacity=16).replace(1, rows + list(self._extra))
        AppRig.boot(self)

    def door(self, d, open_=None, parcel=None):
        if parcel is not None:
            self.board.parcels[d].level = 1 if parcel else 0
        if open_ is not None:
            self.board.closed[d].level = 0 if open_ else 1
        self.run(200)

    def last(self, kind):
        evs = self.events(kind)
        return evs[-1] if evs else None


def _pcode(i):
    return "%08d" % (i * 7919 + 12345678)


def _prec(door, i, kind=0, expiry=0):
    return (C.tag(HmacKey(KEY), LABELS[door], _pcode(i)), door, kind, expiry, i)


def _pfree(i, kind, expiry=0, cid=None):
    return (C.tag(HmacKey(KEY), "*", _pcode(i)), NO_DOOR, kind, expiry, i if cid is None else cid)


def wrong_codes(rig, times, wait_out=True):
    """Wrong codes, each once the wait before it ran out; and the last one's wait too (wait_out)."""
    for i in range(times):
        rig.run(rig.locker.throttle.wait_ms(rig.ticks.now) + 10, step=100)
        rig.type("%08d#" % (90000000 + i))
        assert rig.last("denied")["n"] == rig.locker.throttle.failures
    if wait_out:
        rig.run(rig.locker.throttle.wait_ms(rig.ticks.now) + 10, step=100)
