"""The service's sync is woken by the commit that changes a locker's codes, not by its poll: in its
own process on either database, and from another process (the CLI) through PostgreSQL's
LISTEN/NOTIFY. poll_s is an hour here, so only the wake-up can deliver the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from service_helpers import Rig

from lockertools.service import fleet_db
from tests.support.fixtures import Broker

AN_HOUR = 3600.0


def test_a_code_issued_in_the_services_process_wakes_its_sync(broker: Broker, tmp_path: Path) -> None:
    rig = Rig(broker, tmp_path, poll_s=AN_HOUR)
    try:
        rig.start_service()
        sim = rig.start_locker()
        rig.wait(lambda: rig.service is not None and rig.service.sync_state("hall-1").online, "the locker online")
        issued = fleet_db.issue_code(rig.conn, "hall-1", "A2")  # the test's own connection, like the CLI's
        rig.wait(lambda: sim.lookup("A2", issued.code) == issued.code_id, "the code on the locker")
        fleet_db.revoke_code(rig.conn, issued.code_id)
        rig.wait(lambda: sim.lookup("A2", issued.code) is None, "the code gone from the locker")
    finally:
        rig.close()


def test_a_code_issued_by_another_process_wakes_the_sync_on_postgresql(
    broker: Broker, tmp_path: Path, database: str
) -> None:
    if database != "postgresql":
        pytest.skip("SQLite tells another process's commit through PRAGMA data_version, polled every poll_s")
    rig = Rig(broker, tmp_path, poll_s=AN_HOUR)
    try:
        rig.start_service()
        sim = rig.start_locker()
        rig.wait(lambda: rig.service is not None and rig.service.sync_state("hall-1").online, "the locker online")
        lockerctl = [sys.executable, "-c", "from lockertools.cli import main; main()"]
        issued = subprocess.run(
            [*lockerctl, "codes", "issue", "--db", rig.db_url, "--locker", "hall-1", "--door", "A1"],
            capture_output=True,
            text=True,
            check=True,
        )
        code = re.search(r"code (\d{8})", issued.stdout)
        assert code is not None, issued.stdout
        rig.wait(lambda: sim.lookup("A1", code.group(1)) is not None, "the code on the locker")
    finally:
        rig.close()
