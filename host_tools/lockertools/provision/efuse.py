"""ESP32 flash encryption and Secure Boot V2 keys, burned with Espressif's own espsecure and espefuse
(docs/hardware.md, "Flash encryption and secure boot"). IRREVERSIBLE: an eFuse bit, once burned,
stays burned. `lockerctl provision` runs this only with `--burn-efuses` and the port and chip typed
back (`confirmation()`); `--dry-run` prints the exact commands and runs none.

What is burned, before esptool writes the image (both key blocks of the chip must still be empty):

1. `espsecure generate-flash-encryption-key KEYS/<locker>.flash-key.bin`, once per board (kept: with it,
   and only with it, the board can be re-flashed later with images encrypted on the host);
2. `espsecure digest-sbv2-public-key`: the SHA-256 digest of the fleet's Secure Boot V2 signing key
   (its public half; the private key stays where the images are signed);
3. `espefuse burn-key flash_encryption` (BLOCK1, read- and write-protected by espefuse);
4. `espefuse burn-key secure_boot_v2` (BLOCK2).

The rest (FLASH_CRYPT_CNT and FLASH_CRYPT_CONFIG, ABS_DONE_1, the UART download mode and JTAG
lock-downs) is done by the image's own bootloader on its first boot: the image must be a MicroPython
build with flash encryption in release mode and Secure Boot V2 enabled, signed with that key. An image
without them (the official ESP32_GENERIC) still boots on a board with only the keys burned: nothing
is encrypted then, and the key blocks are used up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lockertools.provision import ProvisionError

SUPPORTED_CHIPS = ("esp32",)


@dataclass(frozen=True)
class EfuseKeys:
    """The Secure Boot V2 signing key (PEM, RSA-3072) and where each board's flash encryption key is kept."""

    signing_key: Path
    keys_dir: Path

    def flash_key(self, locker_id: str) -> Path:
        return self.keys_dir / f"{locker_id}.flash-key.bin"

    def sbv2_digest(self, locker_id: str) -> Path:
        return self.keys_dir / f"{locker_id}.sbv2-digest.bin"


def _tool(name: str) -> list[str]:
    """espefuse / espsecure from the esptool package beside this Python (the pinned one)."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", name]


def confirmation(port: str, chip: str) -> str:
    """What the technician types to burn this board's eFuses: its chip and its port."""
    return f"{chip} {port}"


def plan(port: str, chip: str, locker_id: str, keys: EfuseKeys) -> list[list[str]]:
    """The exact commands, in order. The flash encryption key is generated only if the board has none
    kept yet (a run that stopped after generating it burns the same key next time)."""
    if chip not in SUPPORTED_CHIPS:
        raise ProvisionError(
            "efuse", f"--burn-efuses: chip {chip!r} is not supported (supported: {', '.join(SUPPORTED_CHIPS)})"
        )
    espsecure, espefuse = _tool("espsecure"), _tool("espefuse")
    fuse = [*espefuse, "--chip", chip, "--port", port, "--do-not-confirm"]
    flash_key, digest = keys.flash_key(locker_id), keys.sbv2_digest(locker_id)
    out: list[list[str]] = []
    if not flash_key.exists():
        out.append([*espsecure, "generate-flash-encryption-key", str(flash_key)])
    out.append([*espsecure, "digest-sbv2-public-key", "--keyfile", str(keys.signing_key), "--output", str(digest)])
    out.append([*fuse, "burn-key", "flash_encryption", str(flash_key)])
    out.append([*fuse, "burn-key", "secure_boot_v2", str(digest)])
    return out


def check_inputs(keys: EfuseKeys) -> None:
    if not keys.signing_key.is_file():
        raise ProvisionError(
            "efuse",
            f"--signing-key {keys.signing_key}: no such file. Make the fleet's key once with "
            "`espsecure generate-signing-key --version 2 --scheme rsa3072 KEY.pem` (docs/hardware.md) "
            "and sign the images with it",
        )


def run(argvs: list[list[str]], keys: EfuseKeys) -> None:
    """Run the commands in order, stopping at the first that fails. The keys' folder and files are the
    owner's only (a flash encryption key decrypts the board's flash)."""
    keys.keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys.keys_dir, 0o700)
    old_umask = os.umask(0o077)
    try:
        for argv in argvs:
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                from lockertools.provision.esp import shell_line

                tail = (proc.stdout + proc.stderr).strip()[-300:]
                raise ProvisionError(
                    "efuse",
                    f"`{shell_line(argv)}` failed ({proc.returncode}): {tail}. What was burned before it stays "
                    "burned: read `espefuse --port PORT summary` and docs/hardware.md before anything else",
                )
    finally:
        os.umask(old_umask)
