# The pickup codes the locker holds offline, and the journal of codes already used.
#
# Codes are never stored: a code is kept as its tag, HMAC-SHA256(locker key, door label ":" digits),
# which the host computes with the same tag(). A typed code is tagged once per door and looked up
# by binary search in ONE preallocated bytearray of fixed-size records sorted by tag.
#
# RAM record (42 bytes): tag(32) | door u8 | kind u8 | expiry u32 (epoch s, 0 = none) | code_id u32
#
# codes.bin (written whole, tmp + rename):
#   header: b"LC" | version u8 | 0 u8 | revision u32 | count u32 | sha256(header)[:4]
#   count x (record(42) | sha256(record)[:4])
# Each record carries its own checksum, so a truncated or partly damaged file still yields every
# intact record; load() reports what was lost and sets revision to 0 (ask the host for a snapshot).
#
# used.bin, the journal (rewritten whole, tmp + rename, before consume()/complete() return):
#   header: b"LU" | version u8 | 0 u8 | count u32 | sha256(header)[:4]
#   count x (code_id u32 | door u8 | state u8 | sha256(entry)[:4]), sorted by code_id
#   state 1 = consumed (door unlocked), 2 = pickup recorded. release() drops a state-1 entry.
# Entries in state 2 whose code is no longer in the store are dropped at the next journal rewrite;
# entries in state 1 stay until complete(): the app resumes those doors after a reboot.
import struct

from micropython import const

from locker import hmac256, store

KIND_PICKUP = const(0)
KIND_STAFF = const(1)
KIND_RETURN = const(2)

OK = const(0)
UNKNOWN = const(1)
EXPIRED = const(2)
USED = const(3)

STATE_CONSUMED = const(1)
STATE_COMPLETED = const(2)

# Tags are HMAC-SHA256 truncated to 128 bits (RFC 2104 allows truncation to half the hash):
# a random wrong code matches one of 600 stored tags with odds of 600 / 2**128, and the table
# takes 16 KB of heap instead of 25 KB.
TAG_SIZE = const(16)
RECORD_SIZE = const(26)

_MAX_KIND = const(2)
_SLOT = const(30)  # record + checksum, on flash
_FIELDS = "<BBII"  # door, kind, expiry, code_id after the tag
_VERSION = const(1)
_CODES_MAGIC = b"LC"
_CODES_HEAD = "<2sBBII"
_CODES_HEAD_LEN = const(12)
_USED_MAGIC = b"LU"
_USED_HEAD = "<2sBBI"
_USED_HEAD_LEN = const(8)
_ENTRY = "<IBB"
_ENTRY_LEN = const(6)
_ENTRY_SLOT = const(10)
_U32 = const(0xFFFFFFFF)
_ID_OFF = const(22)  # code_id within a record


def tag(hkey, door_label, code):
    """HMAC-SHA256(locker key, door_label + ":" + code), first TAG_SIZE bytes. hkey: HmacKey or raw key."""
    if not isinstance(hkey, hmac256.HmacKey):
        hkey = hmac256.HmacKey(hkey)
    if isinstance(door_label, str):
        door_label = door_label.encode()
    if isinstance(code, str):
        code = code.encode()
    return hkey.digest(door_label, b":", code)[:TAG_SIZE]


def _cmp_tag(buf, off, t):
    """Sign of buf[off:off+TAG_SIZE] - t[:TAG_SIZE], without slicing."""
    for j in range(TAG_SIZE):
        c = buf[off + j] - t[j]
        if c:
            return c
    return 0


class CodeStore:
    def __init__(self, key, door_labels, path="codes.bin", used_path="used.bin", capacity=600):
        self._key = key if isinstance(key, hmac256.HmacKey) else hmac256.HmacKey(key)
        self._prefixes = [(lb.encode() if isinstance(lb, str) else bytes(lb)) + b":" for lb in door_labels]
        self.path = path
        self.used_path = used_path
        self.capacity = capacity
        self.revision = 0
        self._buf = bytearray(capacity * RECORD_SIZE)
        self._mv = memoryview(self._buf)
        self._n = 0
        self._slot = bytearray(_SLOT)
        self._journal = bytearray()  # _ENTRY_LEN-byte entries sorted by code_id
        self._prune_due = True

    # --- loading ---------------------------------------------------------------------------------

    def load(self):
        """Read codes.bin and used.bin. Never raises on bad data: returns a list of problems."""
        problems = []
        self._n = 0
        self.revision = 0
        self._load_codes(problems)
        self._load_journal(problems)
        self._prune_due = True
        return problems

    def _load_codes(self, problems):
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        try:
            self._read_codes(f, problems)
        except OSError as exc:
            problems.append("%s: read error %s" % (self.path, exc))
        finally:
            f.close()

    def _read_codes(self, f, problems):
        path = self.path
        head = f.read(_CODES_HEAD_LEN + 4)
        if not head:
            problems.append("%s: empty" % path)
            return
        count = None
        revision = 0
        if (
            len(head) == _CODES_HEAD_LEN + 4
            and head[:2] == _CODES_MAGIC
            and store.checksum(head[:_CODES_HEAD_LEN]) == head[_CODES_HEAD_LEN:]
        ):
            _, version, _, revision, count = struct.unpack(_CODES_HEAD, head[:_CODES_HEAD_LEN])
            if version != _VERSION:
                problems.append("%s: version %d" % (path, version))
                return
        else:
            problems.append("%s: bad header" % path)
        buf = self._buf
        slot = self._slot
        mv = memoryview(slot)
        ndoors = len(self._prefixes)
        seen = bad = n = 0
        while count is None or seen < count:
            got = f.readinto(slot)
            if not got:
                break
            seen += 1
            if got < _SLOT:
                bad += 1
                break
            if store.checksum(mv[:RECORD_SIZE]) != slot[RECORD_SIZE:]:
                bad += 1
                continue
            off = n * RECORD_SIZE
            if (
                slot[TAG_SIZE] >= ndoors
                or slot[TAG_SIZE + 1] > _MAX_KIND
                or n >= self.capacity
                or (n and _cmp_tag(buf, off - RECORD_SIZE, slot) >= 0)
            ):
                bad += 1
                continue
            buf[off : off + RECORD_SIZE] = mv[:RECORD_SIZE]
            n += 1
        self._n = n
        lost = bad
        if count is not None and seen < count:
            lost += count - seen
        if count is not None and seen == count and f.read(1):
            problems.append("%s: data after the last record" % path)
        if lost:
            problems.append("%s: lost %d records, kept %d" % (path, lost, n))
        if lost or count is None:
            revision = 0
        self.revision = revision

    def _load_journal(self, problems):
        self._journal = bytearray()
        path = self.used_path
        try:
            f = open(path, "rb")
        except OSError:
            return
        try:
            head = f.read(_USED_HEAD_LEN + 4)
            count = None
            if not head:
                problems.append("%s: empty" % path)
                return
            if (
                len(head) == _USED_HEAD_LEN + 4
                and head[:2] == _USED_MAGIC
                and head[2] == _VERSION
                and store.checksum(head[:_USED_HEAD_LEN]) == head[_USED_HEAD_LEN:]
            ):
                count = struct.unpack(_USED_HEAD, head[:_USED_HEAD_LEN])[3]
            else:
                problems.append("%s: bad header" % path)
            slot = bytearray(_ENTRY_SLOT)
            mv = memoryview(slot)
            seen = bad = 0
            last = -1
            while count is None or seen < count:
                got = f.readinto(slot)
                if not got:
                    break
                seen += 1
                if got < _ENTRY_SLOT or store.checksum(mv[:_ENTRY_LEN]) != slot[_ENTRY_LEN:]:
                    bad += 1
                    if got < _ENTRY_SLOT:
                        break
                    continue
                cid, door, state = struct.unpack_from(_ENTRY, slot, 0)
                if cid <= last or state not in (STATE_CONSUMED, STATE_COMPLETED):
                    bad += 1
                    continue
                last = cid
                self._journal.extend(mv[:_ENTRY_LEN])
            if count is not None and seen < count:
                bad += count - seen
            if bad:
                problems.append("%s: lost %d used-code entries" % (path, bad))
        except OSError as exc:
            problems.append("%s: read error %s" % (path, exc))
        finally:
            f.close()

    # --- queries ---------------------------------------------------------------------------------

    def count(self):
        return self._n

    def _find(self, t):
        buf = self._buf
        t0 = t[0]
        lo = 0
        hi = self._n
        while lo < hi:
            mid = (lo + hi) >> 1
            off = mid * RECORD_SIZE
            c = buf[off] - t0  # decides 255 times in 256 without a call
            if not c:
                c = _cmp_tag(buf, off, t)
            if c < 0:
                lo = mid + 1
            elif c > 0:
                hi = mid
            else:
                return mid
        return -1

    def lookup(self, code, now_epoch):
        """(status, door_index, code_id, kind) for a typed code; door/id/kind are None if UNKNOWN.

        Several doors may share a code: the first usable one wins, else EXPIRED, else USED.
        now_epoch None: expiry is not checked (the app decides the clock policy)."""
        key = self._key
        buf = self._buf
        mv = self._mv
        status = UNKNOWN
        found = None
        for d in range(len(self._prefixes)):
            t = memoryview(key.digest(self._prefixes[d], code))[:TAG_SIZE]
            i = self._find(t)
            if i < 0:
                continue
            off = i * RECORD_SIZE
            if buf[off + TAG_SIZE] != d or not hmac256.equal(mv[off : off + TAG_SIZE], t):
                continue
            _, kind, expiry, cid = struct.unpack_from(_FIELDS, buf, off + TAG_SIZE)
            if self._jfind(cid) >= 0:
                st = USED
            elif expiry and now_epoch is not None and now_epoch >= expiry:
                st = EXPIRED
            else:
                return (OK, d, cid, kind)
            if status == UNKNOWN or (st == EXPIRED and status == USED):
                status = st
                found = (d, cid, kind)
        if found is None:
            return (UNKNOWN, None, None, None)
        return (status, found[0], found[1], found[2])

    def records(self):
        """Every record as (tag, door_index, kind, expiry, code_id), in tag order."""
        buf = self._buf
        for i in range(self._n):
            off = i * RECORD_SIZE
            door, kind, expiry, cid = struct.unpack_from(_FIELDS, buf, off + TAG_SIZE)
            yield (bytes(buf[off : off + TAG_SIZE]), door, kind, expiry, cid)

    # --- host updates ----------------------------------------------------------------------------

    def _check(self, rec):
        t, door, kind, expiry, cid = rec
        if len(t) != TAG_SIZE:
            raise ValueError("tag size")
        if not 0 <= door < len(self._prefixes):
            raise ValueError("door index")
        if not 0 <= kind <= _MAX_KIND:
            raise ValueError("kind")
        if not (0 <= expiry <= _U32 and 0 <= cid <= _U32):
            raise ValueError("expiry or code_id")
        return (bytes(t), door, kind, expiry, cid)

    def _normalize(self, records):
        """Checked records, each displacing any earlier one with the same code_id or tag; by tag."""
        by_id = {}
        by_tag = {}
        ids = set()  # every id and tag given, for apply(): each displaces a stored record
        tags = set()
        for r in records:
            r = self._check(r)
            ids.add(r[4])
            tags.add(r[0])
            old = by_id.pop(r[4], None)
            if old is not None:
                del by_tag[old[0]]
            cid = by_tag.pop(r[0], None)
            if cid is not None:
                del by_id[cid]
            by_id[r[4]] = r
            by_tag[r[0]] = r[4]
        out = list(by_id.values())
        out.sort(key=lambda r: r[0])
        return out, ids, tags

    def _stream(self, revision, count, records):
        """Chunks of a codes.bin holding count records from the iterable of RECORD_SIZE-byte records."""
        slot = self._slot
        mv = memoryview(slot)
        head = struct.pack(_CODES_HEAD, _CODES_MAGIC, _VERSION, 0, revision, count)
        yield head + store.checksum(head)
        for rec in records:
            slot[:RECORD_SIZE] = rec
            slot[RECORD_SIZE:] = store.checksum(mv[:RECORD_SIZE])
            yield slot

    def _packed(self, recs):
        one = bytearray(RECORD_SIZE)
        for r in recs:
            one[:TAG_SIZE] = r[0]
            struct.pack_into(_FIELDS, one, TAG_SIZE, r[1], r[2], r[3], r[4])
            yield one

    def replace(self, revision, records):
        """Full snapshot: the store holds exactly these records afterwards (one atomic write)."""
        recs, _, _ = self._normalize(records)
        if len(recs) > self.capacity:
            raise ValueError("capacity")
        store.write_atomic(self.path, self._stream(revision, len(recs), self._packed(recs)))
        off = 0
        for rec in self._packed(recs):
            self._buf[off : off + RECORD_SIZE] = rec
            off += RECORD_SIZE
        self._n = len(recs)
        self.revision = revision
        self._prune_due = True

    def apply(self, revision, add_records, remove_ids):
        """Delta: remove codes by id, then add records in order, each displacing any record with the
        same code_id or tag; one atomic write."""
        adds, add_ids, add_tags = self._normalize(add_records)
        gone = set(remove_ids)
        buf = self._buf
        mv = self._mv
        n = self._n
        keep = bytearray(n)
        kept = 0
        for i in range(n):
            off = i * RECORD_SIZE
            cid = struct.unpack_from("<I", buf, off + _ID_OFF)[0]
            if cid in gone or cid in add_ids or (add_tags and bytes(mv[off : off + TAG_SIZE]) in add_tags):
                continue
            keep[i] = 1
            kept += 1
        total = kept + len(adds)
        if total > self.capacity:
            raise ValueError("capacity")
        store.write_atomic(self.path, self._stream(revision, total, self._merged(keep, adds)))
        # Committed: update RAM in place. Compact the kept records, then merge the adds from the back.
        w = 0
        for i in range(n):
            if keep[i]:
                if w != i:
                    buf[w * RECORD_SIZE : (w + 1) * RECORD_SIZE] = mv[i * RECORD_SIZE : (i + 1) * RECORD_SIZE]
                w += 1
        i = w - 1
        k = total - 1
        j = len(adds) - 1
        one = bytearray(RECORD_SIZE)
        while j >= 0:
            a = adds[j]
            if i >= 0 and _cmp_tag(buf, i * RECORD_SIZE, a[0]) > 0:
                buf[k * RECORD_SIZE : (k + 1) * RECORD_SIZE] = mv[i * RECORD_SIZE : (i + 1) * RECORD_SIZE]
                i -= 1
            else:
                one[:TAG_SIZE] = a[0]
                struct.pack_into(_FIELDS, one, TAG_SIZE, a[1], a[2], a[3], a[4])
                buf[k * RECORD_SIZE : (k + 1) * RECORD_SIZE] = one
                j -= 1
            k -= 1
        self._n = total
        self.revision = revision
        self._prune_due = True

    def _merged(self, keep, adds):
        """The kept RAM records and the sorted adds, merged in tag order."""
        buf = self._buf
        mv = self._mv
        packed = self._packed(adds)
        j = 0
        nxt = next(packed) if adds else None
        for i in range(len(keep)):
            if not keep[i]:
                continue
            off = i * RECORD_SIZE
            while nxt is not None and _cmp_tag(buf, off, adds[j][0]) > 0:
                yield nxt
                j += 1
                nxt = next(packed) if j < len(adds) else None
            yield mv[off : off + RECORD_SIZE]
        while nxt is not None:
            yield nxt
            j += 1
            nxt = next(packed) if j < len(adds) else None

    # --- the used-code journal -------------------------------------------------------------------

    def _jfind(self, cid, j=None):
        """Index of code_id's entry in journal j (default: the current one), or -(insertion point) - 1."""
        if j is None:
            j = self._journal
        lo = 0
        hi = len(j) // _ENTRY_LEN
        while lo < hi:
            mid = (lo + hi) >> 1
            c = struct.unpack_from("<I", j, mid * _ENTRY_LEN)[0]
            if c < cid:
                lo = mid + 1
            elif c > cid:
                hi = mid
            else:
                return mid
        return -lo - 1

    def _pruned(self, j):
        """Journal j without the completed entries whose code is no longer in the store."""
        entries = len(j) // _ENTRY_LEN
        present = bytearray(entries)
        buf = self._buf
        for i in range(self._n):
            k = self._jfind(struct.unpack_from("<I", buf, i * RECORD_SIZE + _ID_OFF)[0], j)
            if k >= 0:
                present[k] = 1
        out = bytearray()
        for k in range(entries):
            off = k * _ENTRY_LEN
            if present[k] or j[off + 5] != STATE_COMPLETED:
                out.extend(j[off : off + _ENTRY_LEN])
        return out

    def _journal_chunks(self, journal):
        entries = len(journal) // _ENTRY_LEN
        head = struct.pack(_USED_HEAD, _USED_MAGIC, _VERSION, 0, entries)
        yield head + store.checksum(head)
        slot = bytearray(_ENTRY_SLOT)
        mv = memoryview(journal)
        for k in range(entries):
            e = mv[k * _ENTRY_LEN : (k + 1) * _ENTRY_LEN]
            slot[:_ENTRY_LEN] = e
            slot[_ENTRY_LEN:] = store.checksum(e)
            yield slot

    def _commit_journal(self, journal):
        """Write journal (a bytearray of entries) and adopt it. Prunes when the store changed."""
        prune = self._prune_due
        if prune:
            journal = self._pruned(journal)
        store.write_atomic(self.used_path, self._journal_chunks(journal))
        self._journal = journal
        if prune:
            self._prune_due = False

    def consume(self, code_id, door_index):
        """Mark a code used; persisted before this returns (then, and only then, unlock the door)."""
        k = self._jfind(code_id)
        if k >= 0:
            return
        pos = (-k - 1) * _ENTRY_LEN
        j = self._journal
        journal = bytearray(len(j) + _ENTRY_LEN)
        journal[:pos] = j[:pos]
        struct.pack_into(_ENTRY, journal, pos, code_id, door_index, STATE_CONSUMED)
        journal[pos + _ENTRY_LEN :] = j[pos:]
        self._commit_journal(journal)

    def complete(self, code_id):
        """The pickup was recorded: the door need not be resumed after a reboot. False if unknown."""
        k = self._jfind(code_id)
        if k < 0:
            return False
        off = k * _ENTRY_LEN
        if self._journal[off + 5] == STATE_COMPLETED:
            return True
        journal = bytearray(self._journal)
        journal[off + 5] = STATE_COMPLETED
        self._commit_journal(journal)
        return True

    def release(self, code_id):
        """Undo consume() for a door that never opened (the app saw the parcel still inside after a
        reboot): the code works again. A completed pickup is never released. False if not pending."""
        k = self._jfind(code_id)
        if k < 0:
            return False
        off = k * _ENTRY_LEN
        j = self._journal
        if j[off + 5] != STATE_CONSUMED:
            return False
        journal = bytearray(len(j) - _ENTRY_LEN)
        journal[:off] = j[:off]
        journal[off:] = j[off + _ENTRY_LEN :]
        self._commit_journal(journal)
        return True

    def pending(self):
        """(code_id, door_index) of codes consumed but not completed, by code_id."""
        j = self._journal
        out = []
        for off in range(0, len(j), _ENTRY_LEN):
            cid, door, state = struct.unpack_from(_ENTRY, j, off)
            if state == STATE_CONSUMED:
                out.append((cid, door))
        return out

    def used(self):
        """(code_id, door_index, state) of every journal entry, for diagnostics and tests."""
        j = self._journal
        return [struct.unpack_from(_ENTRY, j, off) for off in range(0, len(j), _ENTRY_LEN)]
