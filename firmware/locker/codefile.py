# CodeStore's rarely run parts, imported on demand and dropped again after use (locker.codes): loading
# codes.bin and used.bin (boot) and the host's updates (replace, apply, adopting a staged snapshot).
# The file formats and the rules are described at the top of locker/codes.py; the constants below
# are the same as there.
import struct

from micropython import const

from locker import store
from locker.codes import (
    GONE_KEPT,
    RECORD_SIZE,
    STATE_COMPLETED,
    STATE_CONSUMED,
    STATE_LOADING,
    TAG_SIZE,
    cmp_tag,
)

_MAX_KIND = const(3)  # kinds 1..3 are door-free: door byte 0xFF
_SLOT = const(31)  # record + checksum, on flash
_FIELDS = "<BBIIB"  # door, kind, expiry, code_id, item after the tag
_VERSION = const(2)
_V1_RECORD = const(26)  # version 1: the record without its item byte
_CODES_MAGIC = b"LC"
_CODES_HEAD = "<2sBBII"
_CODES_HEAD_LEN = const(12)
_USED_MAGIC = b"LU"
_USED_VERSION = const(2)
_USED_HEAD_LEN = const(8)
_ENTRY = "<IBB"
_ENTRY_LEN = const(6)
_ENTRY_SLOT = const(10)
_U32 = const(0xFFFFFFFF)
_ID_OFF = const(22)  # code_id within a record


def load(cs, problems):
    _load_codes(cs, problems)
    load_journal(cs, problems)
    _load_gone(cs, problems)


def _load_gone(cs, problems):
    cs.gone = b""
    try:
        raw = store.load(_gone_path(cs))
    except store.Corrupt as exc:  # those used codes count as unknown again: nothing opens
        problems.append(str(exc))
        return
    if raw is not None and len(raw) % RECORD_SIZE and not len(raw) % _V1_RECORD:
        # written before records had an item (GONE_KEPT of either size cannot be mistaken for the other)
        old = raw
        raw = bytearray()
        for off in range(0, len(old), _V1_RECORD):
            raw.extend(old[off : off + _V1_RECORD])
            raw.append(0)
        raw = bytes(raw)
    if raw is not None and (len(raw) % RECORD_SIZE or len(raw) > GONE_KEPT * RECORD_SIZE):
        problems.append("%s: bad length" % _gone_path(cs))
    elif raw is not None:
        cs.gone = raw


def _gone_path(cs):
    """usedtags.bin, beside used.bin."""
    cut = cs.used_path.rfind("/") + 1
    return cs.used_path[:cut] + "usedtags.bin"


def _retire(cs, off):
    """The record at cs.buf[off] leaves the table: kept in usedtags (RAM) if its code was used.
    True when kept."""
    door = _used_door(cs, cs.buf, off)
    if door is None:
        return False
    _keep_gone(cs, cs.mv, off, door)
    return True


def _used_door(cs, buf, off):
    """The door a record's code was used at (consumed or picked up), or None: not used."""
    st, door = cs.state_of(struct.unpack_from("<I", buf, off + _ID_OFF)[0])
    if st != STATE_CONSUMED and st != STATE_COMPLETED:
        return None
    return door


def _keep_gone(cs, src, off, door):
    """src[off:off + RECORD_SIZE] into usedtags, with the door it was used at; the same code id
    takes its old slot, and when full the oldest goes."""
    g = bytearray(cs.gone)  # rare (a host update): a new buffer, exactly as long as its records
    cid = struct.unpack_from("<I", src, off + _ID_OFF)[0]
    at = len(g)
    for k in range(0, len(g), RECORD_SIZE):
        if struct.unpack_from("<I", g, k + _ID_OFF)[0] == cid:
            at = k
            break
    if at == len(g):
        if at == GONE_KEPT * RECORD_SIZE:
            g = g[RECORD_SIZE:]
            at -= RECORD_SIZE
        g.extend(bytes(RECORD_SIZE))
    g[at : at + RECORD_SIZE] = src[off : off + RECORD_SIZE]
    g[at + TAG_SIZE] = door  # a door-free code's door byte becomes the door it was used at
    cs.gone = g


def _save_gone(cs):
    store.save(_gone_path(cs), cs.gone)


def _load_codes(cs, problems):
    try:
        f = open(cs.path, "rb")
    except OSError:
        return
    try:
        _read_codes(cs, f, problems)
    except OSError as exc:
        problems.append("%s: read error %s" % (cs.path, exc))
        cs.revision = 0
        cs.prune_ok = False
    finally:
        f.close()


def _read_codes(cs, f, problems):
    path = cs.path
    head = f.read(_CODES_HEAD_LEN + 4)
    if not head:  # never a cut (tmp + rename): damage; whatever it held may come back
        problems.append("%s: empty" % path)
        cs.prune_ok = False
        return
    count = None
    revision = 0
    if (
        len(head) == _CODES_HEAD_LEN + 4
        and head[:2] == _CODES_MAGIC
        and store.checksum(head[:_CODES_HEAD_LEN]) == head[_CODES_HEAD_LEN:]
    ):
        _, version, _, revision, count = struct.unpack(_CODES_HEAD, head[:_CODES_HEAD_LEN])
        if version != _VERSION and version != 1:
            problems.append("%s: version %d" % (path, version))
            cs.prune_ok = False
            return
    else:
        problems.append("%s: bad header" % path)
        version = _VERSION
    buf = cs.buf
    slot = cs.slot
    size = RECORD_SIZE if version == _VERSION else _V1_RECORD
    if size != RECORD_SIZE:
        slot = memoryview(slot)[: size + 4]
    mv = memoryview(cs.slot)
    full = size + 4
    ndoors = len(cs.prefixes)
    seen = bad = n = 0
    while count is None or seen < count:
        got = f.readinto(slot)
        if not got:
            break
        seen += 1
        if got < full:
            bad += 1
            break
        if store.checksum(mv[:size]) != bytes(mv[size:full]):
            bad += 1
            continue
        off = n * RECORD_SIZE
        if (
            not _valid(slot[TAG_SIZE], slot[TAG_SIZE + 1], ndoors)
            or n >= cs.capacity
            or (n and cmp_tag(buf, off - RECORD_SIZE, slot) >= 0)
        ):
            bad += 1
            continue
        buf[off : off + RECORD_SIZE] = mv[:RECORD_SIZE]
        if size != RECORD_SIZE:
            buf[off + RECORD_SIZE - 1] = 0  # a version-1 record's item: a parcel
        n += 1
    cs.n = n
    lost = bad
    if count is not None and seen < count:
        lost += count - seen
    if count is not None and seen == count and f.read(1):
        problems.append("%s: data after the last record" % path)
    if lost:
        problems.append("%s: lost %d records, kept %d" % (path, lost, n))
    if lost or count is None:
        revision = 0
        cs.prune_ok = False
    cs.revision = revision


# Replay used.bin into RAM. Any problem leaves _appended at -1: the next write rewrites it whole.
def load_journal(cs, problems):
    cs.jn = 0
    cs.appended = -1
    path = cs.used_path
    try:
        f = open(path, "rb")
    except OSError:
        return
    slot = cs.jslot
    try:
        head = f.read(_USED_HEAD_LEN + 4)
        base = -1
        if (
            len(head) == _USED_HEAD_LEN + 4
            and head[:2] == _USED_MAGIC
            and head[2] in (1, _USED_VERSION)
            and store.checksum(head[:_USED_HEAD_LEN]) == head[_USED_HEAD_LEN:]
        ):
            base = struct.unpack_from("<I", head, 4)[0]
        else:  # read the entries anyway: each has its checksum, and one forgotten is a code back
            problems.append("%s: %s" % (path, "bad header" if head else "empty"))
        n = bad = 0
        while True:
            got = f.readinto(slot)
            if got < _ENTRY_SLOT:  # a partial last entry: torn, dropped
                bad += got > 0
                break
            n += 1
            cid, door, state = struct.unpack_from(_ENTRY, slot, 0)
            if store.checksum(slot[:_ENTRY_LEN]) != slot[_ENTRY_LEN:] or not 0 < state <= STATE_LOADING:
                bad += 1  # damaged, or the last entry torn: skipped
            else:
                cs.set_state(cid, door, state, True)
        bad += max(base - n, 0)
        if bad:
            problems.append("%s: lost %d used-code entries" % (path, bad))
        elif base >= 0 and head[2] == _USED_VERSION:
            cs.appended = max(n - base, 0) * _ENTRY_SLOT
    except OSError as exc:
        problems.append("%s: read error %s" % (path, exc))
    finally:
        f.close()


def _valid(door, kind, ndoors):
    """A kind byte 0..127 whose kind is known; a pickup's door in range, a door-free kind's 0xFF."""
    if not 0 <= kind <= 127 or kind & 15 > _MAX_KIND:
        return False
    return 0 <= door < ndoors if not kind & 15 else door == 0xFF


def adopt(cs, revision, count, problems):
    """codes.bin replaced whole by a staged snapshot: into RAM; the journal settled as by replace()."""
    # The old table is still in RAM: its used codes (GONE_KEPT at most) may be gone from the new one.
    used = bytearray(GONE_KEPT * RECORD_SIZE)
    mv = memoryview(used)
    nu = 0
    for i in range(cs.n):
        off = i * RECORD_SIZE
        door = _used_door(cs, cs.buf, off)
        if door is not None and nu < GONE_KEPT:
            used[nu * RECORD_SIZE : (nu + 1) * RECORD_SIZE] = cs.mv[off : off + RECORD_SIZE]
            used[nu * RECORD_SIZE + TAG_SIZE] = door
            nu += 1
    cs.n = 0
    cs.revision = 0
    cs.prune_ok = True
    _load_codes(cs, problems)
    kept = False
    for k in range(0, nu * RECORD_SIZE, RECORD_SIZE):
        if cs.find_id(struct.unpack_from("<I", used, k + _ID_OFF)[0]) is None:
            _keep_gone(cs, mv, k, used[k + TAG_SIZE])
            kept = True
    if kept:
        try:
            _save_gone(cs)
        except OSError as exc:  # kept in RAM until the next reboot
            problems.append("%s: %s" % (_gone_path(cs), exc))
    if not problems and (cs.n != count or cs.revision != revision):
        problems.append("%s: %d records at rev %d, not %d at %d" % (cs.path, cs.n, cs.revision, count, revision))
    if problems:
        cs.revision = 0
        cs.prune_ok = False
        return
    cs.compact(True)


def _check(cs, rec):
    t, door, kind, expiry, cid = rec[:5]
    item = rec[5] if len(rec) > 5 else 0
    if len(t) != TAG_SIZE:
        raise ValueError("tag size")
    if not (isinstance(kind, int) and isinstance(door, int) and _valid(door, kind, len(cs.prefixes))):
        raise ValueError("door index or kind")
    if not (0 <= expiry <= _U32 and 0 <= cid <= _U32):
        raise ValueError("expiry or code_id")
    if not (isinstance(item, int) and 0 <= item <= 255):
        raise ValueError("item")
    return (bytes(t), door, kind, expiry, cid, item)


def _normalize(cs, records):
    """Checked records, each displacing any earlier one with the same code_id or tag; by tag."""
    by_id = {}
    by_tag = {}
    ids = set()  # every id and tag given, for apply(): each displaces a stored record
    tags = set()
    for r in records:
        r = _check(cs, r)
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


def _stream(cs, revision, count, records):
    """Chunks of a codes.bin holding count records from the iterable of RECORD_SIZE-byte records."""
    slot = cs.slot
    mv = memoryview(slot)
    head = struct.pack(_CODES_HEAD, _CODES_MAGIC, _VERSION, 0, revision, count)
    yield head + store.checksum(head)
    for rec in records:
        slot[:RECORD_SIZE] = rec
        slot[RECORD_SIZE:] = store.checksum(mv[:RECORD_SIZE])
        yield slot


def _packed(cs, recs):
    one = bytearray(RECORD_SIZE)
    for r in recs:
        one[:TAG_SIZE] = r[0]
        struct.pack_into(_FIELDS, one, TAG_SIZE, r[1], r[2], r[3], r[4], r[5])
        yield one


def replace(cs, revision, records):
    """Full snapshot: the store holds exactly these records afterwards (one atomic write)."""
    recs, _, _ = _normalize(cs, records)
    if len(recs) > cs.capacity:
        raise ValueError("capacity")
    ids = {r[4] for r in recs}  # the ids kept (a record displaced by another's tag is not)
    retired = False
    for i in range(cs.n):
        off = i * RECORD_SIZE
        if struct.unpack_from("<I", cs.buf, off + _ID_OFF)[0] not in ids:
            retired = _retire(cs, off) or retired
    if retired:
        _save_gone(cs)
    store.write_atomic(cs.path, _stream(cs, revision, len(recs), _packed(cs, recs)))
    off = 0
    for rec in _packed(cs, recs):
        cs.buf[off : off + RECORD_SIZE] = rec
        off += RECORD_SIZE
    cs.n = len(recs)
    cs.revision = revision
    cs.prune_ok = True  # the host's full snapshot: what is not in it is gone
    cs.compact(True)


def apply(cs, revision, add_records, remove_ids):
    """Delta: remove codes by id, then add records in order, each displacing any record with the
    same code_id or tag; one atomic write."""
    adds, add_ids, add_tags = _normalize(cs, add_records)
    gone = set(remove_ids)
    buf = cs.buf
    mv = cs.mv
    n = cs.n
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
    if total > cs.capacity:
        raise ValueError("capacity")
    retired = False
    for i in range(n):
        off = i * RECORD_SIZE
        if not keep[i] and struct.unpack_from("<I", buf, off + _ID_OFF)[0] not in add_ids:
            retired = _retire(cs, off) or retired
    if retired:
        _save_gone(cs)
    store.write_atomic(cs.path, _stream(cs, revision, total, _merged(cs, keep, adds)))
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
        if i >= 0 and cmp_tag(buf, i * RECORD_SIZE, a[0]) > 0:
            buf[k * RECORD_SIZE : (k + 1) * RECORD_SIZE] = mv[i * RECORD_SIZE : (i + 1) * RECORD_SIZE]
            i -= 1
        else:
            one[:TAG_SIZE] = a[0]
            struct.pack_into(_FIELDS, one, TAG_SIZE, a[1], a[2], a[3], a[4], a[5])
            buf[k * RECORD_SIZE : (k + 1) * RECORD_SIZE] = one
            j -= 1
        k -= 1
    cs.n = total
    cs.revision = revision
    cs.compact(True)


def _merged(cs, keep, adds):
    """The kept RAM records and the sorted adds, merged in tag order."""
    buf = cs.buf
    mv = cs.mv
    packed = _packed(cs, adds)
    j = 0
    nxt = next(packed) if adds else None
    for i in range(len(keep)):
        if not keep[i]:
            continue
        off = i * RECORD_SIZE
        while nxt is not None and cmp_tag(buf, off, adds[j][0]) > 0:
            yield nxt
            j += 1
            nxt = next(packed) if j < len(adds) else None
        yield mv[off : off + RECORD_SIZE]
    while nxt is not None:
        yield nxt
        j += 1
        nxt = next(packed) if j < len(adds) else None
