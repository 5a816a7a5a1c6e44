# Application updates, the locker's side (docs/maintenance.md, "Updates"). Imported on the first
# `app.*` command (locker.maint); nothing here touches app/ (the running application).
#
# app.begin {version, count, size, sig?, files}  starts a staging in app.new/ (a previous staging, the
#     application before the running one and a rolled-back one go), with the first files of the manifest;
# app.files {files}  the manifest's next files (at most 16 per message: no message is large on the heap);
# app.chunk {path, off, data}  file data (base64), appended in order; a re-sent chunk is harmless;
# app.commit {k?, ok_s?, wdt?, reboot?}  checks the manifest's authentication and every file's size and
#     SHA-256, writes app.new/app.json, then app.swap LAST; boot.py swaps at the next boot (2 s later);
# app.status, app.abort.
#
# The manifest is kept on flash as its own text, app.new/app.lst: "app|<version>\n", then
# "<path>|<size>|<sha256>\n" per file, in order. It is authenticated twice: it arrives in signed
# commands (HMAC with the locker key, like every command), and `mac` = HMAC-SHA256(locker key,
# SHA-256(that text)) is computed when it is complete, checked against the host's `sig` when sent, kept
# in app.new/app.mac and checked again at commit from what is on flash.
import os
from binascii import a2b_base64, hexlify

from micropython import const

_NEW = const("app.new")
_LST = const("app.new/app.lst")
_HDR = const("app.new/app.hdr")
_MAC = const("app.new/app.mac")
_MAX_FILES = const(128)
_PER_MSG = const(16)
_MAX_FILE = const(262144)
_MAX_CHUNK = const(4096)
_MARGIN = const(16384)  # free flash kept beyond the staged application
_REBOOT_MS = const(2000)  # after app.commit: the reply goes out first


def run(rt, op, args, now_ms):
    if op == "app.status":
        return status()
    if op == "app.begin":
        return begin(rt, args)
    if op == "app.files":
        return add_files(rt, args)
    if op == "app.chunk":
        return chunk(args)
    if op == "app.commit":
        return commit(rt, args)
    return abort()


def _is(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _size(p):
    try:
        return os.stat(p)[6]
    except OSError:
        return -1


def _rm(p):
    try:
        st = os.stat(p)
    except OSError:
        return
    if st[0] & 0x4000:
        for name in os.listdir(p):
            _rm(p + "/" + name)
        os.rmdir(p)
    else:
        os.remove(p)


def _read_json(p):
    import json

    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(p, obj):
    import json

    with open(p + ".tmp", "w") as f:
        json.dump(obj, f)
    os.rename(p + ".tmp", p)


def _busy():
    if _is("app.swap"):
        return {"ok": False, "error": "swap_pending"}
    if _is("app.trial"):
        return {"ok": False, "error": "on_trial"}
    return None


def _u(v, hi):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= hi


def _path_ok(p):
    """A file under app.new/: relative, at most 4 levels, each name of ASCII letters, digits and
    _ - . (never "." or ".."), and not one of the staging's own files."""
    if not isinstance(p, str) or not 0 < len(p) <= 64 or p[0] == "/" or p.count("/") > 3:
        return False
    for part in p.split("/"):
        if not part or part == "." or part == "..":
            return False
        for c in part:
            # ASCII only: str.isalpha() is True for letters of every script on CPython
            if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in "_-."):
                return False
    return p not in ("app.json", "app.lst", "app.hdr", "app.mac", "app.json.tmp", "app.hdr.tmp")


def _sha_ok(sha):
    """64 hex digits (the case is folded when the line is written)."""
    if not isinstance(sha, str) or len(sha) != 64:
        return False
    for c in sha:
        if not ("0" <= c <= "9" or "a" <= c <= "f" or "A" <= c <= "F"):
            return False
    return True


def _version_ok(v):
    """1-16 printable ASCII characters, no "|": it is the first line of app.lst."""
    if not isinstance(v, str) or not 0 < len(v) <= 16:
        return False
    for c in v:
        if not " " <= c <= "~" or c == "|":
            return False
    return True


def _lines():
    """The staged manifest's file lines as (path, size, sha256), streamed from app.lst. Every line is
    checked again as it is read: a line that is not a safe path, a size and a hash (a manifest changed
    on flash) raises ValueError, so no caller ever acts on it."""
    with open(_LST) as f:
        f.readline()  # app|<version>
        for line in f:
            parts = line.rstrip("\n").split("|")
            if len(parts) != 3 or not _path_ok(parts[0]) or not parts[1].isdigit() or not _sha_ok(parts[2]):
                raise ValueError("app.lst: bad line")
            size = int(parts[1])
            if size > _MAX_FILE:
                raise ValueError("app.lst: bad line")
            yield parts[0], size, parts[2]


def _lst_version():
    """The version on app.lst's first line (authenticated with the rest of it), or None."""
    with open(_LST) as f:
        head = f.readline()
    v = head[4:].rstrip("\n") if head.startswith("app|") else None
    return v if _version_ok(v) else None


def _entry(path):
    for e in _lines():
        if e[0] == path:
            return e
    return None


def _staged_count():
    n = 0
    for _ in _lines():
        n += 1
    return n


def _digest():
    import hashlib

    h = hashlib.sha256()
    buf = bytearray(256)
    mv = memoryview(buf)
    with open(_LST, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return h.digest()
            h.update(mv[:n])


def _mac(rt):
    from locker.hmac256 import HmacKey

    return hexlify(HmacKey(rt.key).digest(_digest())).decode()


def begin(rt, args):
    busy = _busy()
    if busy is not None:
        return busy
    version, count, size = args.get("version"), args.get("count"), args.get("size")
    if not _version_ok(version):
        raise ValueError("version")
    if not _u(count, _MAX_FILES) or not count or not _u(size, _MAX_FILES * _MAX_FILE):
        raise ValueError("count/size")
    sig = args.get("sig")
    if sig is not None and not (isinstance(sig, str) and len(sig) == 64):
        raise ValueError("sig")
    # What a new update replaces: a staging in progress, the application before the running one
    # (kept only until the running one was proven healthy), a rolled-back one.
    for d in (_NEW, "app.old", "app.bad"):
        _rm(d)
    try:
        st = os.statvfs(".")
        free = st[1] * st[4]
    except (OSError, AttributeError):
        free = None
    if free is not None and free < size + _MARGIN:
        return {"ok": False, "error": "no_space", "free": free, "need": size}
    os.mkdir(_NEW)
    with open(_LST, "w") as f:
        f.write("app|%s\n" % version)
    _write_json(_HDR, {"v": version, "count": count, "size": size, "sig": sig})
    r = add_files(rt, args)
    if r["ok"]:
        r["version"] = version  # (not "v": a reply's v is the protocol's version)
    return r


def add_files(rt, args):
    hdr = _read_json(_HDR)
    if hdr is None:
        return {"ok": False, "error": "not_staged"}
    files = args.get("files")
    if not isinstance(files, list) or len(files) > _PER_MSG:
        raise ValueError("files: a list of at most %d" % _PER_MSG)
    have = _staged_count()
    if have + len(files) > hdr["count"]:
        raise ValueError("files: more than count")
    for i in range(len(files)):
        f = files[i]
        if not isinstance(f, dict):
            raise ValueError("files: {path, size, sha256}")
        p, size, sha = f.get("path"), f.get("size"), f.get("sha256")
        if not _path_ok(p) or not _u(size, _MAX_FILE) or not _sha_ok(sha):
            raise ValueError("file %r" % (p,))
        if _entry(p) is not None or any(files[j]["path"] == p for j in range(i)):
            raise ValueError("path %r twice" % p)
    with open(_LST, "a") as out:
        for f in files:
            out.write("%s|%d|%s\n" % (f["path"], f["size"], f["sha256"].lower()))
    have += len(files)
    if have < hdr["count"]:
        return {"ok": True, "files": have}
    # The manifest is complete: authenticate it.
    total = 0
    for e in _lines():
        total += e[1]
    mac = _mac(rt)
    sig = hdr.get("sig")
    if total != hdr["size"] or (sig is not None and not _equal_hex(sig, mac)):
        _rm(_NEW)
        return {"ok": False, "error": "bad_signature" if total == hdr["size"] else "bad_size"}
    with open(_MAC, "w") as f:
        f.write(mac)
    return {"ok": True, "files": have, "need": total}


def _equal_hex(a, b):
    from locker.hmac256 import equal

    return equal(a.lower().encode(), b.encode())


def _mkdirs(path):
    i = path.find("/")
    while i >= 0:
        d = path[:i]
        if not _is(d):
            os.mkdir(d)
        i = path.find("/", i + 1)


def chunk(args):
    path, off, data = args.get("path"), args.get("off"), args.get("data")
    if not _is(_MAC):
        return {"ok": False, "error": "not_staged"}
    # Checked here too, not only in the manifest: this path is joined to app.new/ and written.
    e = _entry(path) if _path_ok(path) else None
    if e is None:
        return {"ok": False, "error": "unknown_path"}
    if not _u(off, _MAX_FILE) or not isinstance(data, str):
        raise ValueError("off/data")
    raw = a2b_base64(data)
    if len(raw) > _MAX_CHUNK or off + len(raw) > e[1]:
        raise ValueError("chunk beyond the file")
    p = _NEW + "/" + path
    have = _size(p)
    if have < 0:
        _mkdirs(p)
        have = 0
    if off > have:
        return {"ok": False, "error": "offset", "have": have}
    if off + len(raw) > have:  # a re-sent chunk: only what is not on flash yet is written
        with open(p, "ab") as out:
            out.write(memoryview(raw)[have - off :])
        have = off + len(raw)
    if have == e[1] and _sha(p) != e[2]:
        os.remove(p)
        return {"ok": False, "error": "hash", "path": path}
    return {"ok": True, "have": have}


def _sha(path):
    import hashlib

    h = hashlib.sha256()
    buf = bytearray(512)
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    return hexlify(h.digest()).decode()


def _check(rt):
    """None when app.new holds exactly the authenticated manifest's files, else the error reply."""
    try:
        with open(_MAC) as f:
            mac = f.read()
    except OSError:
        return {"ok": False, "error": "not_staged"}
    if not _equal_hex(mac, _mac(rt)):
        return {"ok": False, "error": "bad_signature"}
    for p, size, sha in _lines():
        have = _size(_NEW + "/" + p)
        if have < 0 and size == 0:  # an empty file takes no chunk
            _mkdirs(_NEW + "/" + p)
            open(_NEW + "/" + p, "wb").close()
            have = 0
        if have != size:
            return {"ok": False, "error": "incomplete", "path": p, "have": max(have, 0)}
        if _sha(_NEW + "/" + p) != sha:
            return {"ok": False, "error": "hash", "path": p}
    return None


def _write_manifest(version):
    """app.new/app.json, the installed application's manifest (the layout provisioning writes too),
    written line by line from app.lst."""
    import json

    with open(_NEW + "/app.json.tmp", "w") as out:
        out.write('{"version": %s, "files": [' % json.dumps(version))
        sep = ""
        for p, size, sha in _lines():
            out.write('%s\n {"path": %s, "size": %d, "sha256": "%s"}' % (sep, json.dumps(p), size, sha))
            sep = ","
        out.write("\n]}\n")
    os.rename(_NEW + "/app.json.tmp", _NEW + "/app.json")


def commit(rt, args):
    busy = _busy()
    if busy is not None:
        return busy
    if not _is("app") and not _is("/rom/app.json"):
        return {"ok": False, "error": "no_app"}  # a flat install: nothing to roll back to
    k, ok_s, wdt, reboot = args.get("k", 3), args.get("ok_s", 60), args.get("wdt", 30000), args.get("reboot", True)
    for v, lo, hi in ((k, 1, 10), (ok_s, 1, 3600), (wdt, 2000, 60000)):
        if not _u(v, hi) or v < lo:
            raise ValueError("k/ok_s/wdt")
    bad = _check(rt)
    if bad is not None:
        return bad
    from locker.maint import app_version

    cur = app_version()
    v = _lst_version()
    if v is None:
        return {"ok": False, "error": "not_staged"}
    _write_manifest(v)
    for name in ("app.lst", "app.hdr", "app.mac"):
        os.remove(_NEW + "/" + name)
    # Written last: from here the loader swaps at the next boot (and finishes a half-done swap).
    _write_json("app.swap", {"v": v, "prev": cur["v"] if cur else None, "k": k, "ok_s": ok_s, "wdt": wdt})
    if reboot is not False:
        _reboot_later(rt)
    return {"ok": True, "version": v, "reboot_ms": _REBOOT_MS if reboot is not False else None}


def abort():
    if _is("app.swap"):
        return {"ok": False, "error": "swap_pending"}
    _rm(_NEW)
    return {"ok": True}


def _reboot_later(rt):
    try:
        import asyncio

        asyncio.create_task(_reboot(rt))
    except Exception:  # no event loop (CPython tests): nothing reboots
        pass


async def _reboot(rt):
    import asyncio

    await asyncio.sleep_ms(_REBOOT_MS)
    if rt.board is not None:
        rt.board.all_off()
    from hal import system

    print("log| update committed: rebooting into the new application")
    system.reset()


def status():
    from locker.maint import app_version

    hdr = _read_json(_HDR)
    staged = None
    if hdr is not None:  # `next`: the first file not complete yet, with what is on flash of it
        nxt = None
        have = need = n = 0
        for p, size, _ in _lines():
            got = max(_size(_NEW + "/" + p), 0)
            have += got
            need += size
            n += 1
            if got < size and nxt is None:
                nxt = [p, got]
        staged = {"v": hdr["v"], "files": n, "count": hdr["count"], "ready": _is(_MAC)}
        staged.update({"have": have, "need": need, "next": nxt})
    return {
        "ok": True,
        "app": app_version(),
        "staged": staged,
        "swap": _is("app.swap"),
        "trial": _read_json("app.trial"),
        "rollback": _read_json("app.rolled") or _read_json("app.rb"),
    }
