"""The service keeps its history bounded: the change log per locker and the finished commands."""

from __future__ import annotations

from pathlib import Path

from service_helpers import Rig

from lockertools.service import fleet_db
from tests.support.fixtures import Broker


def test_the_change_log_and_command_records_are_pruned(broker: Broker, tmp_path: Path) -> None:
    rig = Rig(broker, tmp_path, housekeeping_s=0.05, log_keep=2, commands_keep_s=0.0)
    try:
        rig.start_service()
        sim = rig.start_locker()
        issued = [fleet_db.issue_code(rig.conn, "hall-1", door) for door in ("A1", "A2", "A3", "A1", "A2")]
        rig.wait(lambda: sim.rev == 5 and all(sim.lookup(c.door, c.code) == c.code_id for c in issued), "codes")

        def pruned() -> bool:
            changes = rig.query("SELECT count(*) FROM changes WHERE locker_id = 'hall-1'")[0][0]
            floor = rig.query("SELECT log_floor FROM lockers WHERE id = 'hall-1'")[0][0]
            finished = rig.query("SELECT count(*) FROM commands WHERE state != 'sent'")[0][0]
            return bool(changes == 2 and floor == 3 and finished == 0)

        rig.wait(pruned, "the log cut to the last 2 changes and the finished commands gone")
        # A locker behind the pruned log is brought up to date by a snapshot, not by deltas.
        rig.stop_locker(crash=True)
        rig.wait(lambda: rig.query("SELECT online FROM lockers")[0][0] == 0, "the last will")
        late = [fleet_db.issue_code(rig.conn, "hall-1", "A3") for _ in range(3)]
        rig.wait(lambda: rig.query("SELECT log_floor FROM lockers WHERE id = 'hall-1'")[0][0] == 6, "pruned again")
        snapshots = sim.ops["codes.snapshot"]
        rig.start_locker()
        rig.wait(lambda: sim.rev == 8 and all(sim.lookup("A3", c.code) == c.code_id for c in late), "caught up")
        assert sim.ops["codes.snapshot"] > snapshots
    finally:
        rig.close()
