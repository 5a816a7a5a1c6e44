"""What goes on a board's filesystem, built in a private folder, with its manifest.

The folder holds exactly the board's files at their on-board paths, in the layout application updates
need (docs/maintenance.md): the loader `boot.py` and `main.py` as source at the root (MicroPython
looks them up by name), the application compiled with mpy-cross under `app/` with its manifest
`app/app.json` (`lockertools.maint.bundle.build_app` / `install_app`: provisioning and `lockerctl update
push` install the same bytes), board.json, config.json, and the secrets (locker.key, net.json with
the broker password and Wi-Fi). The folder and every file in it are private (0700/0600);
`Staged.close()` deletes it.

The manifest is the SHA-256 of every file. `main.py` is the one file that makes the board a locker:
installers write it after every other file is on the board and verified, and the marker
(`MARKER`, which names the application's hash and holds no secret) after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockertools import flash
from lockertools.build import BuildError, MpyCrossMissing, mpy_cross_path, romfs_image
from lockertools.maint.bundle import APP_DIR, LOADER_FILES, MANIFEST, UPDATE_STATE, AppBundle, build_app, install_app

MARKER = "provisioned.json"
ENTRY = "main.py"
# Written once, when the board has none: the locker keeps its own afterwards (the code store
# follows the host from revision 0; the outbox holds events not yet delivered).
INITIAL_ONLY = frozenset({"codes.bin", "used.bin"})
SECRET_FILES = frozenset({"locker.key", "net.json"})
ESP32_ARCH = "xtensawin"  # mpy-cross -march for the ESP32 (bytecode .mpy run on any port)


@dataclass(frozen=True)
class Secrets:
    """The locker's secrets. Never printed: the repr shows lengths only."""

    key: bytes
    broker_password: str | None = None
    wifi_password: str | None = None

    def __repr__(self) -> str:
        return (
            f"Secrets(key=<{len(self.key)} bytes>, broker_password=<{'set' if self.broker_password else 'none'}>, "
            f"wifi_password=<{'set' if self.wifi_password else 'none'}>)"
        )

    def texts(self) -> list[str]:
        """Every form a secret could take in text (for redaction and for tests that look for leaks)."""
        out = [self.key.hex(), self.key.hex().upper()]
        out += [s for s in (self.broker_password, self.wifi_password) if s]
        return out


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    ca_file: Path | None = None
    server_hostname: str | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}{' (TLS)' if self.tls else ''}"


@dataclass
class Staged:
    """The board's files in a private folder: `files` maps on-board paths to SHA-256 (hex)."""

    root: Path
    files: dict[str, str]
    sizes: dict[str, int]
    app_hash: str
    marker: bytes
    _owned: bool = field(default=True, repr=False)
    app_version: str = ""  # app/app.json's "version" ("" when the folder has no manifest)
    app_in_romfs: bool = False  # `without_app()`: the application goes to the romfs partition
    romfs_packages: frozenset[str] = frozenset()  # its packages then (an old flat install's go too)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def data(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def dirs(self) -> list[str]:
        """Every folder the files need, parents first."""
        out: set[str] = set()
        for rel in self.files:
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                out.add("/".join(parts[:i]))
        return sorted(out, key=lambda d: (d.count("/"), d))

    def stale(self, root_entries: dict[str, bool], app_files: list[str]) -> list[str]:
        """What on a board does not belong to this install's layout, to be removed (folders whole):
        an earlier flat install's application (root folders named as the application's packages,
        root .mpy modules), update state (app.new/, app.old/, app.swap ...) and files under app/ that
        this application does not have. `root_entries`: name -> is a folder, at the board's root;
        `app_files`: every file under app/ (board paths)."""
        packages = {rel.split("/")[1] for rel in self.files if rel.startswith(APP_DIR + "/") and rel.count("/") > 1}
        packages |= self.romfs_packages
        out = []
        for name, is_dir in sorted(root_entries.items()):
            if is_dir:
                gone = name in packages or name in UPDATE_STATE or (self.app_in_romfs and name == APP_DIR)
            else:  # a root .mpy is an old flat install's module; data files are .json, .bin, .key ...
                gone = name.endswith(".mpy") or name in UPDATE_STATE or name == APP_DIR
            if gone:
                out.append(name)
        if not self.app_in_romfs:  # else app/ goes whole
            out += sorted(rel for rel in app_files if rel not in self.files)
        return out

    def romfs_image(self) -> bytes:
        """The staged application (app/, its manifest too) as a ROMFS image: its root is /rom."""
        return romfs_image(self.root / APP_DIR)

    def without_app(self) -> Staged:
        """The filesystem's part when the application is in the romfs partition: every file but
        app/, the same marker (it names the whole install), and app/ on the board to be removed
        (firmware/boot.py runs app/ when there is one)."""
        files = {rel: d for rel, d in self.files.items() if not rel.startswith(APP_DIR + "/")}
        sizes = {rel: n for rel, n in self.sizes.items() if rel in files}
        packages = frozenset(
            rel.split("/")[1] for rel in self.files if rel.startswith(APP_DIR + "/") and rel.count("/") > 1
        )
        return Staged(self.root, files, sizes, self.app_hash, self.marker, False, self.app_version, True, packages)

    def close(self) -> None:
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mpy_cross_version() -> tuple[str, str]:
    """(MicroPython version, mpy version) of the mpy-cross in use, e.g. ("1.29.0", "6.3")."""
    import re
    import subprocess

    try:
        out = subprocess.run([str(mpy_cross_path()), "--version"], capture_output=True, text=True, check=True).stdout
    except MpyCrossMissing:
        raise
    except (BuildError, OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"mpy-cross does not run: {exc}") from None
    m = re.search(r"MicroPython v(\d+\.\d+\.\d+).*mpy v(\d+\.\d+)", out)
    if not m:
        raise RuntimeError(f"mpy-cross --version: unexpected output {out.strip()!r}")
    return m.group(1), m.group(2)


def app_bundle(arch: str | None, app: AppBundle | Path | None = None, version: str | None = None) -> AppBundle:
    """The application to install, in the update layout (boot.py, main.py, app/..., app/app.json).

    `app`: None, firmware/ compiled now for `arch` (None: bytecode only, what the unix port runs);
    a firmware source tree (main.py, locker/*.py), compiled now; a release folder as
    `lockertools.maint.bundle.install_app` writes one (app/app.json in it), installed byte for byte;
    or an AppBundle. `version`: the manifest's (default: the tree's _VERSION + a content hash)."""
    if isinstance(app, AppBundle):
        return app
    if app is None:
        return build_app(arch=arch, version=version)
    app = Path(app)
    if (app / MANIFEST).is_file():
        bundle = load_bundle(app)
        if version is not None and version != bundle.version:
            raise ValueError(f"{app} is version {bundle.version}, not {version}: a release keeps its version")
        return bundle
    if (app / "main.py").is_file() and (app / "locker").is_dir():
        if any((app / "locker").glob("*.mpy")) and not any((app / "locker").glob("*.py")):
            raise ValueError(
                f"{app} is an application compiled in the old flat layout: pass the firmware source "
                "tree, or a release folder with app/app.json (as lockertools.maint.bundle.install_app writes it)"
            )
        return build_app(arch=arch, version=version, firmware_dir=app)
    raise ValueError(f"{app} is neither a firmware source tree (main.py, locker/) nor a release (app/app.json)")


def load_bundle(folder: Path) -> AppBundle:
    """A release folder (boot.py, main.py, app/ with app/app.json) as an AppBundle; every file the
    manifest lists is checked against its size and SHA-256, and nothing else may be under app/."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        version = str(manifest["version"])
        rows = list(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{folder / MANIFEST}: not an application manifest ({exc})") from None
    files: dict[str, bytes] = {}
    for name in LOADER_FILES:
        if not (folder / name).is_file():
            raise ValueError(f"{folder}: {name} is missing")
        files[name] = (folder / name).read_bytes()
    for row in rows:
        rel = f"{APP_DIR}/{row['path']}"
        try:
            data = (folder / rel).read_bytes()
        except OSError:
            raise ValueError(f"{folder}: {rel} is in the manifest but missing") from None
        if len(data) != int(row["size"]) or hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise ValueError(f"{folder}: {rel} does not match the manifest")
        files[rel] = data
    files[MANIFEST] = (folder / MANIFEST).read_bytes()
    extra = sorted(
        p.relative_to(folder).as_posix()
        for p in (folder / APP_DIR).rglob("*")
        if p.is_file() and p.relative_to(folder).as_posix() not in files
    )
    if extra:
        raise ValueError(f"{folder}: {extra[0]} is under app/ but not in the manifest")
    return AppBundle(version, files, manifest)


def net_json(
    broker: BrokerAddress, locker_id: str, secrets: Secrets, wifi_ssid: str | None, ethernet: bool = False
) -> dict[str, Any]:
    """net.json's content for flash.write_net (docs/hardware.md, "Network on a real board"). The link:
    Wi-Fi when an SSID is given, else wired Ethernet when the board has it (`ethernet`: the firmware
    takes the PHY's wiring from board.json), else none (a link the board brings up by itself)."""
    b: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "tls": broker.tls,
        "user": locker_id,
        "password": secrets.broker_password,
    }
    if broker.tls:
        if broker.ca_file is None:
            raise ValueError("a TLS broker needs its CA certificate")
        b["ca_file"] = str(broker.ca_file)
        if broker.server_hostname:
            b["server_hostname"] = broker.server_hostname
    wifi = {"ssid": wifi_ssid, "password": secrets.wifi_password} if wifi_ssid else None
    out: dict[str, Any] = {"broker": b, "wifi": wifi, "keepalive": 30}
    if ethernet and wifi is None:
        out["ethernet"] = True
    return out


def _private_dir(parent: Path | None) -> Path:
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="stage-", dir=parent))
    os.chmod(path, 0o700)
    return path


def stage(
    board_path: Path,
    locker_id: str,
    secrets: Secrets,
    *,
    arch: str | None,
    broker: BrokerAddress | None,
    wifi_ssid: str | None = None,
    config: Mapping[str, Any] | None = None,
    parent: Path | None = None,
    app: AppBundle | Path | None = None,
    version: str | None = None,
) -> Staged:
    """Build the board's files in a new private folder under `parent` (the temp dir by default).

    `app`, `version`: the application (see `app_bundle`); default: firmware/ compiled now."""
    bundle = app_bundle(arch, app, version)
    root = _private_dir(parent)
    old_umask = os.umask(0o077)  # every file below is the owner's only: some hold secrets
    try:
        install_app(root, bundle)
        has_lan = "ethernet" in json.loads(board_path.read_text(encoding="utf-8"))
        net = net_json(broker, locker_id, secrets, wifi_ssid, has_lan) if broker is not None else None
        flash.prepare(
            root,
            board_path,
            codes=[],
            config_overrides=dict(config or {}),
            locker_id=locker_id,
            key=secrets.key,
            revision=0,
            net=net,
        )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        os.umask(old_umask)
    return manifest(root)


def manifest(root: Path, owned: bool = True) -> Staged:
    files: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            rel = p.relative_to(root).as_posix()
            if rel == MARKER:
                continue
            data = p.read_bytes()
            files[rel] = hashlib.sha256(data).hexdigest()
            sizes[rel] = len(data)
    app = hashlib.sha256()
    for rel in sorted(files):
        if rel not in SECRET_FILES:
            app.update(f"{rel}\0{files[rel]}\n".encode())
    app_hash = app.hexdigest()
    marker = json.dumps({"app": app_hash, "files": len(files)}, separators=(",", ":")).encode()
    version = ""
    if (root / MANIFEST).is_file():
        try:
            version = str(json.loads((root / MANIFEST).read_text()).get("version", ""))
        except ValueError:
            pass
    return Staged(root, files, sizes, app_hash, marker, owned, version)
