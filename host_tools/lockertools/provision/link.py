"""The application copied over the serial REPL with mpremote (its own transport, in this process).

Order of an install, so that a board that dies at any point is left repairable and never boots as a
half-configured locker:

1. read back the SHA-256 of every file on the board (hashlib on the board: one `exec`), and list
   its root and app/ (what an earlier install or an update left);
2. if anything differs: remove the marker and `main.py` first (without main.py, MicroPython starts
   its REPL and nothing else: no locker), then what does not belong to the layout (an earlier flat
   install's locker/ and hal/ at the root, update state such as app.new/ or app.swap, files under
   app/ the manifest does not list: `Staged.stale`);
3. copy every file that is missing or differs (main.py last of all, as main.py.part);
4. read every hash back again and compare with the manifest;
5. only then rename main.py.part to main.py and write the marker.

A second run finds what the first left, copies only what is missing or wrong, and finishes the job.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lockertools.maint.bundle import APP_DIR
from lockertools.provision import ProvisionError
from lockertools.provision.stage import ENTRY, INITIAL_ONLY, MARKER, Staged

CHUNK = 2048  # bytes per write exec (`mpremote cp` uses 256; raw-paste flow control paces both)
PART = ENTRY + ".part"

_HASH_FN = """import hashlib,binascii
def _h(p):
 try:
  f=open(p,'rb')
 except OSError:
  return '-'
 h=hashlib.sha256();b=bytearray(512);m=memoryview(b)
 while 1:
  n=f.readinto(b)
  if not n:
   break
  h.update(m[:n])
 f.close()
 return binascii.hexlify(h.digest()).decode()
"""

# Lists the board's root (name, folder?) and every file under app/, as "D name" / "F name" / "A path".
_LIST_FN = """import os
def _ls(d):
 try:
  return list(os.ilistdir(d)) if d else list(os.ilistdir())
 except OSError:
  return []
def _app(d):
 for e in _ls(d):
  p=d+'/'+e[0]
  if e[1]==0x4000:
   _app(p)
  else:
   print('A',p)
for e in _ls(''):
 print('D' if e[1]==0x4000 else 'F',e[0])
_app('app')
"""

# Removes files and folders (whole), each path quietly if it is not there.
_RM_FN = """import os
def _rm(p):
 try:
  st=os.stat(p)
 except OSError:
  return
 if st[0]&0x4000:
  for n in [e[0] for e in os.ilistdir(p)]:
   _rm(p+'/'+n)
  os.rmdir(p)
 else:
  os.remove(p)
"""

# The romfs partition (segment 0 of vfs.rom_ioctl), as the image offers it: a memoryview over the
# mapped flash (the ESP32's), else None (no vfs.rom_ioctl, no segment, or a block device, unused here).
_ROM_FN = """import vfs,hashlib,binascii
def _seg():
 if not hasattr(vfs,'rom_ioctl') or vfs.rom_ioctl(1)<1:
  return None
 d=vfs.rom_ioctl(2,0)
 return None if isinstance(d,int) or hasattr(d,'ioctl') else d
"""
ROM = "/rom"  # where MicroPython mounts the romfs partition (firmware/boot.py finds the application there)
ROM_CHUNK = 2048  # image bytes per write exec, base64 on the wire

Progress = Callable[[str, int], None]  # (file being written, bytes of it just sent)


class _Counting:
    """The serial port, counting what goes through it."""

    def __init__(self, port: Any) -> None:
        self._port = port
        self.sent = 0
        self.received = 0

    def write(self, data: bytes) -> int | None:
        self.sent += len(data)
        n: int | None = self._port.write(data)
        return n

    def read(self, size: int = 1) -> bytes:
        data: bytes = self._port.read(size)
        self.received += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)


@dataclass
class InstallResult:
    copied: list[str]
    bytes_payload: int  # file bytes copied
    bytes_sent: int  # everything written to the serial port (REPL protocol included)
    bytes_received: int
    already: bool  # nothing to do: the board held this install, verified
    removed: list[str] = field(default_factory=list)  # stale files and folders removed (flat layout, updates)


def _port_problem(port: str) -> str | None:
    if not os.path.exists(port):
        return f"{port} does not exist: plug the board in, check `ls /dev/ttyUSB* /dev/ttyACM*` and the cable"
    try:
        mode = os.stat(port).st_mode
    except OSError as exc:
        return f"{port}: {exc.strerror}"
    if not stat.S_ISCHR(mode):
        return f"{port} is not a serial device"
    if not os.access(port, os.R_OK | os.W_OK):
        return f"no permission on {port}: add yourself to the `dialout` group and log in again"
    return None


def check_port(port: str) -> None:
    """The port exists, is a serial device we may use, and no other program holds it."""
    problem = _port_problem(port)
    if problem:
        raise ProvisionError("port", problem)
    import serial  # type: ignore[import-untyped,unused-ignore]

    try:
        serial.Serial(port, exclusive=True).close()
    except (serial.SerialException, OSError) as exc:
        busy = "busy" in str(exc).lower() or "lock" in str(exc).lower() or getattr(exc, "errno", None) == 16
        what = "is busy" if busy else f"cannot be opened ({exc})"
        raise ProvisionError(
            "port",
            f"{port} {what}: close any serial console, mpremote or esptool using it, then run the same command again",
        ) from None


class BoardLink:
    """A raw-REPL session with the board (mpremote's SerialTransport), counting the bytes."""

    def __init__(self, port: str, *, baud: int = 115200) -> None:
        problem = _port_problem(port)
        if problem:
            raise ProvisionError("port", problem)
        from mpremote.transport import TransportError  # type: ignore[import-untyped,unused-ignore]
        from mpremote.transport_serial import SerialTransport  # type: ignore[import-untyped,unused-ignore]

        self.port = port
        try:
            self.t = SerialTransport(port, baudrate=baud, exclusive=True)
        except TransportError:
            raise ProvisionError(
                "port",
                f"{port} is busy or cannot be opened: close any serial console, mpremote or esptool using it, "
                "then run the same command again",
            ) from None
        self.counter = _Counting(self.t.serial)
        self.t.serial = self.counter
        try:
            self.t.enter_raw_repl(soft_reset=False)
        except Exception as exc:  # noqa: BLE001 - mpremote raises plain Exception/TransportError here
            self.close()
            raise ProvisionError(
                "port",
                f"no MicroPython REPL on {port} ({type(exc).__name__}): is MicroPython on it (flash it with "
                "--image), is another program using the port, is the board powered? A production board "
                "(--production) ignores Ctrl-C while it runs: open its REPL with `lockerctl repl LOCKER --port "
                f"{port}` (until it resets), or let provisioning re-flash it (without --no-firmware)",
            ) from None

    def close(self) -> None:
        try:
            if self.t.in_raw_repl:
                self.t.exit_raw_repl()
        except Exception:  # noqa: BLE001 - the board may be gone; closing must not fail
            pass
        try:
            self.t.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> BoardLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exec(self, code: str) -> bytes:
        out: bytes = self.t.exec(code)
        return out

    def hashes(self, paths: list[str]) -> dict[str, str | None]:
        """SHA-256 (hex) of each path on the board, None where there is no such file."""
        code = _HASH_FN + f"for p in {paths!r}:\n print(p,_h(p))\n"
        out = self.exec(code).decode("utf-8", "replace")
        result: dict[str, str | None] = {}
        for line in out.splitlines():
            path, _, digest = line.strip().rpartition(" ")
            if path:
                result[path] = None if digest == "-" else digest
        missing = [p for p in paths if p not in result]
        if missing:
            raise ProvisionError("verify", f"the board did not report {len(missing)} file(s), e.g. {missing[0]}")
        return result

    def mkdirs(self, dirs: list[str]) -> None:
        if dirs:
            self.exec(f"import os\nfor d in {dirs!r}:\n try:\n  os.mkdir(d)\n except OSError:\n  pass\n")

    def remove(self, paths: list[str]) -> None:
        if paths:
            self.exec(f"import os\nfor p in {paths!r}:\n try:\n  os.remove(p)\n except OSError:\n  pass\n")

    def write(self, path: str, data: bytes, progress: Progress | None = None) -> None:
        last = 0

        def cb(written: int, total: int) -> None:
            nonlocal last
            if progress is not None:
                progress(path, written - last)
            last = written

        self.t.fs_writefile(path, data, chunk_size=CHUNK, progress_callback=cb if progress else None)

    def listing(self) -> tuple[dict[str, bool], list[str]]:
        """The board's root (name -> is a folder) and every file under app/ (board paths)."""
        out = self.exec(_LIST_FN).decode("utf-8", "replace")
        root: dict[str, bool] = {}
        app: list[str] = []
        for line in out.splitlines():
            kind, _, name = line.rstrip("\r").partition(" ")
            if kind in ("D", "F") and name:
                root[name] = kind == "D"
            elif kind == "A" and name:
                app.append(name)
        return root, app

    def remove_trees(self, paths: list[str]) -> None:
        """Remove files and whole folders."""
        if paths:
            self.exec(_RM_FN + f"for p in {paths!r}:\n _rm(p)\n")

    def rename(self, old: str, new: str) -> None:
        self.exec(f"import os\nos.rename({old!r},{new!r})\n")

    def read(self, path: str) -> bytes | None:
        from mpremote.transport import TransportError  # type: ignore[import-untyped,unused-ignore]

        try:
            data: bytes = self.t.fs_readfile(path)
            return bytes(data)
        except (TransportError, OSError):
            return None

    def romfs_size(self) -> int:
        """The romfs partition's size in bytes; 0 when the image has none (or none this can write)."""
        out = self.exec(_ROM_FN + "d=_seg()\nprint(len(d) if d is not None else 0)\n").decode().strip()
        return int(out.splitlines()[-1]) if out else 0

    def romfs_hash(self, n: int) -> str:
        """SHA-256 (hex) of the partition's first `n` bytes, read in place."""
        code = _ROM_FN + f"print(binascii.hexlify(hashlib.sha256(memoryview(_seg())[:{n}]).digest()).decode())\n"
        return self.exec(code).decode().strip().splitlines()[-1]

    def romfs_write(self, image: bytes, progress: Progress | None = None) -> None:
        """Write `image` to the partition as `mpremote romfs deploy` does (vfs.rom_ioctl: 3 erases
        what the image needs, 4 writes, 5 completes), then mount it at /rom, where it is checked."""
        from binascii import b2a_base64

        n = len(image)
        self.exec(
            "import vfs\ntry:\n vfs.umount('/rom')\nexcept OSError:\n pass\n"
            f"b=vfs.rom_ioctl(6,0)\nn={n}\n"
            "if 0<b<len(vfs.rom_ioctl(2,0)):\n"
            " o=0\n while o<n:\n  k=min(n-o,32768)\n  k=(k+b-1)//b*b\n"
            "  r=vfs.rom_ioctl(3,0,o,k)\n  assert r>=0,r\n  o+=k\n"
            "else:\n r=vfs.rom_ioctl(3,0,n)\n assert r>=0,r\n"
        )
        for off in range(0, n, ROM_CHUNK):
            chunk = image[off : off + ROM_CHUNK]
            data = b2a_base64(chunk, newline=False).decode()
            self.exec(
                "import vfs\nfrom binascii import a2b_base64\n"
                f"r=vfs.rom_ioctl(4,0,{off},a2b_base64({data!r}))\nassert r>=0,r\n"
            )
            if progress is not None:
                progress("romfs", len(chunk))
        self.exec("import vfs\nr=vfs.rom_ioctl(5,0)\nassert r>=0,r\nvfs.mount(vfs.VfsRom(vfs.rom_ioctl(2,0)),'/rom')\n")

    def reset(self) -> None:
        """Hard-reset the board into its application (what `mpremote reset` does)."""
        self.t.exec_raw_no_follow("import machine\nmachine.reset()\n")


def verify(link: BoardLink, staged: Staged) -> list[str]:
    """What on the board differs from `staged` (every file's hash read back, the marker too): [] if nothing."""
    on_board = link.hashes([*staged.files, MARKER])
    bad = [
        rel
        for rel, digest in staged.files.items()
        if on_board.get(rel) != digest and not (rel in INITIAL_ONLY and on_board.get(rel))
    ]
    if on_board.get(MARKER) != _sha(staged.marker):
        bad.append(MARKER)
    return bad


def install_romfs(link: BoardLink, staged: Staged, image: bytes, progress: Progress | None = None) -> bool:
    """The application (`image`: staged app/ as ROMFS) in the romfs partition, before `install` puts
    the rest on the filesystem. Written unless the partition holds this image already, main.py and
    the marker removed first (the board is no locker until `install` writes them again); then every
    application file is read back through /rom and checked against the manifest. True if written."""
    digest = _sha(image)
    written = False
    try:
        if link.romfs_hash(len(image)) != digest:
            link.remove([MARKER, ENTRY, PART])
            link.romfs_write(image, progress)
            written = True
        else:  # mounted at start-up; not if an earlier run's write was cut short in this REPL
            link.exec("import vfs\ntry:\n vfs.mount(vfs.VfsRom(vfs.rom_ioctl(2,0)),'/rom')\nexcept OSError:\n pass\n")
        same = link.romfs_hash(len(image)) == digest
    except Exception as exc:  # noqa: BLE001 - mpremote/pyserial raise many kinds when the board goes away
        raise ProvisionError(
            "install",
            f"writing the romfs partition failed ({type(exc).__name__}): the board will not start as a locker "
            "(main.py goes last). Check the USB cable and power, then run the same command again",
        ) from None
    if not same:
        raise ProvisionError("verify", "the romfs partition does not read back as written: run the same command again")
    app = {rel: d for rel, d in staged.files.items() if rel.startswith(APP_DIR + "/")}
    on_rom = link.hashes([ROM + rel[len(APP_DIR) :] for rel in app])
    bad = [rel for rel, d in app.items() if on_rom.get(ROM + rel[len(APP_DIR) :]) != d]
    if bad:
        raise ProvisionError(
            "verify",
            f"{len(bad)} application file(s) read back differently through {ROM} (e.g. {bad[0]}): "
            "run the same command again",
        )
    return written


def install(link: BoardLink, staged: Staged, progress: Progress | None = None) -> InstallResult:
    """Bring the board's files to `staged` (see the module's docstring for the order)."""
    start_sent, start_recv = link.counter.sent, link.counter.received
    paths = [*staged.files, MARKER, PART]
    try:
        on_board = link.hashes(paths)
        wanted = dict(staged.files)
        differs = [
            rel
            for rel, digest in wanted.items()
            if on_board.get(rel) != digest and not (rel in INITIAL_ONLY and on_board.get(rel))
        ]
        marker_ok = on_board.get(MARKER) == _sha(staged.marker)
        stale = staged.stale(*link.listing())
        if not differs and marker_ok and not stale:
            return InstallResult([], 0, link.counter.sent - start_sent, link.counter.received - start_recv, True)
        # From here until the marker, the board is not a locker: no main.py, no marker.
        link.remove([MARKER, ENTRY, PART])
        link.remove_trees(stale)  # before the copy: an old application's room is the new one's
        link.mkdirs(staged.dirs())
        copied: list[str] = []
        payload = 0
        body = [rel for rel in differs if rel != ENTRY]
        for rel in body:
            data = staged.data(rel)
            link.write(rel, data, progress)
            copied.append(rel)
            payload += len(data)
        entry = staged.data(ENTRY)
        link.write(PART, entry, progress)
        payload += len(entry)
        copied.append(ENTRY)
        check = link.hashes([*wanted, PART])
        bad = [
            rel
            for rel, digest in wanted.items()
            if rel != ENTRY and check.get(rel) != digest and not (rel in INITIAL_ONLY and check.get(rel))
        ]
        if check.get(PART) != wanted[ENTRY]:
            bad.append(ENTRY)
        if bad:
            raise ProvisionError(
                "verify",
                f"{len(bad)} file(s) differ on the board after the copy (e.g. {bad[0]}): the flash may be full or "
                "failing; run the same command again, and if it fails again, erase the board (--image with --erase)",
            )
        link.rename(PART, ENTRY)
        link.write(MARKER, staged.marker)
        final = link.hashes([ENTRY, MARKER])
        if final.get(ENTRY) != wanted[ENTRY] or final.get(MARKER) != _sha(staged.marker):
            raise ProvisionError("verify", "main.py or the install marker did not verify: run the same command again")
        sent, received = link.counter.sent - start_sent, link.counter.received - start_recv
        return InstallResult(copied, payload, sent, received, False, stale)
    except ProvisionError:
        raise
    except Exception as exc:  # noqa: BLE001 - mpremote/pyserial raise many kinds when the board goes away
        from mpremote.transport import TransportExecError  # type: ignore[import-untyped,unused-ignore]

        if isinstance(exc, TransportExecError):  # the board answered, with an error
            last = (exc.error_output or "").strip().splitlines()[-1:] or ["?"]
            full = re.search(r"ENOSPC|OSError: \[?(Errno )?28\b", last[0]) is not None
            raise ProvisionError(
                "install",
                f"the board refused a write ({last[0][:120]}). "
                + (
                    "Its filesystem is full: erase it (--image ... --erase) and run again"
                    if full
                    else "Run the same command again; if it fails again, erase the board (--image ... --erase)"
                ),
            ) from None
        raise ProvisionError(
            "install",
            f"the board stopped answering during the copy ({type(exc).__name__}). It will not start as a locker: "
            "main.py is written only after every file is verified. Check the USB cable and power, then run the "
            "same command again: it copies only what is missing",
        ) from None


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
