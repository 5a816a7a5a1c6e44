"""Command seqs shared between the host service and a technician's tool (db.CommandSeqs,
db.reserve_seq_block, maint.client.SeqBlocks), against the locker's rule: a command is admitted only with a
seq above the last one admitted (firmware/locker/protocol.py, CommandGate). Hypothesis drives any mix
of service commands, tool commands, service restarts and clock steps (forward and back), delivered in
the order they were signed."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockertools.maint.client import SeqBlocks
from lockertools.service import db, fleet_db

KEY = bytes(range(32))
LID = "hall-1"

Action = tuple[str, int]
ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("service"), st.integers(1, 40)),  # the service signs n commands
        st.tuples(st.just("tool"), st.integers(1, 40)),  # the technician's tool signs n commands
        st.tuples(st.just("restart"), st.just(0)),  # the service restarts (its memory is gone)
        st.tuples(st.just("new_tool"), st.just(0)),  # another lockerctl run
        st.tuples(st.just("clock"), st.integers(-3_600_000, 3_600_000)),  # ms; an NTP step back too
    ),
    max_size=30,
)


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def time(self) -> float:
        return self.ms / 1000


def _play(path: Path, actions: list[Action], tool_seqs: str) -> list[tuple[str, int, bool]]:
    """Every command as (who, seq, admitted by the locker's rule)."""
    conn = db.connect(path)
    service = db.CommandSeqs()
    tool: SeqBlocks | None = None
    clock_tool = 0  # the tool's old way: ms since the epoch, strictly increasing
    last = 0
    out = []
    for kind, n in actions:
        if kind == "restart":
            service = db.CommandSeqs()
        elif kind == "new_tool":
            tool = None
        elif kind == "clock":
            CLOCK.ms += n
        for _ in range(n if kind in ("service", "tool") else 0):
            if kind == "service":
                seq = service.take(conn, LID)
            elif tool_seqs == "shared":
                tool = tool or SeqBlocks(path, LID)
                seq = tool()
            else:
                clock_tool = seq = max(clock_tool + 1, CLOCK.ms)
            out.append((kind, seq, seq > last))
            last = max(last, seq)
    conn.close()
    return out


CLOCK = Clock()


@pytest.fixture(autouse=True)
def _fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db.time, "time", CLOCK.time)


def _fresh(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    conn = db.connect(path, create=True)
    fleet_db.add_locker(conn, LID, KEY, ["A1"])
    conn.close()
    return path


@settings(max_examples=60, deadline=None)
@given(actions=ACTIONS)
def test_every_command_is_above_the_last_whoever_signs_it(
    tmp_path_factory: pytest.TempPathFactory, actions: list[Action]
) -> None:
    path = _fresh(tmp_path_factory.mktemp("seqs"), "fleet.db")
    refused = [(who, seq) for who, seq, ok in _play(path, actions, "shared") if not ok]
    assert refused == []


def test_a_tool_numbering_by_the_clock_is_refused_after_a_service_restart(tmp_path: Path) -> None:
    """What SeqBlocks is for: the service's reservation runs ahead of the clock, so after a restart
    (which starts above it) a clock-numbered tool falls below the locker's last seq."""
    actions: list[Action] = [("service", 3), ("restart", 0), ("service", 1), ("tool", 2)]
    old = _play(_fresh(tmp_path, "a.db"), actions, "clock")
    assert [ok for who, _, ok in old if who == "tool"] == [False, False]
    new = _play(_fresh(tmp_path, "b.db"), actions, "shared")
    assert all(ok for _, _, ok in new)


def test_the_service_goes_past_a_tools_block_and_the_tool_past_the_service(tmp_path: Path) -> None:
    path = _fresh(tmp_path, "fleet.db")
    conn = db.connect(path)
    service = db.CommandSeqs()
    tool = SeqBlocks(path, LID)
    s1 = service.take(conn, LID)
    t1, t2 = tool(), tool()
    assert s1 < t1 < t2 and tool.blocks == 1
    s2 = service.take(conn, LID)
    assert s2 > t1 + db.SEQ_BLOCK - 1  # past the whole block: it cannot know how much of it is used
    t3 = tool()
    assert t3 > s2 and tool.blocks == 2
    conn.close()
