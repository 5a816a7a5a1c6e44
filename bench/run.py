"""make bench: latency, heap, flash-wear and boot-time figures of the real firmware on the simulated
board, then the host service's fleet figure (bench/fleet.py), the code-sync figures of an online
locker (bench/sync.py), the web simulator's (bench/web.py), provisioning's (bench/provision.py),
the RS485 lock boards' (bench/rs485.py), the town's HTTP API's (bench/api.py), the staff desk's
(bench/desk.py, bench/desk_pages.py) and residents' messages' (bench/notify.py);
docs/benchmarks.md says what each figure means and how it is measured.

Figures are printed, never asserted: a goal that is not met is reported as such. Two jobs run side by
side (the machine the figures are quoted for has 2 cores): the 100-pickup latency run, and everything
else. Usage: python bench/run.py [--pickups N] [--only heap]

The heap goal is checked on a 32-bit MicroPython (bench/heap32.py: the webassembly port under Node),
the 64-bit unix port's figures beside it; bench/heap_romfs.py measures the same with the firmware
imported from a ROMFS image.
"""

from __future__ import annotations

import argparse
import functools
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api  # noqa: E402
import desk  # noqa: E402
import desk_pages  # noqa: E402
import fleet  # noqa: E402
import heap32  # noqa: E402
import heap_probe  # noqa: E402
import heap_romfs  # noqa: E402
import notify  # noqa: E402
import provision  # noqa: E402
import rs485  # noqa: E402
import simlocker as S  # noqa: E402
import sync  # noqa: E402
import web  # noqa: E402
from report import kb, pct  # noqa: E402

from lockertools import sim as _sim  # noqa: E402
from lockertools.sim import SimError  # noqa: E402

T = TypeVar("T")

HEAP = "128K"  # the firmware's heap the figures are asked for
FALLBACK_HEAP = _sim.CONSOLE_SYNC_HEAP  # when 128K fails: the heap the console-sync tests use
KEY_DEBOUNCE_MS = 20  # config.py default; the bench runs the firmware with default settings
LATENCY_GOAL_MS = KEY_DEBOUNCE_MS + 10
FLASH_GOAL = 4 * 1024
CODES = 500
BOOTS = 10
FLASH_PICKUPS = 10
AGED_USED = 400  # codes already used (journal entries) in the worst flash-wear case
TRIAL_PICKUPS = 2  # per heap-size trial

_print_lock = threading.Lock()
_t0 = time.monotonic()


def say(text: str) -> None:
    with _print_lock:
        print(f"[{time.monotonic() - _t0:6.1f}s] {text}", flush=True)


@dataclass
class Row:
    figure: str
    value: str
    goal: str = "-"
    met: bool | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, figure: str, value: str, goal: str = "-", met: bool | None = None) -> None:
        self.rows.append(Row(figure, value, goal, met))

    def note(self, text: str) -> None:
        self.notes.append(text)


def at_heap(what: str, fn: Callable[[str], T], report: Report) -> tuple[T, str]:
    """fn(heap) at HEAP; if the firmware dies there, say so and measure at FALLBACK_HEAP."""
    try:
        return fn(HEAP), HEAP
    except (S.Crashed, SimError) as exc:
        # A timeout counts too: a firmware that reset mid-run (MemoryError -> exception handler ->
        # reset) leaves the bench waiting for an answer that never comes.
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        report.note(f"{what}: the firmware failed at heap {HEAP} ({first}); measured at {FALLBACK_HEAP} instead.")
        say(f"{what}: crashed at {HEAP}; again at {FALLBACK_HEAP}")
        return fn(FALLBACK_HEAP), FALLBACK_HEAP


def heap_tag(heap: str) -> str:
    return "" if heap == HEAP else f" (at {heap})"


def files(flash: Path) -> dict[str, bytes]:
    return {str(p.relative_to(flash)): p.read_bytes() for p in flash.rglob("*") if p.is_file()}


def boot_times(lk: S.Locker, n: int) -> list[dict[str, Any]]:
    """n power cuts and boots. boots.bin goes before each one: n boots cut short in a row would
    otherwise count as failed boots and end in safe mode (locker/safemode.py)."""
    out = []
    for _ in range(n):
        lk.power_cut()
        (lk.flash / "boots.bin").unlink(missing_ok=True)
        out.append(lk.boot())
    return out


def boot_summary(times: list[dict[str, Any]]) -> str:
    r = pct([t["ready_ms"] for t in times], 50)
    d = pct([t["display_ms"] for t in times], 50)
    fw = pct([t["fw_ready_ms"] for t in times], 50)
    return f"ready {r:.0f} ms, idle text {d:.0f} ms (firmware's own count {fw:.0f} ms)"


# --- job A: 100 pickups on the 16-door board with 500 codes ----------------------------------------


def latency_job(tmp: Path, pickups: int) -> dict[str, Any]:
    def run(heap: str) -> dict[str, Any]:
        flash, codes = S.make_flash(tmp / f"lat-{heap}", "16-door", CODES)
        with S.Locker(flash, heap) as lk:
            lk.boot()
            s0 = lk.status()
            lat: list[float] = []
            marks: dict[int, int] = {0: s0["flash_bytes"]}
            for n, (digits, door) in enumerate(codes[:pickups], start=1):
                lat.append(lk.pickup(digits, door))
                if n in (10, pickups - 10, pickups):
                    marks[n] = lk.status()["flash_bytes"]
                if n % 25 == 0:
                    say(f"latency: {n}/{pickups} pickups, p50 {pct(lat, 50):.1f} ms")
            outbox = len(list((flash / "outbox").glob("*.ev")))
            boots = boot_times(lk, BOOTS)
            return {"lat": lat, "marks": marks, "boots": boots, "outbox": outbox, "clean": lk.clean()}

    return run_crash_aware("latency (16-door, 500 codes)", run)


def run_crash_aware(what: str, fn: Callable[[str], T]) -> dict[str, Any]:
    report = Report()
    result, heap = at_heap(what, fn, report)
    return {"result": result, "heap": heap, "notes": report.notes}


# --- job B: heap, flash wear, boot time, sizes ----------------------------------------------------


def heap_run(tmp: Path, board: str, heap: str, *, pickups: int, tag: str, used: int = 0) -> dict[str, Any]:
    flash, codes = S.make_flash(tmp / f"heap-{board}-{heap}-{tag}-{used}", board, CODES, used=used)
    with S.Locker(flash, heap) as lk:
        boot = lk.boot()
        for digits, door in codes[:pickups]:
            lk.pickup(digits, door)
        st = lk.status()
        if not lk.clean():
            raise S.Crashed(lk.why())
    return {"boot": boot, "status": st}


def min_heap(tmp: Path, board: str, live: int, used: int) -> tuple[int, int, str]:
    """Smallest process heap (2 KB steps) that boots with 500 codes (`used` of them already used),
    does TRIAL_PICKUPS pickups and answers `status`. Returns (smallest that worked, largest that
    failed, why it failed)."""

    def works(process_heap: int) -> tuple[bool, str]:
        heap = str(process_heap - S.SIM_SHIM_HEAP)
        try:
            heap_run(tmp, board, heap, pickups=TRIAL_PICKUPS, tag="trial", used=used)
            return True, ""
        except S.SimError as exc:  # Crashed, or so short of heap that it timed out
            return False, str(exc).splitlines()[0][:160]

    step = 2048
    lo = (live // step) * step  # it holds `live` bytes after boot: nothing below can work
    hi = lo + 64 * 1024
    ok, why = works(hi)
    while not ok:
        lo, hi = hi, hi + 64 * 1024
        ok, why = works(hi)
    last_why = "not tried"
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        ok, why = works(mid)
        if ok:
            hi = mid
        else:
            lo, last_why = mid, why
    return hi, lo, last_why


def flash_run(tmp: Path, board: str, ncodes: int, used: int) -> dict[str, Any]:
    def run(heap: str) -> dict[str, Any]:
        flash, codes = S.make_flash(tmp / f"flash-{heap}", board, ncodes, used=used)
        with S.Locker(flash, heap) as lk:
            lk.boot()
            before_files = files(flash)
            b0 = lk.status()["flash_bytes"]
            for digits, door in codes[:FLASH_PICKUPS]:
                lk.pickup(digits, door)
            b1 = lk.status()["flash_bytes"]
            after_files = files(flash)
        per = (b1 - b0) / FLASH_PICKUPS
        return {"per": per, "parts": breakdown(before_files, after_files, FLASH_PICKUPS, per)}

    return run_crash_aware(f"flash wear ({board}, {ncodes} codes, {used} used)", run)


def breakdown(before: dict[str, bytes], after: dict[str, bytes], n: int, per_pickup: float) -> dict[str, float]:
    """Bytes written per pickup by file, from the flash folder before and after n pickups.

    Outbox events: the new files' sizes (and the high-water mark when it moved). Audit log: its
    growth. The rest of what the firmware counted (per_pickup) is the used-code journal, which
    appends one small entry on consume and one on complete (and now and then compacts)."""
    new_events = sum(len(v) for k, v in after.items() if k.startswith("outbox/") and k not in before)
    hwm = sum(len(v) for k, v in after.items() if k.endswith("hwm.bin") and before.get(k) != v)
    audit = len(after.get("audit.log", b"")) - len(before.get("audit.log", b""))
    outbox = (new_events + hwm) / n if n else 0.0
    audit_per = audit / n if n else 0.0
    return {
        "used.bin": max(0.0, per_pickup - outbox - audit_per),
        "outbox": outbox,
        "audit.log": audit_per,
        "used_size": len(after.get("used.bin", b"")),
    }


def boot_job(tmp: Path, board: str) -> list[dict[str, Any]]:
    def run(heap: str) -> list[dict[str, Any]]:
        flash, _ = S.make_flash(tmp / f"boot-{board}-{heap}", board, CODES)
        with S.Locker(flash, heap) as lk:
            lk.boot()  # the first boot writes the files a board has after provisioning
            return boot_times(lk, BOOTS)

    result: list[dict[str, Any]] = run_crash_aware(f"boot time ({board})", run)["result"]
    return result


def mpy_total() -> str:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("mpy_sizes.py"))], capture_output=True, text=True, timeout=120
    )
    total = next((ln for ln in proc.stdout.splitlines() if "total" in ln), proc.stdout.strip()[-200:])
    return " ".join(total.split()) + ("" if proc.returncode == 0 else f" (mpy_sizes.py exit {proc.returncode})")


def other_job(tmp: Path, report: Report) -> None:
    heap_job(tmp, report)
    flash_boot_job(tmp, report)


def heap_job(tmp: Path, report: Report) -> None:
    """The 64-bit unix port's heap figures, then the 32-bit port's beside the same steps on 64-bit."""
    shims = {b: S.shim_cost(b) for b in S.BOARDS}
    say("shim: " + ", ".join(f"{b} {w} B" for b, (_, w) in shims.items()))

    # 2. heap
    for board in S.BOARDS:
        shim = shims[board][1]
        res, heap = at_heap(f"heap ({board})", functools.partial(heap_run, tmp, board, pickups=3, tag="fig"), report)
        st, boot = res["status"], res["boot"]
        tag = heap_tag(heap)
        say(f"heap {board}: after boot {boot['heap_after_boot']}, status {st.get('heap_used')}")
        process = S.heap_bytes(heap) + S.SIM_SHIM_HEAP
        report.row(
            f"heap after boot, {board}, 500 codes{tag}",
            f"{kb(boot['heap_after_boot'] - shim)} firmware ({kb(boot['heap_after_boot'])} - shim {kb(shim)})",
        )
        report.row(
            f"heap after 3 pickups + status, {board}{tag}",
            f"{kb(st['heap_used'] - shim)} firmware ({kb(st['heap_used'])} used, {kb(st['heap_free'])} free)",
        )
        if "heap_peak" in st:
            report.row(
                f"heap_peak as reported, {board}{tag}",
                f"{kb(st['heap_peak'])} (> the {kb(process)} process heap: not a high-water mark)",
            )
        found = {u: min_heap(tmp, board, boot["heap_after_boot"], u) for u in (0, AGED_USED)}
        fw = {u: ok - shim for u, (ok, _, _) in found.items()}
        say(
            f"min heap {board}: "
            + ", ".join(f"{u} used: works at {ok}, fails at {bad}" for u, (ok, bad, _) in found.items())
        )
        worst = max(fw.values())
        # No goal here: the goal is checked on the 32-bit port (heap32 rows below).
        report.row(
            f"heap high-water, {board}, 500 codes: smallest heap that runs (64-bit port)",
            f"{kb(fw[0])} firmware; {kb(fw[AGED_USED])} with {AGED_USED} used; the worst {kb(worst)}",
        )
        for u, (ok, bad, why) in found.items():
            report.note(
                f"{board}, {u} codes used: runs at a process heap of {kb(ok)} (firmware {kb(ok - shim)} ="
                f" {kb(ok)} - shim {kb(shim)}), fails at {kb(bad)}: {why}"
            )
        try:
            report.note(f"{board} heap, measured (bench/heap_probe.py): {heap_probe.summary(heap_probe.probe(board))}")
        except S.SimError as exc:
            report.note(f"{board} heap probe failed: {exc}")

    # 2b. the same firmware on a 32-bit MicroPython
    try:
        heap32.check_versions()
        figures = [f for board in S.BOARDS for f in heap32.measure(board, CODES)]
        for fig in figures:
            say(f"heap32 {fig.board} {fig.what}: 32-bit {fig.bits32}, 64-bit {fig.bits64} ({fig.ratio:.2f})")
        report.rows.extend(Row(*r) for r in heap32.rows(figures, CODES))
        report.notes.extend(heap32.notes(figures))
    except (heap32.Heap32Error, S.SimError, OSError, subprocess.SubprocessError) as exc:
        report.note(f"32-bit heap figures failed: {type(exc).__name__}: {str(exc)[:600]}")

    # 2c. what a romfs partition saves: the same steps with the firmware imported from a ROMFS image
    try:
        savings = [s for board in S.BOARDS for s in heap_romfs.measure(board, CODES)]
        report.rows.extend(Row(*r) for r in heap_romfs.rows(savings, CODES))
    except (heap32.Heap32Error, S.SimError, OSError, subprocess.SubprocessError) as exc:
        report.note(f"ROMFS heap figures failed: {type(exc).__name__}: {str(exc)[:600]}")


def flash_boot_job(tmp: Path, report: Report) -> None:
    # 3. flash wear
    for label, board, ncodes, used in (
        ("20 codes", "4-door", 20, 0),
        (f"500 codes, {AGED_USED} already used", "4-door", CODES, AGED_USED),
    ):
        out = flash_run(tmp, board, ncodes, used)
        r = out["result"]
        report.notes.extend(out["notes"])
        p = r["parts"]
        say(f"flash {label}: {r['per']:.0f} B/pickup")
        report.row(
            f"flash bytes per pickup, {label}{heap_tag(out['heap'])}",
            f"{r['per']:.0f} B",
            "<= 4 KB",
            r["per"] <= FLASH_GOAL,
        )
        report.note(
            f"flash per pickup, {label}: used.bin {p['used.bin']:.0f} B (journal appends and compaction;"
            f" {p['used_size']} B after), outbox {p['outbox']:.0f} B, audit.log {p['audit.log']:.0f} B,"
            f" other {r['per'] - p['used.bin'] - p['outbox'] - p['audit.log']:.0f} B"
        )

    # 4. boot time
    for board in S.BOARDS:
        times = boot_job(tmp, board)
        say(f"boot {board}: {boot_summary(times)}")
        report.row(f"power-on to ready, {board}, 500 codes, p50 of {BOOTS}", boot_summary(times))

    # 5. sizes
    report.row(".mpy total (xtensawin, bench/mpy_sizes.py)", mpy_total())


def print_table(report: Report) -> None:
    head = ("figure", "value", "goal", "met")
    rows = [(r.figure, r.value, r.goal, "-" if r.met is None else ("met" if r.met else "NOT MET")) for r in report.rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = "  ".join("{:<%d}" % w for w in widths)
    print()
    print(line.format(*head))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))
    if report.notes:
        print()
        for n in report.notes:
            print("* " + n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pickups", type=int, default=100, help="pickups for the latency figure (default 100)")
    ap.add_argument("--only", choices=["heap"], help="heap: only the heap table (64-bit and 32-bit ports)")
    args = ap.parse_args()
    say(f"bench on {platform.node()} ({platform.machine()}, {_cpus()} cores), micropython {S.default_micropython()}")
    S.build()
    report = Report()
    if args.only == "heap":
        with tempfile.TemporaryDirectory(prefix="locker-bench-") as name:
            heap_job(Path(name), report)
        print_table(report)
        say("done")
        return 0
    with tempfile.TemporaryDirectory(prefix="locker-bench-") as name:
        tmp = Path(name)
        with ThreadPoolExecutor(max_workers=2) as pool:
            lat_future = pool.submit(latency_job, tmp, args.pickups)
            other_future = pool.submit(other_job, tmp, report)
            errors = []
            for fut, what in ((other_future, "heap/flash/boot"), (lat_future, "latency")):
                try:
                    fut.result()
                except Exception as exc:  # noqa: BLE001 - print what was measured, and why the rest is missing
                    errors.append(f"{what} figures failed: {type(exc).__name__}: {str(exc)[:600]}")
        if errors:
            report.notes.extend(errors)
        else:
            add_latency(report, lat_future.result(), args.pickups)
    try:  # alone: it needs both cores (broker, service, simulated lockers)
        rows, notes = fleet.run(fleet.Settings(), say)
        report.rows.extend(Row(*r) for r in rows)
        report.notes.extend(notes)
    except Exception as exc:  # noqa: BLE001 - print what was measured, and why the rest is missing
        report.note(f"fleet figures failed: {type(exc).__name__}: {str(exc)[:600]}")
    # Each alone: they need both cores (broker, service, simulated lockers, browser).
    for what, job in (
        ("sync", lambda: sync.run(sync.Settings(), say)),  # through the broker, service and an online locker
        ("web simulator", lambda: web.run(web.Settings(), say)),  # page click -> solenoid, door -> page
        ("provisioning", lambda: provision.run(provision.Settings(), say)),  # install, image size, bulk
        ("rs485", lambda: rs485.run(rs485.Settings(), say)),  # `#` -> unlock frame on the 32-door lock-board board
        ("api", lambda: api.run(api.Settings(), say)),  # the town's HTTP API: POST /deliveries on SQLite
        ("desk", lambda: desk.run(desk.Settings(postgres=True), say)),  # overview server time, door -> wall's SSE
        ("desk pages", lambda: desk_pages.run(desk_pages.Settings(postgres=True), say)),  # deliveries list, reports
        ("residents' messages", lambda: notify.run(notify.BenchSettings(), say)),  # outbox -> SMTP sink, letters
    ):
        try:
            rows, notes = job()
            report.rows.extend(Row(*r) for r in rows)
            report.notes.extend(notes)
        except Exception as exc:  # noqa: BLE001 - print what was measured, and why the rest is missing
            report.note(f"{what} figures failed: {type(exc).__name__}: {str(exc)[:600]}")
    print_table(report)
    say("done")
    return 0


def add_latency(report: Report, out: dict[str, Any], pickups: int) -> None:
    r, tag = out["result"], heap_tag(out["heap"])
    report.notes.extend(out["notes"])
    lat = r["lat"]
    p99 = pct(lat, 99)
    report.rows.insert(
        0,
        Row(
            f"# down -> solenoid on, 16-door, 500 codes, {len(lat)} pickups{tag}",
            f"p50 {pct(lat, 50):.1f} ms, p99 {p99:.1f} ms (max {max(lat):.1f})",
            f"p99 <= {LATENCY_GOAL_MS} ms",
            p99 <= LATENCY_GOAL_MS,
        ),
    )
    m = r["marks"]
    keys = sorted(m)
    first = (m[keys[1]] - m[0]) / keys[1]
    last = (m[keys[-1]] - m[keys[-2]]) / (keys[-1] - keys[-2])
    whole = (m[keys[-1]] - m[0]) / keys[-1]
    report.rows.insert(
        1,
        Row(
            f"flash bytes per pickup, 16-door, 500 codes, pickups 1-{keys[-1]}{tag}",
            f"{whole:.0f} B (first {keys[1]}: {first:.0f} B, last {keys[-1] - keys[-2]}: {last:.0f} B)",
            "<= 4 KB",
            whole <= FLASH_GOAL,
        ),
    )
    report.rows.append(
        Row(
            f"power-on to ready, 16-door, after {pickups} pickups ({r['outbox']} events queued), p50 of {BOOTS}",
            boot_summary(r["boots"]),
        )
    )
    if not r["clean"]:
        report.note("latency run: the firmware log shows an error or reset (see above)")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


if __name__ == "__main__":
    sys.exit(main())
