"""The town's HTTP API (docs/api.md): delivery creation latency.

`lockerctl api serve` on loopback (its own process) against a SQLite fleet database with one
16-door locker; this process sends `requests` POST /api/v1/deliveries one after the other on one
keep-alive connection, each with its own Idempotency-Key (as an integration that retries would),
and times each from sending to the whole answer read. The deliveries pile up (none is loaded), so
the last requests draw their codes against every earlier one. p50/p99/max; the goal is p99 < 30 ms.
Figures are printed, never asserted. Entry point for bench/run.py: `api.run(api.Settings(), say)`.

Usage: python bench/api.py [--requests N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from report import Figure, main_run, pct

ROOT = Path(__file__).resolve().parents[1]
GOAL_P99_MS = 30.0
Say = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    requests: int = 1000


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fleet(path: Path) -> str:
    from lockertools.api import tokens
    from lockertools.api.lockers import record_door_sizes
    from lockertools.boards import doors
    from lockertools.flash import board_labels
    from lockertools.service import db, fleet_db

    board = json.loads((ROOT / "boards" / "esp32-16door-mcp.json").read_text())
    conn = db.connect(path, create=True)
    try:
        fleet_db.add_locker(conn, "hall-1", secrets.token_bytes(32), board_labels(board))
        record_door_sizes(conn, "hall-1", doors(board))
        return tokens.create_token(conn, "bench", ["deliveries"]).secret
    finally:
        conn.close()


def _wait_serving(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"lockerctl api serve exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/api/v1/openapi.json")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("lockerctl api serve did not answer")


def measure(workdir: Path, settings: Settings, say: Say) -> list[float]:
    token = _fleet(workdir / "fleet.db")
    port = _free_port()
    cmd = [sys.executable, "-c", "from lockertools.cli import main; main()", "api", "serve", "--port", str(port)]
    env = os.environ | {"LOCKER_DB": str(workdir / "fleet.db")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_serving(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        lat: list[float] = []
        for i in range(settings.requests):
            body = json.dumps({
                "locker": "hall-1", "case_number": f"EL-{i:06d}", "item": "document", "size": "M",
                "resident": {"name": "Ann Peeters", "email": "ann@example.org", "language": "nl"},
            })  # fmt: skip
            t0 = time.perf_counter()
            conn.request("POST", "/api/v1/deliveries", body=body, headers=headers | {"Idempotency-Key": f"k{i}"})
            response = conn.getresponse()
            response.read()
            lat.append((time.perf_counter() - t0) * 1000)
            if response.status != 201:
                raise RuntimeError(f"request {i}: HTTP {response.status}")
            if (i + 1) % 250 == 0:
                say(f"api: {i + 1} deliveries created, p99 so far {pct(lat, 99):.1f} ms")
        conn.close()
        return lat
    finally:
        proc.terminate()
        proc.wait(10)


def run(settings: Settings, say: Say) -> tuple[list[Figure], list[str]]:
    with tempfile.TemporaryDirectory(prefix="locker-api-") as name:
        lat = measure(Path(name), settings, say)
    p99 = pct(lat, 99)
    rows: list[Figure] = [
        (
            f"API POST /deliveries, SQLite, {len(lat)} requests",
            f"p50 {pct(lat, 50):.1f} ms, p99 {p99:.1f} ms (max {max(lat):.1f})",
            f"p99 < {GOAL_P99_MS:g} ms",
            p99 < GOAL_P99_MS,
        )
    ]
    notes = ["api: one client on one keep-alive connection, lockerctl api serve in its own process (loopback)"]
    return rows, notes


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=Settings.requests)
    sys.exit(main_run("api", Settings(ap.parse_args().requests), run))
