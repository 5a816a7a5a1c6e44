"""The provisioning steps, in order. Each is safe to re-run and fails with what to do.

board     the board file is valid (schema, pins: flash, strapping and input-only pins)
image     the MicroPython image exists, is the build the board's chip and PSRAM need (esp.image_for),
          and its version runs our .mpy files
broker    the broker answers (TCP) at the address the locker will use
port      the serial port exists and can be opened (not busy)
register  the locker in the host database (an existing locker keeps its key unless --new-key) and
          its broker user and ACL (its password kept if the board holds a working one, else rotated)
efuse     (--burn-efuses, confirmed) the flash encryption and Secure Boot V2 keys burned into the
          chip's eFuses, just before esptool writes the image: IRREVERSIBLE (provision/efuse.py)
stage     the board's files: boot.py, main.py, the application compiled for the chip under app/ with
          its manifest app/app.json (the layout updates need), config, secrets (private folder)
firmware  esptool finds the chip on the port (the board file's, or nothing is written), then writes
          MicroPython (and, with --install littlefs, the application's filesystem)
install   mpremote copies what is missing or differs, removes what an earlier (flat) install or an
          update left, reads every hash back, main.py and marker last. When the image has a romfs
          partition (vfs.rom_ioctl) the application fits in, it goes there as a ROMFS image (run in
          place: off the heap), each of its files read back through /rom, and the rest on the
          filesystem; otherwise everything goes on the filesystem
verify    (littlefs) every file's hash read back from the board once esptool has written the image
mode      production.json written (--production: Ctrl-C off, signed console commands only) or removed,
          over the REPL: the last step that needs it
boot      the board is reset into the application; the host service sees it online
selftest  (--selftest) every door pulsed and closed by the technician, the keypad walked through
          (lockertools.maint.selftest, over the board's USB console)
"""

from __future__ import annotations

import contextlib
import os
import secrets as pysecrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from lockertools.maint.bundle import AppBundle
from lockertools.maint.links import Console
from lockertools.maint.selftest import SelftestResult, Technician
from lockertools.provision import ProvisionError, efuse, esp
from lockertools.provision.link import BoardLink, InstallResult, install, install_romfs
from lockertools.provision.stage import (
    ESP32_ARCH,
    BrokerAddress,
    Secrets,
    Staged,
    mpy_cross_version,
    stage,
)

STEPS = (
    "board",
    "image",
    "broker",
    "port",
    "register",
    "stage",
    "efuse",
    "firmware",
    "install",
    "verify",
    "mode",
    "boot",
    "selftest",
)
PRODUCTION = "production.json"  # on the board: a production board (firmware/locker/console.py)
ONLINE_POLL_S = 0.2  # the host database is the service's: polling is the only way to see it
DEFAULT_WORKDIR = Path("build/provision")  # under the current directory, like the simulator's workdirs


class Reporter(Protocol):
    def start(self, step: str, text: str) -> None: ...
    def done(self, step: str, text: str) -> None: ...
    def note(self, text: str) -> None: ...
    def copy_total(self, total: int) -> None: ...
    def copy_advance(self, path: str, n: int) -> None: ...


class SilentReporter:
    """Records the steps (bulk runs show one bar for the batch)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current = ""

    def start(self, step: str, text: str) -> None:
        self.current = step

    def done(self, step: str, text: str) -> None:
        self.lines.append(f"{step}: {text}")

    def note(self, text: str) -> None:
        self.lines.append(text)

    def copy_total(self, total: int) -> None:
        pass

    def copy_advance(self, path: str, n: int) -> None:
        pass


class Board(Protocol):
    """What is on the USB port: `port` for mpremote and esptool; `boot()` after the install."""

    @property
    def port(self) -> str: ...

    def boot(self) -> object: ...

    def console(self) -> Console:
        """The running locker's console (its log, events, replies to signed commands)."""
        ...


class SerialBoard:
    """A real board on a serial port."""

    def __init__(self, port: str, baud: int = 115200) -> None:
        self._port = port
        self.baud = baud

    @property
    def port(self) -> str:
        return self._port

    def boot(self) -> None:
        with BoardLink(self._port, baud=self.baud) as link:
            link.reset()

    def console(self) -> Console:
        from lockertools.maint.links import SerialConsole

        return SerialConsole(self._port, self.baud)


@dataclass
class Options:
    board: Path
    locker_id: str
    db_path: str | Path  # a path (SQLite) or a URL (db.database_url)
    broker_dir: Path | None  # the broker's set-up; None only for a dry run
    broker: str | None = None  # HOST:PORT the locker connects to (default: the broker set-up's)
    plain: bool = False  # plain MQTT instead of TLS (the broker's plain listener): a lab or loopback only
    image: Path | None = None  # None: the newest cached image
    firmware: bool = True  # False: the board runs MicroPython already (no esptool)
    install: Literal["mpremote", "littlefs"] = "mpremote"
    language: str | None = None
    wifi_ssid: str | None = None
    wifi_password: str | None = field(default=None, repr=False)
    new_key: bool = False
    dry_run: bool = False
    erase: bool = True
    arch: str | None = ESP32_ARCH
    config: Mapping[str, Any] = field(default_factory=dict)
    # The application: None, firmware/ compiled now; a firmware source tree; a release folder (app/app.json
    # in it, as lockertools.maint.bundle.install_app writes one); or an AppBundle (stage.app_bundle).
    app: AppBundle | Path | None = None
    app_version: str | None = None  # the manifest's version (default: _VERSION + a content hash)
    workdir: Path = DEFAULT_WORKDIR
    online_timeout_s: float = 120.0
    wait_online: bool = True
    broker_reload: Callable[[], None] | None = None
    baud: int = esp.DEFAULT_BAUD
    selftest: Technician | None = None  # the person at the locker: the door and keypad self-test after boot
    production: bool = False  # Ctrl-C off and signed console commands only, once the install is done
    efuse_keys: efuse.EfuseKeys | None = None  # burn the flash encryption and Secure Boot V2 keys (irreversible)
    efuse_confirmed: bool = False  # the technician typed the board's chip and port (efuse.confirmation)


@dataclass
class Result:
    locker_id: str
    times: dict[str, float] = field(default_factory=dict)
    install: InstallResult | None = None
    fs_used: int | None = None
    commands: list[list[str]] = field(default_factory=list)
    registered: Literal["new", "kept", "new-key", ""] = ""
    password: Literal["kept", "rotated", "new", ""] = ""
    online_s: float | None = None
    app_version: str = ""
    app_in: Literal["romfs", "filesystem", ""] = ""  # where the application was installed (mpremote)
    selftest: SelftestResult | None = None
    secret_texts: list[str] = field(default_factory=list, repr=False)


def image_cache() -> Path:
    env = os.environ.get("LOCKER_IMAGE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lockertools" / "images"


def cached_image(build: str | None = None, chip: str = "esp32") -> Path | None:
    """The newest cached image; with `build`, the newest that is that build (esp.image_build), else the
    newest build of one's own (no official board name) for `chip`."""
    cache = image_cache()
    found = sorted(cache.glob("*.bin"), key=lambda p: p.stat().st_mtime) if cache.is_dir() else []
    if build is not None:
        kinds = {p: (esp.image_build(data), esp.image_chip(data)[0]) for p in found for data in [p.read_bytes()]}
        found = [p for p in found if kinds[p][0] == build] or [p for p in found if kinds[p] == (None, chip)]
    return found[-1] if found else None


def _image_missing(version: str, build: str = "ESP32_GENERIC") -> ProvisionError:
    return ProvisionError(
        "image",
        f"no MicroPython image: download {build} {version}.x (the .bin) from {esp.image_url(build)} and pass "
        f"--image FILE (it is kept in {image_cache()} for later runs: --image cached)",
    )


def parse_broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProvisionError("broker", f"--broker {text!r}: give HOST:PORT, e.g. 192.168.1.10:1883")
    return host, int(port)


class Provisioner:
    """One board, step by step. `run()` returns a Result or raises ProvisionError."""

    def __init__(self, opts: Options, board: Board, reporter: Reporter | None = None) -> None:
        self.opts = opts
        self.target = board
        self.r: Reporter = reporter or SilentReporter()
        self.result = Result(opts.locker_id)
        self._t0 = 0.0

    # -- helpers

    def _begin(self, step: str, text: str) -> None:
        self._t0 = time.monotonic()
        self.r.start(step, text)

    def _end(self, step: str, text: str) -> None:
        self.result.times[step] = time.monotonic() - self._t0
        self.r.done(step, text)

    # -- the run

    def run(self) -> Result:
        o = self.opts
        labels, chip, build = self.check_board()
        if o.install == "littlefs" and chip != "esp32":
            raise ProvisionError(
                "firmware",
                f"--install littlefs lays the filesystem out for the classic ESP32's 4 MB partition table; "
                f"on the {esp.CHIP_TITLES[chip]} use --install mpremote",
            )
        image = self.check_image(chip, build) if o.firmware else None
        if o.install == "littlefs" and not o.firmware:
            raise ProvisionError("firmware", "--install littlefs needs esptool's run: drop --no-firmware")
        if o.efuse_keys is not None:
            self.check_efuse(chip)
        broker = self.check_broker()
        if not o.dry_run:
            self._begin("port", o.locker_id)
            from lockertools.provision.link import check_port

            check_port(self.target.port)
            self._end("port", self.target.port)
        secrets = self.register(labels)
        config = dict(o.config)
        if o.language:
            config["language"] = o.language
        self._begin("stage", "the application, configuration and secrets")
        try:
            staged = stage(
                o.board,
                o.locker_id,
                secrets,
                arch=o.arch,
                broker=broker,
                wifi_ssid=o.wifi_ssid,
                config=config,
                parent=o.workdir / o.locker_id,
                app=o.app,
                version=o.app_version,
            )
        except Exception as exc:
            raise ProvisionError("stage", f"could not build the board's files: {exc}") from None
        with staged:
            self.result.app_version = staged.app_version
            self._end(
                "stage",
                f"{len(staged.files)} files, {staged.total_bytes} bytes, application {staged.app_version} "
                f"(install {staged.app_hash[:12]})",
            )
            fs_image = self.build_fs(staged) if o.install == "littlefs" else None
            try:
                if image is not None:
                    if o.efuse_keys is not None:
                        self.burn_efuses(chip, o.efuse_keys)
                    self.write_firmware(image, fs_image, chip)
                if o.install == "mpremote":
                    self.copy(staged)
                elif not o.dry_run:
                    self.verify_on_board(staged)
                self.set_mode()
            finally:
                if fs_image is not None and not o.dry_run:
                    fs_image.unlink(missing_ok=True)  # it holds the secrets
        if not o.dry_run:
            self.boot()
            if o.selftest is not None:
                self.run_selftest(o.selftest, secrets.key)
        return self.result

    def check_board(self) -> tuple[list[str], str, str]:
        """(door labels, chip, the MicroPython build it needs) of a valid board file."""
        from lockertools import boards, flash

        self._begin("board", str(self.opts.board))
        report = boards.validate(self.opts.board)
        if not report.ok:
            errs = "; ".join(str(e) for e in report.errors[:5])
            raise ProvisionError(
                "board",
                f"{self.opts.board} is not a valid board file ({errs}). Fix it and check it with "
                f"`lockerctl board check {self.opts.board}`",
            )
        import json

        doc = json.loads(self.opts.board.read_text())
        labels = flash.board_labels(doc)
        warn = f", {len(report.warnings)} warning(s)" if report.warnings else ""
        lan = doc.get("ethernet")
        if self.opts.wifi_ssid:
            link = f"Wi-Fi {self.opts.wifi_ssid}"
        elif lan is not None:
            link = f"Ethernet ({lan['phy']})"
        else:
            link = "no link set up (neither --wifi-ssid nor an ethernet section)"
        build = esp.image_for(doc)
        chip = str(doc.get("chip", "esp32"))
        self._end("board", f"{doc.get('name')}: {chip} ({build}), {len(labels)} doors, {link}{warn}")
        return labels, chip, build

    def check_image(self, chip: str, build: str = "ESP32_GENERIC") -> Path:
        o = self.opts
        self._begin("image", f"the MicroPython image ({build})")
        mp_version, mpy_version = mpy_cross_version()
        want = esp.supported_version(mp_version)
        image = o.image or cached_image(build, chip)
        if image is None or not image.exists():
            raise _image_missing(want, build)
        info = esp.inspect_image(image, chip, build)
        problem = esp.check_build(info, build, image) or esp.check_version(info, mp_version, mpy_version, build)
        if problem:
            raise ProvisionError("image", problem)
        if o.image is not None and not o.dry_run:  # keep it for `--image cached`
            cache = image_cache()
            cache.mkdir(parents=True, exist_ok=True)
            if not (cache / image.name).exists():
                shutil.copyfile(image, cache / image.name)
        version = info.version or "version not recorded in the image"
        self._end("image", f"{image.name} ({info.project or 'MicroPython'} {version}; .mpy v{mpy_version})")
        return image

    def check_broker(self) -> BrokerAddress:
        from lockertools.broker import BrokerError, BrokerSetup

        o = self.opts
        self._begin("broker", str(o.broker_dir))
        if o.broker_dir is None:
            if not o.dry_run:
                raise ProvisionError("broker", "give the broker's set-up: --broker-dir DIR (or $LOCKER_BROKER_DIR)")
            host, port = parse_broker(o.broker or "broker.invalid:1883")
            self._end("broker", f"{host}:{port} (no --broker-dir: not checked, dry run)")
            return BrokerAddress(host, port)
        try:
            setup = BrokerSetup.open(o.broker_dir)
        except BrokerError as exc:
            raise ProvisionError("broker", f"{exc}") from None
        # TLS whenever the broker has it; plain MQTT, where the locker's password travels in clear, only
        # when asked for.
        tls = not o.plain
        if tls and setup.tls_port is None:
            raise ProvisionError(
                "broker",
                f"the broker in {o.broker_dir} has no TLS listener: the locker's password would travel in clear. "
                f"Give it one (`lockerctl broker init {o.broker_dir}`), or pass --plain for a lab or loopback",
            )
        if not tls and setup.port is None:
            raise ProvisionError(
                "broker", f"--plain: the broker in {o.broker_dir} has no plain listener (it speaks TLS only)"
            )
        if o.broker:
            host, port = parse_broker(o.broker)
        else:
            host = setup.host
            port = setup.tls_port if tls else setup.port  # type: ignore[assignment]
            if host in ("0.0.0.0", "::", "") or port is None:
                raise ProvisionError(
                    "broker", f"the broker listens on {host}: give the address lockers use, --broker HOST:PORT"
                )
        addr = BrokerAddress(
            host,
            int(port),
            tls=tls,
            ca_file=setup.ca_path if tls else None,
            server_hostname=(setup.names[0] if tls and setup.names else None),
        )
        if not o.dry_run:
            try:
                with socket.create_connection((host, int(port)), timeout=3):
                    pass
            except OSError as exc:
                raise ProvisionError(
                    "broker",
                    f"the broker at {host}:{port} is unreachable ({exc.strerror or exc}): start it "
                    f"(`lockerctl broker run {o.broker_dir}` or `systemctl start mosquitto`), or fix --broker",
                ) from None
        self._end("broker", f"{addr}" + (" (not contacted: dry run)" if o.dry_run else " answers"))
        return addr

    def register(self, labels: list[str]) -> Secrets:
        """The key from the host database (or a new one), the broker password (kept or new)."""
        from lockertools.broker import BrokerError, BrokerSetup
        from lockertools.service import db, fleet_db

        o = self.opts
        lid = o.locker_id
        self._begin("register", lid)
        if o.dry_run:
            placeholder = Secrets(bytes(32), "dry-run", o.wifi_password and "dry-run")
            self._end("register", "not changed (dry run): placeholder secrets in the staged files")
            return placeholder
        try:
            conn = db.connect(o.db_path)
        except db.DatabaseMissing:
            raise ProvisionError(
                "register",
                f"no host database at {db.describe(o.db_path)}: give the service's (--db, or $LOCKER_DB); a new"
                " fleet's is made by `lockerctl service run --db FILE` on first start",
            ) from None
        except db.Error as exc:
            raise ProvisionError("register", f"{db.describe(o.db_path)}: {exc}") from None
        try:
            row = conn.execute("SELECT key_hex, doors_json FROM lockers WHERE id = ?", (lid,)).fetchone()
            if row is None:
                key = pysecrets.token_bytes(32)
                import json

                from lockertools.boards import door_sizes

                sizes = door_sizes(json.loads(self.opts.board.read_text()))
                fleet_db.add_locker(conn, lid, key, labels, sizes)
                self.result.registered = "new"
            else:
                import json

                known = json.loads(row[1])
                if known != labels:
                    raise ProvisionError(
                        "register",
                        f"{lid} is registered with doors {', '.join(known)}; the board file has "
                        f"{', '.join(labels)}. Use the right board file, or another locker id",
                    )
                key = bytes.fromhex(row[0])
                self.result.registered = "kept"
                if o.new_key:
                    active = conn.execute(
                        "SELECT COUNT(*) FROM codes WHERE locker_id = ? AND state = 'issued'", (lid,)
                    ).fetchone()[0]
                    if active:
                        raise ProvisionError(
                            "register",
                            f"{lid} has {active} issued code(s) made with its current key: revoke them "
                            "(`lockerctl codes revoke`) before --new-key, or leave the key",
                        )
                    key = pysecrets.token_bytes(32)
                    with db.transaction(conn):
                        conn.execute("UPDATE lockers SET key_hex = ? WHERE id = ?", (key.hex(), lid))
                    self.result.registered = "new-key"
        finally:
            conn.close()
        # The broker: keep a password the board holds and the broker accepts; otherwise a new one.
        # (An erased board holds nothing; the littlefs image replaces the whole filesystem.)
        board_net = self._board_net() if o.install == "mpremote" and not (o.firmware and o.erase) else None
        old = None
        if board_net and isinstance(board_net.get("broker"), dict) and board_net["broker"].get("user") == lid:
            old = str(board_net["broker"].get("password") or "") or None
        assert o.broker_dir is not None
        try:
            # One writer at a time (boards of a batch, other lockerctl runs): the password file is
            # rewritten whole from what was read, so read it again inside the lock.
            with _broker_lock(o.broker_dir):
                setup = BrokerSetup.open(o.broker_dir)
                if lid in setup.lockers and old and setup.check_password(lid, old):
                    password = old
                    self.result.password = "kept"
                else:
                    existed = lid in setup.lockers
                    password = setup.add_locker(lid, rotate=existed)
                    self.result.password = "rotated" if existed else "new"
                reload = ""
                if self.result.password != "kept":
                    if o.broker_reload is not None:
                        o.broker_reload()
                        reload = "; broker reloaded"
                    elif (pid := setup.reload_running()) is not None:
                        reload = f"; broker reloaded (pid {pid})"
                    else:
                        self.r.note(
                            "the broker must reload its users before the locker can log in: "
                            "systemctl reload mosquitto, or pass --broker-reload next time"
                        )
        except BrokerError as exc:
            raise ProvisionError("register", str(exc)) from None
        secrets = Secrets(key, password, o.wifi_password)
        self.result.secret_texts = secrets.texts()
        what = {"new": "registered", "kept": "already registered, key kept", "new-key": "registered, new key"}
        self._end(
            "register", f"{what[self.result.registered]}; broker user {lid}: password {self.result.password}{reload}"
        )
        return secrets

    def _board_net(self) -> dict[str, Any] | None:
        """net.json on the board, if it holds one (a re-run); read over the REPL, never shown."""
        import json

        try:
            with BoardLink(self.target.port) as link:
                data = link.read("net.json")
        except ProvisionError:
            return None  # no MicroPython on it yet: nothing to keep
        if not data:
            return None
        try:
            value = json.loads(data)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def build_fs(self, staged: Staged) -> Path:
        o = self.opts
        self._begin("stage", "the littlefs image of the vfs partition")
        out = o.workdir / o.locker_id / "littlefs.img"
        out.parent.mkdir(parents=True, exist_ok=True)
        used = esp.build_littlefs(staged, out)
        esp.verify_littlefs(out, staged)
        self.result.fs_used = used
        self._end(
            "stage",
            f"littlefs image {out} verified: {len(staged.files)} files, {used} bytes used of {esp.VFS_SIZE} "
            f"(block {esp.BLOCK_SIZE}, {esp.BLOCK_COUNT} blocks), for 0x{esp.VFS_OFFSET:x}",
        )
        return out

    def write_firmware(self, image: Path, fs_image: Path | None, chip: str) -> None:
        o = self.opts
        argv = esp.write_flash_argv(self.target.port, image, fs_image, chip=chip, baud=o.baud, erase=o.erase)
        self.result.commands.append(argv)
        self._begin("firmware", esp.shell_line(argv))
        if o.dry_run:
            self._end("firmware", "dry run: " + esp.shell_line(argv))
            return
        self.check_chip(chip)
        rc, output = self._run_esptool(argv)
        if rc != 0:
            raise ProvisionError("firmware", esp.explain_esptool_failure(output, self.target.port, chip))
        self._end("firmware", f"MicroPython written{' with the application' if fs_image else ''}, verified by esptool")

    def check_efuse(self, chip: str) -> None:
        """Before anything is registered or written: --burn-efuses can go ahead."""
        o = self.opts
        assert o.efuse_keys is not None
        if not o.firmware:
            raise ProvisionError(
                "efuse", "--burn-efuses goes with esptool's run (the image after the keys): drop --no-firmware"
            )
        efuse.plan(self.target.port, chip, o.locker_id, o.efuse_keys)  # a chip it cannot do is refused here
        efuse.check_inputs(o.efuse_keys)
        if not o.dry_run and not o.efuse_confirmed:
            typed = efuse.confirmation(self.target.port, chip)
            raise ProvisionError(
                "efuse",
                f"burning eFuses is irreversible and was not confirmed (type {typed!r} when asked): "
                "nothing was burned or written",
            )

    def burn_efuses(self, chip: str, keys: efuse.EfuseKeys) -> None:
        o = self.opts
        argvs = efuse.plan(self.target.port, chip, o.locker_id, keys)
        self.result.commands.extend(argvs)
        self._begin("efuse", "flash encryption and Secure Boot V2 keys (irreversible)")
        if o.dry_run:
            self._end("efuse", f"dry run: {len(argvs)} commands, none run")
            return
        efuse.run(argvs, keys)
        self._end(
            "efuse",
            f"keys burned (flash encryption key kept in {keys.flash_key(o.locker_id)}); the image's bootloader "
            "enables encryption and secure boot on its first boot",
        )

    def set_mode(self) -> None:
        """production.json on the board (or gone from it), over the REPL: the last step that needs the
        REPL, since a production board's application ignores Ctrl-C once it runs."""
        o = self.opts
        what = "production: Ctrl-C off, signed console commands only" if o.production else "development"
        self._begin("mode", what)
        if o.dry_run:
            self._end("mode", f"dry run: would {'write' if o.production else 'remove'} {PRODUCTION}")
            return
        with BoardLink(self.target.port) as link:
            if o.production:
                link.write(PRODUCTION, b'{"production": true}\n')
            else:
                link.remove([PRODUCTION])
        self._end("mode", what + (" from the next boot" if o.production else ""))

    def check_chip(self, chip: str) -> None:
        """The chip on the port is the board file's: esptool names it before anything is written."""
        port = self.target.port
        rc, output = self._run_esptool(esp.chip_on_port_argv(port, self.opts.baud))
        if rc != 0:
            raise ProvisionError("firmware", esp.explain_esptool_failure(output, port, chip))
        problem = esp.check_chip_on_port(output, port, chip)
        if problem:
            raise ProvisionError("firmware", problem)
        self.r.note(f"chip on {port}: {esp.chip_on_port(output)[1]}")

    def _run_esptool(self, argv: list[str]) -> tuple[int, str]:
        proc = subprocess.run(argv, capture_output=True, text=True)
        return proc.returncode, proc.stdout + proc.stderr

    def verify_on_board(self, staged: Staged) -> None:
        """After the littlefs image was written: every file's hash read back from the board itself."""
        from lockertools.provision.link import verify

        self._begin("verify", f"{len(staged.files)} files on the board (mpremote)")
        try:
            with BoardLink(self.target.port) as link:
                bad = verify(link, staged)
        except ProvisionError:
            raise
        except Exception as exc:  # noqa: BLE001 - the board went away while answering
            raise ProvisionError(
                "verify", f"the board stopped answering ({type(exc).__name__}): check the cable, run again"
            ) from None
        if bad:
            raise ProvisionError(
                "verify",
                f"{len(bad)} file(s) on the board differ from the image (e.g. {bad[0]}): is the board's flash "
                "4 MB with MicroPython's standard partition table? Run again with --erase",
            )
        self._end("verify", f"{len(staged.files)} files and the marker: every hash matches")

    def copy(self, staged: Staged) -> None:
        o = self.opts
        self._begin("install", f"{len(staged.files)} files over the REPL (mpremote)")
        if o.dry_run:
            self._end("install", f"dry run: would copy up to {staged.total_bytes} bytes to {self.target.port}")
            return
        with BoardLink(self.target.port) as link:
            target, image = self._romfs_plan(link, staged)
            self.r.copy_total(target.total_bytes + len(image or b""))
            if image is not None:
                written = install_romfs(link, staged, image, self.r.copy_advance)
                self.r.note(
                    f"application in the romfs partition ({len(image)} bytes), "
                    + ("written and read back" if written else "there already (read back)")
                )
            res = install(link, target, self.r.copy_advance)
        self.result.install = res
        if res.already:
            self._end("install", f"already installed: {len(staged.files)} files verified on the board, nothing sent")
        else:
            gone = f"; removed {len(res.removed)} left over ({', '.join(res.removed[:4])}" if res.removed else ""
            gone += ", ...)" if len(res.removed) > 4 else ")" if res.removed else ""
            sent = f"{res.bytes_payload} bytes ({res.bytes_sent} sent)"
            self._end("install", f"{len(res.copied)} files, {sent}, every hash verified{gone}")

    def _romfs_plan(self, link: BoardLink, staged: Staged) -> tuple[Staged, bytes | None]:
        """(what goes on the filesystem, the application's ROMFS image or None): the image when the
        MicroPython image has a romfs partition the application fits in; else all of `staged`
        on the filesystem, and a note says why."""
        size = link.romfs_size()
        self.result.app_in = "filesystem"
        if size <= 0:
            self.r.note("the MicroPython image has no romfs partition: the application goes on the filesystem")
            return staged, None
        image = staged.romfs_image()
        if len(image) > size:
            self.r.note(
                f"the application's ROMFS image ({len(image)} bytes) does not fit the romfs partition "
                f"({size} bytes): the application goes on the filesystem"
            )
            return staged, None
        self.result.app_in = "romfs"
        return staged.without_app(), image

    def boot(self) -> None:
        o = self.opts
        self._begin("boot", "reset into the application")
        t_boot = time.time()
        try:
            self.target.boot()  # (after a littlefs write too: the verification stopped the application)
        except ProvisionError:
            raise
        except Exception as exc:
            raise ProvisionError("boot", f"the board did not start the application: {exc}") from None
        if not o.wait_online:
            self._end("boot", "started (not waiting for it online)")
            return
        online = self._wait_online(t_boot)
        self.result.online_s = online
        self._end("boot", f"online after {online:.1f} s")

    def run_selftest(self, tech: Technician, key: bytes) -> None:
        """The door and keypad self-test (`lockerctl selftest`'s), the technician at the locker."""
        from lockertools.maint import MaintError
        from lockertools.maint.client import Maint, SeqBlocks
        from lockertools.maint.selftest import selftest

        o = self.opts
        self._begin("selftest", "doors and keypad: the technician at the locker")
        try:
            console = self.target.console()
        except MaintError as exc:
            raise ProvisionError("selftest", f"no console on {self.target.port}: {exc}") from None
        try:
            res = selftest(Maint(console, o.locker_id, key, SeqBlocks(o.db_path, o.locker_id)), console, tech)
        except MaintError as exc:
            raise ProvisionError(
                "selftest",
                f"{exc}. The board is provisioned: run the self-test again with `lockerctl selftest {o.locker_id} "
                f"--port {self.target.port}`",
            ) from None
        finally:
            console.close()
        self.result.selftest = res
        bad = [f"door {d.door} {d.opened if d.opened != 'ok' else 'not closed'}" for d in res.doors if not d.passed]
        if res.keys_missing:
            bad.append(f"keys {res.keys_missing} not seen")
        if bad:
            raise ProvisionError(
                "selftest",
                f"failed: {', '.join(bad)}. The board is provisioned; check the wiring (latch, sensors, keypad "
                f"row and column), then `lockerctl selftest {o.locker_id} --port {self.target.port}`",
            )
        self._end("selftest", f"{len(res.doors)} doors opened and closed, {len(res.keys_seen)} keys seen: passed")

    def _wait_online(self, since: float) -> float:
        from lockertools.service import db

        o = self.opts
        t0 = time.monotonic()
        deadline = t0 + o.online_timeout_s
        while True:
            try:
                conn = db.connect(o.db_path)
                try:
                    row = conn.execute("SELECT online, last_seen FROM lockers WHERE id = ?", (o.locker_id,)).fetchone()
                finally:
                    conn.close()
                if row is not None and row[0] and (row[1] or 0) >= since - 1.0:
                    return time.monotonic() - t0
            except db.Error:
                pass  # the service is writing: the next poll
            if time.monotonic() > deadline:
                raise ProvisionError(
                    "boot",
                    f"{o.locker_id} did not come online within {o.online_timeout_s:g} s. Is the host service running "
                    f"on {db.describe(o.db_path)} (`lockerctl service run`)? Can the board reach the broker (Wi-Fi"
                    " name and password, the broker's address from the locker's network)? `lockerctl console` shows"
                    " its log",
                )
            time.sleep(ONLINE_POLL_S)


_BROKER_LOCK = threading.Lock()


@contextlib.contextmanager
def _broker_lock(directory: Path) -> Iterator[None]:
    """This process's threads, then other processes (flock on a file beside the broker's)."""
    import fcntl

    with _BROKER_LOCK:
        fd = os.open(directory / ".provision.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def redact(text: str, secret_texts: list[str]) -> str:
    for s in secret_texts:
        if s:
            text = text.replace(s, "<secret>")
    return text
