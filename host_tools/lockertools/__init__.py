"""Host tools for the parcel-locker controller.

What the tools read of the project's own files, the firmware sources, the board files, the
protocol's schemas, the simulated board's modules and the demo scenario, comes with the package: a
wheel carries them as package data under `lockertools/_shipped/` (pyproject.toml maps the
repository's directories there), found through importlib.resources. A development install
(`pip install -e .`) has no such copy: there the same files are read where the checkout keeps them.
The firmware's logic modules (`locker.*`) are a package of their own in the same distribution, with
the `micropython` stand-in (host_tools/cpython_compat) they import `const` from.
"""

from importlib import resources
from pathlib import Path

_PACKAGED = Path(str(resources.files(__name__) / "_shipped"))
CHECKOUT: Path | None = None if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2]
"""The repository, in a development install (None: an installed wheel)."""


def _shipped(name: str, checkout_path: str) -> Path:
    """The directory `name` of the package data, or in a development install the checkout's own."""
    return _PACKAGED / name if CHECKOUT is None else CHECKOUT / checkout_path


FIRMWARE_DIR = _shipped("firmware", "firmware")
BOARDS_DIR = _shipped("boards", "boards")
SCHEMA_DIR = _shipped("schemas", "protocol/schemas")
SIM_BOARD_DIR = _shipped("sim_board", "host_tools/sim_board")
EXAMPLE_SCENARIOS_DIR = _shipped("scenarios", "tests/scenarios/examples")
