"""The application bundle: the /app layout on flash, its signed manifest, built from firmware/."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockertools import FIRMWARE_DIR
from lockertools.maint import MaintError

LOADER_FILES = ("boot.py", "main.py")  # at the root of the board's filesystem, never updated
APP_DIR = "app"
MANIFEST = "app/app.json"
# Update state on the board (boot.py, locker/update.py). Provisioning removes them on a fresh install.
UPDATE_STATE = ("app.new", "app.old", "app.bad", "app.swap", "app.trial", "app.rolled", "app.rb")


def manifest_text(version: str, files: Iterable[dict[str, Any]]) -> bytes:
    """The bytes a manifest's signature covers (firmware locker/update.py `text`, byte for byte)."""
    parts = [f"app|{version}\n"]
    parts += [f"{f['path']}|{int(f['size'])}|{f['sha256']}\n" for f in files]
    return "".join(parts).encode()


def manifest_sig(key: bytes, version: str, files: Iterable[dict[str, Any]]) -> str:
    """HMAC-SHA256(locker key, SHA-256(manifest text)): what app.begin's `sig` carries."""
    import hmac

    digest = hashlib.sha256(manifest_text(version, files)).digest()
    return hmac.new(key, digest, hashlib.sha256).hexdigest()


@dataclass
class AppBundle:
    """What goes on a board: `files` maps board paths (boot.py, main.py, app/...) to their bytes."""

    version: str
    files: dict[str, bytes]
    manifest: dict[str, Any] = field(default_factory=dict)

    def app_files(self) -> list[dict[str, Any]]:
        """The manifest's file list (paths relative to app/)."""
        return list(self.manifest["files"])

    def app_bytes(self, path: str) -> bytes:
        return self.files[f"{APP_DIR}/{path}"]

    @property
    def app_size(self) -> int:
        return sum(int(f["size"]) for f in self.manifest["files"])


def firmware_version(firmware_dir: Path) -> str:
    """The version string in the tree's locker/startup.py (`_VERSION = "..."`), or "0"."""
    import re

    src = (
        (firmware_dir / "locker" / "startup.py").read_text()
        if (firmware_dir / "locker" / "startup.py").exists()
        else ""
    )
    m = re.search(r'^_VERSION = "([^"]+)"', src, re.M)
    return m.group(1) if m else "0"


def build_app(
    arch: str | None = None,
    version: str | None = None,
    firmware_dir: Path = FIRMWARE_DIR,
    mpy_cross: Path | None = None,
) -> AppBundle:
    """Compile a firmware source tree (mpy-cross; `arch` e.g. "xtensawin" for an ESP32, None: bytecode
    for any port, the simulator's) into the board's layout. The default version is the tree's
    _VERSION plus "+" and 8 hex digits of the application's content."""
    from lockertools.build import compile_tree

    kind = "app" if arch is None else f"app-{arch}"
    out = compile_tree(Path(firmware_dir), kind, arch=arch, mpy_cross=mpy_cross)
    files: dict[str, bytes] = {}
    rows: list[dict[str, Any]] = []
    for p in sorted(q for q in out.rglob("*") if q.is_file()):
        rel = p.relative_to(out).as_posix()
        data = p.read_bytes()
        if rel in LOADER_FILES:
            files[rel] = data
            continue
        files[f"{APP_DIR}/{rel}"] = data
        rows.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    if version is None:
        digest = hashlib.sha256(manifest_text("", rows)).hexdigest()[:8]
        version = f"{firmware_version(Path(firmware_dir))}+{digest}"
    if not 0 < len(version) <= 16 or "|" in version or "\n" in version:
        raise MaintError(f"bad version {version!r}: 1-16 characters, no '|'")
    manifest = {"version": version, "files": rows}
    files[MANIFEST] = json.dumps(manifest, indent=1).encode()
    return AppBundle(version, files, manifest)


def install_app(flash_dir: Path, bundle: AppBundle) -> None:
    """Write a bundle into a board's filesystem folder (the simulator's flash folder, or a folder a
    littlefs image is made from): a fresh install, so any update state goes."""
    flash_dir = Path(flash_dir)
    for name in (APP_DIR, *UPDATE_STATE):
        p = flash_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    for rel, data in bundle.files.items():
        dest = flash_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
