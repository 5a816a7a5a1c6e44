"""A locker whose connection flaps, on a real mosquitto: a second client logging in with a locker's
password takes its session over at every login (the broker forces the client id to the user name), so
the locker's last will and its next status alternate; the service flags it, a steady locker stays clear."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from service_helpers import Rig

from lockertools.cli import main
from tests.support.fixtures import Broker

OPEN_FLAPS = "SELECT locker_id, changes FROM connection_flaps WHERE ended_at IS NULL"


def _online(rig: Rig, lid: str) -> bool:
    return bool(rig.query("SELECT online FROM lockers WHERE id = ?", lid)[0][0])


def test_a_second_login_with_a_lockers_password_flags_it_and_a_steady_locker_stays_clear(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="lockertools.service")
    rig = Rig(broker, tmp_path, lockers=("hall-1", "hall-2"), flap_changes=10, flap_window_s=600.0)
    try:
        service = rig.start_service()
        rig.start_lockers()
        rig.wait(lambda: _online(rig, "hall-1") and _online(rig, "hall-2"), "both lockers online")

        # hall-2 is steady: statuses come and go, and it reconnects once (offline, then online again).
        steady = rig.sims["hall-2"]
        for _ in range(12):
            rig.call(steady.publish_status())
        rig.stop_locker("hall-2", crash=True)
        rig.wait(lambda: not _online(rig, "hall-2"), "hall-2's last will")
        rig.start_locker("hall-2")
        rig.wait(lambda: _online(rig, "hall-2"), "hall-2 back online")

        # Someone who has hall-1's broker password (not its key) logs in, and again whenever the real
        # locker takes its session back.
        intruder = broker.client("hall-1", client_id="hall-1", reconnect=True)
        assert intruder.connect() == 0
        rig.wait(lambda: [tuple(r) for r in rig.query(OPEN_FLAPS)] != [], "a locker flagged as flapping", 60)
        flagged = {r["locker_id"]: r["changes"] for r in rig.query(OPEN_FLAPS)}
        assert list(flagged) == ["hall-1"] and flagged["hall-1"] >= 10
        assert service.counters.flapping == 1
        assert "locker hall-1 is flapping" in caplog.text and "hall-2" not in caplog.text
        intruder.close()

        out = CliRunner().invoke(main, ["lockers", "--db", str(rig.db_path)])
        assert out.exit_code == 0, out.output
        lines = {ln.split()[0]: ln for ln in out.output.splitlines() if ln.startswith("hall-")}
        assert "FLAPPING" in lines["hall-1"] and "FLAPPING" not in lines["hall-2"]
        assert "another client may be logging in with the locker's password" in out.output

        # Once a whole window passes without a change, the flag ends (the poller checks every 30 s).
        rig.wait(lambda: _online(rig, "hall-1"), "hall-1 back online on its own")

        async def a_window_later() -> None:
            service._settle_flaps(time.time() + 601.0)

        rig.call(a_window_later())
        assert rig.query(OPEN_FLAPS) == []
        assert [r["locker_id"] for r in rig.query("SELECT locker_id FROM connection_flaps")] == ["hall-1"]
        out = CliRunner().invoke(main, ["lockers", "--db", str(rig.db_path)])
        assert "FLAPPING" not in out.output and "steady again" in caplog.text
    finally:
        rig.close()
