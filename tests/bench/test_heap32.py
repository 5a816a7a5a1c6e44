"""The 32-bit heap runner (bench/heap32.py): the real firmware booted on MicroPython's webassembly
port under Node, with the same steps on the 64-bit unix port beside it. Run by `make test` so the
runner cannot rot; `make test`'s set-up installs the pinned npm package (`make wasm`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # last: bench's module names must not shadow anything else

import heap32  # noqa: E402

CODES = 5
pytestmark = pytest.mark.scenario  # the whole firmware on two interpreters: not in `make test-fast`


@pytest.fixture(scope="module")
def readings() -> list[heap32.Reading]:
    heap32.check_versions()  # the pinned package, installed
    return heap32.measure("4-door", CODES)  # boots, staff session and network modules, both ports


def test_the_firmware_boots_on_the_32_bit_port_and_holds_less_heap_than_on_64_bit(
    readings: list[heap32.Reading],
) -> None:
    # measure() has already checked each run's "log| ready normal" line, the locker built, and the
    # staff session's staff_in and staff_out events: it raises Heap32Error otherwise.
    whats = [r.what for r in readings]
    assert whats == [
        "after boot, offline",
        "after a staff session",
        "after boot, networked",
        "after boot + network modules",
    ]
    for r in readings:
        assert r.board == "4-door"
        # The code table alone (512 slots, the default capacity) is 13 KB on either port.
        assert 13 * 1024 < r.bits32 < r.bits64, r
        # Bytecode and byte buffers keep their size on 32-bit: objects alone cannot halve the total.
        assert 0.5 < r.ratio < 0.95, r
        assert 0 < r.shim32 < r.shim64, r
    offline, _, networked, with_net = readings
    # net.json makes the boot build the uplink, the MQTT client and the command handler.
    assert networked.bits32 > offline.bits32 + 4096 and networked.bits64 > offline.bits64 + 4096
    assert with_net.bits32 > networked.bits32


def test_the_table_rows_carry_both_ports_and_the_ratio(readings: list[heap32.Reading]) -> None:
    rows = heap32.rows(readings, CODES)
    assert len(rows) == len(readings)  # no 16-door reading: no goal line
    first = readings[0]
    assert rows[0][0] == "live heap after boot, offline, 4-door, 5 codes"
    assert f"32/64 = {first.ratio:.2f}" in rows[0][1] and heap32.kb(first.bits32) in rows[0][1]


def test_a_failing_step_is_reported_with_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "flash").mkdir()
    with pytest.raises(heap32.Heap32Error, match="(?s)step 'broken' failed.*no_such_module"):
        heap32.run_wasm(tmp_path / "flash", [heap32.START, ("broken", "import no_such_module")])


def test_the_goal_is_checked_on_the_32_bit_figure_of_the_16_door_board() -> None:
    def reading(what: str, bits32: int) -> heap32.Reading:
        return heap32.Reading("16-door", what, bits32, 2 * bits32, 1, 2)

    over = heap32.goal_rows(
        [reading("after boot, offline", 48 * 1024 + 1), reading("after boot, networked", 70 * 1024)]
    )
    assert [(r[0], r[3]) for r in over] == [
        ("heap goal, 32-bit, 16-door, after boot, offline", False),
        ("heap goal, 32-bit, 16-door, after boot, networked", True),
    ]
    assert over[0][2] == "<= 48.0 KB" and over[1][2] == "<= 72.0 KB"
    four_door = heap32.Reading("4-door", "after boot, offline", 1024, 2048, 1, 2)
    assert heap32.goal_rows([four_door]) == []


def test_a_locker_that_boots_in_safe_mode_is_not_measured(tmp_path: Path) -> None:
    flash = heap32.flash_folder(tmp_path, "4-door", CODES, networked=False)
    (flash / "locker.key").unlink()  # not provisioned: Runtime.boot() ends in safe mode
    run = heap32.run_wasm(flash, [heap32.START, heap32.MACHINE, heap32.BOOT])
    assert any(line.startswith("log| ready safe") for line in run.lines)
    with pytest.raises(heap32.Heap32Error, match="did not boot in normal mode"):
        run.check()
