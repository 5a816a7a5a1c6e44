"""The technician's client: signed calls to a locker over a link, diagnostics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lockertools.maint import MaintError, Reply
from lockertools.maint.links import Link


class SeqBlocks:
    """Command seqs for a technician's tool, shared with the host service through its database: blocks
    reserved above everything the service handed out or reserved (db.reserve_seq_block), used in order.
    Before each command the stored top is read again: once the service (or another tool) has gone past
    this block, the next command takes a new block above it. Without this a tool numbers by the clock,
    and right after a service restart (whose reservation runs up to 10 minutes ahead of the clock) the
    locker refuses the tool's commands as replays."""

    def __init__(self, db_path: str | Path, locker_id: str) -> None:
        self.db_path = db_path
        self.locker_id = locker_id
        self.blocks = 0  # how many blocks were reserved
        self._next = 0
        self._end = -1  # the last seq of the current block

    def __call__(self) -> int:
        from lockertools.service import db

        conn = db.connect(self.db_path)  # one per command: a tool sends few, and nothing is left open
        try:
            if self._next > self._end or db.stored_seq_top(conn, self.locker_id) > self._end:
                first = db.reserve_seq_block(conn, self.locker_id)
                self._next, self._end = first, first + db.SEQ_BLOCK - 1
                self.blocks += 1
        except KeyError:
            raise MaintError(f"locker {self.locker_id!r} is not in {db.describe(self.db_path)}") from None
        finally:
            conn.close()
        seq = self._next
        self._next += 1
        return seq


class Maint:
    """Signed technicians' commands for one locker over a link."""

    def __init__(self, link: Link, locker_id: str, key: bytes, seqs: Callable[[], int] | None = None) -> None:
        """`seqs`: where command seqs come from (`SeqBlocks`: shared with the host service through its
        database); None: ms since the epoch, as the service's, for a locker with no database at hand."""

        from locker import protocol  # type: ignore[import-not-found]
        from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

        self._protocol = protocol
        self._hkey = HmacKey(key)
        self.link = link
        self.locker_id = locker_id
        self.key = key
        self._seqs = seqs
        self._next_seq = 0

    def sign(self, op: str, args: dict[str, Any], tx: str, ttl_s: int = 300) -> bytes:
        """A signed command; seq strictly increasing: from `seqs`, else ms since the epoch."""
        if self._seqs is not None:
            seq = self._seqs()
        else:
            seq = max(self._next_seq, int(time.time() * 1000))
            self._next_seq = seq + 1
        now = int(time.time())
        payload = {"v": 1, "lid": self.locker_id, "seq": seq, "now": now, "exp": now + ttl_s}
        payload |= {"tx": tx, "op": op, "args": args}
        wire: bytes = self._protocol.sign(self._hkey, self._protocol.encode(payload))
        return wire

    def call(self, op: str, args: dict[str, Any] | None = None, timeout: float = 10.0, retries: int = 0) -> Reply:
        """The locker's reply; MaintError when it does not answer. A retry re-sends under the same tx
        (a new seq), so an op that acts once still acts once."""
        import uuid

        tx = uuid.uuid4().hex[:12]
        for attempt in range(retries + 1):
            wire = self.sign(op, args or {}, tx)
            try:
                reply = self.link.request(wire, tx, timeout)
            except MaintError:
                if attempt == retries:
                    raise
                time.sleep(min(1.0, timeout))  # the link is down (rebooting): try again shortly
                continue
            if reply is not None:
                return reply
        raise MaintError(f"{op}: no reply within {timeout:g}s (is the locker online? is the key right?)")

    def diag(self, timeout: float = 10.0) -> dict[str, Any]:
        r = self.call("diag", {}, timeout)
        if not r.get("ok"):
            raise MaintError(f"diag refused: {r.get('error')} {r.get('detail', '')}".strip())
        d: dict[str, Any] = r["diag"]
        return d


def open_repl(m: Maint, timeout: float = 10.0) -> None:
    """Signed `repl.open`: Ctrl-C on the board's USB console reaches the REPL again until the board
    resets (a production board has it off). MaintError when refused or unanswered."""
    r = m.call("repl.open", {}, timeout)
    if not r.get("ok"):
        raise MaintError(f"repl.open refused: {r.get('error')} {r.get('detail', '')}".strip())


def diag_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    """A diag record as (field, value) rows for a table."""
    app = d.get("app") or {}
    rows = [
        ("firmware", str(d.get("fw"))),
        ("micropython", str(d.get("mp"))),
        ("application", f"{app.get('v')} ({app.get('h')})" if app else "-"),
        ("mode", "SAFE: " + str(d["safe"]) if d.get("safe") else "normal"),
        ("uptime", f"{d.get('up')} s"),
        ("last reset", str(d.get("reset"))),
        ("heap free / used", f"{d.get('heap_free')} / {d.get('heap_used')} bytes"),
        ("codes (rev)", f"{d.get('codes')} (rev {d.get('rev')})"),
        ("outbox (lost)", f"{d.get('outbox')} ({d.get('lost')} lost)"),
    ]
    for door in d.get("doors") or []:
        rows.append((f"door {door.get('d')}", f"{door.get('s')}{', parcel' if door.get('full') else ''}"))
    if d.get("trial"):
        t = d["trial"]
        rows.append(("update on trial", f"{t.get('v')}: boot {t.get('n')} of {t.get('k')}"))
    if d.get("rollback"):
        rb = d["rollback"]
        rows.append(("app_rollback", f"{rb.get('from')} -> {rb.get('to')} after {rb.get('n')} boots"))
    return rows


def require_ok(r: Reply, what: str) -> Reply:
    if not r.get("ok"):
        detail = {k: v for k, v in r.items() if k not in ("v", "lid", "tx", "cseq", "ok")}
        raise MaintError(f"{what} refused: {detail}")
    return r
