"""A technician's update has the heap it needs after any other work: the real boot of a networked
locker under MicroPython (the simulated board, standalone), then the free heap cut into pieces of at
most 4 KB, the worst a day of commands can leave; then the update's modules are imported.

A module's first import interns its names for good, and when the interpreter's table of names is
full it grows by one large block (1280 entries, about 14 KB on this 64-bit port). Left to the first
`app.begin`, that block is not to be found in a fragmented heap: MemoryError, the update refused
(it was: `tests/contract/test_firmware_messages.py -k online` failed 2 runs in 3). The boot interns
those names while the heap is whole (locker.startup), so the import only needs small pieces.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from lockertools import BOARDS_DIR, FIRMWARE_DIR, SIM_BOARD_DIR
from lockertools.flash import prepare
from lockertools.sim import (
    NET_HEAP,
    SIM_SHIM_HEAP,
    compiled_firmware,
    compiled_sim_board,
    default_micropython,
    heap_bytes,
)

MICROPYTHON = default_micropython()
pytestmark = pytest.mark.skipif(not MICROPYTHON.exists(), reason="micropython (unix port) is not installed")

PROGRAM = """
import gc
from locker import runtime

rt = runtime.Runtime()
rt.boot()
assert rt.locker is not None and rt.uplink is not None, rt.safe_reason
from hal import net  # noqa: F401 (the uplink's first connection, right after the boot)

gc.collect()
free = gc.mem_free()
chunks = []
try:
    while True:
        chunks.append(bytearray(4000))
except MemoryError:
    pass
for i in range(0, len(chunks), 2):
    chunks[i] = None  # every other one goes: holes of 4 KB between the ones that stay
gc.collect()
print("free", free, "in pieces", gc.mem_free())
# A console line, a staff session, door commands, a snapshot, then the update (app.begin): each
# imported for its work and dropped after it, as the firmware does.
import sys
import locker

for name in ("console", "staff", "doorops", "snapshot", "maint", "update"):
    __import__("locker." + name)
    for m in ("flows", "staff", name):
        sys.modules.pop("locker." + m, None)
        if hasattr(locker, m):
            delattr(locker, m)
    gc.collect()

print("imported")
"""


@pytest.mark.parametrize("board", ["esp32-4door", "esp32-16door-mcp"])
def test_the_update_modules_import_in_a_heap_cut_into_small_pieces(tmp_path: Path, board: str) -> None:
    net = {"broker": {"host": "127.0.0.1", "port": 1, "tls": False, "user": "hall-1", "password": "x"}}
    prepare(tmp_path, BOARDS_DIR / f"{board}.json", codes=[("48291357", "2", 0, 0, 501)], locker_id="hall-1", net=net)
    (tmp_path / "prog.py").write_text(textwrap.dedent(PROGRAM))
    path = [str(compiled_sim_board(SIM_BOARD_DIR, MICROPYTHON)), str(compiled_firmware(FIRMWARE_DIR, MICROPYTHON))]
    env = dict(os.environ, MICROPYPATH=":".join([*path, ".frozen"]))
    env.pop("LOCKER_SIM_PORT", None)  # standalone: the board runs without a controller
    heap = heap_bytes(NET_HEAP) + SIM_SHIM_HEAP
    proc = subprocess.run(
        [str(MICROPYTHON), "-X", f"heapsize={heap}", "prog.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "imported" in proc.stdout, out
    print(out.strip().splitlines()[-2])  # free heap after the boot, and in pieces
