"""A used code typed again while the host is online (e2e_chain.py: service, mosquitto, firmware): the
service removes it from the locker's table right after the pickup, and the locker still answers for
it from the used-code journal's tags: the same door reopens within the grace period, and once that
door was unlocked for anything else the code is "already used", never a wrong code."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from e2e_chain import Chain

from lockertools.sim import default_micropython

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]


def test_a_used_code_the_host_removed_reopens_its_door_then_says_used(chain: Callable[..., Chain]) -> None:
    c = chain()
    c.put_parcel("1")
    first = c.issue("1")
    c.boot()
    c.wait_synced()
    c.pickup(first.code, "1")
    c.wait(lambda: c.host_rev() == 2, "the host to record the pickup (the used code's delete)")
    c.wait_synced()
    st = c.last_status()
    assert st is not None and st["codes"] == 0, st  # the used code is off the locker's table

    # Typed again at once (forgot something): the same door opens again.
    b = c.board
    i = b.door_index("1")
    mark = b.mark()
    b.type_code(first.code)
    c.wait_fw("reopened", 1, 10, d="1", id=first.code_id)
    b.wait_event("door", 5, since=mark, door=i, open=1)
    b.wait_event("solenoid", 5, since=mark, door=i, on=0)
    b.close_door(i)
    c.wait_fw("closed", 1, 10, d="1")

    # Another parcel goes into door 1 and is picked up: that unlock ends the first code's grace period.
    c.put_parcel("1")
    second = c.issue("1")
    c.wait_synced()
    c.pickup(second.code, "1")
    b.type_code(first.code)
    c.wait_fw("denied", 1, 10, r="used", id=first.code_id)
    b.wait_for(lambda: b.display()[0].strip() == "Code al gebruikt", 5, "the display to say so")
    assert c.fw_count("denied", r="wrong") == 0
    assert c.fw_count("reopened") == 1
    c.wait(
        lambda: any(e["k"] == "denied" and e.get("r") == "used" for e in c.db_events()),
        "the host to record the `used` refusal",
    )
    c.wait_all_events()
    assert c.check_every_message() > 0
