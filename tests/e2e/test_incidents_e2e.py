"""Incidents end to end (e2e_chain.py: the real firmware, mosquitto, the host service): a jammed latch
on the simulated board opens an incident on the host; freed, the resident's code opens the door and
the incident resolves itself. Jammed again and left so, it stays open until a manager resolves it
with `lockerctl incidents resolve`."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner
from e2e_chain import Chain

from lockertools.cli import main
from lockertools.service import incidents
from lockertools.sim import default_micropython

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]


def test_a_jammed_door_opens_an_incident_that_resolves_itself_or_by_a_manager(chain: Callable[..., Chain]) -> None:
    c = chain()
    c.put_parcel("2")
    code = c.issue("2")
    c.boot()
    c.wait_synced()
    b = c.board
    i = b.door_index("2")

    def open_incidents() -> list[incidents.Incident]:
        return incidents.list_incidents(c.conn, state="open")

    b.jam(i)
    b.type_code(code.code)
    c.wait_fw("jammed", 1, 15, d="2")
    c.wait(lambda: open_incidents(), "the host to open an incident for the jammed latch")
    [jammed] = open_incidents()
    assert (jammed.locker_id, jammed.door, jammed.cause, jammed.state) == ("hall-1", "2", "jammed", "new")
    assert jammed.event_seq is not None and any(
        e["seq"] == jammed.event_seq and e["k"] == "jammed" for e in c.db_events()
    )

    # The latch is freed; the code works again (the resident got nothing) and the door opens.
    b.jam(i, False)
    c.pickup(code.code, "2")
    c.wait(lambda: not open_incidents(), "the incident to resolve itself")
    done = incidents.get_incident(c.conn, jammed.id)
    assert (done.resolved_by, done.resolution) == ("auto", "the door opened")

    # Stuck again, and nobody frees it: open until a manager says what was done.
    c.wait(lambda: c.host_rev() == 2, "the host to record the pickup (the used code's delete)")
    c.put_parcel("2")
    second = c.issue("2")
    c.wait_synced()
    b.jam(i)
    b.type_code(second.code)
    c.wait_fw("jammed", 2, 15, d="2")
    c.wait(lambda: open_incidents(), "a new incident for the second jam")
    [again] = open_incidents()
    assert again.id != jammed.id and again.cause == "jammed"
    out = CliRunner().invoke(
        main,
        ["incidents", "resolve", str(again.id), "--by", "manager", "--note", "latch replaced", "--db", str(c.db_path)],
    )
    assert out.exit_code == 0, out.output
    resolved = incidents.get(c.conn, again.id)
    assert (resolved.incident.state, resolved.incident.resolved_by) == ("resolved", "manager")
    assert [e.action for e in resolved.log] == ["opened", "resolved"]
    c.wait_all_events()
    assert c.check_every_message() > 0
