"""The lockers' help line: the town's help number and when its desk is open, as a locker gets them
(docs/protocol.md, "desk"): while the desk is open the help line says to ask there, otherwise it
gives the number.

The configuration file's `[town]` section (lockertools.config.TownSettings) holds both, the number
the residents' messages give too (`help_phone`) and the desk's opening intervals in the town's time
zone: `desk_hours = ["mon-fri 09:00-12:30", "mon-fri 13:30-17:00", "sat 10:00-12:00"]`, `timezone`.
A locker has no calendar and no time zone: the host sends it the open intervals of the next
DAYS_AHEAD days in epoch seconds (daylight saving time worked out here) and renews them every day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAYS_AHEAD = 14  # a locker the host cannot reach for longer shows the number at all hours
PHONE_MAX = 12  # the locker's help line leaves 12 of its 16 columns (locker.messages.PHONE_MAX)
_PHONE = re.compile(r"^[0-9 +()/.-]+$")
_LINE = re.compile(r"^(\w{3})(?:-(\w{3}))?\s+(\d\d):(\d\d)-(\d\d):(\d\d)$")

Span = tuple[int, int, int]  # weekday (0 Monday), minute opening, minute closing


def parse_hours(lines: list[str]) -> list[Span]:
    """["mon-fri 09:00-17:00", ...] -> [(weekday, open minute, close minute), ...]; ValueError
    names the line that cannot be read."""
    spans: list[Span] = []
    for line in lines:
        m = _LINE.match(line.strip().lower())
        if m is None or m[1] not in DAYS or (m[2] is not None and m[2] not in DAYS):
            raise ValueError(f"{line!r}: write it as 'mon-fri 09:00-17:00' (days: {', '.join(DAYS)})")
        first = DAYS.index(m[1])
        last = DAYS.index(m[2]) if m[2] else first
        if last < first:
            raise ValueError(f"{line!r}: the days run from monday to sunday")
        start, end = int(m[3]) * 60 + int(m[4]), int(m[5]) * 60 + int(m[6])
        if not 0 <= start < end <= 24 * 60 or int(m[4]) > 59 or int(m[6]) > 59:
            raise ValueError(f"{line!r}: the desk closes after it opens, on the same day (00:00-24:00)")
        spans.extend((day, start, end) for day in range(first, last + 1))
    return spans


def check(phone: str | None, hours: list[str], timezone: str) -> list[str]:
    """What is wrong with the help line's fields of [town], as `field: problem` lines."""
    problems = []
    if phone is not None and (not 0 < len(phone) <= PHONE_MAX or not _PHONE.match(phone)):
        problems.append(
            f"help_phone: {phone!r}: 1-{PHONE_MAX} characters, digits, spaces and + - ( ) / ."
            " (the lockers show it after 'Bel ' on a 16-column line)"
        )
    try:
        parse_hours(hours)
    except ValueError as exc:
        problems.append(f"desk_hours: {exc}")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"timezone: {timezone!r} is not a time zone (e.g. 'Europe/Brussels')")
    if hours and phone is None:
        problems.append("desk_hours: without help_phone the lockers always say to ask at the desk: give help_phone too")
    return problems


def open_intervals(hours: list[str], timezone: str, now: float, days: int = DAYS_AHEAD) -> list[list[int]]:
    """The desk's open intervals [start, end) in epoch seconds, from today (in the desk's time zone)
    for `days` days, merged where they touch, the ones already over left out."""
    zone = ZoneInfo(timezone)
    spans = parse_hours(hours)
    today = dt.datetime.fromtimestamp(now, zone).date()
    out: list[list[int]] = []
    for n in range(days):
        day = today + dt.timedelta(days=n)
        for _, start, end in sorted(s for s in spans if s[0] == day.weekday()):
            a = _epoch(day, start, zone)
            b = _epoch(day, end, zone)
            if b <= now:
                continue
            if out and a <= out[-1][1]:
                out[-1][1] = max(out[-1][1], b)
            else:
                out.append([a, b])
    return out


def _epoch(day: dt.date, minute: int, zone: ZoneInfo) -> int:
    # Aware datetime arithmetic is wall-clock time: 09:00 is 09:00 on a day the clocks change too.
    local = dt.datetime.combine(day, dt.time(), zone) + dt.timedelta(minutes=minute)
    return int(local.timestamp())


def command_args(phone: str | None, hours: list[str], timezone: str, now: float) -> dict[str, Any]:
    """The `desk` command's args for today. `tag` names the settings and the day they were worked
    out on: a locker whose status shows another tag gets them again (new settings, or a new day)."""
    spans = open_intervals(hours, timezone, now) if phone is not None else []
    today = dt.datetime.fromtimestamp(now, ZoneInfo(timezone)).date().isoformat()
    digest = hashlib.sha256(json.dumps([phone, hours, timezone, today]).encode()).hexdigest()[:16]
    return {"phone": phone, "open": spans, "tag": digest}
