"""Fixtures for the browser tests of `lockerctl sim web` (websim_support.py has the pieces)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websim_support import WebSimProc, chromium_page

from tests.support.procs import left_behind


@pytest.fixture
def websim(tmp_path: Path) -> Iterator[WebSimProc]:
    sim = WebSimProc(tmp_path / "sim-web")
    try:
        yield sim
    finally:
        sim.stop()
    assert "stopped: web server, lockers, host service, broker" in "\n".join(sim.lines), "\n".join(sim.lines[-20:])
    assert left_behind(sim.workdir) == []


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A page in a fresh headless Chromium profile (the system's binary; nothing downloaded)."""
    with chromium_page() as page:
        yield page
