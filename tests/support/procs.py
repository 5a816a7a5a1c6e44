"""Child processes of the tests: what a stopped one may have left running."""

from __future__ import annotations

import os
from pathlib import Path


def left_behind(workdir: Path) -> list[str]:
    """Processes still naming the work directory in their command line or working there (micropython)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue  # gone meanwhile, or not ours to look at
        if str(workdir) in cmdline or cwd.startswith(str(workdir)):
            found.append(f"{pid}: {cmdline}")
    return found
