"""Web simulator figures (`lockerctl sim web` in headless Chromium; docs/simulator.md, "The web simulator").

1. click -> solenoid: a resident's click on the page's `#` key, ending a valid pickup code typed
   with clicks (the # clicked once the digits were applied: keys clicked faster than the locker
   takes them, about 120 ms each, queue), to the simulated latch turning on (the board's `solenoid`
   event). Both ends are on
   the host's wall clock: the page stamps the click (performance.timeOrigin + performance.now()),
   the simulated board stamps its events with time.time_ns(). p50/p90/max over `runs` pickups.
2. change -> shown: a door's state changing on the board (latch on/off, the spring popping the door)
   to the page having drawn it (the first animation frame after the WebSocket message was applied).
   p50/p90/max over every such change in those pickups.
3. the scripted delivery and pickup of tests/web (on the staff desk: today's PIN and a delivery
   prepared; at the locker's page: loaded at the keypad, picked up with the code the desk showed):
   clicks on the locker's page against the fewest it allows, and seconds (wall clock, the desk's
   pages and the waits for the host included).

Processes: `lockerctl sim web --no-browser --port 0` (mosquitto, the host service, one micropython
locker, the aiohttp server), Chromium (the system's; never downloaded) and this process.
Figures are printed, never asserted. Entry point for bench/run.py: `web.run(web.Settings(), say)`.

Usage: python bench/web.py [--quick] [--runs N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # tests.web.websim_support: the page driver the tests use

from report import Figure, cores, main_run, pct  # noqa: E402

Say = Callable[[str], None]
CLICK_GOAL_MS = 100.0  # a click on the page should feel like a key on the locker
SHOWN_GOAL_MS = 100.0
TAP_S = 0.120  # VirtualBoard.tap: a key held 60 ms (at least: until the locker clicks), then 60 ms up


@dataclass(frozen=True)
class Settings:
    runs: int = 20
    workdir: Path | None = None

    @classmethod
    def quick(cls) -> Settings:
        return cls(runs=5)


@contextlib.contextmanager
def _workdir(settings: Settings) -> Iterator[Path]:
    if settings.workdir is not None:
        settings.workdir.mkdir(parents=True, exist_ok=False)
        yield settings.workdir
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _metrics(page: Any) -> dict[str, list[dict[str, Any]]]:
    got: dict[str, list[dict[str, Any]]] = page.evaluate("window.simMetrics")
    return got


def _pickups(me: Any, desk: Any, runs: int, say: Say) -> tuple[list[float], list[float]]:
    """`runs` pickups by clicks alone, each code issued on the desk; (click -> solenoid ms, change -> shown ms)."""
    page = me.page
    to_solenoid: list[float] = []
    for n in range(runs):
        label = "1" if n % 2 == 0 else "2"
        rev = me.host_rev()
        code = desk.pickup_code(me.lid(), label)
        me.wait_synced_after(rev)
        clicks_before = len(_metrics(page)["clicks"])
        shown_before = len(_metrics(page)["shown"])
        me.keys(code)
        me.keys_applied()  # the digits are in: the # alone is timed, not a queue of keys behind it
        me.keys("#")
        opened = me.wait_open_door()
        if me.door_attr(opened, "parcel") == "1":
            me.parcel(opened, False)
        me.push_shut(opened)
        m = _metrics(page)
        hash_click = next(c for c in m["clicks"][clicks_before:] if c.get("key") == "#")
        solenoid = next(s for s in m["shown"][shown_before:] if s["ev"] == "solenoid")
        to_solenoid.append(solenoid["t"] - hash_click["at"])
        say(f"web: pickup {n + 1}/{runs}: # -> solenoid {to_solenoid[-1]:.1f} ms")
    # Every board change the page drew (latch on/off, a door popping open), over all the pickups.
    shown = [s["at"] - s["t"] for s in _metrics(page)["shown"] if s["ev"] in ("solenoid", "door")]
    return to_solenoid, shown


def _figure(name: str, values: list[float], goal_ms: float) -> Figure:
    p50, p90, worst = pct(values, 50), pct(values, 90), max(values)
    value = f"p50 {p50:.0f} ms, p90 {p90:.0f} ms, max {worst:.0f} ms (n={len(values)})"
    return (name, value, f"p90 < {goal_ms:.0f} ms", p90 < goal_ms)


def run(settings: Settings, say: Say) -> tuple[list[Figure], list[str]]:
    """Measure and return the table rows and notes (bench/run.py adds them to its table)."""
    from tests.web.websim_support import CHROMIUM, Desk, Driver, WebSimProc, chromium_page

    rows: list[Figure] = []
    notes = [
        f"web: measured on {platform.node()} ({platform.machine()}, {cores()} cores) shared by mosquitto, the"
        " host service, the locker's micropython process, `lockerctl sim web`, Chromium and this process"
    ]
    if not CHROMIUM.exists():
        notes.append(f"web: skipped, no Chromium at {CHROMIUM}")
        return rows, notes
    with _workdir(settings) as tmp:
        sim = WebSimProc(tmp / "sim-web")
        try:
            with chromium_page() as page:
                me = Driver(page)
                t0 = time.monotonic()
                me.open(sim.url())
                say(f"web: page ready, locker online, in {time.monotonic() - t0:.1f} s")
                desk = Desk.from_sim(page)
                to_solenoid, shown = _pickups(me, desk, settings.runs, say)
                rows.append(_figure("web: click on # -> latch on", to_solenoid, CLICK_GOAL_MS))
                rows.append(_figure("web: door change -> page shows it", shown, SHOWN_GOAL_MS))

                me.clicks = 0
                t0 = time.monotonic()
                rev = me.host_rev()
                pin = desk.staff_pin("Bench", me.lid())
                number, code = desk.prepare_delivery(me.lid(), "M")
                me.wait_synced_after(rev)
                me.load(pin, number)
                me.pickup(code)
                seconds = time.monotonic() - t0
                got = {"pin": pin, "number": number, "code": code}
                fewest = Driver.fewest_load_and_pickup(len(pin), len(number), len(code))
                rows.append(
                    (
                        "web: delivery + pickup, clicks at the locker",
                        f"{me.clicks} clicks in {seconds:.1f} s",
                        f"= fewest ({fewest})",
                        me.clicks == fewest,
                    )
                )
                keys = len(got["pin"]) + 1 + 1 + len(got["number"]) + 1 + 1 + len(got["code"]) + 1
                floor = keys * TAP_S
                rows.append(
                    (
                        "web: delivery + pickup, seconds",
                        f"{seconds:.1f} s",
                        f"floor {floor:.1f} s ({keys} taps x {TAP_S * 1000:.0f} ms)",
                        None,
                    )
                )
                notes.append(
                    f"web: the delivery + pickup's {seconds:.1f} s include {keys} keypad taps (each one held until "
                    "the locker clicks, as VirtualBoard.tap does: >= 120 ms), two pages of the staff desk, the code "
                    "sync to the locker, and the latch's pulse before each door is shut"
                )
                if page.errors:
                    notes.append(f"web: the page raised {len(page.errors)} JavaScript errors: {page.errors[:3]}")
        finally:
            sim.stop()
    return rows, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 pickups instead of 20")
    ap.add_argument("--runs", type=int, help="pickups measured (default 20)")
    ap.add_argument("--workdir", type=Path, help="a new directory to work in, kept afterwards (logs, database)")
    args = ap.parse_args()
    settings = Settings.quick() if args.quick else Settings()
    given = {"runs": args.runs, "workdir": args.workdir}
    settings = replace(settings, **{k: v for k, v in given.items() if v is not None})
    return main_run("web", settings, run)


if __name__ == "__main__":
    sys.exit(main())
