"""A delivery's pickup window counts from the load, not from when it was prepared (no protocol
change): the prepared row expires after the loading allowance + the window; `loaded` moves the expiry
to the load + the window and sends the row again (same tag, id, door "*") in the next codes.apply;
reminders and notifications follow the new expiry; the firmware's store keeps the loaded delivery
bound to its door when its row comes again."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lockertools.contract import check
from lockertools.service import db, fleet_db, ingest
from lockertools.service.runner import Service
from lockertools.service.sync import Change, net_changes, plan

KEY = bytes(range(32))
LABELS = ["A1", "A2", "A3"]
DAY = 86400


def _fleet(path: Path) -> sqlite3.Connection:
    conn = db.connect(path, create=True)
    fleet_db.add_locker(conn, "hall-1", KEY, LABELS)
    return conn


def _event(conn: sqlite3.Connection, seq: int, received: float, **ev: Any) -> bool:
    with db.transaction(conn):
        return ingest.apply_event(conn, "hall-1", {"v": 1, "lid": "hall-1", "seq": seq, "ev": ev}, received)


def _row(conn: sqlite3.Connection, code_id: int) -> sqlite3.Row:
    row: sqlite3.Row = conn.execute("SELECT * FROM codes WHERE id = ?", (code_id,)).fetchone()
    return row


def _host_rev(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT host_rev FROM lockers WHERE id = 'hall-1'").fetchone()[0])


def _synced(conn: sqlite3.Connection) -> int:
    """The locker reported the host's revision: in sync. Returns it."""
    rev = _host_rev(conn)
    with db.transaction(conn):
        conn.execute("UPDATE lockers SET locker_rev = ? WHERE id = 'hall-1'", (rev,))
    return rev


def _plan(conn: sqlite3.Connection, now: float) -> list[Any]:
    inputs = fleet_db.sync_input(conn, "hall-1", now=now)
    assert inputs is not None
    return plan(inputs)


def _check_command(op: str, args: dict[str, Any]) -> None:
    check("command", {"v": 1, "lid": "hall-1", "seq": 1, "now": 1, "exp": 2, "tx": "t", "op": op, "args": args})


# --- preparing --------------------------------------------------------------------------------------


def test_a_prepared_row_expires_after_the_loading_allowance_and_the_window(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    default = fleet_db.prepare_delivery(conn, "hall-1")
    row = _row(conn, default.number)
    assert default.expires == row["expires"] == int(row["created_at"]) + 7 * DAY + 5 * DAY
    assert fleet_db.pickup_window_s(conn, row) == 5 * DAY
    short = fleet_db.prepare_delivery(conn, "hall-1", days=2)
    row = _row(conn, short.number)
    assert row["expires"] == int(row["created_at"]) + 7 * DAY + 2 * DAY
    assert fleet_db.pickup_window_s(conn, row) == 2 * DAY
    # The allowance is a fleet setting; deliveries already prepared keep their row.
    fleet_db.set_load_days(conn, 1.5)
    quick = fleet_db.prepare_delivery(conn, "hall-1", days=3)
    row = _row(conn, quick.number)
    assert row["expires"] == int(row["created_at"]) + int(1.5 * DAY) + 3 * DAY
    assert fleet_db.pickup_window_s(conn, row) == 3 * DAY
    assert _row(conn, default.number)["expires"] == default.expires
    fleet_db.set_load_days(conn, None)
    assert fleet_db.load_allowance_s(conn) == 7 * DAY
    with pytest.raises(fleet_db.FleetError, match="allowance"):
        fleet_db.set_load_days(conn, -1)
    with pytest.raises(fleet_db.FleetError, match="at most"):
        fleet_db.prepare_delivery(conn, "hall-1", days=400)
    with pytest.raises(fleet_db.FleetError, match="window"):
        fleet_db.prepare_delivery(conn, "hall-1", days=0)


# --- loading ----------------------------------------------------------------------------------------


def test_loaded_on_day_4_gives_the_resident_the_whole_window_and_the_locker_the_new_row(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    issued = fleet_db.prepare_delivery(conn, "hall-1", size="M")
    created = int(_row(conn, issued.number)["created_at"])
    base = _synced(conn)
    loaded_at = created + 4 * DAY
    assert _event(conn, 1, loaded_at + 30, k="loaded", t=loaded_at, d="A2", id=issued.number, staff=7)
    row = _row(conn, issued.number)
    assert (row["door"], row["state"], row["expires"]) == ("A2", "issued", loaded_at + 5 * DAY)
    assert row["expires"] > created + 5 * DAY  # the old rule gave one day from here
    # One change: the same row again, door-free, with its new expiry.
    assert _host_rev(conn) == base + 1
    last = conn.execute("SELECT op, code_id FROM changes ORDER BY rev DESC LIMIT 1").fetchone()
    assert tuple(last) == ("add", issued.number)
    (apply,) = _plan(conn, loaded_at + 60)
    assert apply.op == "codes.apply"
    assert apply.args == {
        "base": base,
        "rev": base + 1,
        "add": [[row["tag_hex"], "*", 3 | 2 << 4, loaded_at + 5 * DAY, issued.number]],
        "del": [],
    }
    _check_command(apply.op, apply.args)
    # A duplicate delivery of the event changes nothing.
    assert not _event(conn, 1, loaded_at + 90, k="loaded", t=loaded_at, d="A2", id=issued.number, staff=7)
    assert _host_rev(conn) == base + 1
    # A snapshot carries the new expiry too.
    with db.transaction(conn):
        conn.execute("UPDATE lockers SET snap = 1")
    (snap,) = _plan(conn, loaded_at + 60)
    assert snap.op == "codes.snapshot"
    assert [r for r in snap.args["codes"] if r[4] == issued.number] == [apply.args["add"][0]]


def test_the_window_starts_on_receipt_without_a_locker_clock_and_never_before_preparing(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    first = fleet_db.prepare_delivery(conn, "hall-1", days=3)
    created = int(_row(conn, first.number)["created_at"])
    received = created + 2 * DAY + 0.7
    _event(conn, 1, received, k="loaded", t=None, d="A1", id=first.number, staff=7)  # clock unknown
    assert _row(conn, first.number)["expires"] == int(received) + 3 * DAY
    # A locker clock far behind the host's: the window starts when the delivery was prepared.
    second = fleet_db.prepare_delivery(conn, "hall-1", days=3)
    created = int(_row(conn, second.number)["created_at"])
    _event(conn, 2, created + 100, k="loaded", t=50, d="A3", id=second.number, staff=7)
    row = _row(conn, second.number)
    assert (row["loaded_at"], row["expires"]) == (50, created + 3 * DAY)
    assert fleet_db.pickup_window_s(conn, row) == 3 * DAY


def test_the_reminder_and_the_residents_notification_use_the_new_expiry(tmp_path: Path) -> None:
    conn = _fleet(tmp_path / "f.db")
    issued = fleet_db.prepare_delivery(conn, "hall-1", contact="ann@example.org")
    created = int(_row(conn, issued.number)["created_at"])
    loaded_at = created + 4 * DAY
    _event(conn, 1, loaded_at + 5, k="loaded", t=loaded_at, d="A1", id=issued.number, staff=7)
    new_expiry = loaded_at + 5 * DAY
    note = conn.execute("SELECT * FROM notifications WHERE kind = 'loaded'").fetchone()
    sent = Service._notification(SimpleNamespace(conn=conn), note)  # type: ignore[arg-type]
    assert sent is not None and sent.code == issued.code
    assert (sent.expires, sent.door, sent.recipient) == (new_expiry, "A1", "ann@example.org")
    with db.transaction(conn):
        # When the window counted from preparing, this was a day before it ended: nothing now.
        assert fleet_db.queue_reminders(conn, created + 4 * DAY + 60) == 0
        assert fleet_db.queue_reminders(conn, new_expiry - DAY - 60) == 0
        assert fleet_db.queue_reminders(conn, new_expiry - DAY + 60) == 1
        assert fleet_db.queue_reminders(conn, new_expiry - 60) == 0  # once
        assert fleet_db.expire_codes(conn, new_expiry - 1) == 0
        assert fleet_db.expire_codes(conn, new_expiry) == 1
    reminder = conn.execute("SELECT * FROM notifications WHERE kind = 'reminder'").fetchone()
    assert reminder["code_id"] == issued.number
    sent = Service._notification(SimpleNamespace(conn=conn), reminder)  # type: ignore[arg-type]
    assert sent is not None and sent.expires == new_expiry and sent.code is None
    assert [r["id"] for r in fleet_db.take_back_table(conn)] == [issued.number]


# --- in any order, and what travels ------------------------------------------------------------------


def _outcome(tmp: Path, name: str, events: list[tuple[int, dict[str, Any]]]) -> tuple[Any, ...]:
    conn = _fleet(tmp / f"{name}.db")
    with db.transaction(conn):  # a fixed delivery (both databases hold the same row), three pickups
        conn.execute(
            "INSERT INTO codes(id, locker_id, door, kind, tag_hex, expires, created_at, item)"
            " VALUES (500001, 'hall-1', '*', 3, ?, ?, 1700000000, 'parcel')",
            ("ab" * 16, 1_700_000_000 + 12 * DAY),
        )
        fleet_db.log_change(conn, "hall-1", "add", 500001)
        for n in (9, 10, 11):
            conn.execute(
                "INSERT INTO codes(id, locker_id, door, kind, tag_hex, created_at) VALUES (?, 'hall-1', 'A3', 0, ?, 0)",
                (n, f"{n:032x}"),
            )
            fleet_db.log_change(conn, "hall-1", "add", n)
    base = _synced(conn)
    for seq, ev in events:
        _event(conn, seq, 1_700_000_000 + 10 * DAY, **ev)
    row = _row(conn, 500001)
    # What the locker, which had the delivery, is sent: the same in both orders.
    (apply,) = _plan(conn, 1_700_000_000 + 10 * DAY)
    assert apply.args["base"] == base
    sent = ([r[4] for r in apply.args["add"]], apply.args["del"])
    return (row["door"], row["state"], row["loaded_at"], row["expires"], _host_rev(conn), sent)


T0 = 1_700_000_000


def _ev(k: str, day: int, door: str) -> dict[str, Any]:
    return {"k": k, "t": T0 + day * DAY, "d": door}


@pytest.mark.parametrize(
    "events",
    [
        [(1, _ev("loaded", 1, "A1")), (2, _ev("pickup", 2, "A1"))],
        [(1, _ev("loaded", 1, "A1")), (2, _ev("loaded", 3, "A2"))],
        [(1, _ev("loaded", 1, "A1")), (2, _ev("taken_back", 7, "A1"))],
    ],
    ids=["pickup", "loaded-twice", "taken-back"],
)
def test_the_expiry_and_the_log_do_not_depend_on_the_order_events_arrive_in(
    tmp_path: Path, events: list[tuple[int, dict[str, Any]]]
) -> None:
    events = [(seq, ev | {"id": 500001, "staff": 7}) for seq, ev in events]
    in_order = _outcome(tmp_path, "in_order", events)
    reversed_ = _outcome(tmp_path, "reversed", events[::-1])
    assert in_order == reversed_
    still_there = events[1][1]["k"] == "loaded"
    assert in_order[5] == (([500001], []) if still_there else ([], [500001]))
    assert in_order[2:4] == (1_700_000_000 + DAY, 1_700_000_000 + DAY + 5 * DAY)  # the first load's


def test_a_removal_after_the_row_went_again_reaches_the_locker(tmp_path: Path) -> None:
    """The locker had the delivery before the load: a pickup (or a revocation) after the row went
    again must still remove it, even when the resent row and the removal fall in one delta."""
    conn = _fleet(tmp_path / "f.db")
    for door in LABELS:  # other codes on the locker: the delta is smaller than a snapshot
        fleet_db.issue_code(conn, "hall-1", door)
    picked = fleet_db.prepare_delivery(conn, "hall-1")
    revoked = fleet_db.prepare_delivery(conn, "hall-1")
    created = int(_row(conn, picked.number)["created_at"])
    base = _synced(conn)
    _event(conn, 1, created + 60, k="loaded", t=created + 10, d="A1", id=picked.number, staff=7)
    _event(conn, 2, created + 60, k="loaded", t=created + 20, d="A2", id=revoked.number, staff=7)
    _event(conn, 3, created + 60, k="pickup", t=created + 30, d="A1", id=picked.number)
    fleet_db.revoke_code(conn, revoked.number)
    (apply,) = _plan(conn, created + 60)
    assert (apply.args["base"], apply.args["add"], sorted(apply.args["del"])) == (
        base,
        [],
        sorted([picked.number, revoked.number]),
    )
    # A code issued and revoked while the locker was away still never travels.
    pickup = fleet_db.issue_code(conn, "hall-1", "A3")
    fleet_db.revoke_code(conn, pickup.code_id)
    (apply,) = _plan(conn, created + 60)
    assert pickup.code_id not in apply.args["del"]


def test_net_changes_keeps_the_removal_of_a_code_that_was_sent_again() -> None:
    assert net_changes([Change(1, "add", 7), Change(2, "del", 7)]) == []
    assert net_changes([Change(1, "add", 7, again=True), Change(2, "del", 7)]) == [Change(2, "del", 7)]
    assert net_changes([Change(1, "add", 7), Change(2, "add", 7, again=True)]) == [Change(2, "add", 7, again=True)]


# --- the firmware's store: a loaded delivery's row applied again ------------------------------------


def _firmware_row(wire: list[Any]) -> tuple[bytes, int, int, int, int]:
    tag_hex, door, kind, exp, code_id = wire
    assert door == "*"
    return (bytes.fromhex(tag_hex), 0xFF, kind, exp, code_id)


@pytest.mark.parametrize("later", [True, False], ids=["expiry-moves-later", "expiry-moves-earlier"])
def test_the_locker_keeps_a_loaded_delivery_in_its_door_when_the_row_comes_again(tmp_path: Path, later: bool) -> None:
    """What the host plans, applied to the firmware's CodeStore (locker/codes.py + codefile.py on
    CPython): the record is displaced by code_id, the journal keeps `loaded` at its door, the new
    expiry rules, and all of it survives a reboot."""
    from locker import codes  # type: ignore[import-not-found]

    conn = _fleet(tmp_path / "f.db")
    issued = fleet_db.prepare_delivery(conn, "hall-1", size="S", days=5 if later else 20)
    created = int(_row(conn, issued.number)["created_at"])
    with db.transaction(conn):
        conn.execute("UPDATE lockers SET locker_rev = 0")
    (first,) = _plan(conn, created)
    old_expiry = first.args["add"][0][3]

    d = str(tmp_path)
    store = codes.CodeStore(KEY, LABELS, path=d + "/codes.bin", used_path=d + "/used.bin", capacity=16)
    store.apply(first.args["rev"], [_firmware_row(r) for r in first.args["add"]], first.args["del"])
    code = bytearray(issued.code.encode())
    assert store.lookup(code, created)[0] == codes.OK and store.lookup(code, created)[1] is None  # not loaded
    store.loaded(issued.number, 1)  # staff loaded it into A2 (door index 1)

    loaded_at = created + (9 * DAY if later else 10)  # day 9: past the old expiry's window start
    base = _synced(conn)  # the locker ran `first`
    _event(conn, 1, loaded_at + 5, k="loaded", t=loaded_at, d="A2", id=issued.number, staff=7)
    (again,) = _plan(conn, loaded_at + 5)
    assert again.args["base"] == base == store.revision
    new_expiry = again.args["add"][0][3]
    assert new_expiry == loaded_at + (5 if later else 20) * DAY
    assert (new_expiry > old_expiry) == later
    store.apply(again.args["rev"], [_firmware_row(r) for r in again.args["add"]], again.args["del"])

    def check(s: Any) -> None:
        assert s.count() == 1
        assert s.used() == [(issued.number, 1, codes.STATE_LOADED)]  # still loaded, in A2
        assert [r[3] for r in s.records()] == [new_expiry]
        assert s.lookup(code, new_expiry - 1)[:3] == (codes.OK, 1, issued.number)
        assert s.lookup(code, new_expiry)[:3] == (codes.EXPIRED, 1, issued.number)
        if later:  # past the old expiry, the code still opens A2
            assert s.lookup(code, old_expiry + 60)[:3] == (codes.OK, 1, issued.number)
        else:  # before the old expiry, the new one already refuses it
            assert s.lookup(code, old_expiry - 60)[:3] == (codes.EXPIRED, 1, issued.number)

    check(store)
    rebooted = codes.CodeStore(KEY, LABELS, path=d + "/codes.bin", used_path=d + "/used.bin", capacity=16)
    assert rebooted.load() == []
    assert rebooted.revision == again.args["rev"]
    check(rebooted)


def _set_rev(conn: sqlite3.Connection, rev: int) -> None:
    with db.transaction(conn):
        conn.execute("UPDATE lockers SET locker_rev = ? WHERE id = 'hall-1'", (rev,))
