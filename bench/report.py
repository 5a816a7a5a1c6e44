"""What the benchmarks share: percentiles, sizes and the printed table of figures."""

from __future__ import annotations

import math
import os

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
