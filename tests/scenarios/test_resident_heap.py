"""What the booted firmware keeps on the heap (bench/heap_probe.py: the real Runtime.boot() on the
simulated board, alone, every first-time import measured with a collection on either side).

The scenarios run the whole firmware at a board's 128K heap. A staff load on the 16-door board, or a
power cut's settling, imports locker.flows (and more) on top of what the boot left: when the boot
keeps more, they end in MemoryError. So the run-once code must be gone after the boot. (How much
the boot keeps is a figure of `make bench`, docs/benchmarks.md, not a test's assertion.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # last: bench's module names must not shadow anything else

import heap_probe  # noqa: E402

pytestmark = pytest.mark.scenario

# Imported for the boot (or once per call) and dropped again: none of them may stay resident.
BOOT_ONLY = (
    "locker.startup",
    "locker.config",
    "locker.safemode",
    "locker.appinit",
    "locker.throttlefile",
    "locker.codefile",
    "locker.clockfile",
    "locker.doorinit",
    "hal.boardinit",
)


@pytest.fixture(scope="module")
def sixteen() -> dict[str, Any]:
    return heap_probe.probe("16-door")


def test_nothing_run_once_stays_resident_after_the_boot(sixteen: dict[str, Any]) -> None:
    loaded = set(sixteen["all_imports"])
    resident = set(sixteen["modules"])
    for name in ("hal.boardinit", "locker.doorinit", "locker.clockfile"):
        assert any(name in k.split(",") for k in loaded), f"{name} was not imported by the boot"
    assert not [k for k in resident if set(k.split(",")) & set(BOOT_ONLY)], resident
