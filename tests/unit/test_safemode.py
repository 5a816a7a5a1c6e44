import fakes
from locker.safemode import BootCounter


def test_safe_mode_after_limit_failed_boots_then_normal_again():
    d = fakes.scratch_dir("boots")
    path = d + "/boots.bin"
    results = [BootCounter(3, path).start() for _ in range(4)]
    assert results == [False, False, False, True]
    # safe mode cleared the counter: the next boot tries normally
    assert BootCounter(3, path).start() is False


def test_a_good_boot_resets_the_count():
    d = fakes.scratch_dir("boots")
    path = d + "/boots.bin"
    for _ in range(2):
        BootCounter(3, path).start()
    ok = BootCounter(3, path)
    ok.start()
    ok.mark_good()  # the third boot ran healthily
    assert [BootCounter(3, path).start() for _ in range(4)] == [False, False, False, True]


def test_corrupt_counter_counts_as_zero_and_is_reported():
    d = fakes.scratch_dir("boots")
    with open(d + "/boots.bin", "wb") as f:
        f.write(b"\x00\x01")
    c = BootCounter(3, d + "/boots.bin")
    assert c.start() is False
    assert c.problem
    assert c.count == 1
