"""Residents' messages: templates, channels against real servers on loopback, the outbox on both
databases (the outbox tests take the `database` fixture themselves)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from notify_helpers import GatewaySink, SmtpSink, free_port


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(free_port())
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def gateway() -> Iterator[GatewaySink]:
    sink = GatewaySink()
    try:
        yield sink
    finally:
        sink.close()
