"""Counting a PostgreSQL connection's round trips, from libpq's protocol trace: every wait of the client
for the server ends with the server's ReadyForQuery, so their count is the round trips made."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from lockertools.service import db


@dataclass
class Trips:
    count: int = 0
    trace: str = ""


@contextmanager
def round_trips(conn: db.Connection) -> Iterator[Trips]:
    """The round trips `conn` (PostgreSQL) made inside the block: `.count` once the block is left."""
    pgconn = conn.sa_connection.connection.dbapi_connection.pgconn  # type: ignore[union-attr]
    trips = Trips()
    with tempfile.TemporaryFile() as out:
        pgconn.trace(out.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        try:
            yield trips
        finally:
            pgconn.untrace()
            out.seek(0)
            trips.trace = out.read().decode(errors="replace")
            trips.count = sum(
                1 for line in trips.trace.splitlines() if line.split("\t")[:1] == ["B"] and "\tReadyForQuery" in line
            )
