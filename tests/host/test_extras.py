"""The base install: every command is there, and one whose extra is missing names the extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lockertools.extras import EXTRA_OF_MODULE

# Runs lockerctl with every module an extra brings made unimportable, as in a base install.
BASE_INSTALL = """
import sys
BLOCKED = set(sys.argv[1].split(","))
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocked())
from lockertools.cli import main
sys.argv = ["lockerctl", *sys.argv[2:]]
main()
"""


def _base(*args: str) -> subprocess.CompletedProcess[str]:
    blocked = ",".join(EXTRA_OF_MODULE)
    return subprocess.run([sys.executable, "-c", BASE_INSTALL, blocked, *args], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip


def test_every_command_is_there_without_the_extras() -> None:
    done = _base("--help")
    assert done.returncode == 0, done.stderr
    for name in ("service", "provision", "sim", "broker", "codes", "delivery", "config", "update", "diag"):
        assert f"  {name} " in done.stdout, name


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["service", "run", "--db", "/nonexistent/fleet.db", "--plain"], "service"),
        (["sim", "web", "--no-browser", "--port", "0", "--workdir", "/nonexistent"], "sim"),
    ],
)
def test_a_command_whose_extra_is_missing_names_it(args: list[str], extra: str) -> None:
    done = _base(*args)
    assert done.returncode == 1
    assert f"from the '{extra}' extra: pip install 'lockertools[{extra}]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
