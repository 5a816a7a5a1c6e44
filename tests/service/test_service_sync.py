"""The sync planner, checked against the simulated locker's own code store (fleet.SimLocker)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockertools.commands import CommandSigner
from lockertools.fleet import SimLocker
from lockertools.service.sync import MAX_CHANGES, MAX_ROWS, Change, CodeRow, SyncInput, net_changes, plan

KEY = bytes(range(32))
LABELS = ["A1", "A2", "A3"]


def _history(draw: Any) -> tuple[list[Change], dict[int, CodeRow], list[dict[int, CodeRow]]]:
    """A random change log; states[r] = the host's set at revision r."""
    ops = draw(st.lists(st.booleans(), max_size=120))  # True: add a code, False: delete one
    tags = draw(st.lists(st.binary(min_size=16, max_size=16), min_size=len(ops), max_size=len(ops), unique=True))
    changes: list[Change] = []
    codes: dict[int, CodeRow] = {}
    states: list[dict[int, CodeRow]] = [{}]
    current: dict[int, CodeRow] = {}
    for n, add in enumerate(ops):
        if add or not current:
            code = CodeRow(tags[n].hex(), LABELS[n % 3], n % 3, 0, 1000 + n)
            codes[code.id] = code
            current = {**current, code.id: code}
            changes.append(Change(len(changes) + 1, "add", code.id))
        else:
            victim = draw(st.sampled_from(sorted(current)))
            current = {k: v for k, v in current.items() if k != victim}
            changes.append(Change(len(changes) + 1, "del", victim))
        states.append(current)
    return changes, codes, states


@st.composite
def scenarios(draw: Any) -> tuple[SyncInput, dict[int, CodeRow], dict[int, CodeRow]]:
    """(planner input, the locker's store at R, the host's set at H)."""
    changes, codes, states = _history(draw)
    host_rev = len(changes)
    locker_rev = draw(st.integers(0, host_rev + 3))
    if locker_rev <= host_rev:
        store = dict(states[locker_rev])
        # A locker stopped between two planned deltas may lack codes the log deletes later.
        later_deleted = sorted({c.code_id for c in changes[locker_rev:] if c.op == "del"} & set(store))
        for code_id in draw(st.lists(st.sampled_from(later_deleted), unique=True)) if later_deleted else []:
            del store[code_id]
    else:  # ahead of the host (a restored database): anything at all
        store = {c.id: c for c in draw(st.lists(st.sampled_from(list(codes.values())), unique=True))} if codes else {}
    inputs = SyncInput(
        host_rev=host_rev,
        log_floor=draw(st.integers(0, host_rev)),
        changes=changes,
        codes=codes,
        active=list(states[host_rev].values()),
        locker_rev=locker_rev,
        snap=draw(st.booleans()),
    )
    return inputs, store, states[host_rev]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_planned_commands_bring_any_locker_to_the_hosts_set(case: tuple[SyncInput, Any, Any]) -> None:
    inputs, store, expected = case
    locker = SimLocker("hall-1", KEY, LABELS)
    locker.store = {k: v.wire() for k, v in store.items()}
    locker.rev = inputs.locker_rev
    signer = CommandSigner("hall-1", KEY)
    commands = plan(inputs)
    last_tag = ""
    for planned in commands:
        if planned.op == "codes.apply":
            assert len(planned.args["add"]) + len(planned.args["del"]) <= MAX_CHANGES
        else:
            rows = planned.args["codes"]
            assert len(rows) <= MAX_ROWS
            assert all(r[0] > last_tag for r in rows)  # sorted by tag across parts
            last_tag = rows[-1][0] if rows else last_tag
        reply = locker.handle(signer.command(planned.op, planned.args))
        assert reply is not None and reply["ok"], reply
        assert reply.get("rev") == planned.rev
    assert locker.rev == inputs.host_rev
    assert locker.store == {k: v.wire() for k, v in expected.items()}
    if inputs.locker_rev == inputs.host_rev and not inputs.snap:
        assert commands == []


def test_a_code_added_then_revoked_never_travels() -> None:
    changes = [Change(1, "add", 7), Change(2, "add", 8), Change(3, "del", 7), Change(4, "del", 5)]
    assert net_changes(changes) == [Change(2, "add", 8), Change(4, "del", 5)]


def test_small_delta_is_one_apply_and_big_log_is_split_with_intermediate_bases() -> None:
    codes = {i: CodeRow(f"{i:032x}", "A1", 0, 0, i) for i in range(1, 101)}
    changes = [Change(i, "add", i) for i in range(1, 101)]
    inputs = SyncInput(100, 0, changes, codes, list(codes.values()), locker_rev=0)
    commands = plan(inputs)
    assert [(c.args["base"], c.args["rev"]) for c in commands] == [(0, 32), (32, 64), (64, 96), (96, 100)]
    inputs = SyncInput(100, 0, changes, codes, list(codes.values()), locker_rev=98)
    assert [(c.op, c.args["base"], c.args["rev"], len(c.args["add"])) for c in plan(inputs)] == [
        ("codes.apply", 98, 100, 2)
    ]


def test_snapshot_when_asked_ahead_or_pruned_and_for_an_empty_set() -> None:
    codes = {i: CodeRow(f"{(i * 7919) % 1000:032x}", "A1", 0, 0, i) for i in range(1, 71)}
    changes = [Change(i, "add", i) for i in range(1, 71)]
    base = SyncInput(70, 0, changes, codes, list(codes.values()), locker_rev=70)
    for inputs in (
        SyncInput(70, 0, changes, codes, list(codes.values()), 70, snap=True),
        SyncInput(70, 0, changes, codes, list(codes.values()), 75),
        SyncInput(70, 10, changes, codes, list(codes.values()), 5),
    ):
        parts = plan(inputs)
        assert [p.args["part"] for p in parts] == [1, 2, 3]
        assert {p.args["total"] for p in parts} == {70} and [p.rev for p in parts] == [None, None, 70]
        tags = [row[0] for p in parts for row in p.args["codes"]]
        assert tags == sorted(tags)
    assert plan(base) == []
    empty = plan(SyncInput(3, 0, [Change(1, "add", 1), Change(2, "add", 2), Change(3, "del", 1)], codes, [], 0, True))
    assert [(p.op, p.args["codes"], p.args["parts"]) for p in empty] == [("codes.snapshot", [], 1)]
