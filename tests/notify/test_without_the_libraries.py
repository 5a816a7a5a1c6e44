"""The service runs without Jinja2 and fpdf2 (the simulator's extra has neither): they are imported
only when residents' messages are on."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("jinja2", "fpdf"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocked())
import lockertools.service.runner
from lockertools.notify.held import purge_contacts, release_held_code, set_locker_place
try:
    from lockertools.notify import Outbox
except ModuleNotFoundError as exc:
    print("outbox needs", exc.name)
"""


def test_the_service_imports_without_jinja2_and_fpdf2() -> None:
    done = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "outbox needs jinja2"  # the outbox itself does need them
