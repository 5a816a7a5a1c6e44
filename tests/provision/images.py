"""A MicroPython-like ESP32 image built with esptool's own image classes, for tests without a chip.

Laid out as micropython.org's ESP32_GENERIC .bin (written at 0x1000): a bootloader image at its start,
the partition table at 0x8000 and the application at 0x10000, whose first segment starts with the
ESP-IDF application descriptor (esp_app_desc_t: magic, version, project name, ...).
"""

from __future__ import annotations

import struct
from pathlib import Path

from esptool.bin_image import ELFSection, ESP32FirmwareImage

from lockertools.provision.esp import APP_DESC_MAGIC, APP_OFFSET, FIRMWARE_OFFSET


def _image(segments: list[tuple[int, bytes]], entry: int) -> bytes:
    img = ESP32FirmwareImage()
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


def fake_micropython(path: Path, version: str = "v1.29.0", project: str = "micropython") -> Path:
    base = FIRMWARE_OFFSET["esp32"]
    boot = _image([(0x3FFF0000, bytes(range(256)) * 4), (0x40078000, b"\x01" * 512)], 0x40080400)
    app = _image([(0x3F400020, app_desc(version, project) + b"mp" * 300), (0x400D0020, b"\x02" * 2048)], 0x400D1000)
    data = bytearray(b"\xff" * (APP_OFFSET - base + len(app)))
    data[: len(boot)] = boot
    data[0x8000 - base : 0x8000 - base + 32] = b"\xaa\x50" + bytes(30)  # partition table magic, not parsed here
    data[APP_OFFSET - base :] = app
    path.write_bytes(bytes(data))
    return path
