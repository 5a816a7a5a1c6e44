"""Shared pytest set-up: the firmware's logic imports on CPython exactly as on the board."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "host_tools" / "cpython_compat", ROOT / "firmware", ROOT / "tests" / "unit", ROOT / "host_tools"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # `tests.support` (last: the firmware's modules keep precedence)

# Fixtures for tests against a real mosquitto and through a fault-injecting proxy (tests/support/).
pytest_plugins = ["tests.support.fixtures"]
