"""Provisioning into a romfs partition, on the virtual board (MicroPython's unix port behind a pty,
driven by the real mpremote transport): `VirtualSerialBoard(romfs=N)` is a board whose MicroPython
image has a romfs partition of N bytes (host_tools/sim_board/_simrom.py answers vfs.rom_ioctl as
the ESP32's image does, the partition a file), one without it is a board with the generic image.

- no partition, or one too small: everything on the filesystem, and a note says why;
- the same board with a partition: the application goes there as a ROMFS image, app/ leaves the
  filesystem, the locker boots from /rom (nothing else could give it its modules) and comes online;
  a second run finds the image there and copies nothing;
- a board that dies while its partition is written has no main.py (no locker) and the next run
  finishes the job.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lockertools.build import ROMFS_MAGIC
from lockertools.provision import ProvisionError
from lockertools.provision.stage import MARKER
from lockertools.provision.steps import Provisioner, SilentReporter
from lockertools.provision.virtual import VirtualSerialBoard
from lockertools.sim import default_micropython
from tests.e2e.e2e_chain import ServiceThread
from tests.provision.test_provision_virtual import (  # noqa: F401 - fixtures
    LID,
    KillAfter,
    board_files,
    fleet_db_path,
    options,
    query,
    service,
)
from tests.support.fixtures import Broker

PARTITION = 0x20000  # ESP32_GENERIC-ROMFS: partitions-4MiB-romfs.csv, 128 KiB

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
    pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed (make system-packages)"),
]


def test_without_a_romfs_partition_the_application_goes_on_the_filesystem(
    broker: Broker,
    fleet_db_path: Path,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    opts = options(broker, fleet_db_path, tmp_path, wait_online=False)
    for romfs, why in ((None, "has no romfs partition"), (4096, "does not fit the romfs partition (4096 bytes)")):
        flash = tmp_path / f"b-{romfs}" / "flash"
        with VirtualSerialBoard(flash, romfs=romfs) as vb:
            rep = SilentReporter()
            res = Provisioner(opts, vb.power_on(), rep).run()
            assert res.app_in == "filesystem", rep.lines
            notes = [ln for ln in rep.lines if "the application goes on the filesystem" in ln]
            assert len(notes) == 1 and why in notes[0], rep.lines
            assert (flash / "app" / "app.json").is_file() and (flash / "app" / "locker" / "app.mpy").is_file()
        if romfs is not None:  # nothing was written to the partition
            assert (flash.parent / "romfs.bin").read_bytes() == b"\xff" * romfs


def test_a_board_with_a_romfs_partition_runs_the_application_from_it(
    broker: Broker,
    service: ServiceThread,  # noqa: F811 - the fixture
    fleet_db_path: Path,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    flash = tmp_path / "b1" / "flash"
    opts = options(broker, fleet_db_path, tmp_path)
    # 1. Installed with the generic image first: the application on the filesystem.
    with VirtualSerialBoard(flash) as vb:
        first = Provisioner(opts, vb.power_on(), SilentReporter()).run()
    assert first.app_in == "filesystem" and (flash / "app").is_dir()

    # 2. Re-flashed with an image that has a romfs partition (as ESP32_GENERIC-ROMFS), provisioned again.
    with VirtualSerialBoard(flash, romfs=PARTITION) as vb:
        rep = SilentReporter()
        res = Provisioner(opts, vb.power_on(), rep).run()
        assert res.app_in == "romfs", rep.lines
        assert any(ln.startswith("application in the romfs partition") and "written" in ln for ln in rep.lines)
        assert res.online_s is not None  # it booted and the host service sees it
        # The locker runs with no app/ on its filesystem and nothing of the firmware on MICROPYPATH:
        # its modules came from /rom, the partition MicroPython mounts before boot.py.
        assert not (flash / "app").exists()
        assert not [p for p in board_files(flash) if p.endswith(".mpy")]
        assert (flash / MARKER).exists() and (flash / "main.py").exists()
        part = (flash.parent / "romfs.bin").read_bytes()
        assert part.startswith(ROMFS_MAGIC) and len(part) == PARTITION
        assert b"app.json" in part and b"runtime.mpy" in part
        row = query(fleet_db_path, "SELECT online FROM lockers WHERE id = ?", LID)
        assert row and row[0][0] == 1

        # 3. The same command again: the partition holds the image already, nothing is copied.
        vb.close()
        vb.power_on()
        again = Provisioner(opts, vb, rep2 := SilentReporter()).run()
        assert again.app_in == "romfs" and again.install is not None and again.install.already, rep2.lines
        assert any("there already (read back)" in ln for ln in rep2.lines), rep2.lines
        assert (flash.parent / "romfs.bin").read_bytes() == part


def test_a_board_that_dies_while_its_partition_is_written_is_not_a_locker_until_the_next_run(
    broker: Broker,
    fleet_db_path: Path,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    flash = tmp_path / "b1" / "flash"
    opts = options(broker, fleet_db_path, tmp_path, wait_online=False)
    with VirtualSerialBoard(flash, romfs=PARTITION) as vb:
        with pytest.raises(ProvisionError) as exc:
            Provisioner(opts, vb.power_on(), KillAfter(vb, 40_000)).run()
        assert exc.value.step == "install" and "run the same command again" in exc.value.message
        assert not (flash / "main.py").exists() and not (flash / MARKER).exists()
        part = (flash.parent / "romfs.bin").read_bytes()
        # Cut short: the first 40 KB or so of a 106 KB image written, the rest still erased.
        assert part.startswith(ROMFS_MAGIC) and 30_000 < len(part.rstrip(b"\xff")) < 50_000

        res = Provisioner(opts, vb.power_on(), rep := SilentReporter()).run()
        assert res.app_in == "romfs" and any("written and read back" in ln for ln in rep.lines), rep.lines
        assert (flash / "main.py").exists() and (flash / MARKER).exists() and not (flash / "app").exists()
