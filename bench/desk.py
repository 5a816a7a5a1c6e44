"""Staff desk figures (`lockertools.desk`, docs/desk.md).

1. the lockers overview's server time: 50 lockers of 24 doors and 10,000 deliveries (most picked up,
   one in three doors holding one, a few doors in alarm or out of service, three events per
   delivery), `GET /lockers` by a logged-in desk account: the desk's own time for the answer (its
   Server-Timing header: from the outermost middleware's start to the response ready, session check
   included), and beside it the round trip (request sent to last byte read over loopback; the desk
   runs in this process's own thread, its database calls in worker threads). p50/p95 over
   `requests` requests after 5 warm-ups. Goal: p95 server time under 150 ms.
2. a door event -> the wall's server-sent event: one locker's event applied and committed as the
   host service does (ingest.apply_event in a transaction of its own connection), to the `door` event
   read from `/lockers/ID/live`, each event at a random moment (0-0.3 s after the last one arrived).
   p50/p90 over `events` events. Goal: p90 under 1 s. On SQLite the desk reads the change counter
   every 0.2 s; on PostgreSQL it is woken by NOTIFY.

Both on SQLite; with --postgres also on a throwaway PostgreSQL cluster (tests/support/postgres.py).
Figures are printed, never asserted. Entry point for bench/run.py: `desk.run(desk.Settings(), say)`.

Usage: python bench/desk.py [--quick] [--postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "tests" / "desk"):
    if str(extra) not in sys.path:
        sys.path.append(str(extra))  # tests/desk/desk_support.py: the server and client the tests use

from report import Figure, cores, main_run, pct  # noqa: E402

Say = Callable[[str], None]
LOCKERS = 50
DOORS = 24
DELIVERIES = 10_000
OVERVIEW_GOAL_MS = 150.0
LIVE_GOAL_MS = 1000.0


@dataclass(frozen=True)
class Settings:
    requests: int = 200
    events: int = 40
    postgres: bool = False

    @classmethod
    def quick(cls) -> Settings:
        return cls(requests=50, events=10)


def _fill(target: str, say: Say) -> None:
    """The fleet: LOCKERS x DOORS doors, DELIVERIES deliveries, their events."""
    from lockertools.desk import auth
    from lockertools.service import db, fleet_db

    t0 = time.monotonic()
    conn = db.connect(target, create=True)
    try:
        auth.add_account(conn, "bench", "desk", "bench-password", time.time())
        labels = [str(n) for n in range(1, DOORS + 1)]
        sizes = {label: ("SML"[i % 3], i < 4) for i, label in enumerate(labels)}
        now = time.time()
        for n in range(LOCKERS):
            lid = f"hall-{n + 1:02d}"
            fleet_db.add_locker(conn, lid, bytes(32), labels, sizes)
        with db.transaction(conn):
            conn.execute("UPDATE lockers SET online = 1, locker_rev = host_rev, last_seen = ?", (now,))
            conn.execute("UPDATE doors SET state = 'closed', \"full\" = 0")
            code_rows, event_rows, seqs = [], [], dict.fromkeys(range(LOCKERS), 0)
            for i in range(DELIVERIES):
                n = i % LOCKERS
                lid = f"hall-{n + 1:02d}"
                door = labels[(i // LOCKERS) % DOORS]
                # the newest delivery of every third door is still inside; the rest were picked up
                inside = i >= DELIVERIES - LOCKERS * DOORS and (i // LOCKERS) % 3 == 0
                code_rows.append(
                    (100_000 + i, lid, door, 3, "0" * 64, int(now + 5 * 86400), "issued" if inside else "used",
                     now - 3600, "parcel", now - 3000)
                )  # fmt: skip
                for kind in ("loaded", "opened", "pickup") if not inside else ("loaded",):
                    seqs[n] += 1
                    ev = {"t": int(now), "k": kind, "d": door}
                    event_rows.append((lid, seqs[n], kind, door, json.dumps(ev), now))
            conn.executemany(
                "INSERT INTO codes(id, locker_id, door, kind, tag_hex, expires, state, created_at, item, loaded_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                code_rows,
            )
            conn.executemany(
                "INSERT INTO events(locker_id, seq, kind, door, json, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                event_rows,
            )
            conn.execute("UPDATE doors SET \"full\" = 1 WHERE (locker_id, label) IN"
                         " (SELECT locker_id, door FROM codes WHERE state = 'issued')")  # fmt: skip
            conn.execute("UPDATE doors SET state = 'jammed' WHERE label = '7'")
            conn.execute("UPDATE doors SET in_service = 0 WHERE label = '24'")
    finally:
        conn.close()
    say(f"desk: {LOCKERS} lockers x {DOORS} doors, {DELIVERIES} deliveries written in {time.monotonic() - t0:.1f} s")


def _overview(server: object, settings: Settings) -> tuple[list[float], list[float]]:
    from desk_support import DeskClient

    client = DeskClient(server)  # type: ignore[arg-type]
    assert client.login("bench", "bench-password").status == 303
    for _ in range(5):
        assert client.get("/lockers").status == 200
    server_ms, round_trip_ms = [], []
    for _ in range(settings.requests):
        t0 = time.perf_counter()
        reply = client.get("/lockers")
        round_trip_ms.append((time.perf_counter() - t0) * 1000)
        assert reply.status == 200 and "hall-50" in reply.text
        server_ms.append(float(reply.headers["Server-Timing"].partition("dur=")[2]))
    return server_ms, round_trip_ms


def _live(server: object, settings: Settings) -> list[float]:
    from desk_support import DeskClient, stream_events

    from lockertools.service import db, ingest

    client = DeskClient(server)  # type: ignore[arg-type]
    assert client.login("bench", "bench-password").status == 303
    seen: list[tuple[float, dict[str, object]]] = []
    ready = threading.Event()
    arrived = threading.Condition()

    def read() -> None:
        for event, data in stream_events(server, client, "/lockers/hall-01/live"):  # type: ignore[arg-type]
            if event == "doors":
                ready.set()
            elif event == "door":
                with arrived:
                    seen.append((time.perf_counter(), json.loads(data)))
                    arrived.notify_all()
            elif event == "end":
                return

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert ready.wait(30), "the stream did not start"
    times = []
    with server.connect() as conn:  # type: ignore[attr-defined]
        seq = 1_000_000
        for i in range(settings.events):
            seq += 1
            kind = "opened" if i % 2 == 0 else "closed"
            state = "open" if kind == "opened" else "closed"
            msg = {"seq": seq, "ev": {"t": int(time.time()), "k": kind, "d": "2"}}
            # at a random moment: right after the last event arrived is right after the desk's last look
            time.sleep(random.uniform(0.0, 0.3))
            t0 = time.perf_counter()
            with db.transaction(conn):
                ingest.apply_event(conn, "hall-01", msg, time.time())
            with arrived:
                got = arrived.wait_for(lambda s=state: any(d["d"] == "2" and d["state"] == s for _, d in seen), 30)
                assert got, f"event {i} did not reach the stream"
                at = next(t for t, d in seen if d["d"] == "2" and d["state"] == state)
                seen.clear()
            times.append((at - t0) * 1000)
    return times


@contextlib.contextmanager
def _database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield str(tmp / "fleet.db")
        return
    from tests.support.postgres import PostgresServer

    with PostgresServer() as pg:
        yield pg.create_database("desk_bench")


def run(settings: Settings, say: Say) -> tuple[list[Figure], list[str]]:
    from desk_support import DeskServer

    rows: list[Figure] = []
    notes = [
        f"desk: measured on one machine ({cores()} cores): the desk in this process (its own thread and worker"
        " threads), the client beside it; server time from the desk's Server-Timing header"
    ]
    for kind in ("sqlite", "postgresql") if settings.postgres else ("sqlite",):
        with tempfile.TemporaryDirectory(prefix="desk-bench-") as tmp, _database(kind, Path(tmp)) as target:
            _fill(target, say)
            server = DeskServer(target).start()
            try:
                times, trips = _overview(server, settings)
                p50, p95 = pct(times, 50), pct(times, 95)
                rows.append(
                    (
                        f"desk ({kind}): lockers overview, server time,"
                        f" {LOCKERS}x{DOORS} doors, {DELIVERIES} deliveries",
                        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(times):.0f} ms (n={len(times)})",
                        f"p95 < {OVERVIEW_GOAL_MS:.0f} ms",
                        p95 < OVERVIEW_GOAL_MS,
                    )
                )
                rows.append(
                    (
                        f"desk ({kind}): lockers overview, round trip over loopback",
                        f"p50 {pct(trips, 50):.0f} ms, p95 {pct(trips, 95):.0f} ms, max {max(trips):.0f} ms",
                        "-",
                        None,
                    )
                )
                say(f"desk ({kind}): overview p95 {p95:.0f} ms (server), {pct(trips, 95):.0f} ms (round trip)")
                live = _live(server, settings)
                p50, p90 = pct(live, 50), pct(live, 90)
                rows.append(
                    (
                        f"desk ({kind}): door event committed -> wall's server-sent event",
                        f"p50 {p50:.0f} ms, p90 {p90:.0f} ms, max {max(live):.0f} ms (n={len(live)})",
                        f"p90 < {LIVE_GOAL_MS:.0f} ms",
                        p90 < LIVE_GOAL_MS,
                    )
                )
                say(f"desk ({kind}): live p90 {p90:.0f} ms")
            finally:
                server.stop()
    return rows, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 requests and 10 events instead of 200 and 40")
    ap.add_argument("--postgres", action="store_true", help="on PostgreSQL too (a throwaway cluster)")
    args = ap.parse_args()
    settings = Settings.quick() if args.quick else Settings()
    if args.postgres:
        settings = Settings(settings.requests, settings.events, postgres=True)
    return main_run("desk", settings, run)


if __name__ == "__main__":
    sys.exit(main())
