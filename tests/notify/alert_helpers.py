"""Shared rigs of the staff alerts tests: the settings and a locker's door events."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from email.message import EmailMessage

from notify_helpers import settings

from lockertools.config import AlertSettings, DeskSettings, Settings
from lockertools.service import db, ingest

DESK = "https://balie.gent.example"


def alert_settings(
    smtp_port: int | None = None,
    sms_url: str | None = None,
    *,
    language: str = "en",
    window_min: float = 0.0,
    desk_url: str | None = DESK,
    default_email: Sequence[str] = (),
) -> Settings:
    base = settings([], smtp_port=smtp_port, sms_url=sms_url)
    alerts = AlertSettings(
        default_email=list(default_email), window_min=window_min, desk_url=desk_url, retry_min_s=10.0, retry_max_s=40.0
    )
    return dataclasses.replace(base, desk=DeskSettings(language=language), alerts=alerts)


_seq = [10_000]


def door_event(conn: db.Connection, kind: str, door: str) -> None:
    """A door event of hall-1, applied as ingest does (it opens, bumps or clears incidents)."""
    _seq[0] += 1
    event = {"v": 1, "lid": "hall-1", "seq": _seq[0], "ev": {"k": kind, "t": int(time.time()), "d": door}}
    with db.transaction(conn):
        assert ingest.apply_event(conn, "hall-1", event, time.time())


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")
