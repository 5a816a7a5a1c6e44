# The grace reopen, doors out of service, the key echo, and the door commands (locker.doorops).
from cmdrig import Rt, wire
from staffrig import PICKUP, STAFF_PIN, T0, Rig


def test_grace_reopen_within_the_period_only():
    rig = Rig("staff-grace")
    try:
        rig.cfg.grace_ms = 5000
        rig.type(PICKUP + "#")
        rig.door(0, open_=True)
        rig.door(0, open_=False)  # parcel still in
        assert rig.last("closed_full")["id"] == 11
        rig.type(PICKUP + "#")
        assert rig.last("reopened") == {"k": "reopened", "t": rig.last("reopened")["t"], "d": "1", "id": 11}
        rig.door(0, open_=True)
        rig.door(0, parcel=False)
        rig.door(0, open_=False)
        assert rig.last("pickup")["id"] == 11
        rig.ticks.advance(5001)
        rig.type(PICKUP + "#")
        assert rig.board.display.lines[0] == "Code al gebruikt"
        assert len(rig.events("reopened")) == 1
    finally:
        rig.close()


def test_out_of_service_is_kept_across_a_reboot_and_never_chosen():
    rig = Rig("staff-oos")
    try:
        rig.type(STAFF_PIN + "#")
        rig.type("41#")
        ev = rig.last("door_service")
        assert (ev["d"], ev["on"], ev["staff"]) == ("1", False, 7)
        rig.type("*")
        rig.boot()
        assert rig.locker.doors.out_of_service(0)
        rig.run(7000)
        rig.type(PICKUP + "#")
        assert rig.last("denied")["r"] == "out_of_service" and rig.energized_doors() == []
    finally:
        rig.close()


def test_key_echo_keeps_keys_from_the_code_entry():
    rig = Rig("staff-echo")
    try:
        lk = rig.locker
        lk.key_echo_until = rig.ticks.now + 1000
        rig.type("12")
        assert lk.entry.length == 0 and lk.key_echo_until
        rig.run(1000)
        rig.type("1")
        assert lk.entry.length == 1 and lk.key_echo_until == 0
    finally:
        rig.close()


def test_door_commands_open_once_per_tx_and_check_their_arguments():
    from locker import commands

    rig = Rig("staff-cmd")
    try:
        c = commands.Commands(Rt(rig.locker))
        now = rig.ticks.now
        r = c.handle(wire("door.open", {"door": "3", "by": "Ann", "r": "on the phone"}, 1, "a"), now)
        assert r["ok"] and r["d"] == "3"
        ev = rig.last("remote_open")
        assert (ev["d"], ev["by"], ev["r"]) == ("3", "Ann", "on the phone")
        rig.run(500)
        assert rig.energized_doors() == [2]
        r = c.handle(wire("door.open", {"door": "3", "by": "Ann"}, 2, "a"), rig.ticks.now)
        assert r["ok"] and r.get("dup") and len(rig.events("remote_open")) == 1
        seq = 10
        for args in (
            {"door": "9", "by": "Ann"},
            {"door": 3, "by": "Ann"},
            {"door": "3"},
            {"door": "3", "by": ""},
            {"door": "3", "by": "x" * 33},
            {"door": "3", "by": "Ann", "r": 5},
            {"door": "3", "by": "Ann", "r": "x" * 65},
        ):
            seq += 1
            r = c.handle(wire("door.open", args, seq, "b%d" % seq), rig.ticks.now)
            assert not r["ok"] and r["error"] == "bad_args", args
        r = c.handle(wire("door.service", {"door": "3", "on": 0, "by": "Ann"}, 100, "c"), rig.ticks.now)
        assert r["error"] == "bad_args"
        r = c.handle(wire("door.service", {"door": "3", "on": False, "by": "Ann"}, 101, "d"), rig.ticks.now)
        assert r["ok"] and r["on"] is False and r["d"] == "3"
        assert rig.last("door_service") == {"k": "door_service", "t": T0, "d": "3", "on": False, "by": "Ann"}
        r = c.handle(wire("door.open", {"door": "3", "by": "Ann"}, 102, "e"), rig.ticks.now)
        assert r["error"] == "out_of_service"
        r = c.handle(wire("door.service", {"door": "3", "on": True, "by": "Ann"}, 103, "f"), rig.ticks.now)
        assert r["ok"] and not rig.locker.doors.out_of_service(2)
    finally:
        rig.close()


def test_a_door_given_to_another_item_is_not_reopened_by_the_grace_period():
    rig = Rig("staff-grace-reuse")
    try:
        rig.type(PICKUP + "#")  # door 1
        rig.door(0, open_=True)
        rig.door(0, parcel=False)
        rig.door(0, open_=False)
        assert rig.last("pickup")["id"] == 11
        rig.type(STAFF_PIN + "#")
        rig.type("21")  # a load by size S: door 1 is free again, and the smallest
        assert rig.locker.jobs and 0 in rig.locker.jobs
        rig.door(0, open_=True)
        rig.door(0, parcel=True)
        rig.door(0, open_=False)
        assert rig.last("loaded")["d"] == "1"
        rig.type("*")
        rig.run(7000)
        rig.type(PICKUP + "#")  # within the grace period, but door 1 holds someone else's item now
        assert rig.board.display.lines[0] == "Code al gebruikt" and rig.events("reopened") == []
    finally:
        rig.close()
