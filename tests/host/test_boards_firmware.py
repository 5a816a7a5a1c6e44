"""The firmware's Board (firmware/hal/board.py) reads each door's size class and height from board.json.

The real hal.board runs under the unix-port MicroPython on the simulated board (host_tools/sim_board,
no controller attached: the pins just hold their levels), compiled to bytecode as a board loads it.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lockertools import BOARDS_DIR
from lockertools.boards import doors as board_doors
from lockertools.sim import compiled_firmware, compiled_sim_board, default_micropython

MICROPYTHON = default_micropython()
pytestmark = pytest.mark.skipif(not MICROPYTHON.exists(), reason="micropython (unix port) is not installed")

FOUR = BOARDS_DIR / "esp32-4door.json"
SIXTEEN = BOARDS_DIR / "esp32-16door-mcp.json"
S3 = BOARDS_DIR / "esp32s3-16door-mcp.json"

# Builds the Board from ./board.json and prints what the rest of the firmware sees, plus the heap the
# two attributes keep (measured by building them again on their own, after a collection).
PROBE = """
import gc, json
from hal.board import Board
from hal.boardinit import door_classes
try:
    b = Board.load()
except ValueError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    with open("board.json") as f:
        doors = json.load(f)["doors"]
    gc.collect()
    before = gc.mem_alloc()
    kept = door_classes(doors)
    gc.collect()
    cost = gc.mem_alloc() - before
    print(json.dumps({"sizes": list(b.sizes), "low": b.low, "types": [type(b.sizes).__name__,
        type(b.low[0]).__name__], "bytes": cost, "n": len(kept[0])}))
"""


@pytest.fixture(scope="module")
def micropath() -> str:
    return f"{compiled_sim_board()}:{compiled_firmware()}"


def probe(tmp_path: Path, micropath: str, spec: dict[str, Any]) -> dict[str, Any]:
    (tmp_path / "board.json").write_text(json.dumps(spec))
    (tmp_path / "probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_SIM")}
    env["MICROPYPATH"] = micropath
    proc = subprocess.run(
        [str(MICROPYTHON), "-X", "heapsize=128K", "probe.py"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_4door_board_sizes_and_heights(tmp_path: Path, micropath: str) -> None:
    got = probe(tmp_path, micropath, load(FOUR))
    assert got["sizes"] == [1, 1, 2, 3]  # S S M L
    assert got["low"] == [True, True, False, False]
    assert got["types"] == ["bytes", "bool"]


def test_16door_board_matches_the_host_view(tmp_path: Path, micropath: str) -> None:
    doc = load(SIXTEEN)
    got = probe(tmp_path, micropath, doc)
    host = board_doors(doc)
    assert got["sizes"] == [d.size_class for d in host]
    assert got["low"] == [d.low for d in host]
    assert got["low"] == [False] * 12 + [True] * 4  # the lowest row
    assert set(got["sizes"]) == {1, 2, 3}
    # 16 doors: a bytes object, a list of 16 bools and their tuple: about 290 bytes on the 64-bit unix
    # port (pointers are half that on the ESP32). A dict or object per door would be several times more.
    assert got["n"] == 16 and got["bytes"] <= 320, got


def test_s3_board_with_chip_module_and_psram_boots_as_the_host_sees_it(tmp_path: Path, micropath: str) -> None:
    """The firmware reads pins by role: the chip, module and PSRAM fields (for the host's checks and
    the image choice) leave it unmoved."""
    doc = load(S3)
    assert {"chip", "module", "psram"} <= set(doc)
    got = probe(tmp_path, micropath, doc)
    host = board_doors(doc)
    assert got["sizes"] == [d.size_class for d in host] and got["low"] == [d.low for d in host]


def test_fields_default_to_medium_and_not_low(tmp_path: Path, micropath: str) -> None:
    doc = load(FOUR)
    for d in doc["doors"]:
        d.pop("size", None)
        d.pop("low", None)
    got = probe(tmp_path, micropath, doc)
    assert got["sizes"] == [2, 2, 2, 2]
    assert got["low"] == [False] * 4


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("size", "XL", "doors[2].size: 'XL' is not S, M or L"),
        ("size", "m", "doors[2].size: 'm' is not S, M or L"),
        ("size", "", "doors[2].size: '' is not S, M or L"),
        ("size", 2, "doors[2].size: 2 is not S, M or L"),
        ("low", "yes", "doors[2].low: 'yes' is not true or false"),
        ("low", 1, "doors[2].low: 1 is not true or false"),
    ],
)
def test_bad_value_is_refused_naming_door_and_field(
    tmp_path: Path, micropath: str, field: str, value: Any, words: str
) -> None:
    doc = copy.deepcopy(load(FOUR))
    doc["doors"][2][field] = value
    got = probe(tmp_path, micropath, doc)
    assert got == {"error": "board.json: " + words}
