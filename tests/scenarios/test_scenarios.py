"""Every scenario file (tests/scenarios/*.yaml and examples/*.yaml), played against the real
firmware under MicroPython on the simulated board. One test per file; the format is in
docs/simulator.md. A failure shows the step, why, and the trace around it.

Run them: `.venv/bin/pytest tests/scenarios -n 2 -q`, or one story with
`lockerctl sim scenario tests/scenarios/<name>.yaml` (prints the trace as it goes).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from lockertools.sim import default_micropython
from lockertools.sim.scenario import Runner, load

HERE = Path(__file__).resolve().parent
FILES = sorted(HERE.glob("*.yaml")) + sorted((HERE / "examples").glob("*.yaml"))

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(HERE)) for p in FILES])
def test_scenario(path: Path) -> None:
    trace = io.StringIO()
    result = Runner(load(path), trace).run()
    if not result.passed:
        pytest.fail(f"{result.failure}\n\n--- full trace ---\n{trace.getvalue()}", pytrace=False)
