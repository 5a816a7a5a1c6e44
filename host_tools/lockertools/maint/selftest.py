"""The self-test: every door, sensor and key checked with the technician at the locker."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from lockertools.maint import MaintError
from lockertools.maint.client import Maint, require_ok
from lockertools.maint.links import Console, parse_event, parse_key


class Technician(Protocol):
    """The person at the locker: told what to do (a test plays this part)."""

    def say(self, text: str) -> None: ...

    def close_door(self, label: str) -> None:
        """Asked to close door `label` (returns at once; the locker's `closed` event is the answer)."""
        ...

    def press_keys(self, keys: str) -> None:
        """Asked to press every key of `keys` in turn."""
        ...


@dataclass
class DoorResult:
    door: str
    opened: str  # "ok" | "JAMMED" | "no" | "refused: ..."
    closed: str  # "ok" | "no" | "-"
    parcel: str  # "empty" | "full" | "?"

    @property
    def passed(self) -> bool:
        return self.opened == "ok" and self.closed == "ok"


@dataclass
class SelftestResult:
    doors: list[DoorResult]
    keys_seen: str
    keys_missing: str

    @property
    def passed(self) -> bool:
        return all(d.passed for d in self.doors) and not self.keys_missing


def selftest(
    m: Maint,
    console: Console,
    tech: Technician,
    *,
    doors: list[str] | None = None,
    open_timeout: float = 10.0,
    close_timeout: float = 60.0,
    key_timeout: float = 60.0,
    key_idle: float = 15.0,
) -> SelftestResult:
    """Pulse each door in turn (`door.open` by "selftest") and check its sensor follows (`opened`, or
    `jammed`), ask the technician to close it and check `closed`, read its parcel sensor; then the
    keypad walk-through (`selftest.keys`): every key pressed in turn must come back as `key|<ch>`."""
    d = m.diag()
    labels = doors or [str(x["d"]) for x in d.get("doors") or []]
    if d.get("safe"):
        raise MaintError(f"the locker is in safe mode ({d['safe']}): fix that first (lockerctl diag)")
    results: list[DoorResult] = []
    for label in labels:
        since = console.mark()
        r = m.call("door.open", {"door": label, "by": "selftest"})
        if not r.get("ok"):
            results.append(DoorResult(label, f"refused: {r.get('error')}", "-", "?"))
            continue

        def door_ev(line: str, label: str = label) -> str | None:
            e = parse_event(line)
            if e is not None and e.get("d") == label and e.get("k") in ("opened", "jammed", "closed"):
                return str(e["k"])
            return None

        first = console.wait(lambda ln: door_ev(ln) in ("opened", "jammed") and door_ev(ln), since, open_timeout)
        if first != "opened":
            results.append(DoorResult(label, "JAMMED" if first == "jammed" else "no", "-", _parcel(m, label)))
            tech.say(f"door {label} did not open ({first or 'no sensor change'}): check its latch and sensor")
            continue
        tech.say(f"door {label} is open: close it now")
        tech.close_door(label)
        closed = console.wait(lambda ln: door_ev(ln) == "closed", since, close_timeout)
        results.append(DoorResult(label, "ok", "ok" if closed else "no", _parcel(m, label)))
    # the keypad
    r = require_ok(m.call("selftest.keys", {"on": True}), "selftest.keys")
    keys = str(r.get("keys") or "")
    since = console.mark()
    tech.say(f"press each key in turn: {' '.join(keys)}")
    tech.press_keys(keys)
    seen: list[str] = []
    deadline = time.monotonic() + key_timeout
    pos = since
    while len(set(seen)) < len(set(keys)) and time.monotonic() < deadline:
        got = console.wait(parse_key, pos, min(key_idle, max(0.0, deadline - time.monotonic())))
        if got is None:
            break  # nothing for key_idle: the rest are dead
        pos = _after(console, pos, got)
        if got not in seen:
            seen.append(got)
    m.call("selftest.keys", {"on": False})
    missing = "".join(k for k in keys if k not in seen)
    return SelftestResult(results, "".join(k for k in keys if k in seen), missing)


def _after(console: Console, pos: int, key: str) -> int:
    lines = console.lines(pos)
    for i, ln in enumerate(lines):
        if parse_key(ln) == key:
            return pos + i + 1
    return pos + len(lines)


def _parcel(m: Maint, label: str) -> str:
    try:
        d = m.diag()
    except MaintError:
        return "?"
    for door in d.get("doors") or []:
        if str(door.get("d")) == label:
            return "full" if door.get("full") else "empty"
    return "?"
