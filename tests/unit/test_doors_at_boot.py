# A door standing open when the locker boots (locker.appinit): forced unless the used-code journal
# explains it, open (not locked) in the status, and closing it records `closed`.
from test_app import Rig


def test_a_door_open_at_boot_is_forced_unless_a_pickup_explains_it():
    rig = Rig("boot-open", codes=[("12345678", "2", 0)])
    try:
        rig.type("12345678#")
        rig.board.closed[1].level = 0  # door 2 opens for its pickup
        rig.run(200)
        rig.board.closed[0].level = 0  # door 1 is forced
        rig.run(200)
        assert len(rig.events("forced")) == 1
        rig.boot()  # a power cut: both doors still stand open
        assert rig.locker.status(rig.ticks.now)["doors"] == ["open", "open", "locked", "locked"]
        rig.run(300)  # the sensors settle, then the journal is read
        assert [ev["d"] for ev in rig.events("forced")] == ["1", "1"]
        assert rig.locker.status(rig.ticks.now)["doors"] == ["open", "open", "locked", "locked"]
        rig.board.closed[0].level = 1
        rig.board.parcels[1].level = 0
        rig.board.closed[1].level = 1
        rig.run(200)
        assert [ev["d"] for ev in rig.events("closed")] == ["1"]
        assert [ev["d"] for ev in rig.events("pickup")] == ["2"]
        assert rig.locker.status(rig.ticks.now)["doors"] == ["locked"] * 4
    finally:
        rig.close()
