"""What the benchmarks share: percentiles, sizes and the printed table of figures."""

from __future__ import annotations

import math
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

Figure = tuple[str, str, str, bool | None]  # figure, value, goal, met (None: no goal)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = math.ceil(p / 100 * len(s)) - 1
    return s[max(0, min(len(s) - 1, k))]


def kb(n: float) -> str:
    return f"{n / 1024:.1f} KB"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def print_table(rows: list[Figure], notes: list[str]) -> None:
    head = ("figure", "value", "goal", "met")
    cells = [(f, v, g, "-" if m is None else ("met" if m else "NOT MET")) for f, v, g, m in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    line = "  ".join("{:<%d}" % w for w in widths)
    print()
    for r in (head, tuple("-" * w for w in widths), *cells):
        print(line.format(*r))
    print()
    for n in notes:
        print("* " + n)


def main_run(
    name: str, settings: Any, run: Callable[[Any, Callable[[str], None]], tuple[list[Figure], list[str]]]
) -> int:
    """A bench run from its own command line: timestamped progress, the table, 130 on Ctrl-C."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every process is stopped
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {text}", flush=True)

    say(f"{name} bench on {platform.node()} ({platform.machine()}, {cores()} cores): {settings}")
    try:
        rows, notes = run(settings, say)
    except KeyboardInterrupt:
        say("interrupted: every process stopped")
        return 130
    print_table(rows, notes)
    return 0
