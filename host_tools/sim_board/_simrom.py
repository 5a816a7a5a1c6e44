# A board's romfs partition for the unix port, which has vfs.VfsRom but no vfs.rom_ioctl: a file
# (LOCKER_SIM_ROMFS, as long as the partition) stands for the flash. Two uses:
# - install(): the virtual board's REPL (lockertools.provision.virtual) answers vfs.rom_ioctl as an
#   ESP32 image with a romfs partition does (1: one segment; 2: the segment, a memoryview; 3: erase
#   for writing; 4: write, both through to the file; 5: written; 6: the erase block), so provisioning and
#   `mpremote romfs` deploy to it. `import vfs` then finds this module (sys.modules comes first).
# - mount_rom(): at the locker's start (_launch), the partition mounted at /rom and /rom, /rom/lib put on
#   sys.path, as MicroPython's start-up does on a board before boot.py, when it holds a ROMFS image.
import os
import sys

import vfs as _vfs
from vfs import *  # noqa: F403 - every name of the real module stays there

_MAGIC = b"\xd2\xcd\x31"
_BLOCK = 4096
_path = os.getenv("LOCKER_SIM_ROMFS")
_part = None


def _load():
    global _part
    if _part is None:
        with open(_path, "rb") as f:
            _part = bytearray(f.read())
    return _part


def _put(off, data):
    # Through to the file at once, as flash is written: a power cut keeps what was written.
    _part[off : off + len(data)] = data
    with open(_path, "r+b") as f:
        f.seek(off)
        f.write(data)


def rom_ioctl(op, *args):
    if op == 1:
        return 1
    if args and args[0] != 0:
        return -19  # ENODEV: only segment 0
    part = _load()
    if op == 2:
        return memoryview(part)
    if op == 3:  # (id, length) or (id, offset, length): erased as flash is, to 0xff
        off, n = (0, args[1]) if len(args) == 2 else (args[1], args[2])
        if off < 0 or off + n > len(part) or off % _BLOCK:
            return -22
        end = min(off + (n + _BLOCK - 1) // _BLOCK * _BLOCK, len(part))
        _put(off, b"\xff" * (end - off))
        return 4  # the smallest write
    if op == 4:
        off, data = args[1], args[2]
        if off < 0 or off + len(data) > len(part):
            return -22
        _put(off, data)
        return 0
    if op == 5:
        return 0
    if op == 6:
        return _BLOCK
    return -22


def install():
    sys.modules["vfs"] = sys.modules[__name__]


def mount_rom():
    # Only the image is read (its length follows the magic), not the erased rest of the partition:
    # a board maps it from flash, here it is on the heap, which the caller enlarges by as much.
    with open(_path, "rb") as f:
        head = f.read(8)
        if head[:3] != _MAGIC:
            return  # an erased or never written partition: nothing mounted, as on a board
        n = i = 0
        for i in range(3, len(head)):
            n = n << 7 | head[i] & 0x7F
            if not head[i] & 0x80:
                break
        f.seek(0)
        data = f.read(i + 1 + n)
    try:
        _vfs.mount(_vfs.VfsRom(data), "/rom")
    except Exception:  # noqa: BLE001 - a damaged image is not mounted, as MicroPython's start-up does
        return
    sys.path.insert(1 if sys.path and sys.path[0] == "" else 0, "/rom")
    sys.path.insert(sys.path.index("/rom") + 1, "/rom/lib")
