"""Keeping a locker's code store in sync: a pure planner (docs/protocol.md, "How the host keeps a
locker in sync"). No MQTT, no database: the runner feeds it what the database holds.

Revisions: each issued or revoked code is one revision of the locker's code set; the host is at
revision H, the locker reports R. The planner returns the commands (op, args) that take a store at
R to the host's set at H: `codes.apply` deltas, or a `codes.snapshot` in parts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

MAX_CHANGES = 32  # per codes.apply (adds + dels)
MAX_ROWS = 32  # per codes.snapshot part


@dataclass(frozen=True)
class CodeRow:
    """A code as the locker holds it. `exp` 0: no expiry. `item`: what the resident takes out (the
    ITEMS index, 0 a parcel); it travels as the row's 6th element only when not 0, so a parcel's
    row is the same for every locker, and the caller leaves it 0 for a locker that does not read it."""

    tag_hex: str
    door: str
    kind: int
    exp: int
    id: int
    item: int = 0

    def wire(self) -> list[Any]:
        row: list[Any] = [self.tag_hex, self.door, self.kind, self.exp, self.id]
        if self.item:
            row.append(self.item)
        return row


@dataclass(frozen=True)
class Change:
    rev: int
    op: Literal["add", "del"]
    code_id: int
    # An `add` that may repeat an earlier one of the same code (a loaded delivery's row sent again
    # with its new expiry): the code may already be on the locker, so a later `del` must travel.
    again: bool = False


@dataclass(frozen=True)
class Planned:
    """One command to send. `rev`: the locker's revision once it ran (None: a snapshot part before
    the last, which changes no revision)."""

    op: str
    args: dict[str, Any]
    rev: int | None


@dataclass(frozen=True)
class SyncInput:
    host_rev: int  # H
    log_floor: int  # changes log_floor+1..H are in `changes`
    changes: Sequence[Change]  # at least those after the locker's revision, any order
    codes: Mapping[int, CodeRow]  # every code an `add` in `changes` refers to
    active: Sequence[CodeRow]  # the host's set at H (unexpired, for a snapshot)
    locker_rev: int  # R
    snap: bool = False


def plan(state: SyncInput) -> list[Planned]:
    """The commands taking the locker from R to H, in order; [] when in sync."""
    r, h = state.locker_rev, state.host_rev
    if not state.snap and r == h:
        return []
    if state.snap or r > h or r < state.log_floor:
        return snapshot(h, state.active)
    net = net_changes([c for c in state.changes if r < c.rev <= h])
    if len(net) > len(state.active):
        return snapshot(h, state.active)
    return deltas(r, h, net, state.codes)


def net_changes(changes: Iterable[Change]) -> list[Change]:
    """The changes that still matter, by revision: a code added then deleted in the window never
    travels. A code id is first added once, maybe added `again` (the same row with a new expiry),
    and deleted at most once, last. So an id whose window opens with its first `add` and holds a
    `del` was not on the locker at R and is not in the set at H; one whose window opens with an
    `again` add may be on the locker: its `del` travels (a `del` of a missing id is harmless)."""
    by_id: dict[int, list[Change]] = {}
    for change in sorted(changes, key=lambda c: c.rev):
        by_id.setdefault(change.code_id, []).append(change)
    kept = []
    for history in by_id.values():
        ops = {c.op for c in history}
        if ops == {"add", "del"} and history[0].op == "add" and not history[0].again:
            continue
        kept.append(history[-1])
    return sorted(kept, key=lambda c: c.rev)


def deltas(base: int, host_rev: int, net: Sequence[Change], codes: Mapping[int, CodeRow]) -> list[Planned]:
    """codes.apply commands of at most MAX_CHANGES changes. Each ends at the revision of its last
    change (the last at H), so a locker stopped between two of them is at a real revision. It may
    lack a code the log deletes later: that later `del` of a missing id is harmless."""
    out: list[Planned] = []
    chunks = [net[i : i + MAX_CHANGES] for i in range(0, len(net), MAX_CHANGES)] or [[]]
    for n, chunk in enumerate(chunks):
        rev = host_rev if n == len(chunks) - 1 else chunk[-1].rev
        add = [codes[c.code_id].wire() for c in chunk if c.op == "add"]
        dels = [c.code_id for c in chunk if c.op == "del"]
        out.append(Planned("codes.apply", {"base": base, "rev": rev, "add": add, "del": dels}, rev))
        base = rev
    return out


def snapshot(host_rev: int, active: Iterable[CodeRow]) -> list[Planned]:
    """codes.snapshot parts of at most MAX_ROWS rows, sorted by tag across parts (the locker checks
    the order: it writes the parts straight to flash and never sorts)."""
    rows = sorted(active, key=lambda c: c.tag_hex)
    parts = [rows[i : i + MAX_ROWS] for i in range(0, len(rows), MAX_ROWS)] or [[]]
    out = []
    for n, part in enumerate(parts, start=1):
        last = n == len(parts)
        args = {
            "rev": host_rev,
            "part": n,
            "parts": len(parts),
            "total": len(rows),
            "codes": [c.wire() for c in part],
        }
        out.append(Planned("codes.snapshot", args, host_rev if last else None))
    return out
