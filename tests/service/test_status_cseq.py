"""The status's `cseq` (the last command seq a locker admitted) moves the host service's numbers past
it: a locker whose sequence went ahead of the host's database (a restored backup, a tool that numbered
by its own clock) stops refusing the service's commands as replays once its status arrives."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from lockertools.commands import CommandSigner
from lockertools.service import db, fleet_db, ingest

KEY = bytes(range(32))
LID = "hall-1"
DAY_MS = 86_400_000


def _gate(tmp_path: Path) -> Any:
    """The firmware's own gate (locker.protocol.CommandGate), its cmdseq.bin in tmp_path."""
    from locker import protocol  # type: ignore[import-not-found]
    from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

    gate = protocol.CommandGate(HmacKey(KEY), LID, path=str(tmp_path / "cmdseq.bin"))
    gate.load()
    return gate


def _status(cseq: int | None) -> dict[str, Any]:
    msg: dict[str, Any] = {"v": 1, "lid": LID, "online": True, "mode": "normal", "fw": "0.1.0", "rev": 0, "snap": False}
    if cseq is not None:
        msg["cseq"] = cseq
    return msg


def _service_command(conn: Any, seqs: db.CommandSeqs) -> bytes:
    with db.transaction(conn):
        seq = seqs.take(conn, LID)
    return CommandSigner(LID, KEY, first_seq=seq).command("time")


def test_the_service_goes_on_above_the_lockers_last_admitted_seq(tmp_path: Path) -> None:
    from locker import protocol  # type: ignore[import-not-found]

    conn = db.connect(tmp_path / "host.db", create=True)
    fleet_db.add_locker(conn, LID, KEY, ["A1"])
    seqs = db.CommandSeqs()
    gate = _gate(tmp_path)
    now = int(time.time())

    # A command numbered a day ahead of the clock (not through the service's database) was admitted.
    ahead = CommandSigner(LID, KEY, first_seq=int(time.time() * 1000) + DAY_MS).command("time")
    gate.admit(ahead, now)
    lockers_seq = json.loads(ahead[65:])["seq"]
    with pytest.raises(protocol.Refused, match="replay"):
        gate.admit(_service_command(conn, seqs), now)

    # The locker's status says where it is; the service's next command goes past it and is admitted.
    with db.transaction(conn):
        ingest.apply_status(conn, LID, _status(lockers_seq), time.time())
    cmd = gate.admit(_service_command(conn, seqs), now)
    assert cmd["seq"] > lockers_seq
    # Across a restart of the service too (the stored top moved), and a lower or missing cseq (an
    # older status, older firmware) moves nothing back.
    with db.transaction(conn):
        ingest.apply_status(conn, LID, _status(5), time.time())
        ingest.apply_status(conn, LID, _status(None), time.time())
    assert gate.admit(_service_command(conn, db.CommandSeqs()), now)["seq"] > cmd["seq"]
