"""The desk's hours as a locker gets them (lockertools.desk): open intervals in epoch seconds, worked
out in the desk's time zone (daylight saving time included), and the [desk] section's checks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lockertools import config, desk

AMS = "Europe/Amsterdam"


def _at(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(AMS)).timestamp())


def test_hours_become_open_intervals_in_the_desks_time_zone() -> None:
    hours = ["mon-fri 09:00-12:30", "mon-fri 13:30-17:00", "sat 10:00-12:00"]
    now = _at("2026-03-27T10:00:00")  # a Friday, during the morning's hours
    spans = desk.open_intervals(hours, AMS, now, days=3)
    assert spans == [
        [_at("2026-03-27T09:00:00"), _at("2026-03-27T12:30:00")],
        [_at("2026-03-27T13:30:00"), _at("2026-03-27T17:00:00")],
        [_at("2026-03-28T10:00:00"), _at("2026-03-28T12:00:00")],
    ]
    # 2026-03-28 is still winter time (UTC+1), the Monday after the change summer time (UTC+2)
    assert spans[2][0] == int(dt.datetime(2026, 3, 28, 9, tzinfo=dt.UTC).timestamp())
    monday = desk.open_intervals(hours, AMS, _at("2026-03-30T08:00:00"), days=1)
    assert monday[0][0] == int(dt.datetime(2026, 3, 30, 7, tzinfo=dt.UTC).timestamp())


def test_touching_hours_merge_and_past_ones_are_left_out() -> None:
    spans = desk.open_intervals(["mon 09:00-12:00", "mon 12:00-13:00"], AMS, _at("2026-03-30T11:00:00"), days=1)
    assert spans == [[_at("2026-03-30T09:00:00"), _at("2026-03-30T13:00:00")]]
    assert desk.open_intervals(["mon 09:00-12:00"], AMS, _at("2026-03-30T12:30:00"), days=1) == []


def test_the_tag_changes_with_the_settings_and_the_day() -> None:
    hours = ["mon-fri 09:00-17:00"]
    a = desk.command_args("020 1234567", hours, AMS, _at("2026-03-30T08:00:00"))
    assert a == desk.command_args("020 1234567", hours, AMS, _at("2026-03-30T20:00:00")) | {"open": a["open"]}
    assert a["tag"] != desk.command_args("020 7654321", hours, AMS, _at("2026-03-30T08:00:00"))["tag"]
    assert a["tag"] != desk.command_args("020 1234567", hours, AMS, _at("2026-03-31T08:00:00"))["tag"]
    assert len(a["open"]) == 10 and len(a["tag"]) == 16  # 14 days ahead: ten working days


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ('phone = "0201234567890"', "desk.phone: '0201234567890': 1-12 characters"),
        ('phone = "call us"', "desk.phone: 'call us'"),
        ('phone = "020"\nhours = ["mon-fri 9-17"]', "desk.hours: 'mon-fri 9-17': write it as"),
        ('phone = "020"\nhours = ["fri-mon 09:00-17:00"]', "the days run from monday to sunday"),
        ('phone = "020"\nhours = ["mon 17:00-09:00"]', "the desk closes after it opens"),
        ('phone = "020"\ntimezone = "Mars/Olympus"', "desk.timezone: 'Mars/Olympus' is not a time zone"),
        ('hours = ["mon 09:00-17:00"]', "desk.hours: without a phone"),
    ],
)
def test_a_bad_desk_section_names_the_field(tmp_path: Path, section: str, problem: str) -> None:
    path = tmp_path / "lockertools.toml"
    path.write_text(f"[desk]\n{section}\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_a_good_desk_section_loads(tmp_path: Path) -> None:
    path = tmp_path / "lockertools.toml"
    path.write_text('[desk]\nphone = "+31 20 12345"\nhours = ["mon-fri 09:00-17:00"]\ntimezone = "Europe/Brussels"\n')
    settings = config.load(path)
    assert settings.desk == config.DeskSettings("+31 20 12345", ["mon-fri 09:00-17:00"], "Europe/Brussels")
