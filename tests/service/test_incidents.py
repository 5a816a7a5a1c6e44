"""Incidents (service/incidents.py) on both databases: each cause the locker reports or the service
notices opens one, the same cause on the same door only bumps it while it is open, a clearing event
resolves it by itself (whatever order the deliveries arrive in), and staff take and resolve the rest."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import Rig, delivery_batches

from lockertools.cli import main
from lockertools.service import db, fleet_db, incidents, ingest
from tests.support.fixtures import Broker

KEY = bytes(range(32))
LABELS = ["A1", "A2", "A3"]
NOW = 1_800_000_000.0


def _fleet(path: Path) -> db.Connection:
    conn = db.connect(path, create=True)
    fleet_db.add_locker(conn, "hall-1", KEY, LABELS)
    return conn


@pytest.fixture
def conn(tmp_path: Path) -> Any:
    c = _fleet(tmp_path / "fleet.db")
    yield c
    c.close()


class Events:
    """Events of hall-1 through ingest.apply_event, as the service applies them (seq from 1)."""

    def __init__(self, conn: db.Connection) -> None:
        self.conn = conn
        self.seq = 0

    def __call__(self, k: str, seq: int | None = None, **fields: Any) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        ev = {"k": k, "t": int(NOW) + seq, **fields}
        with db.transaction(self.conn):
            assert ingest.apply_event(self.conn, "hall-1", {"v": 1, "lid": "hall-1", "seq": seq, "ev": ev}, NOW)
        return seq


def _open(conn: db.Connection) -> list[tuple[str, str]]:
    return sorted((i.cause, i.subject) for i in incidents.list_incidents(conn, state="open"))


# (event, its fields, the cause, the subject it is about, the detail it carries)
OPENING = [
    ("jammed", {"d": "A1", "id": 7}, "jammed", "A1", None),
    ("forced", {"d": "A2"}, "forced", "A2", None),
    ("left_open", {"d": "A3"}, "left_open", "A3", None),
    ("closed_full", {"d": "A1", "id": 7}, "item_left", "A1", None),
    ("sensor_suspect", {"d": "A2"}, "sensor_suspect", "A2", None),
    ("lockboard", {"a": 3, "r": "down"}, "lockboard_down", "board 3", "lock board 3"),
    ("throttled", {"n": 100}, "throttled", "", "100 wrong codes in a row"),
    ("wait_refused", {"c": 4, "n": 120}, "throttled", "", "120 wrong codes in a row"),
    ("problem", {"m": "codes.bin: bad header"}, "storage", "", "codes.bin: bad header"),
    (
        "app_rollback",
        {"from": "0.3.0", "to": "0.2.0", "n": 3},
        "update_rollback",
        "",
        "update 0.3.0 was not healthy within 3 trial boots: 0.2.0 put back",
    ),
]


@pytest.mark.parametrize(("kind", "fields", "cause", "subject", "detail"), OPENING, ids=[o[0] for o in OPENING])
def test_each_event_that_needs_a_person_opens_one_incident_and_a_repeat_bumps_it(
    conn: db.Connection, kind: str, fields: dict[str, Any], cause: str, subject: str, detail: str | None
) -> None:
    ev = Events(conn)
    first = ev(kind, **fields)
    [incident] = incidents.list_incidents(conn)
    assert (incident.locker_id, incident.cause, incident.subject, incident.state) == ("hall-1", cause, subject, "new")
    assert incident.door == fields.get("d")
    assert (incident.event_seq, incident.count, incident.detail) == (first, 1, detail)
    assert incident.opened_at == NOW + first  # the locker's clock
    again = ev(kind, **fields)
    [bumped] = incidents.list_incidents(conn)
    assert bumped.id == incident.id and bumped.count == 2 and bumped.last_seq == again
    assert bumped.last_at == NOW + again and bumped.event_seq == first
    # An event delivered twice is applied once (ingest): it counts once.
    with db.transaction(conn):
        msg = {"v": 1, "lid": "hall-1", "seq": again, "ev": {"k": kind, "t": int(NOW), **fields}}
        assert not ingest.apply_event(conn, "hall-1", msg, NOW)
    assert incidents.get_incident(conn, incident.id).count == 2
    [opened] = incidents.get(conn, incident.id).log
    assert (opened.action, opened.state, opened.by) == ("opened", "new", "auto")


def test_the_same_cause_on_another_door_or_board_is_another_incident(conn: db.Connection) -> None:
    ev = Events(conn)
    ev("jammed", d="A1", id=7)
    ev("jammed", d="A2", id=8)
    ev("left_open", d="A1")
    ev("lockboard", a=1, r="down")
    ev("lockboard", a=2, r="down")
    assert _open(conn) == [
        ("jammed", "A1"), ("jammed", "A2"), ("left_open", "A1"), ("lockboard_down", "board 1"),
        ("lockboard_down", "board 2"),
    ]  # fmt: skip
    # Events that need nobody open nothing.
    for kind, fields in [("boot", {"cause": "power_on", "v": "0.2.0"}), ("denied", {"r": "wrong", "n": 1}),
                         ("unlock", {"d": "A3", "id": 9}), ("staff_in", {"staff": 5})]:  # fmt: skip
        ev(kind, **fields)
    assert len(incidents.list_incidents(conn)) == 5


# (the opening event, the clearing event, the reason given)
CLEARING = [
    (("jammed", {"d": "A1", "id": 7}), ("opened", {"d": "A1"}), "the door opened"),
    (("left_open", {"d": "A1"}), ("closed", {"d": "A1"}), "the door was closed"),
    (("left_open", {"d": "A1"}), ("pickup", {"d": "A1", "id": 7}), "the door was closed"),
    (("left_open", {"d": "A1"}), ("loaded", {"d": "A1", "id": 0, "staff": 5}), "the door was closed"),
    (("forced", {"d": "A1"}), ("closed", {"d": "A1"}), "the door was closed"),
    (("closed_full", {"d": "A1", "id": 7}), ("pickup", {"d": "A1", "id": 7}), "the item was picked up"),
    (
        ("closed_full", {"d": "A1", "id": 7}),
        ("taken_back", {"d": "A1", "id": 7, "staff": 5}),
        "staff took the item back",
    ),
    (("lockboard", {"a": 3, "r": "down"}), ("lockboard", {"a": 3, "r": "up"}), "the board answers again"),
    (("app_rollback", {"from": "0.3.0", "to": "0.2.0", "n": 3}), ("app_ok", {"v": "0.3.1"}), "a later update was kept"),
]


@pytest.mark.parametrize(("opening", "clearing", "reason"), CLEARING, ids=[f"{o[0]}-{c[0]}" for o, c, _ in CLEARING])
def test_the_locker_reporting_the_cause_gone_resolves_the_incident_and_says_why(
    conn: db.Connection, opening: tuple[str, dict[str, Any]], clearing: tuple[str, dict[str, Any]], reason: str
) -> None:
    ev = Events(conn)
    ev(*opening[:1], **opening[1])
    [incident] = incidents.list_incidents(conn, state="open")
    seq = ev(clearing[0], **clearing[1])
    done = incidents.get(conn, incident.id)
    assert done.incident.state == "resolved" and not done.incident.is_open
    assert (done.incident.resolved_by, done.incident.resolution) == ("auto", reason)
    assert done.incident.resolved_at == NOW + seq
    assert [(e.action, e.state, e.by, e.note) for e in done.log] == [
        ("opened", "new", "auto", incident.detail),
        ("resolved", "resolved", "auto", reason),
    ]
    # It happens again: a new incident, the resolved one stays as it was.
    ev(*opening[:1], **opening[1])
    assert [i.state for i in incidents.list_incidents(conn)] == ["new", "resolved"]


def test_a_clearing_event_leaves_other_doors_and_other_causes_open(conn: db.Connection) -> None:
    ev = Events(conn)
    ev("left_open", d="A1")
    ev("left_open", d="A2")
    ev("jammed", d="A1", id=7)
    ev("throttled", n=100)
    ev("lockboard", a=1, r="down")
    ev("closed", d="A1")
    ev("lockboard", a=2, r="up")
    assert _open(conn) == [("jammed", "A1"), ("left_open", "A2"), ("lockboard_down", "board 1"), ("throttled", "")]


def test_an_event_arriving_after_its_clearing_event_is_recorded_resolved(conn: db.Connection) -> None:
    ev = Events(conn)
    ev("closed", seq=6, d="A1")  # delivered first
    ev("left_open", seq=5, d="A1")
    [incident] = incidents.list_incidents(conn)
    assert (incident.cause, incident.state, incident.resolved_by) == ("left_open", "resolved", "auto")
    assert incident.resolution == "the door was closed" and incident.resolved_at == NOW + 6
    # A clearing event older than what opened an incident does not resolve it.
    ev("left_open", seq=9, d="A2")
    ev("closed", seq=8, d="A2")
    assert _open(conn) == [("left_open", "A2")]


EV_KINDS = [
    ("left_open", {"d": "A1"}),
    ("closed", {"d": "A1"}),
    ("jammed", {"d": "A1", "id": 7}),
    ("opened", {"d": "A1"}),
    ("left_open", {"d": "A2"}),
    ("pickup", {"d": "A2", "id": 8}),
    ("lockboard", {"a": 1, "r": "down"}),
    ("lockboard", {"a": 1, "r": "up"}),
]


@st.composite
def _deliveries(draw: Any) -> tuple[list[int], list[list[int]]]:
    kinds = draw(st.lists(st.integers(0, len(EV_KINDS) - 1), min_size=1, max_size=10))
    return kinds, delivery_batches(draw, len(kinds), max_again=4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_deliveries())
def test_which_incidents_stay_open_does_not_depend_on_the_delivery_order(case: Any) -> None:
    kinds, batches = case
    with tempfile.TemporaryDirectory() as tmp:
        in_order, shuffled = _fleet(Path(tmp) / "a.db"), _fleet(Path(tmp) / "b.db")
        try:
            for seq, n in enumerate(kinds, 1):
                Events(in_order)(EV_KINDS[n][0], seq=seq, **EV_KINDS[n][1])
            for batch in batches:
                with db.transaction(shuffled):
                    for i in batch:
                        kind, fields = EV_KINDS[kinds[i]]
                        msg = {
                            "v": 1,
                            "lid": "hall-1",
                            "seq": i + 1,
                            "ev": {"k": kind, "t": int(NOW) + i + 1, **fields},
                        }
                        ingest.apply_event(shuffled, "hall-1", msg, NOW)
            assert _open(shuffled) == _open(in_order)
        finally:
            in_order.close()
            shuffled.close()


def _status(conn: db.Connection, online: bool, mode: str = "normal", at: float = NOW) -> None:
    msg: dict[str, Any] = {"v": 1, "lid": "hall-1", "online": online}
    if online:
        msg |= {"rev": 0, "mode": mode}
    with db.transaction(conn):
        ingest.apply_status(conn, "hall-1", msg, at)


def test_safe_mode_opens_an_incident_once_and_normal_mode_resolves_it(conn: db.Connection) -> None:
    _status(conn, True, "safe")
    _status(conn, True, "safe", NOW + 300)  # the 5-minute status: still the same incident, not a repeat
    [incident] = incidents.list_incidents(conn)
    assert (incident.cause, incident.subject, incident.count, incident.state) == ("safe_mode", "", 1, "new")
    _status(conn, False)  # the last will changes nothing
    assert incidents.get_incident(conn, incident.id).state == "new"
    _status(conn, True, "normal", NOW + 600)
    done = incidents.get_incident(conn, incident.id)
    assert (done.state, done.resolved_by, done.resolution) == ("resolved", "auto", "the locker left safe mode")


def test_a_condition_staff_resolved_is_not_reopened_while_it_lasts_only_when_it_comes_again(
    conn: db.Connection,
) -> None:
    # offline: resolved by staff (the locker was taken down for repairs), the check sees it still
    _status(conn, True, at=NOW)
    _status(conn, False, at=NOW + 60)
    _check(conn, NOW + 1801)
    [offline] = incidents.list_incidents(conn, cause="offline")
    incidents.resolve(conn, offline.id, "ann", "taken down for repairs", NOW + 1900)
    _check(conn, NOW + 1930)
    assert [i.id for i in incidents.list_incidents(conn, cause="offline")] == [offline.id]
    _status(conn, True, at=NOW + 5000)  # back, then gone again: a new outage
    _status(conn, False, at=NOW + 5060)
    _check(conn, NOW + 7000)
    assert [i.state for i in incidents.list_incidents(conn, cause="offline")] == ["new", "resolved"]

    # safe mode: the same boot's next status does not reopen it, a later boot's does
    def safe_status(up: int, at: float) -> None:
        with db.transaction(conn):
            msg = {"v": 1, "lid": "hall-1", "online": True, "rev": 0, "mode": "safe", "up": up}
            ingest.apply_status(conn, "hall-1", msg, at)

    safe_status(100, NOW + 8000)
    [safe] = incidents.list_incidents(conn, cause="safe_mode")
    incidents.resolve(conn, safe.id, "tom", "reflashing tomorrow", NOW + 8100)
    safe_status(400, NOW + 8300)
    assert [i.state for i in incidents.list_incidents(conn, cause="safe_mode")] == ["resolved"]
    safe_status(30, NOW + 9000)  # rebooted, still in safe mode
    assert [i.state for i in incidents.list_incidents(conn, cause="safe_mode")] == ["new", "resolved"]
    # flapping: the same flag does not reopen it
    with db.transaction(conn):
        fleet_db.flap_begin(conn, "hall-1", NOW + 9000, NOW + 9100, 10)
    _check(conn, NOW + 9101)
    [flap] = incidents.list_incidents(conn, cause="flapping")
    incidents.resolve(conn, flap.id, "ann", "a second board with the same password: unplugged", NOW + 9200)
    _check(conn, NOW + 9231)
    assert [i.state for i in incidents.list_incidents(conn, cause="flapping")] == ["resolved"]


def _check(conn: db.Connection, now: float, offline_after_s: float = 1800.0) -> None:
    with db.transaction(conn):
        incidents.check(conn, now, offline_after_s)


def test_a_locker_offline_longer_than_the_setting_opens_an_incident_and_online_resolves_it(
    conn: db.Connection,
) -> None:
    fleet_db.add_locker(conn, "hall-2", KEY, LABELS)  # never seen: not installed yet, nothing to report
    _status(conn, True, at=NOW)
    _status(conn, False, at=NOW + 60)
    _check(conn, NOW + 1799)
    assert incidents.list_incidents(conn) == []
    _check(conn, NOW + 1801)
    _check(conn, NOW + 1900)  # seen again by the next check: the same incident
    [incident] = incidents.list_incidents(conn)
    assert (incident.locker_id, incident.cause, incident.count, incident.opened_at) == (
        "hall-1",
        "offline",
        1,
        NOW + 1801,
    )
    assert incident.detail is not None and incident.detail.startswith("offline for more than 30 min")
    _check(conn, NOW + 1801, offline_after_s=3600.0)  # another setting: the open one stays open
    _status(conn, True, at=NOW + 2000)
    done = incidents.get_incident(conn, incident.id)
    assert (done.state, done.resolution, done.resolved_at) == ("resolved", "the locker is online again", NOW + 2000)
    _check(conn, NOW + 2001)
    assert incidents.list_incidents(conn, state="open") == []


def test_a_flapping_connection_opens_an_incident_until_the_flag_ends(conn: db.Connection) -> None:
    with db.transaction(conn):
        fleet_db.flap_begin(conn, "hall-1", NOW - 100, NOW, 10)
    _check(conn, NOW + 1)
    _check(conn, NOW + 31)
    [incident] = incidents.list_incidents(conn)
    assert (incident.cause, incident.state, incident.count, incident.detail) == (
        "flapping", "new", 1, "10 online/offline changes"
    )  # fmt: skip
    with db.transaction(conn):
        assert fleet_db.flaps_end(conn, NOW + 700, NOW + 700) == ["hall-1"]
    _check(conn, NOW + 701)
    done = incidents.get_incident(conn, incident.id)
    assert (done.state, done.resolution) == ("resolved", "the connection is steady again")


def test_a_notification_that_failed_opens_an_incident_until_a_retry_delivers_it(conn: db.Connection) -> None:
    with db.transaction(conn):
        fleet_db.enqueue_notification(conn, "hall-1", None, "taken_back", "A2", {})
        fleet_db.enqueue_notification(conn, "hall-1", None, "taken_back", "A3", {})
        conn.execute("UPDATE notifications SET state = 'failed', error = 'hook exited 1', attempts = 1")
    _check(conn, NOW)
    assert _open(conn) == [("notify_failed", "A2"), ("notify_failed", "A3")]
    [a2] = incidents.list_incidents(conn, state="open", cause="notify_failed", locker="hall-1")[1:]
    assert a2.door == "A2" and a2.detail == "1 notification(s) not delivered: hook exited 1"
    with db.transaction(conn):
        conn.execute("UPDATE notifications SET state = 'sent' WHERE door = 'A2'")
    _check(conn, NOW + 30)
    assert _open(conn) == [("notify_failed", "A3")]
    assert incidents.get_incident(conn, a2.id).resolution == "delivered on a retry"


def test_staff_take_and_resolve_with_a_note_and_the_history_says_who_did_what(conn: db.Connection) -> None:
    ev = Events(conn)
    ev("throttled", n=100)
    [incident] = incidents.list_incidents(conn)
    taken = incidents.take(conn, incident.id, "ann", NOW + 10, "going to look at the camera")
    assert (taken.state, taken.handled_by, taken.note) == ("in_progress", "ann", "going to look at the camera")
    with pytest.raises(incidents.IncidentError, match="a note is required"):
        incidents.resolve(conn, incident.id, "bob", "  ", NOW + 20)
    with pytest.raises(incidents.IncidentError, match="staff account"):
        incidents.resolve(conn, incident.id, "", "done", NOW + 20)
    with pytest.raises(incidents.IncidentError, match="service's own name"):
        incidents.take(conn, incident.id, "auto", NOW + 20)
    assert incidents.get_incident(conn, incident.id) == taken  # refused: nothing changed
    incidents.add_note(conn, incident.id, "bob", "children trying codes", NOW + 25)
    done = incidents.resolve(conn, incident.id, "bob", "spoke to the school", NOW + 30)
    assert (done.state, done.resolved_by, done.resolution, done.resolved_at) == (
        "resolved", "bob", "spoke to the school", NOW + 30
    )  # fmt: skip
    assert done.handled_by == "ann"
    with pytest.raises(incidents.IncidentError, match="resolved already"):
        incidents.resolve(conn, incident.id, "bob", "again", NOW + 40)
    with pytest.raises(incidents.IncidentError, match="no incident 999"):
        incidents.take(conn, 999, "bob", NOW)
    log = incidents.get(conn, incident.id).log
    assert [(e.action, e.state, e.by, e.note, e.at) for e in log] == [
        ("opened", "new", "auto", "100 wrong codes in a row", NOW + 1),
        ("taken", "in_progress", "ann", "going to look at the camera", NOW + 10),
        ("note", "in_progress", "bob", "children trying codes", NOW + 25),
        ("resolved", "resolved", "bob", "spoke to the school", NOW + 30),
    ]
    # A resolved incident: the same cause opens a new one.
    ev("throttled", n=200)
    assert [i.state for i in incidents.list_incidents(conn)] == ["new", "resolved"]


def test_list_filters_and_changes_since_is_a_cursor(conn: db.Connection) -> None:
    fleet_db.add_locker(conn, "hall-2", KEY, LABELS)
    ev = Events(conn)
    ev("jammed", d="A1", id=7)
    ev("left_open", d="A2")
    with db.transaction(conn):
        incidents.open_or_bump(conn, "hall-2", "offline", NOW, detail="gone")
    # newest first (the locker's clock): jammed at NOW + 1, left_open at NOW + 2, offline at NOW
    assert [i.cause for i in incidents.list_incidents(conn)] == ["left_open", "jammed", "offline"]
    assert [i.cause for i in incidents.list_incidents(conn, locker="hall-1")] == ["left_open", "jammed"]
    assert [i.cause for i in incidents.list_incidents(conn, cause="jammed")] == ["jammed"]
    assert [i.cause for i in incidents.list_incidents(conn, limit=1)] == ["left_open"]
    with pytest.raises(incidents.IncidentError, match="unknown state"):
        incidents.list_incidents(conn, state="closed")
    with pytest.raises(incidents.IncidentError, match="unknown cause"):
        incidents.list_incidents(conn, cause="fire")
    with pytest.raises(incidents.IncidentError, match="unknown cause"):
        incidents.open_or_bump(conn, "hall-1", "fire", NOW)

    first = incidents.changes_since(conn)
    assert [(c.entry.action, c.incident.cause) for c in first] == [
        ("opened", "jammed"), ("opened", "left_open"), ("opened", "offline")
    ]  # fmt: skip
    cursor = first[-1].entry.id
    assert incidents.changes_since(conn, cursor) == []
    ev("closed", d="A2")
    [resolved] = incidents.changes_since(conn, cursor)
    assert (resolved.entry.action, resolved.incident.cause, resolved.incident.state) == (
        "resolved", "left_open", "resolved"
    )  # fmt: skip
    assert [c.entry.id for c in incidents.changes_since(conn, 0, limit=2)] == [e.entry.id for e in first[:2]]
    assert [i.cause for i in incidents.list_incidents(conn, state="resolved")] == ["left_open"]
    assert [i.cause for i in incidents.list_incidents(conn, state=["new", "resolved"], locker="hall-1")] == [
        "left_open",
        "jammed",
    ]


def test_lockerctl_incidents_list_show_take_resolve(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    conn = _fleet(path)
    try:
        ev = Events(conn)
        ev("jammed", d="A1", id=7)
        ev("problem", m="codes.bin: bad header")
        [problem, jammed] = incidents.list_incidents(conn)
    finally:
        conn.close()
    runner = CliRunner()

    def run(*args: str) -> str:
        out = runner.invoke(main, ["incidents", *args, "--db", str(path)])
        assert out.exit_code == 0, out.output
        return out.output

    listed = run("list")
    lines = listed.splitlines()
    assert lines[0].split()[:6] == ["id", "opened", "locker", "where", "cause", "state"]
    assert [ln.split()[0] for ln in lines[1:]] == [str(problem.id), str(jammed.id)]
    assert "jammed" in lines[2] and " A1 " in lines[2] and "codes.bin: bad header" in lines[1]
    assert run("take", str(jammed.id), "--by", "ann").strip().endswith("in progress, by ann")
    out = runner.invoke(main, ["incidents", "resolve", str(jammed.id), "--by", "ann", "--note", " ", "--db", str(path)])
    assert out.exit_code != 0 and "a note is required" in out.output
    resolved = run("resolve", str(jammed.id), "--by", "ann", "--note", "freed the latch")
    assert f"incident {jammed.id} (jammed at hall-1) resolved by ann" in resolved
    shown = run("show", str(jammed.id))
    assert " by ann: freed the latch" in shown and "door A1" in shown
    assert [ln.split()[2:4] for ln in shown.splitlines() if ln.startswith("  2")] == [
        ["opened", "auto"],
        ["taken", "ann"],
        ["resolved", "ann:"],
    ]
    assert [ln.split()[0] for ln in run("list").splitlines()[1:]] == [str(problem.id)]
    assert [ln.split()[0] for ln in run("list", "--state", "resolved").splitlines()[1:]] == [str(jammed.id)]
    assert run("list", "--cause", "offline").strip() == "no incidents"
    out = runner.invoke(main, ["incidents", "show", "999", "--db", str(path)])
    assert out.exit_code != 0 and "no incident 999" in out.output


def test_a_database_at_the_baseline_gets_the_incident_tables(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    conn = _fleet(path)
    with db.transaction(conn):
        conn.execute("DROP TABLE incident_log")
        conn.execute("DROP TABLE incidents")
        conn.execute("UPDATE alembic_version SET version_num = '0001_baseline'")
    conn.close()
    conn = db.connect(path)
    try:
        assert db.schema_revision(conn) == db.schema_head()
        Events(conn)("jammed", d="A1", id=7)
        assert _open(conn) == [("jammed", "A1")]
    finally:
        conn.close()


def test_the_service_runs_the_periodic_checks(broker: Broker, tmp_path: Path) -> None:
    """The service's poller runs incidents.check (at start, then every 30 s) with its offline setting."""
    rig = Rig(broker, tmp_path, incident_offline_s=600.0)
    try:
        with db.transaction(rig.conn):
            rig.conn.execute("UPDATE lockers SET online = 0, last_seen = ? WHERE id = 'hall-1'", (time.time() - 601,))
        rig.start_service()
        rig.wait(lambda: incidents.list_incidents(rig.conn, state="open"), "the offline incident")
        [incident] = incidents.list_incidents(rig.conn)
        assert incident.cause == "offline" and "more than 10 min" in (incident.detail or "")
        rig.start_locker()  # its status: online again
        rig.wait(lambda: not incidents.list_incidents(rig.conn, state="open"), "the incident resolved")
        assert incidents.get_incident(rig.conn, incident.id).resolution == "the locker is online again"
    finally:
        rig.close()


def test_service_run_takes_the_offline_time_from_the_configuration_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockertools.service import runner

    _fleet(tmp_path / "fleet.db").close()
    configs: list[runner.ServiceConfig] = []
    monkeypatch.setattr(runner, "run_service", configs.append)
    args = ["service", "run", "--db", str(tmp_path / "fleet.db"), "--plain", "--metrics", "off"]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert configs[-1].incident_offline_s == 1800.0  # no file: 30 minutes
    config = tmp_path / "lockertools.toml"
    config.write_text("[incidents]\noffline_after_min = 12.5\n")
    out = CliRunner().invoke(main, ["--config", str(config), *args])
    assert out.exit_code == 0, out.output
    assert configs[-1].incident_offline_s == 750.0
