"""Residents' messages: e-mails per second through the outbox to a local SMTP sink (aiosmtpd on
loopback), one letter's render time (p95) and 500 letters as one printable PDF. docs/benchmarks.md,
"Residents' messages". Figures are printed, never asserted. Usage: python bench/notify.py [--messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from report import Figure

from lockertools.config import EmailSettings, MessagesSettings, Settings, TownSettings
from lockertools.notify import Outbox, Templates, letter_pdf, letters_to_print, set_locker_place
from lockertools.service import db, fleet_db, ingest

Say = Callable[[str], None]
MESSAGES_GOAL = 50.0  # per second
LETTER_P95_GOAL_S = 0.200
BATCH_GOAL_S = 30.0


@dataclass(frozen=True)
class BenchSettings:
    messages: int = 500
    letters: int = 500
    single_letters: int = 100


class _Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.count += 1
        return "250 OK"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fleet(path: Path, n: int, email: bool) -> db.Connection:
    """A fleet whose locker has `n` loaded deliveries, residents in turn Dutch, French, English."""
    conn = db.connect(path, create=True)
    labels = [f"D{i}" for i in range(1, 17)]
    fleet_db.add_locker(conn, "hall-1", bytes(32), labels)
    set_locker_place(conn, "hall-1", "Botermarkt 1, 9000 Gent")
    for i in range(n):
        resident = fleet_db.Resident(
            name=f"Resident {i}", email=f"r{i}@example.org" if email else None, language=("nl", "fr", "en")[i % 3]
        )
        issued = fleet_db.prepare_delivery(conn, "hall-1", item="document", resident=resident)
        event = {"v": 1, "lid": "hall-1", "seq": i + 1, "ev": {"k": "loaded", "t": int(time.time()),
                 "d": labels[i % 16], "id": issued.number}}  # fmt: skip
        with db.transaction(conn):
            ingest.apply_event(conn, "hall-1", event, time.time())
    return conn


def _settings(channels: list[str], port: int = 25) -> Settings:
    return Settings(
        town=TownSettings(name="Gent", help_phone="09 210 10 10", help_hours="ma-vr 9-17 uur"),
        messages=MessagesSettings(channels=channels),
        email=EmailSettings(host="127.0.0.1", port=port, security="none", sender="loket@gent.example"),
    )


def messages_figure(tmp: Path, n: int, say: Say) -> Figure:
    sink = _Sink()
    port = _port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        conn = _fleet(tmp / "messages.db", n, email=True)
        outbox = Outbox(_settings(["email"], port))
        start = time.perf_counter()
        while sink.count < n:
            asyncio.run(outbox.run_once(conn))
            if time.perf_counter() - start > 600:
                raise RuntimeError(f"only {sink.count} of {n} e-mails in 10 minutes")
        elapsed = time.perf_counter() - start
        conn.close()
    finally:
        controller.stop()
    rate = n / elapsed
    say(f"notify: {n} e-mails in {elapsed:.2f} s")
    return (f"residents' e-mails through the outbox to a local SMTP sink ({n})", f"{rate:.0f}/s",
            f">= {MESSAGES_GOAL:.0f}/s", rate >= MESSAGES_GOAL)  # fmt: skip


def letter_figures(tmp: Path, settings: BenchSettings, say: Say) -> list[Figure]:
    conn = _fleet(tmp / "letters.db", settings.letters, email=False)
    configured = _settings(["letter"])
    asyncio.run(Outbox(configured).run_once(conn))
    ids = [m.id for m in letters_to_print(conn)]
    templates = Templates.load()
    times = []
    for message_id in ids[: settings.single_letters]:
        start = time.perf_counter()
        letter_pdf(conn, configured, [message_id], templates)
        times.append(time.perf_counter() - start)
    p95 = statistics.quantiles(times, n=20)[18]
    start = time.perf_counter()
    pdf = letter_pdf(conn, configured, ids, templates)
    batch = time.perf_counter() - start
    conn.close()
    say(f"notify: letter p95 {p95 * 1000:.1f} ms; {len(ids)} letters in {batch:.2f} s ({len(pdf) // 1024} KB)")
    return [
        (f"one letter (A4 PDF), p95 of {len(times)}", f"{p95 * 1000:.1f} ms", f"< {LETTER_P95_GOAL_S * 1000:.0f} ms",
         p95 < LETTER_P95_GOAL_S),
        (f"{len(ids)} letters as one printable PDF", f"{batch:.2f} s ({len(pdf) // 1024} KB)",
         f"< {BATCH_GOAL_S:.0f} s", batch < BATCH_GOAL_S),
    ]  # fmt: skip


def run(settings: BenchSettings, say: Say) -> tuple[list[Figure], list[str]]:
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    rows: list[Figure] = []
    notes = [
        "notify: e-mails from the fleet database (SQLite) through the outbox (state committed before and after"
        " each batch, one SMTP connection per batch of 50) to aiosmtpd in this process; letters rendered from"
        " the database with the shipped templates (fpdf2, built-in fonts)"
    ]
    with tempfile.TemporaryDirectory(prefix="notify-bench-") as name:
        tmp = Path(name)
        rows.append(messages_figure(tmp, settings.messages, say))
        rows.extend(letter_figures(tmp, settings, say))
    return rows, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--messages", type=int, default=BenchSettings.messages)
    args = ap.parse_args()
    rows, notes = run(BenchSettings(messages=args.messages), lambda text: print(text, file=sys.stderr))
    for figure, value, goal, met in rows:
        print(f"{figure}: {value} (goal {goal}{'' if met is None else ', met' if met else ', NOT MET'})")
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
