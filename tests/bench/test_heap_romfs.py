"""What ROMFS saves (bench/heap_romfs.py): the real firmware booted with its modules imported from the
filesystem and from a ROMFS image mounted at /rom, on the 32-bit webassembly port and the 64-bit
unix port. Run by `make test` so the measurement cannot rot."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # last: bench's module names must not shadow anything else

import heap32  # noqa: E402
import heap_romfs  # noqa: E402

CODES = 5
pytestmark = pytest.mark.scenario  # the whole firmware, four interpreters: not in `make test-fast`


@pytest.fixture(scope="module")
def savings() -> list[heap_romfs.Saving]:
    heap32.check_versions()
    return heap_romfs.measure("4-door", CODES)


def test_the_firmware_boots_from_romfs_on_both_ports_and_holds_less_heap(savings: list[heap_romfs.Saving]) -> None:
    # measure() has already checked each run's boot (ready normal, the staff session) and that
    # locker.runtime came from /rom/ in the ROMFS runs and not in the others: it raises otherwise.
    assert [(s.bits, s.what) for s in savings[:4]] == [
        (32, "after boot, offline"),
        (32, "after a staff session"),
        (64, "after boot, offline"),
        (64, "after a staff session"),
    ]
    assert len(savings) == 8
    for s in savings:
        # The modules' bytecode is a large share of the heap: in place it leaves at least a fifth.
        assert s.files * 0.2 < s.saved < s.files * 0.6, s
        # What stays: the code table (512 slots, 13 KB), objects, the modules' globals and functions.
        assert s.rom > 13 * 1024, s


def test_the_rows_name_the_port_and_the_saving(savings: list[heap_romfs.Saving]) -> None:
    rows = heap_romfs.rows(savings, CODES)
    assert rows[0][0] == "live heap after boot, offline, 4-door, 5 codes, 32-bit: files vs ROMFS"
    assert f"saves {heap32.kb(savings[0].saved)}" in rows[0][1]


def test_a_run_whose_firmware_is_not_on_the_image_fails(tmp_path: Path) -> None:
    # An image without the firmware: nothing else puts it on the path, so the boot cannot import it.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("nothing to import\n")
    from lockertools.build import romfs_image

    image = tmp_path / "empty.romfs"
    image.write_bytes(romfs_image(empty))
    (tmp_path / "flash").mkdir()
    with pytest.raises(heap32.Heap32Error, match="no module named 'locker'"):
        heap32.run_unix(tmp_path / "flash", [heap32.START, heap32.BOOT], romfs=image)


def test_the_breakdown_finds_the_code_table_the_names_and_the_modules() -> None:
    heap32.check_versions()
    b = heap_romfs.breakdown("4-door", networked=False, ncodes=CODES)
    assert "uplink, MQTT client, commands" in b.parts and b.parts["uplink, MQTT client, commands"] == 0, b
    # The table is preallocated at its capacity (config code_capacity, 512 by default), whatever the
    # codes it holds: 512 x 26 bytes; the journal beside it 512 x 6.
    assert 512 * 26 <= b.parts["code table and code store"] < 512 * 26 + 2048, b
    assert 512 * 6 <= b.parts["used-code journal (RAM)"] < 512 * 6 + 64, b
    assert b.parts["door pins (solenoid, closed, parcel)"] > 0 and b.parts["door bank (per-door state)"] > 0, b
    # Names from a ROM .mpy keep their text in the image: the pools hold 7 bytes a name on this
    # port, in blocks that double (so never less than that, and at most about twice it).
    assert b.names > 300 and 7 * b.names <= b.pools < 3 * 7 * b.names, b
    assert b.asyncio > 0 and b.modules > 5 * 1024, b
    assert heap_romfs.breakdown_lines(b)[0].startswith("4-door, offline: ")
