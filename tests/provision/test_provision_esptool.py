"""esptool's part without a chip: the exact command lines (and the dry run that prints them), images
built and inspected with esptool (`image-info`, `merge-bin`), and the application's littlefs image
read back with littlefs-python, file by file and hash by hash."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lockertools.boards import validate
from lockertools.cli import main
from lockertools.maint.bundle import build_app
from lockertools.provision import ProvisionError, esp
from lockertools.provision.stage import ESP32_ARCH, MARKER, BrokerAddress, Secrets, Staged, mpy_cross_version, stage
from tests.provision.images import fake_micropython

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "boards" / "esp32-4door.json"
S3_BOARD = ROOT / "boards" / "esp32s3-16door-mcp.json"  # ESP32-S3 with octal PSRAM (N16R8)


@pytest.fixture
def staged(tmp_path: Path) -> Iterator[Staged]:
    s = Secrets(secrets.token_bytes(32), "broker-pw-" + secrets.token_hex(8), None)
    st = stage(BOARD, "hall-1", s, arch=None, broker=BrokerAddress("127.0.0.1", 1883), parent=tmp_path)
    with st:
        yield st


def test_write_flash_command_is_exact() -> None:
    exe = esp.esptool_exe()
    argv = esp.write_flash_argv("/dev/ttyUSB0", Path("mp.bin"), Path("fs.img"))
    assert argv == [
        *exe,
        *("--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "460800"),
        *("--before", "default-reset", "--after", "hard-reset", "write-flash", "--erase-all"),
        *("--flash-size", "4MB", "0x1000", "mp.bin", "0x200000", "fs.img"),
    ]
    plain = esp.write_flash_argv("/dev/ttyACM1", Path("mp.bin"), None, erase=False, baud=115200)
    assert plain[len(exe) :] == [
        *("--chip", "esp32", "--port", "/dev/ttyACM1", "--baud", "115200"),
        *("--before", "default-reset", "--after", "hard-reset", "write-flash"),
        *("--flash-size", "4MB", "0x1000", "mp.bin"),
    ]
    with pytest.raises(ProvisionError, match="not supported"):
        esp.write_flash_argv("/dev/ttyUSB0", Path("mp.bin"), chip="esp32c3")


def test_s3_image_goes_at_0x0_with_its_own_flash_size() -> None:
    argv = esp.write_flash_argv("/dev/ttyACM0", Path("s3.bin"), None, chip="esp32s3")
    assert argv[len(esp.esptool_exe()) :] == [
        *("--chip", "esp32s3", "--port", "/dev/ttyACM0", "--baud", "460800"),
        *("--before", "default-reset", "--after", "hard-reset", "write-flash", "--erase-all"),
        *("--flash-size", "keep", "0x0", "s3.bin"),
    ]


def test_the_partition_layout_is_micropythons_4mib_table() -> None:
    # ports/esp32/partitions-4MiB.csv: factory app at 0x10000, vfs at 0x200000 for 0x200000 bytes.
    assert (esp.APP_OFFSET, esp.VFS_OFFSET, esp.VFS_SIZE) == (0x10000, 0x200000, 0x200000)
    assert (esp.BLOCK_SIZE, esp.BLOCK_COUNT) == (4096, 512)
    assert esp.FIRMWARE_OFFSET["esp32"] == 0x1000


def test_dry_run_prints_the_exact_esptool_command(tmp_path: Path) -> None:
    version = esp.supported_version(mpy_cross_version()[0]) + ".0"
    image = fake_micropython(tmp_path / f"ESP32_GENERIC-{version}.bin", version=version)
    work = tmp_path / "work"
    args = ["provision", "--board", str(BOARD), "--port", "/dev/ttyUSB7", "--locker", "hall-9"]
    args += ["--image", str(image), "--install", "littlefs", "--dry-run", "--workdir", str(work)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    fs_image = work / "hall-9" / "littlefs.img"
    want = esp.shell_line(esp.write_flash_argv("/dev/ttyUSB7", image, fs_image))
    assert want in res.stdout.splitlines(), res.stdout
    assert fs_image.stat().st_size == esp.VFS_SIZE
    assert fs_image.stat().st_mode & 0o077 == 0  # it would hold the secrets: the owner's only
    files = esp.read_littlefs(fs_image)
    assert {"boot.py", "main.py", MARKER, "app/app.json", "app/locker/app.mpy"} <= set(files)
    # The update layout, byte for byte what `lockerctl update push` installs (arch xtensawin by default).
    bundle = build_app(arch=ESP32_ARCH)
    assert {rel: files[rel] for rel in bundle.files} == bundle.files
    assert not [rel for rel in files if rel.startswith(("locker/", "hal/"))], "nothing of the flat layout"
    assert not list(work.glob("hall-9/stage-*")), "the staging folder is deleted"


def test_image_info_and_version_checks(tmp_path: Path) -> None:
    mp_version, mpy_version = mpy_cross_version()
    want = esp.supported_version(mp_version)
    good = fake_micropython(tmp_path / "good.bin", version=want + ".0")
    info = esp.inspect_image(good)
    assert (info.chip, info.project, info.version) == ("esp32", "micropython", want + ".0")
    assert esp.check_version(info, mp_version, mpy_version) is None
    old = esp.inspect_image(fake_micropython(tmp_path / "old.bin", version="v1.19.1"))
    problem = esp.check_version(old, mp_version, mpy_version)
    assert problem is not None and want in problem and esp.IMAGE_URL in problem
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x16" + bytes(4095))
    with pytest.raises(ProvisionError, match="not a MicroPython image") as exc:
        esp.inspect_image(junk)
    assert esp.IMAGE_URL in str(exc.value)


def test_staged_files_are_the_update_layout(staged: Staged) -> None:
    bundle = build_app(arch=None)
    assert staged.app_version == bundle.version
    for rel, data in bundle.files.items():
        assert staged.data(rel) == data, rel
    app = {rel for rel in staged.files if rel.startswith("app/")}
    assert app == {rel for rel in bundle.files if rel.startswith("app/")}
    data_files = {"board.json", "config.json", "locker.key", "net.json", "codes.bin"}
    assert set(staged.files) - app == {"boot.py", "main.py"} | data_files | (set(staged.files) & {"used.bin"})
    # What an earlier install or an update left on a board, to be removed; data files stay.
    root = {"locker": True, "hal": True, "outbox": True, "app": True, "app.new": True, "app.swap": False}
    root |= {"codes.bin": False, "main.py": False, "boot.py": False, "x.mpy": False, "provisioned.json": False}
    on_app = ["app/locker/app.mpy", "app/locker/gone.mpy", "app/app.json"]
    assert staged.stale(root, on_app) == ["app.new", "app.swap", "hal", "locker", "x.mpy", "app/locker/gone.mpy"]


@pytest.mark.parametrize(
    ("board", "wifi", "link"),
    [
        ("esp32-poe-8door-mcp.json", None, {"ethernet": True, "wifi": None}),
        ("esp32-poe-8door-mcp.json", "hall-wifi", {"wifi": {"ssid": "hall-wifi", "password": "wifi-pw-1"}}),
        ("esp32-4door.json", None, {"wifi": None}),
    ],
    ids=["ethernet-board", "ethernet-board-on-wifi", "board-without-ethernet"],
)
def test_net_json_link_follows_the_board_and_the_wifi_option(
    tmp_path: Path, board: str, wifi: str | None, link: dict[str, object]
) -> None:
    """Ethernet when the board definition has it and no --wifi-ssid was given; Wi-Fi wins when it was."""
    s = Secrets(secrets.token_bytes(32), "broker-pw-" + secrets.token_hex(8), "wifi-pw-1" if wifi else None)
    path = BOARD.parent / board
    with stage(
        path, "hall-1", s, arch=None, broker=BrokerAddress("127.0.0.1", 1883), wifi_ssid=wifi, parent=tmp_path
    ) as st:
        net = json.loads(st.data("net.json"))
        board_json = json.loads(st.data("board.json"))
    assert {k: net.get(k) for k in link} == link
    assert ("ethernet" in net) == ("ethernet" in link)
    assert ("ethernet" in board_json) == board.startswith("esp32-poe")  # the firmware reads the PHY's wiring there


def test_app_from_a_release_folder_or_a_source_tree(tmp_path: Path) -> None:
    import shutil

    from lockertools import FIRMWARE_DIR
    from lockertools.build import compile_tree
    from lockertools.maint.bundle import install_app
    from lockertools.provision.stage import app_bundle

    src = tmp_path / "src"  # a snapshot: firmware/ may change while the test runs
    shutil.copytree(FIRMWARE_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
    bundle = build_app(version="3.1.4", firmware_dir=src)
    release = tmp_path / "release"
    install_app(release, bundle)
    again = app_bundle(None, release)  # installed byte for byte, checked against its manifest
    assert again.version == "3.1.4" and again.files == bundle.files
    assert app_bundle(None, src, "3.1.4").files == bundle.files  # a source tree, compiled now
    with pytest.raises(ValueError, match="is version 3.1.4, not 9"):
        app_bundle(None, release, "9")
    (release / "app" / "locker" / "stray.mpy").write_bytes(b"x")
    with pytest.raises(ValueError, match="app/locker/stray.mpy is under app/ but not in the manifest"):
        app_bundle(None, release)
    (release / "app" / "locker" / "stray.mpy").unlink()
    (release / "app" / "locker" / "app.mpy").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="app/locker/app.mpy does not match the manifest"):
        app_bundle(None, release)
    with pytest.raises(ValueError, match="old flat layout"):  # what --app took before: the compiled tree
        app_bundle(None, compile_tree(src, "app-bytecode"))


def test_littlefs_image_holds_every_file_with_its_hash(staged: Staged, tmp_path: Path) -> None:
    out = tmp_path / "fs.img"
    used = esp.build_littlefs(staged, out)
    assert out.stat().st_size == esp.VFS_SIZE and 0 < used < esp.VFS_SIZE
    files = esp.read_littlefs(out)  # littlefs-python, block size 4096, 512 blocks
    assert set(files) == set(staged.files) | {MARKER}
    for rel, digest in staged.files.items():
        assert hashlib.sha256(files[rel]).hexdigest() == digest, rel
    assert files[MARKER] == staged.marker
    esp.verify_littlefs(out, staged)
    # A flipped byte in a file is found.
    from littlefs import LittleFS

    fs = esp._lfs(mount=False)  # MicroPython's settings: read/prog size 32, littlefs 2.0 on disk
    assert isinstance(fs, LittleFS)
    fs.context.buffer = bytearray(out.read_bytes())
    fs.mount()
    with fs.open("config.json", "wb") as f:
        f.write(b"{}")
    with pytest.raises(ProvisionError, match="config.json differs"):
        esp.verify_littlefs(bytes(fs.context.buffer), staged)


def test_merge_bin_puts_firmware_and_filesystem_at_their_offsets(staged: Staged, tmp_path: Path) -> None:
    image = fake_micropython(tmp_path / "mp.bin")
    fs_image = tmp_path / "fs.img"
    esp.build_littlefs(staged, fs_image)
    merged = tmp_path / "merged.bin"
    proc = subprocess.run(esp.merge_bin_argv(merged, image, fs_image), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = merged.read_bytes()
    base = esp.FIRMWARE_OFFSET["esp32"]
    # The file is flashed at 0x1000 (--target-offset): the image first (esptool sets its header's flash
    # size, and so its checksum and hash), the filesystem byte for byte at the vfs offset.
    img = image.read_bytes()
    app = esp.APP_OFFSET - base
    assert data[0] == 0xE9 and data[app : len(img)] == img[app:]  # the application as built
    at = esp.VFS_OFFSET - base
    assert data[at : at + esp.VFS_SIZE] == fs_image.read_bytes()
    esp.verify_littlefs(data[at : at + esp.VFS_SIZE], staged)
    # and esptool still reads the merged file's first image as a valid ESP32 image
    info = subprocess.run([*esp.esptool_exe(), "--chip", "esp32", "image-info", str(merged)], capture_output=True)
    assert info.returncode == 0 and b"(valid)" in info.stdout, info.stdout.decode()


def test_esptool_failures_say_what_to_do() -> None:
    wrong = "A fatal error occurred: This chip is ESP32-S3, not ESP32. Wrong --chip argument?"
    assert "wrong chip: esptool found ESP32-S3" in esp.explain_esptool_failure(wrong, "/dev/ttyUSB0", "esp32")
    busy = "Could not open /dev/ttyUSB0, the port is busy or doesn't exist. ([Errno 16] Device or resource busy)"
    assert "is busy: close" in esp.explain_esptool_failure(busy, "/dev/ttyUSB0", "esp32")
    gone = "could not open port /dev/ttyUSB3: [Errno 2] No such file or directory"
    assert "does not exist: plug" in esp.explain_esptool_failure(gone, "/dev/ttyUSB3", "esp32")
    silent = "Failed to connect to ESP32: No serial data received."
    assert "hold BOOT" in esp.explain_esptool_failure(silent, "/dev/ttyUSB0", "esp32")


# --- eFuses: flash encryption and secure boot (never burned here) ----------------------------------


@pytest.fixture
def no_efuse_tools(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """espefuse, espsecure, or esptool on a port: a run fails the test (these tests never burn or write a
    chip); esptool on a file (image-info) runs."""
    ran: list[list[str]] = []
    real_run = subprocess.run

    def refuse(argv: list[str], *a: Any, **kw: Any) -> Any:
        names = [Path(str(x)).name for x in argv[:3]]
        if any(n.startswith(("espefuse", "espsecure")) for n in names) or "--port" in argv:
            ran.append(list(argv))
            raise AssertionError(f"ran {argv}")
        return real_run(argv, *a, **kw)

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr("lockertools.provision.steps.Provisioner._run_esptool", lambda self, argv: refuse(argv))
    return ran


def _efuse_args(tmp_path: Path, image: Path) -> list[str]:
    key = tmp_path / "sbv2.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n(a test stand-in: never used)\n-----END PRIVATE KEY-----\n")
    args = ["provision", "--board", str(BOARD), "--port", "/dev/ttyUSB7", "--locker", "hall-9", "--image", str(image)]
    args += ["--workdir", str(tmp_path / "work"), "--burn-efuses", "--signing-key", str(key)]
    return args + ["--efuse-keys", str(tmp_path / "fuse-keys")]


def test_burn_efuses_dry_run_prints_the_exact_commands_and_runs_none(
    tmp_path: Path, no_efuse_tools: list[list[str]]
) -> None:
    from lockertools.provision.efuse import EfuseKeys, plan

    version = esp.supported_version(mpy_cross_version()[0]) + ".0"
    image = fake_micropython(tmp_path / f"ESP32_GENERIC-{version}.bin", version=version)
    res = CliRunner().invoke(main, [*_efuse_args(tmp_path, image), "--dry-run"])
    assert res.exit_code == 0, res.output
    keys = EfuseKeys(tmp_path / "sbv2.pem", tmp_path / "fuse-keys")
    flash_key, digest = str(keys.flash_key("hall-9")), str(keys.sbv2_digest("hall-9"))
    want = plan("/dev/ttyUSB7", "esp32", "hall-9", keys)
    fuse = ["--chip", "esp32", "--port", "/dev/ttyUSB7", "--do-not-confirm"]
    assert [a[1:] for a in want] == [
        ["generate-flash-encryption-key", flash_key],
        ["digest-sbv2-public-key", "--keyfile", str(keys.signing_key), "--output", digest],
        [*fuse, "burn-key", "flash_encryption", flash_key],
        [*fuse, "burn-key", "secure_boot_v2", digest],
    ]
    assert [Path(a[0]).name for a in want] == ["espsecure", "espsecure", "espefuse", "espefuse"]
    lines = res.stdout.splitlines()
    shown = [esp.shell_line(a) for a in want] + [esp.shell_line(esp.write_flash_argv("/dev/ttyUSB7", image))]
    assert all(s in lines for s in shown), res.stdout
    assert [lines.index(s) for s in shown] == sorted(lines.index(s) for s in shown), "keys before the image"
    assert no_efuse_tools == [] and not (tmp_path / "fuse-keys").exists()


def test_burn_efuses_is_refused_without_the_typed_confirmation(tmp_path: Path, no_efuse_tools: list[list[str]]) -> None:
    version = esp.supported_version(mpy_cross_version()[0]) + ".0"
    image = fake_micropython(tmp_path / f"ESP32_GENERIC-{version}.bin", version=version)
    args = [*_efuse_args(tmp_path, image), "--db", str(tmp_path / "fleet.db"), "--broker-dir", str(tmp_path / "b")]
    for typed in ("yes\n", "esp32\n", "/dev/ttyUSB7\n", "esp32 /dev/ttyUSB8\n", "\n"):
        res = CliRunner().invoke(main, args, input=typed)
        assert res.exit_code == 1, (typed, res.output)
        assert "not confirmed" in res.output and "nothing was burned or written" in res.output, res.output
        assert "IRREVERSIBLE" in res.output
    # the right words pass the confirmation: the run goes on to the broker (none here) and stops there
    res = CliRunner().invoke(main, args, input="esp32 /dev/ttyUSB7\n")
    assert res.exit_code == 1 and "not confirmed" not in res.output and "broker" in res.output, res.output
    assert no_efuse_tools == [] and not (tmp_path / "fleet.db").exists()
    # the library refuses too, whatever called it
    from lockertools.provision.efuse import EfuseKeys
    from lockertools.provision.steps import Options, Provisioner, SerialBoard

    opts = Options(BOARD, "hall-9", tmp_path / "fleet.db", tmp_path / "b", image=image)
    opts = replace(opts, efuse_keys=EfuseKeys(tmp_path / "sbv2.pem", tmp_path / "fuse-keys"))
    with pytest.raises(ProvisionError) as exc:
        Provisioner(opts, SerialBoard("/dev/ttyUSB7")).run()
    assert exc.value.step == "efuse" and "not confirmed" in exc.value.message
    with pytest.raises(ProvisionError, match="drop --no-firmware"):
        Provisioner(replace(opts, firmware=False, efuse_confirmed=True), SerialBoard("/dev/ttyUSB7")).run()
    with pytest.raises(ProvisionError, match="no such file"):
        keys = EfuseKeys(tmp_path / "missing.pem", tmp_path / "fuse-keys")
        Provisioner(replace(opts, efuse_keys=keys, efuse_confirmed=True), SerialBoard("/dev/ttyUSB7")).run()
    assert no_efuse_tools == []
    res = CliRunner().invoke(main, [a for a in args if a not in ("--signing-key", str(tmp_path / "sbv2.pem"))])
    assert res.exit_code == 2 and "--signing-key" in res.output, res.output


# --- the image and the chip follow the board file -------------------------------------------------


def board_variant(tmp_path: Path, base: Path, **fields: str) -> Path:
    doc = json.loads(base.read_text())
    doc.update(fields)
    path = tmp_path / f"{doc['name']}-{'-'.join(fields.values())}.json"
    path.write_text(json.dumps(doc))
    assert validate(path).ok, [str(e) for e in validate(path).errors]
    return path


def image_version() -> str:
    return esp.supported_version(mpy_cross_version()[0]) + ".0"


@pytest.mark.parametrize(
    ("base", "fields", "build"),
    [
        ("esp32-4door.json", {}, "ESP32_GENERIC"),
        ("esp32-16door-mcp.json", {"module": "wrover"}, "ESP32_GENERIC-SPIRAM"),
        ("esp32-16door-mcp.json", {"module": "wrover", "psram": "quad"}, "ESP32_GENERIC-SPIRAM"),
        ("esp32s3-16door-mcp.json", {}, "ESP32_GENERIC_S3-SPIRAM_OCT"),
        ("esp32s3-16door-mcp.json", {"psram": "quad"}, "ESP32_GENERIC_S3"),  # an N8R2: the plain build finds it
        ("esp32s3-16door-mcp.json", {"psram": "none"}, "ESP32_GENERIC_S3"),
    ],
    ids=["esp32", "wrover", "wrover-explicit", "s3-octal", "s3-quad", "s3-no-psram"],
)
def test_the_image_is_picked_per_board_and_checked(
    tmp_path: Path, base: str, fields: dict[str, str], build: str
) -> None:
    board = board_variant(tmp_path, ROOT / "boards" / base, **fields) if fields else ROOT / "boards" / base
    doc = json.loads(board.read_text())
    assert esp.image_for(doc) == build
    chip = doc["chip"]
    image = fake_micropython(
        tmp_path / f"{build}-{image_version()}.bin", version=image_version(), chip=chip, build=build
    )
    work = tmp_path / "work"
    args = ["provision", "--board", str(board), "--port", "/dev/ttyUSB7", "--locker", "hall-9"]
    args += ["--dry-run", "--workdir", str(work)]
    res = CliRunner().invoke(main, [*args, "--image", str(image)])
    assert res.exit_code == 0, res.output
    assert f"{chip} ({build})" in res.output  # the board step names the build it needs
    assert esp.shell_line(esp.write_flash_argv("/dev/ttyUSB7", image, chip=chip)) in res.stdout.splitlines()
    # Any other official build for the same chip is refused, naming both builds.
    others = [b for _name, b in esp.BOARD_NAMES if b != build and b.startswith(build.split("-")[0] + "-")]
    others += [b for _name, b in esp.BOARD_NAMES if build.startswith(b + "-")]
    assert others
    for other in others:
        wrong = fake_micropython(tmp_path / f"{other}.bin", version=image_version(), chip=chip, build=other)
        res = CliRunner().invoke(main, [*args, "--image", str(wrong)])
        assert res.exit_code == 1, res.output
        assert f"{wrong.name} is MicroPython's {other} build" in res.output and f"need {build}" in res.output
        assert esp.image_url(build) in res.output


@pytest.mark.parametrize(
    ("board", "image_chip", "words"),
    [
        (S3_BOARD, "esp32", "the image is for ESP32 but the board is an ESP32-S3"),
        (BOARD, "esp32s3", "the image is for ESP32-S3 but the board is an ESP32"),
    ],
    ids=["esp32-image-on-s3-board", "s3-image-on-esp32-board"],
)
def test_an_image_for_another_chip_is_refused_before_anything_runs(
    tmp_path: Path, board: Path, image_chip: str, words: str
) -> None:
    image = fake_micropython(tmp_path / "mp.bin", version=image_version(), chip=image_chip)
    work = tmp_path / "work"
    args = ["provision", "--board", str(board), "--port", "/dev/ttyUSB7", "--locker", "hall-9"]
    res = CliRunner().invoke(main, [*args, "--image", str(image), "--dry-run", "--workdir", str(work)])
    assert res.exit_code == 1
    assert words in res.output, res.output
    assert "write-flash" not in res.output and not work.exists()
    with pytest.raises(ProvisionError, match=words) as exc:
        esp.inspect_image(image, json.loads(board.read_text())["chip"])
    assert exc.value.step == "image"


def test_a_custom_build_is_checked_for_its_chip_only(tmp_path: Path) -> None:
    """An image with no official board name (a build of one's own) passes on the right chip."""
    image = fake_micropython(tmp_path / "own.bin", version=image_version(), chip="esp32s3", build="")
    info = esp.inspect_image(image, "esp32s3")
    assert info.build is None and esp.check_build(info, "ESP32_GENERIC_S3-SPIRAM_OCT", image) is None


def test_cached_image_is_the_newest_of_the_boards_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from lockertools.provision.steps import cached_image

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("LOCKER_IMAGE_CACHE", str(cache))
    classic = fake_micropython(cache / "a.bin", version=image_version())
    s3 = fake_micropython(cache / "b.bin", version=image_version(), chip="esp32s3", build="ESP32_GENERIC_S3-SPIRAM_OCT")
    os.utime(classic, (1_700_000_000, 1_700_000_000))
    os.utime(s3, (1_700_000_100, 1_700_000_100))  # the newest
    assert cached_image() == s3
    assert cached_image("ESP32_GENERIC") == classic
    assert cached_image("ESP32_GENERIC_S3-SPIRAM_OCT") == s3
    assert cached_image("ESP32_GENERIC-SPIRAM") is None
    own = fake_micropython(cache / "own.bin", version=image_version(), build="")  # a build of one's own
    os.utime(own, (1_600_000_000, 1_600_000_000))  # the oldest
    assert cached_image("ESP32_GENERIC-SPIRAM", "esp32") == own  # no official one cached: it is the ESP32's
    assert cached_image("ESP32_GENERIC", "esp32") == classic  # the official build first
    assert cached_image("ESP32_GENERIC_S3", "esp32s3") is None  # not for another chip


def test_littlefs_install_is_refused_on_the_s3(tmp_path: Path) -> None:
    build = "ESP32_GENERIC_S3-SPIRAM_OCT"
    image = fake_micropython(tmp_path / "s3.bin", version=image_version(), chip="esp32s3", build=build)
    args = ["provision", "--board", str(S3_BOARD), "--port", "/dev/ttyACM0", "--locker", "hall-9", "--image"]
    args += [str(image), "--install", "littlefs", "--dry-run", "--workdir", str(tmp_path / "work")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "on the ESP32-S3 use --install mpremote" in res.output, res.output


# What esptool 5 prints when it connects (esptool/__init__.py: "Connected to", "Chip type:", ...).
ESPTOOL_CONNECTED = """esptool v5.6.0
Connected to {name} on {port}:
Chip type:          {description}
Features:           Wi-Fi, BT, Dual Core + LP Core, 240MHz
Crystal frequency:  40MHz
MAC:                24:0a:c4:12:34:56

Stub flasher running.
MAC:                24:0a:c4:12:34:56
Staying in bootloader.
"""


class ChipOnPort:
    """The port's answers to esptool: the chip found by read-mac, and a write that succeeds."""

    def __init__(self, name: str, description: str) -> None:
        self.name, self.description = name, description
        self.runs: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str]:
        self.runs.append(argv)
        if "read-mac" in argv:
            port = argv[argv.index("--port") + 1]
            return 0, ESPTOOL_CONNECTED.format(name=self.name, port=port, description=self.description)
        return 0, "Hash of data verified."


@pytest.mark.parametrize(
    ("board", "name", "description", "words"),
    [
        (
            S3_BOARD,
            "ESP32",
            "ESP32-D0WD-V3 (revision v3.1)",
            "the board file says esp32s3, the chip on /dev/ttyUSB0 is ESP32-D0WD-V3 (revision v3.1)",
        ),
        (
            BOARD,
            "ESP32-S3",
            "ESP32-S3 (QFN56) (revision v0.2)",
            "the board file says esp32, the chip on /dev/ttyUSB0 is ESP32-S3 (QFN56) (revision v0.2)",
        ),
        (BOARD, "ESP32-C3", "ESP32-C3 (QFN32) (revision v0.4)", "the chip on /dev/ttyUSB0 is ESP32-C3 (QFN32)"),
    ],
    ids=["esp32-on-s3-board", "s3-on-esp32-board", "c3-on-esp32-board"],
)
def test_a_chip_other_than_the_board_files_is_refused_before_the_write(
    tmp_path: Path, board: Path, name: str, description: str, words: str
) -> None:
    from lockertools.provision.steps import Options, Provisioner, SerialBoard

    chip = json.loads(board.read_text())["chip"]
    port = ChipOnPort(name, description)
    prov = Provisioner(Options(board, "hall-1", tmp_path / "fleet.db", None), SerialBoard("/dev/ttyUSB0"))
    prov._run_esptool = port  # type: ignore[method-assign]
    with pytest.raises(ProvisionError) as exc:
        prov.write_firmware(tmp_path / "mp.bin", None, chip)
    assert exc.value.step == "firmware" and words in exc.value.message
    assert [argv for argv in port.runs if "write-flash" in argv] == []  # nothing written
    assert port.runs == [esp.chip_on_port_argv("/dev/ttyUSB0")]


@pytest.mark.parametrize(
    ("board", "name", "description"),
    [(S3_BOARD, "ESP32-S3", "ESP32-S3 (QFN56) (revision v0.2)"), (BOARD, "ESP32", "ESP32-D0WD-V3 (revision v3.1)")],
    ids=["s3", "esp32"],
)
def test_the_matching_chip_is_written(tmp_path: Path, board: Path, name: str, description: str) -> None:
    from lockertools.provision.steps import Options, Provisioner, SerialBoard, SilentReporter

    chip = json.loads(board.read_text())["chip"]
    port = ChipOnPort(name, description)
    rep = SilentReporter()
    prov = Provisioner(Options(board, "hall-1", tmp_path / "fleet.db", None), SerialBoard("/dev/ttyUSB0"), rep)
    prov._run_esptool = port  # type: ignore[method-assign]
    prov.write_firmware(tmp_path / "mp.bin", None, chip)
    assert port.runs == [
        esp.chip_on_port_argv("/dev/ttyUSB0"),
        esp.write_flash_argv("/dev/ttyUSB0", tmp_path / "mp.bin", chip=chip),
    ]
    assert f"chip on /dev/ttyUSB0: {description}" in rep.lines


def test_chip_on_port_reads_esptool_4_too() -> None:
    old = "Detecting chip type... ESP32\nChip is ESP32-D0WD-V3 (revision v3.0)\nFeatures: WiFi, BT"
    assert esp.chip_on_port(old) == ("esp32", "ESP32-D0WD-V3 (revision v3.0)")
    assert esp.chip_on_port("no chip here") == (None, "not recognised")
