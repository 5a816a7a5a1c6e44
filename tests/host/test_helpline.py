"""The desk's hours as a locker gets them (lockertools.helpline): open intervals in epoch seconds,
worked out in the desk's time zone (daylight saving time included)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from lockertools import helpline

BRU = "Europe/Brussels"


def _at(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(BRU)).timestamp())


def test_hours_become_open_intervals_in_the_desks_time_zone() -> None:
    hours = ["mon-fri 09:00-12:30", "mon-fri 13:30-17:00", "sat 10:00-12:00"]
    now = _at("2026-03-27T10:00:00")  # a Friday, during the morning's hours
    spans = helpline.open_intervals(hours, BRU, now, days=3)
    assert spans == [
        [_at("2026-03-27T09:00:00"), _at("2026-03-27T12:30:00")],
        [_at("2026-03-27T13:30:00"), _at("2026-03-27T17:00:00")],
        [_at("2026-03-28T10:00:00"), _at("2026-03-28T12:00:00")],
    ]
    # 2026-03-28 is still winter time (UTC+1), the Monday after the change summer time (UTC+2)
    assert spans[2][0] == int(dt.datetime(2026, 3, 28, 9, tzinfo=dt.UTC).timestamp())
    monday = helpline.open_intervals(hours, BRU, _at("2026-03-30T08:00:00"), days=1)
    assert monday[0][0] == int(dt.datetime(2026, 3, 30, 7, tzinfo=dt.UTC).timestamp())


def test_touching_hours_merge_and_past_ones_are_left_out() -> None:
    spans = helpline.open_intervals(["mon 09:00-12:00", "mon 12:00-13:00"], BRU, _at("2026-03-30T11:00:00"), days=1)
    assert spans == [[_at("2026-03-30T09:00:00"), _at("2026-03-30T13:00:00")]]
    assert helpline.open_intervals(["mon 09:00-12:00"], BRU, _at("2026-03-30T12:30:00"), days=1) == []


def test_the_tag_changes_with_the_settings_and_the_day() -> None:
    hours = ["mon-fri 09:00-17:00"]
    a = helpline.command_args("020 1234567", hours, BRU, _at("2026-03-30T08:00:00"))
    assert a == helpline.command_args("020 1234567", hours, BRU, _at("2026-03-30T20:00:00")) | {"open": a["open"]}
    assert a["tag"] != helpline.command_args("020 7654321", hours, BRU, _at("2026-03-30T08:00:00"))["tag"]
    assert a["tag"] != helpline.command_args("020 1234567", hours, BRU, _at("2026-03-31T08:00:00"))["tag"]
    assert len(a["open"]) == 10 and len(a["tag"]) == 16  # 14 days ahead: ten working days
