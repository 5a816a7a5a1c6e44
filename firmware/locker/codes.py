# The pickup codes the locker holds offline, and the journal of codes already used.
#
# Codes are never stored: a code is kept as its tag, HMAC-SHA256(locker key, door label ":" digits),
# which the host computes with the same tag(). A typed code is tagged once per door and looked up
# by binary search in ONE preallocated bytearray of fixed-size records sorted by tag.
#
# RAM record (27 bytes): tag(16) | door u8 | kind u8 | expiry u32 (epoch s, 0 = none) | code_id u32
#   | item u8 (what the resident takes out: the host's ITEMS index, 0 parcel; the "take" text)
#
# codes.bin (written whole, tmp + rename):
#   header: b"LC" | version u8 (2) | 0 u8 | revision u32 | count u32 | sha256(header)[:4]
#   count x (record(27) | sha256(record)[:4])
# A version 1 file (26-byte records, no item: from before items) loads with every item 0.
# Records given to replace()/apply() are (tag, door, kind, expiry, code_id[, item]).
# Each record carries its own checksum, so a truncated or partly damaged file still yields every
# intact record; load() reports what was lost, sets revision to 0 and `damaged` (the status asks the
# host for a full snapshot) until replace() or a staged snapshot (adopt()) writes the store whole.
#
# used.bin, the journal (version 2), appended to and compacted now and then:
#   header: b"LU" | version u8 (2) | 0 u8 | base u32 | sha256(header)[:4]
#   then entries: code_id u32 | door u8 | state u8 | sha256(entry)[:4]   (10 bytes each)
#   state 1 = consumed (door unlocked), 2 = pickup recorded, 3 = released (consume undone),
#   4 = loaded (a delivery's item is in `door`: its code works for that door from now on),
#   5 = loading (staff were given `door` to load the delivery; code_id 0: a load by size).
# A consumed delivery that is released (jammed latch, parcel still inside after a reboot) goes back
# to loaded with its door, never to released: the item is still in that door.
#
# Kinds (the low 4 bits of the kind byte; bits 4-5 a size wanted, bit 6 a low door wanted):
# 0 pickup (tag over "<door label>:" code, door byte = its door); 1 staff PIN (usable only with an
# expiry and a clock: lookup()), 2 return, 3 delivery:
# door-free, tag over "*:" code, door byte 0xFF. lookup() tries each door's prefix and then "*:"
# (one more HMAC per submit).
# consume(), complete() and release() each append ONE entry: open "ab", write, close. littlefs commits
# on close, so a cut leaves the file as it was; elsewhere a torn last entry fails its checksum.
# load() replays the entries in order: the later state of a code id wins, a released entry drops a
# consumed one (never a recorded pickup). A bad entry in the middle is skipped, a torn or bad last
# entry dropped; both are reported, never fatal.
# Compaction rewrites the file whole (tmp + rename) as `base` entries, one per code id by code_id:
#   - after replace() and apply() (codes.bin committed first) when entries were appended or some are
#     to be dropped: state-2 and state-4 entries whose code is no longer in the store (state-1 and 5
#     entries stay until settled: the app resumes those doors);
#   - when the appended part passes journal_limit bytes (by complete()/release(); consume() only at
#     twice that, to keep the unlock quick);
#   - for the first write after used.bin was found missing, damaged or in version 1 (so an entry never
#     follows garbage, and a new file is never an empty one left by a cut).
# Nothing is dropped while codes.bin is known damaged: the host's snapshot may bring those codes back.
# Version 1 files (the same header and entries, rewritten whole, states 1 and 2) load as they are.
#
# RAM journal: ONE preallocated bytearray of entries as on flash without their checksum (6 bytes),
# sorted by code_id, binary-searched. Sized to the store's capacity; grows only past it (codes
# consumed and no longer in the store).
#
# usedtags.bin (next to used.bin; store.save, written whole): the records of the last GONE_KEPT used
# codes the host removed from the table (a used code is removed at once while online), oldest first,
# as RAM records with the door byte the door it was used at. lookup() answers USED for them, so the
# same code still reopens its door within the grace period and later shows "already used" instead
# of counting as a wrong code. Written before codes.bin on replace()/apply() (a cut leaves a record
# both in the table and here: the table wins), after it on adopt().
import struct

from micropython import const

from locker import hmac256, lazy, store

KIND_PICKUP = const(0)
KIND_STAFF = const(1)
KIND_RETURN = const(2)
KIND_DELIVERY = const(3)
KIND_MASK = const(0x0F)
_NO_DOOR = const(0xFF)  # the door byte of a door-free kind

OK = const(0)
_UNKNOWN = const(1)
EXPIRED = const(2)
USED = const(3)

STATE_CONSUMED = const(1)
STATE_COMPLETED = const(2)
_STATE_RELEASED = const(3)  # on flash only: a released code has no entry in RAM
STATE_LOADED = const(4)
STATE_LOADING = const(5)

# Tags are HMAC-SHA256 truncated to 128 bits (RFC 2104 allows truncation to half the hash):
# a random wrong code matches one of 600 stored tags with odds of 600 / 2**128, and the table
# takes 16 KB of heap instead of 25 KB.
TAG_SIZE = const(16)
RECORD_SIZE = const(27)
GONE_KEPT = const(16)  # used codes removed by the host that still answer USED (usedtags.bin)

# File-format constants shared with locker/codefile.py. `_X = const()` names are compiled in and
# cannot be imported, so the two modules each carry them; tests/host/test_firmware_builds.py
# checks that they agree.
_SLOT = const(31)  # record + checksum, on flash
_FIELDS = "<BBIIB"  # door, kind, expiry, code_id, item after the tag
_USED_MAGIC = b"LU"
_USED_VERSION = const(2)
_USED_HEAD = "<2sBBI"
_ENTRY = "<IBB"  # code_id, door, state: a journal entry in RAM, and on flash before its checksum
_ENTRY_LEN = const(6)
_ENTRY_SLOT = const(10)
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


def cmp_tag(buf, off, t):
    """Sign of buf[off:off+TAG_SIZE] - t[:TAG_SIZE], without slicing."""
    for j in range(TAG_SIZE):
        c = buf[off + j] - t[j]
        if c:
            return c
    return 0


class CodeStore:
    def __init__(self, key, door_labels, path="codes.bin", used_path="used.bin", capacity=600):
        self._key = key if isinstance(key, hmac256.HmacKey) else hmac256.HmacKey(key)
        self.prefixes = [(lb.encode() if isinstance(lb, str) else bytes(lb)) + b":" for lb in door_labels]
        self.path = path
        self.used_path = used_path
        self.gone = b""  # records of used codes the host removed (at most GONE_KEPT): usedtags.bin
        self.capacity = capacity
        self.revision = 0
        self.buf = bytearray(capacity * RECORD_SIZE)
        self.mv = memoryview(self.buf)
        self.n = 0
        self.slot = bytearray(_SLOT)
        # The used-code journal in RAM: _ENTRY_LEN-byte entries (_ENTRY) sorted by code_id.
        self._jbuf = bytearray(capacity * _ENTRY_LEN)
        self.jn = 0
        self.jslot = bytearray(_ENTRY_SLOT)  # one entry on flash: read, appended
        # Bytes appended to used.bin since it was last written whole; -1: missing, damaged or old,
        # so the next write rewrites it whole.
        self.appended = -1
        self.prune_ok = True  # False while codes.bin is known damaged (see the header)
        # Bytes appended after which complete()/release() compact used.bin (consume(): twice that).
        self.journal_limit = 4096
        # Counts the changes to the table and the journal: a lookup's answer holds while it stays.
        self.changes = 0

    # --- loading ---------------------------------------------------------------------------------

    def load(self):
        """Read codes.bin and used.bin. Never raises on bad data: returns a list of problems."""
        problems = []
        self.n = 0
        self.revision = 0
        self.prune_ok = True
        self.changes += 1
        codefile = lazy.load("codefile")
        try:
            codefile.load(self, problems)
        finally:
            lazy.drop("codefile")
        return problems

    # Replay used.bin into RAM (after a failed write: RAM is read back from flash).
    def _load_journal(self, problems):
        self.changes += 1
        codefile = lazy.load("codefile")
        try:
            codefile.load_journal(self, problems)
        finally:
            lazy.drop("codefile")

    # --- queries ---------------------------------------------------------------------------------

    @property
    def damaged(self):
        """codes.bin was found damaged (records lost) and no full snapshot has replaced it since:
        the status asks the host for one (`snap`)."""
        return not self.prune_ok

    def count(self):
        return self.n

    def _find(self, t):
        buf = self.buf
        t0 = t[0]
        lo = 0
        hi = self.n
        while lo < hi:
            mid = (lo + hi) >> 1
            off = mid * RECORD_SIZE
            c = buf[off] - t0  # decides 255 times in 256 without a call
            if not c:
                c = cmp_tag(buf, off, t)
            if c < 0:
                lo = mid + 1
            elif c > 0:
                hi = mid
            else:
                return mid
        return -1

    def lookup(self, code, now_epoch):
        """(status, door_index, code_id, kind) for a typed code; door/id/kind are None if UNKNOWN.
        kind is the whole kind byte (kind & KIND_MASK the kind). A door-free code's door is the one
        its journal entry names (a loaded delivery, a used return), else None.

        Several doors may share a code: the first usable one wins, else EXPIRED, else USED.
        now_epoch None (the clock was never known): expiry is not checked, except that a staff PIN
        is then EXPIRED, as is one without an expiry (docs/security.md, "Staff PINs")."""
        key = self._key
        buf = self.buf
        mv = self.mv
        status = _UNKNOWN
        found = None
        nd = len(self.prefixes)
        for d in range(nd + 1):
            t = memoryview(key.digest(self.prefixes[d] if d < nd else b"*:", code))[:TAG_SIZE]
            i = self._find(t)
            if i < 0:
                if self.gone and status == _UNKNOWN:
                    g = self._find_gone(t, d if d < nd else _NO_DOOR)
                    if g is not None:
                        status = USED
                        found = g
                continue
            off = i * RECORD_SIZE
            door, kind, expiry, cid = struct.unpack_from("<BBII", buf, off + TAG_SIZE)
            if door != (d if d < nd else _NO_DOOR) or not hmac256.equal(mv[off : off + TAG_SIZE], t):
                continue
            k = self._jfind(cid)
            js = self._jbuf[k * _ENTRY_LEN + 5] if k >= 0 else 0
            if door == _NO_DOOR:
                door = self._jbuf[k * _ENTRY_LEN + 4] if k >= 0 and js != STATE_LOADING else None
            if js == STATE_CONSUMED or js == STATE_COMPLETED:
                st = USED
            elif expiry and now_epoch is not None and now_epoch >= expiry:
                st = EXPIRED
            elif kind & KIND_MASK == KIND_STAFF and (not expiry or now_epoch is None):
                # Fail secure: a staff PIN works only while the locker can tell it has not expired
                # (one without an expiry is from before PINs expired: the host removes those).
                st = EXPIRED
            else:
                return (OK, door, cid, kind)
            if status == _UNKNOWN or (st == EXPIRED and status == USED):
                status = st
                found = (door, cid, kind)
        if found is None:
            return (_UNKNOWN, None, None, None)
        return (status, found[0], found[1], found[2])

    def _find_gone(self, t, prefix_door):
        """(door, code_id, kind) of a removed used code with this tag, typed at this door's prefix
        (NO_DOOR: "*:"), or None. A scan: GONE_KEPT records at most."""
        g = self.gone
        mv = memoryview(g)
        t0 = t[0]
        for off in range(0, len(g), RECORD_SIZE):
            if g[off] != t0 or not hmac256.equal(mv[off : off + TAG_SIZE], t):
                continue
            door, kind, _, cid = struct.unpack_from("<BBII", g, off + TAG_SIZE)
            if (door if not kind & KIND_MASK else _NO_DOOR) == prefix_door:
                return (door, cid, kind)
        return None

    def find_id(self, cid):
        """(door, kind, expiry) of the record with this code_id, or None (a scan: rare calls)."""
        buf = self.buf
        for i in range(self.n):
            off = i * RECORD_SIZE + TAG_SIZE
            if struct.unpack_from("<I", buf, off + 6)[0] == cid:
                return struct.unpack_from("<BBI", buf, off)
        return None

    def item_of(self, cid):
        """The item number of the record with this code_id (0: a parcel, or no such record). A scan
        comparing bytes in place: once per door opened for a pickup."""
        buf = self.buf
        low = cid & 0xFF
        for off in range(_ID_OFF, self.n * RECORD_SIZE, RECORD_SIZE):
            if buf[off] == low and struct.unpack_from("<I", buf, off)[0] == cid:
                return buf[off + 4]
        return 0

    def state_of(self, cid):
        """(journal state, door) of a code id; (0, None) without an entry."""
        k = self._jfind(cid)
        if k < 0:
            return (0, None)
        p = k * _ENTRY_LEN
        return (self._jbuf[p + 5], self._jbuf[p + 4])

    def records(self):
        """Every record as (tag, door_index, kind, expiry, code_id), in tag order."""
        buf = self.buf
        for i in range(self.n):
            off = i * RECORD_SIZE
            door, kind, expiry, cid = struct.unpack_from("<BBII", buf, off + TAG_SIZE)
            yield (bytes(buf[off : off + TAG_SIZE]), door, kind, expiry, cid)

    # --- host updates ----------------------------------------------------------------------------
    # Rare (a console or network command): the code lives in locker.codefile, loaded for the call.

    def replace(self, revision, records):
        """Full snapshot: the store holds exactly these records afterwards (one atomic write)."""
        self.changes += 1
        codefile = lazy.load("codefile")
        try:
            codefile.replace(self, revision, records)
        finally:
            lazy.drop("codefile")

    def adopt(self, revision, count):
        """codes.bin was just replaced whole on flash (a staged snapshot, locker.snapshot): read it
        into RAM and settle the journal as replace() does. Returns a list of problems (then the
        store counts as damaged)."""
        problems = []
        self.changes += 1
        codefile = lazy.load("codefile")
        try:
            codefile.adopt(self, revision, count, problems)
        finally:
            lazy.drop("codefile")
        return problems

    def apply(self, revision, add_records, remove_ids):
        """Delta: remove codes by id, then add records in order, each displacing any record with the
        same code_id or tag; one atomic write."""
        self.changes += 1
        codefile = lazy.load("codefile")
        try:
            codefile.apply(self, revision, add_records, remove_ids)
        finally:
            lazy.drop("codefile")

    # --- the used-code journal ------------------------------------------------------------------

    # Index of code_id's entry, or -(insertion point) - 1.
    def _jfind(self, cid):
        j = self._jbuf
        lo = 0
        hi = self.jn
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

    # The one change to the journal: code_id's state (STATE_RELEASED: no entry), in RAM, then on flash
    # unless replay (load()). With consume/complete/release's rules; False when refused.
    def set_state(self, cid, door, state, replay=False):
        self.changes += 1
        k = self._jfind(cid)
        j = self._jbuf
        n = self.jn
        if k >= 0:
            p = k * _ENTRY_LEN
            old = j[p + 5]
            if old == STATE_COMPLETED and state == _STATE_RELEASED:
                return False  # a recorded pickup is never released
            if not replay:
                if old == STATE_COMPLETED or (state == old and state == STATE_CONSUMED):
                    return True  # done already
                if door is None:
                    door = j[p + 4]
            if state == _STATE_RELEASED:
                mv = memoryview(j)  # overlapping moves are memmoves, in CPython and MicroPython
                mv[p : (n - 1) * _ENTRY_LEN] = mv[p + _ENTRY_LEN : n * _ENTRY_LEN]
                self.jn = n - 1
            else:
                j[p + 4] = door
                j[p + 5] = state
        elif state == _STATE_RELEASED or (state == STATE_COMPLETED and not replay) or door is None:
            return False
        else:
            if n * _ENTRY_LEN == len(j):  # past capacity (consumed codes no longer stored): rare
                j = bytearray(len(j) + _ENTRY_LEN * (8 + self.capacity // 8))
                j[: n * _ENTRY_LEN] = self._jbuf
                self._jbuf = j
            mv = memoryview(j)
            p = (-k - 1) * _ENTRY_LEN
            mv[p + _ENTRY_LEN : (n + 1) * _ENTRY_LEN] = mv[p : n * _ENTRY_LEN]
            struct.pack_into(_ENTRY, j, p, cid, door, state)
            self.jn = n + 1
        if replay:
            return True
        # On flash: appended (littlefs commits it on close), or in a compaction when due. Committed
        # when this returns; after an error RAM is read back from flash.
        slot = self.jslot
        struct.pack_into(_ENTRY, slot, 0, cid, door, state)
        limit = self.journal_limit * (2 if state == STATE_CONSUMED else 1)  # consume: unlock quickly
        try:
            if self.appended < 0 or self.appended + _ENTRY_SLOT > limit:
                self.compact()
            else:
                slot[_ENTRY_LEN:] = store.checksum(slot[:_ENTRY_LEN])
                store.append(self.used_path, slot)
                self.appended += _ENTRY_SLOT
        except BaseException:
            self._load_journal([])
            raise
        return True

    # Rewrite used.bin whole from RAM (tmp + rename), without the recorded pickups whose code is no
    # longer in the store; then drop those from RAM. update: after replace()/apply() committed
    # codes.bin (skipped when nothing would change; an error waits for the next journal write).
    def compact(self, update=False):
        self.changes += 1
        n = self.jn
        j = self._jbuf
        drop = bytearray(n)
        if self.prune_ok:
            for k in range(n):
                st = j[k * _ENTRY_LEN + 5]
                if st == STATE_COMPLETED or (update and st == STATE_LOADED):  # loaded: the host removed it
                    drop[k] = 1
            for i in range(self.n):
                k = self._jfind(struct.unpack_from("<I", self.buf, i * RECORD_SIZE + _ID_OFF)[0])
                if k >= 0:
                    drop[k] = 0
        dropped = sum(drop)
        if update and not dropped and not self.appended:
            return
        try:
            store.write_atomic(self.used_path, self._chunks(drop, n - dropped))
        except OSError:
            if not update:
                raise
            self.appended = -1
            return
        self.appended = 0
        w = 0
        for k in range(n):
            if not drop[k]:
                j[w * _ENTRY_LEN : (w + 1) * _ENTRY_LEN] = j[k * _ENTRY_LEN : (k + 1) * _ENTRY_LEN]
                w += 1
        self.jn = w

    def _chunks(self, drop, count):
        head = struct.pack(_USED_HEAD, _USED_MAGIC, _USED_VERSION, 0, count)
        yield head + store.checksum(head)
        slot = bytearray(_ENTRY_SLOT)
        mv = memoryview(slot)
        for k in range(len(drop)):
            if not drop[k]:
                slot[:_ENTRY_LEN] = self._jbuf[k * _ENTRY_LEN : (k + 1) * _ENTRY_LEN]
                slot[_ENTRY_LEN:] = store.checksum(mv[:_ENTRY_LEN])
                yield slot

    def consume(self, code_id, door_index):
        """Mark a code used; persisted before this returns (then, and only then, unlock the door)."""
        self.set_state(code_id, door_index, STATE_CONSUMED)

    def complete(self, code_id):
        """The pickup was recorded: the door need not be resumed after a reboot. False if unknown."""
        return self.set_state(code_id, None, STATE_COMPLETED)

    def release(self, code_id):
        """Undo consume() for a door that never opened (the app saw the parcel still inside after a
        reboot): the code works again. A completed pickup is never released. False if not pending.
        A consumed delivery goes back to loaded, in the same door; a load in progress is dropped."""
        st, _ = self.state_of(code_id)
        if st == STATE_CONSUMED:
            rec = self.find_id(code_id)
            if rec is not None and rec[1] & KIND_MASK == KIND_DELIVERY:
                return self.set_state(code_id, None, STATE_LOADED)
        return self.set_state(code_id, None, _STATE_RELEASED)

    def loading(self, code_id, door_index):
        """Staff are given this door for the delivery code_id (0: a load by size); on flash before
        the latch moves, so a power cut mid-load is settled after the reboot."""
        self.set_state(code_id, door_index, STATE_LOADING)

    def loaded(self, code_id, door_index):
        """The delivery is in its door: its code works for that door from now on (code_id 0: the
        load-by-size entry is dropped)."""
        if code_id:
            return self.set_state(code_id, door_index, STATE_LOADED)
        return self.set_state(0, None, _STATE_RELEASED)

    def pending(self, state=STATE_CONSUMED):
        """(code_id, door_index) of the entries in this state (consumed: not completed), by code_id."""
        out = []
        for p in range(0, self.jn * _ENTRY_LEN, _ENTRY_LEN):
            if self._jbuf[p + 5] == state:
                out.append(struct.unpack_from("<IB", self._jbuf, p))
        return out

    def used(self):
        """(code_id, door_index, state) of every journal entry, by code_id, for diagnostics and tests."""
        out = []
        for p in range(0, self.jn * _ENTRY_LEN, _ENTRY_LEN):
            out.append(struct.unpack_from(_ENTRY, self._jbuf, p))
        return out
