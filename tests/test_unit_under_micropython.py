"""The firmware's unit tests, run a second time under the real MicroPython with a board-sized heap."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lockertools.build import compile_tree

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "tests" / "unit"
MICROPYTHON = Path(sys.executable).with_name("micropython")
MODULES = sorted(p.stem for p in UNIT.glob("test_*.py"))
# The tests' own bytecode, rigs and fakes live in this heap too, where a board has none of them: the
# firmware's budget (128K, the board's) is checked by the whole-firmware scenarios and `make bench`;
# here a test module with large rigs (test_commands, test_staff_grace) gets room for itself on top.
UNIT_HEAP = "160K"


@pytest.fixture(scope="module")
def compiled() -> tuple[Path, Path]:
    """Firmware and tests as bytecode, as a board loads them: the parser never takes the heap."""
    tool = MICROPYTHON.with_name("mpy-cross")
    firmware = compile_tree(ROOT / "firmware", "firmware", mpy_cross=tool)
    tests = compile_tree(UNIT, "unit-tests", mpy_cross=tool, keep_source=frozenset({"mpy_runner.py"}))
    return firmware, tests


@pytest.mark.parametrize("module", MODULES)
def test_module_passes_under_micropython(module: str, tmp_path: Path, compiled: tuple[Path, Path]) -> None:
    firmware, tests = compiled
    env = dict(os.environ, MICROPYPATH=f"{tests}:{firmware}:.frozen", LOCKER_TEST_TMP=str(tmp_path))
    proc = subprocess.run(
        [str(MICROPYTHON), "-X", f"heapsize={UNIT_HEAP}", str(tests / "mpy_runner.py"), module],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    summary = re.search(r"^(\d+) passed, (\d+) failed$", proc.stdout, re.M)
    assert summary, out
    assert int(summary[2]) == 0, out
    assert int(summary[1]) > 0, f"no test ran in {module}:\n{out}"
