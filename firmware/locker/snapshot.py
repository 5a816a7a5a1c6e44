# The host's full snapshot of the code store, staged part by part (docs/protocol.md, codes.snapshot).
# Imported by locker.commands for a snapshot and dropped once it is done or abandoned.
#
# Parts come sorted by tag across all parts, so each one's records go straight after the previous
# part's into codes.bin.tmp, in codes.bin's own format (locker/codes.py), and the locker holds one
# part in RAM, never the table twice. The header carries the record count up front: it is `total`,
# and a snapshot whose parts bring a different number is abandoned. The file stays open between
# parts (littlefs commits on close); the last part closes it, renames it over codes.bin, and only
# then is the RAM table read back from it (CodeStore.adopt). A part out of order, a part 1 while
# another snapshot is staged (it starts over), 60 s without a part, or any error abandons the staged
# file; a power cut leaves it to store.cleanup() at boot. Either way the old store stays as it was.
import struct
from binascii import unhexlify

from micropython import const

from locker import store
from locker.commands import row_item
from locker.ticks import ticks_diff

_GAP_MS = const(60_000)  # the longest wait for the next part
_MAX_ROWS = const(64)
# codes.bin's format: the same constants as in locker/codes.py and locker/codefile.py (checked by
# tests/host/test_firmware_builds.py).
_SLOT = const(31)  # record + checksum, on flash
_FIELDS = "<BBIIB"  # door, kind, expiry, code_id, item after the tag
_VERSION = const(2)
_CODES_MAGIC = b"LC"
_CODES_HEAD = "<2sBBII"
_TAG = const(16)
_RECORD = const(27)
_MAX_KIND = const(3)  # kinds 1..3: door-free, label "*", door byte 0xFF
_U32 = const(0xFFFFFFFF)

_ORDER = const("snapshot_order")


def _error(error, detail):
    return {"ok": False, "error": error, "detail": detail}


def _u32(v, lo=0):
    if not isinstance(v, int) or not lo <= v <= _U32:
        raise ValueError("not an integer in range")
    return v


class Snapshot:
    def __init__(self, cs):
        self.cs = cs
        self._tmp = cs.path + ".tmp"
        self._f = None  # codes.bin.tmp while a snapshot is staged
        self.rev = self.parts = self.total = 0
        self._next = 0  # the part expected next
        self._n = 0  # records written
        self._last = b""  # the last tag written: the next one must be above it
        self._at = 0  # ticks of the last part

    @property
    def staging(self):
        return self._f is not None

    def tick(self, now_ms):
        """Abandons a snapshot whose next part is overdue; True when it did."""
        if self._f is not None and ticks_diff(now_ms, self._at) >= _GAP_MS:
            self.abandon()
            return True
        return False

    def abandon(self):
        f = self._f
        if f is not None:
            self._f = None
            store.abandon(f)
            store.remove(self._tmp)

    def part(self, args, labels, now_ms):
        """One codes.snapshot command's args -> its reply. An OSError abandons, then propagates."""
        self.tick(now_ms)
        try:
            result = self._part(args, labels, now_ms)
        except OSError:
            self.abandon()
            raise
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            result = _error("bad_args", str(exc))
        if not result["ok"]:
            self.abandon()
        return result

    def _part(self, args, labels, now_ms):
        rev = _u32(args["rev"])
        part = _u32(args["part"], 1)
        parts = _u32(args["parts"], 1)
        total = _u32(args["total"])
        rows = args["codes"]
        if part == 1:
            self.abandon()  # a new snapshot replaces one staged
        elif self._f is None or part != self._next or rev != self.rev or parts != self.parts or total != self.total:
            return _error(_ORDER, "part %d of %d at rev %d" % (part, parts, rev))
        if part > parts:
            return _error("bad_args", "part > parts")
        if total > self.cs.capacity:
            return _error("capacity", "%d > %d" % (total, self.cs.capacity))
        n = len(rows)
        if n > _MAX_ROWS:
            return _error("bad_args", "at most %d codes per part" % _MAX_ROWS)
        last = part == parts
        have = self._n if part > 1 else 0
        if have + n > total or (last and have + n != total):
            return _error(_ORDER, "%d codes, total %d" % (have + n, total))
        # The whole part is checked (into its flash form) before any byte of it is written.
        buf = bytearray(n * _SLOT)
        mv = memoryview(buf)
        prev = self._last if part > 1 else b""
        off = 0
        for row in rows:
            item = row_item(row)
            tag_hex, label, kind, expiry, cid = row[0], row[1], row[2], row[3], row[4]
            t = unhexlify(tag_hex)
            if len(t) != _TAG:
                raise ValueError("tag must be %d bytes" % _TAG)
            if t <= prev:
                return _error(_ORDER, "tags not increasing")
            if _u32(kind) > 127 or kind & 15 > _MAX_KIND or (label == "*") != bool(kind & 15):
                raise ValueError("kind")
            buf[off : off + _TAG] = t
            door = 0xFF if kind & 15 else labels.index(label)
            struct.pack_into(_FIELDS, buf, off + _TAG, door, kind, _u32(expiry), _u32(cid, 1), item)
            buf[off + _RECORD : off + _SLOT] = store.checksum(mv[off : off + _RECORD])
            prev = t
            off += _SLOT
        tmp = self._tmp
        if part == 1:
            self._f = store.open_counted(tmp, "wb")
            self.rev, self.parts, self.total, self._n = rev, parts, total, 0
            head = struct.pack(_CODES_HEAD, _CODES_MAGIC, _VERSION, 0, rev, total)
            store.write_counted(self._f, head + store.checksum(head), tmp)
        if n:
            store.write_counted(self._f, buf, tmp)
        self._n += n
        self._last = prev
        self._next = part + 1
        self._at = now_ms
        if not last:
            return {"ok": True, "part": part}
        f = self._f
        self._f = None
        try:
            store.close_counted(f, tmp)
        except OSError:
            store.abandon(f)
            store.remove(tmp)
            raise
        store.rename(tmp, self.cs.path)
        cs = self.cs
        problems = cs.adopt(rev, total)
        if problems:  # the file just written does not read back: the store asks for a snapshot again
            return _error("storage", problems[0])
        return {"ok": True, "rev": cs.revision, "count": cs.count()}
