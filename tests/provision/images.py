"""A MicroPython-like ESP32 or ESP32-S3 image built with esptool's own image classes, for tests without a chip.

Laid out as micropython.org's .bin files (ESP32_GENERIC written at 0x1000, ESP32_GENERIC_S3 at 0x0): a
bootloader image at its start (its header's chip ID is the chip's: 0 for the ESP32, 9 for the S3), the
partition table at 0x8000 and the application at 0x10000, whose first segment starts with the ESP-IDF
application descriptor (esp_app_desc_t: magic, version, project name, ...) and carries the build's board
name as MicroPython's does (sys.implementation._machine: "<board name> with <MCU>").
"""

from __future__ import annotations

import struct
from pathlib import Path

from esptool.bin_image import ELFSection, ESP32FirmwareImage, ESP32S3FirmwareImage

from lockertools.provision.esp import APP_DESC_MAGIC, APP_OFFSET, BOARD_NAMES, FIRMWARE_OFFSET

# Where each chip's bootloader and application segments load (data, then code), as ESP-IDF links them.
_ADDRESSES = {
    "esp32": ((0x3FFF0000, 0x40078000, 0x40080400), (0x3F400020, 0x400D0020, 0x400D1000)),
    "esp32s3": ((0x3FCE3808, 0x403C9700, 0x403C9900), (0x3C0A0020, 0x42000020, 0x42001000)),
}
_MCU = {"esp32": b"ESP32", "esp32s3": b"ESP32S3"}
_IMAGE_CLASS = {"esp32": ESP32FirmwareImage, "esp32s3": ESP32S3FirmwareImage}


def _image(segments: list[tuple[int, bytes]], entry: int, chip: str = "esp32") -> bytes:
    img = _IMAGE_CLASS[chip]()
    img.entrypoint = entry
    for addr, data in segments:
        img.segments.append(ELFSection(b".seg%d" % addr, addr, data, 0))
    out = img.save(None)
    assert isinstance(out, bytes)
    return out


def app_desc(version: str, project: str = "micropython") -> bytes:
    def s(text: str, n: int) -> bytes:
        return text.encode()[: n - 1].ljust(n, b"\0")

    head = struct.pack("<II", APP_DESC_MAGIC, 0) + bytes(8)
    return (
        head
        + s(version, 32)
        + s(project, 32)
        + s("12:00:00", 16)
        + s("Jan  1 2026", 16)
        + s("v5.2.2", 32)
        + bytes(32 + 20 * 4)
    )


def fake_micropython(
    path: Path,
    version: str = "v1.29.0",
    project: str = "micropython",
    *,
    chip: str = "esp32",
    build: str | None = None,
) -> Path:
    """An image of `build` (default: the chip's plain build; "" for a custom build with no known board name)."""
    build = ("ESP32_GENERIC" if chip == "esp32" else "ESP32_GENERIC_S3") if build is None else build
    names = {b: n for n, b in BOARD_NAMES}
    machine = names[build] + b" with " + _MCU[chip] + b"\0" if build else b""
    base = FIRMWARE_OFFSET[chip]
    (b_data, b_code, b_entry), (a_data, a_code, a_entry) = _ADDRESSES[chip]
    boot = _image([(b_data, bytes(range(256)) * 4), (b_code, b"\x01" * 512)], b_entry, chip)
    rodata = app_desc(version, project) + b"mp" * 300 + machine
    app = _image([(a_data, rodata), (a_code, b"\x02" * 2048)], a_entry, chip)
    data = bytearray(b"\xff" * (APP_OFFSET - base + len(app)))
    data[: len(boot)] = boot
    data[0x8000 - base : 0x8000 - base + 32] = b"\xaa\x50" + bytes(30)  # partition table magic, not parsed here
    data[APP_OFFSET - base :] = app
    path.write_bytes(bytes(data))
    return path
