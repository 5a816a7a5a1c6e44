"""A locker whose clock is a day off, either way, on the whole chain (e2e_chain.py: the real firmware
on a simulated board, a real mosquitto, the host service): back in step within a minute of its first
status reaching the service, which answers the status's clock challenge with a signed `time`
(docs/protocol.md, "The clock"). A day ahead, every other command is refused as expired until then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from e2e_chain import Chain

from lockertools.sim import default_micropython

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]

DAY = 86400


@pytest.mark.parametrize("offset", [DAY, -DAY], ids=["a day ahead", "a day behind"])
def test_a_locker_a_day_off_is_back_in_step_after_contact_with_the_service(
    chain: Callable[..., Chain], offset: int
) -> None:
    c = chain()
    c.board.boot(keep_rtc=int(time.time()) + offset)
    c.wait(lambda: c.last_status() is not None, "the locker's first status")
    first = c.last_status()
    assert first is not None and abs(first["t"] - time.time() - offset) < 60, first
    assert isinstance(first.get("nonce"), str)

    def in_step() -> bool:
        return abs(c.board.state()["rtc"] - time.time()) < 5  # the RTC is set with the clock

    c.wait(in_step, "the locker's clock in step with the host's", timeout=60)

    def time_answered() -> bool:  # the locker's reply reaches the host a moment after its RTC is set
        times = c.query("SELECT state FROM commands WHERE op = 'time'")
        return bool(times) and times[-1]["state"] == "ok"

    c.wait(time_answered, "the host to record the time command as done")
    # And the host's other commands are admitted again: a code issued now reaches the locker.
    c.issue("2")
    c.wait_synced()
    assert c.check_every_message() > 0
