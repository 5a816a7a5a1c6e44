"""Host tools for the parcel-locker controller."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO_ROOT / "firmware"
BOARDS_DIR = REPO_ROOT / "boards"
SIM_BOARD_DIR = REPO_ROOT / "host_tools" / "sim_board"
CPYTHON_COMPAT_DIR = REPO_ROOT / "host_tools" / "cpython_compat"


def use_firmware_modules() -> None:
    """Make `locker.*` (the firmware's own logic) importable on CPython, so host and board share it."""
    import sys

    for path in (str(CPYTHON_COMPAT_DIR), str(FIRMWARE_DIR)):
        if path not in sys.path:
            sys.path.insert(0, path)
