from locker.supervisor import Supervisor
from locker.ticks import ticks_add


def test_healthy_only_when_every_task_checked_in_recently():
    sup = Supervisor(max_silence_ms=1000)
    io = sup.register("io", 0)
    house = sup.register("housekeeping", 0)
    assert sup.healthy(500)
    sup.check_in(io, 1500)
    assert not sup.healthy(1500)  # housekeeping silent for 1500 ms
    assert sup.stale(1500) == ["housekeeping"]
    sup.check_in(house, 1600)
    assert sup.healthy(1600)
    assert sup.stale(1600) == []


def test_no_tasks_is_not_healthy():
    assert not Supervisor(1000).healthy(0)


def test_ticks_wrap_does_not_fake_health():
    sup = Supervisor(max_silence_ms=1000)
    near_wrap = ticks_add(0, -200)  # wraps on both runtimes (the unix port's period is 2**62)
    slot = sup.register("io", near_wrap)
    assert sup.healthy(100)  # 300 ms later, across the wrap
    assert not sup.healthy(2000)
    sup.check_in(slot, 2000)
    assert sup.healthy(2500)
