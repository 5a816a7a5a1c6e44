# Atomic, checksummed files on littlefs.
#
# littlefs commits a file's contents only on close() and makes rename() atomic, so every file is
# written as path + ".tmp", closed, then renamed over path (no remove first: the rename replaces the
# old file in one step). A cut leaves either the old file or the new one, plus perhaps a stray
# ".tmp" that cleanup() removes at boot. An empty or checksum-failing file raises Corrupt.
#
# Framed file: b"LK" | version u8 | payload length u32 | sha256(version..payload)[:4] | payload.
#
# Every file operation goes through open_counted/write_counted/close_counted/_rename/_remove, which
# count the bytes written (flash wear per pickup) and call the fault hook after each step: a test's
# hook raises to simulate a power cut right after the k-th step. locker.snapshot streams a file with
# open_counted/write_counted/close_counted (abandon() on an error).
import hashlib
import os
import struct

from micropython import const

VERSION = const(1)
_HEADER_SIZE = const(11)
_MAGIC = b"LK"
_HEAD = "<2sBI"
_HEAD_LEN = const(7)

_written = [0]
_hook = [None]


class Corrupt(Exception):
    def __init__(self, path, reason):
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self):
        return "%s: %s" % (self.path, self.reason)


def set_fault_hook(hook):
    """hook(op, path) is called after every open/write/close/rename/remove; None removes it."""
    _hook[0] = hook


def bytes_written():
    return _written[0]


def reset_counter():
    _written[0] = 0


def checksum(*parts):
    """First 4 bytes of sha256 over the parts."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()[:4]


# --- the one indirection every file operation goes through ---------------------------------------


def _step(op, path):
    hook = _hook[0]
    if hook is not None:
        hook(op, path)


def open_counted(path, mode):
    f = open(path, mode)
    _step("open", path)
    return f


def write_counted(f, data, path):
    f.write(data)
    _written[0] += len(data)
    _step("write", path)


def close_counted(f, path):
    f.close()
    _step("close", path)


def _rename(src, dst):
    os.rename(src, dst)
    _step("rename", dst)


def _remove(path):
    os.remove(path)
    _step("remove", path)


def abandon(f):
    # After a failure (or a simulated cut): release the handle without counting a step.
    try:
        f.close()
    except Exception:
        pass


# --- public operations -----------------------------------------------------------------------------


def write_atomic(path, data):
    """Replace path with data (bytes-like, or an iterable of bytes-like chunks), via tmp + rename."""
    tmp = path + ".tmp"
    f = open_counted(tmp, "wb")
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            write_counted(f, data, tmp)
        else:
            for chunk in data:
                write_counted(f, chunk, tmp)
    except OSError:
        abandon(f)
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    except Exception:
        abandon(f)
        raise
    close_counted(f, tmp)
    _rename(tmp, path)


def save(path, payload):
    """Write payload in a checksummed frame, atomically."""
    head = struct.pack(_HEAD, _MAGIC, VERSION, len(payload))
    write_atomic(path, (head, checksum(head[2:], payload), payload))


def load(path):
    """The payload of a framed file, None when it does not exist; raises Corrupt when it is bad."""
    try:
        f = open(path, "rb")
    except OSError:
        return None
    try:
        raw = f.read()
    finally:
        f.close()
    if not raw:
        raise Corrupt(path, "empty")
    if len(raw) < _HEADER_SIZE:
        raise Corrupt(path, "truncated")
    magic, version, length = struct.unpack(_HEAD, raw[:_HEAD_LEN])
    if magic != _MAGIC:
        raise Corrupt(path, "bad magic")
    if version != VERSION:
        raise Corrupt(path, "version %d" % version)
    if length != len(raw) - _HEADER_SIZE:
        raise Corrupt(path, "truncated" if length > len(raw) - _HEADER_SIZE else "bad length")
    payload = raw[_HEADER_SIZE:]
    if checksum(raw[2:_HEAD_LEN], payload) != raw[_HEAD_LEN:_HEADER_SIZE]:
        raise Corrupt(path, "checksum")
    return payload


def append(path, data):
    """Append data to path (no tmp: the caller tolerates a partial last write)."""
    f = open_counted(path, "ab")
    try:
        write_counted(f, data, path)
    except Exception:
        abandon(f)
        raise
    close_counted(f, path)


def rename(src, dst):
    _rename(src, dst)


def remove(path):
    """Remove path; a missing file is not an error. Returns True when a file was removed."""
    try:
        _remove(path)
    except OSError:
        return False
    return True


def join(directory, name):
    if not directory or directory == ".":
        return name
    return directory + "/" + name


def cleanup(directory="."):
    """Remove every *.tmp left in directory by a power cut. Returns the names removed."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if name.endswith(".tmp") and remove(join(directory, name)):
            removed.append(name)
    return removed


def size(path):
    """Size of path in bytes, or -1 when it does not exist."""
    try:
        return os.stat(path)[6]
    except OSError:
        return -1
