"""The staff desk's deliveries pages (`lockertools.desk.pages.deliveries`, reports): server time with
50 lockers of 24 doors and 10,000 deliveries (bench/desk.py's fleet, each delivery with its resident
and the town's case number).

Timed from the request sent to the last byte read over loopback, by a logged-in desk (or manager)
account, p50/p95 over `requests` requests after 5 warm-ups:
1. the deliveries list (`GET /deliveries`: the newest 50 of 10,000, and their count) - goal p95 under
   150 ms;
2. the list filtered (`?state=loaded`) and searched (`?q=` a case number, `?q=` part of a name);
3. the reports page (deliveries per week and door occupancy over 12 weeks, SQL aggregates).

On SQLite; with --postgres also on a throwaway PostgreSQL cluster. Figures are printed, never
asserted. Entry point for bench/run.py: `desk_pages.run(desk_pages.Settings(), say)`.

Usage: python bench/desk_pages.py [--quick] [--postgres]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import desk  # bench/desk.py: the fleet, the database, the desk's server and client
from report import Figure, cores, main_run, pct

Say = desk.Say
LIST_GOAL_MS = 150.0


@dataclass(frozen=True)
class Settings:
    requests: int = 200
    postgres: bool = False

    @classmethod
    def quick(cls) -> Settings:
        return cls(requests=50)


def _residents(target: str) -> None:
    """Each delivery's resident, language and case number, as the desk records them."""
    from lockertools.desk import auth
    from lockertools.service import db

    conn = db.connect(target)
    try:
        auth.add_account(conn, "bench-manager", "manager", "bench-password", time.time())
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM codes WHERE (kind & 15) = 3")]
        with db.transaction(conn):
            conn.executemany(
                "INSERT INTO delivery_details(code_id, case_ref, resident_name, email, language, source, created_by)"
                " VALUES (?, ?, ?, ?, ?, 'desk', 'bench')",
                [(i, f"EL-2026-{i:06d}", f"Resident {i}", f"r{i}@example.org", "nlfren"[i % 3 * 2 :][:2]) for i in ids],
            )
    finally:
        conn.close()


def _timed(client: object, path: str, requests: int, expect: str) -> list[float]:
    for _ in range(5):
        assert client.get(path).status == 200  # type: ignore[attr-defined]
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        reply = client.get(path)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - t0) * 1000)
        assert reply.status == 200 and expect in reply.text, (path, reply.status)
    return times


def run(settings: Settings, say: Say) -> tuple[list[Figure], list[str]]:
    from desk_support import DeskClient, DeskServer

    rows: list[Figure] = []
    notes = [
        f"desk pages: measured on one machine ({cores()} cores): the desk in this process (its own thread and"
        " worker threads), the client beside it; times include HTTP over loopback"
    ]
    fleet = f"{desk.LOCKERS}x{desk.DOORS} doors, {desk.DELIVERIES} deliveries"
    for kind in ("sqlite", "postgresql") if settings.postgres else ("sqlite",):
        with tempfile.TemporaryDirectory(prefix="desk-pages-bench-") as tmp, desk._database(kind, Path(tmp)) as target:
            desk._fill(target, say)
            _residents(target)
            server = DeskServer(target).start()
            try:
                clerk, manager = DeskClient(server), DeskClient(server)
                assert clerk.login("bench", "bench-password").status == 303
                assert manager.login("bench-manager", "bench-password").status == 303
                some = 100_000 + desk.DELIVERIES // 2
                cases = [
                    ("deliveries list", clerk, "/deliveries", "/deliveries?state=all&amp;page=2", LIST_GOAL_MS),
                    ("deliveries list, loaded", clerk, "/deliveries?state=loaded", "/deliveries/", None),
                    ("deliveries list, a case number", clerk, f"/deliveries?q=EL-2026-{some:06d}", str(some), None),
                    ("deliveries list, part of a name", clerk, f"/deliveries?q=Resident%20{some}", str(some), None),
                    ("reports (12 weeks)", manager, "/reports", "hall-50", None),
                ]
                for what, client, path, expect, goal in cases:
                    times = _timed(client, path, settings.requests, expect)
                    p50, p95 = pct(times, 50), pct(times, 95)
                    rows.append(
                        (
                            f"desk ({kind}): {what}, {fleet}",
                            f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(times):.0f} ms (n={len(times)})",
                            "-" if goal is None else f"p95 < {goal:.0f} ms",
                            None if goal is None else p95 < goal,
                        )
                    )
                    say(f"desk ({kind}): {what} p95 {p95:.0f} ms")
            finally:
                server.stop()
    return rows, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 requests per page instead of 200")
    ap.add_argument("--postgres", action="store_true", help="on PostgreSQL too (a throwaway cluster)")
    args = ap.parse_args()
    settings = Settings.quick() if args.quick else Settings()
    if args.postgres:
        settings = Settings(settings.requests, postgres=True)
    return main_run("desk pages", settings, run)


if __name__ == "__main__":
    sys.exit(main())
