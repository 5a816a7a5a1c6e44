"""The staged application as a ROMFS image (lockertools.build.romfs_image, Staged.romfs_image) and the
filesystem's part beside it (Staged.without_app): the image is the one `mpremote romfs build` makes
of the same folder, MicroPython mounts it and reads every file back unchanged, and the filesystem's
part leaves app/ to go."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockertools.build import ROMFS_MAGIC, BuildError, romfs_image
from lockertools.provision.stage import BrokerAddress, Secrets, Staged, stage
from lockertools.sim import default_micropython

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "boards" / "esp32-4door.json"


@pytest.fixture
def staged(tmp_path: Path) -> Iterator[Staged]:
    s = Secrets(secrets.token_bytes(32), "broker-pw-" + secrets.token_hex(8), None)
    st = stage(BOARD, "hall-1", s, arch=None, broker=BrokerAddress("127.0.0.1", 1883), parent=tmp_path)
    with st:
        yield st


def test_the_image_is_mpremotes_own_of_the_staged_application(staged: Staged, tmp_path: Path) -> None:
    image = staged.romfs_image()
    assert image.startswith(ROMFS_MAGIC)
    out = tmp_path / "app.romfs"
    mpremote = Path(sys.executable).with_name("mpremote")
    proc = subprocess.run(
        [str(mpremote), "romfs", "--no-mpy", "-o", str(out), "build", str(staged.root / "app")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_bytes() == image


@pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed")
def test_micropython_mounts_the_image_and_reads_every_application_file_back(staged: Staged, tmp_path: Path) -> None:
    image = tmp_path / "app.romfs"
    image.write_bytes(staged.romfs_image())
    app = sorted(rel for rel in staged.files if rel.startswith("app/"))
    script = tmp_path / "read.py"
    script.write_text(
        "import vfs, hashlib, binascii\n"
        f"vfs.mount(vfs.VfsRom(open({str(image)!r}, 'rb').read()), '/rom')\n"
        f"for rel in {app!r}:\n"
        "    with open('/rom' + rel[3:], 'rb') as f:\n"
        "        print(rel, binascii.hexlify(hashlib.sha256(f.read()).digest()).decode())\n"
    )
    proc = subprocess.run([str(default_micropython()), str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    read = dict(line.split() for line in proc.stdout.splitlines())
    assert read == {rel: staged.files[rel] for rel in app}
    assert "app/app.json" in read and json.loads(staged.data("app/app.json"))["version"] == staged.app_version


def test_the_filesystem_part_leaves_the_application_to_the_partition(staged: Staged) -> None:
    fs = staged.without_app()
    assert fs.app_in_romfs and not staged.app_in_romfs
    assert set(fs.files) == {rel for rel in staged.files if not rel.startswith("app/")}
    assert {"boot.py", "main.py", "locker.key"} <= set(fs.files) and "app" not in fs.dirs()
    assert fs.marker == staged.marker and fs.app_hash == staged.app_hash
    assert fs.total_bytes == sum(len(staged.data(rel)) for rel in fs.files)
    # On a board: app/ goes whole (boot.py would run it), an old flat install's packages too.
    root = {"app": True, "locker": True, "hal": True, "app.old": True, "codes.bin": False, "main.py": False}
    assert fs.stale(root, ["app/locker/app.mpy", "app/app.json"]) == ["app", "app.old", "hal", "locker"]
    assert staged.stale(root, ["app/locker/app.mpy", "app/app.json"]) == ["app.old", "hal", "locker"]
    fs.close()  # not the folder's owner: the staged files stay
    assert (staged.root / "app" / "app.json").is_file()


def test_a_name_the_format_cannot_hold_is_refused(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "café.mpy").write_bytes(b"x")
    with pytest.raises(BuildError, match="ASCII"):
        romfs_image(tmp_path / "tree")
