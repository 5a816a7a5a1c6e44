# The bounded, rotated audit log.
import fakes
from locker import audit, store


def _new(d, max_bytes=16384):
    return audit.AuditLog(path=d + "/audit.log", max_bytes=max_bytes)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_append_and_tail():
    d = fakes.scratch_dir("audit")
    log = _new(d)
    assert log.tail(5) == []
    for i in range(10):
        log.append("event %d" % i)
    assert log.tail(3) == ["event 7", "event 8", "event 9"]
    assert log.tail(0) == []
    assert len(log.tail(100)) == 10
    assert _read(d + "/audit.log").count(b"\n") == 10


def test_newlines_inside_a_line_are_flattened():
    d = fakes.scratch_dir("audit")
    log = _new(d)
    log.append("two\nlines\r")
    assert log.tail(5) == ["two lines "]


def test_rotation_bounds_the_size():
    d = fakes.scratch_dir("audit")
    log = _new(d, max_bytes=200)
    for i in range(100):
        log.append("line number %03d" % i)  # 16 bytes each
    assert store.size(d + "/audit.log") <= 200
    assert store.size(d + "/audit.log.1") <= 200
    assert log.tail(12) == ["line number %03d" % i for i in range(88, 100)]
    everything = log.tail(1000)
    assert 12 <= len(everything) <= 24
    assert everything == ["line number %03d" % i for i in range(100 - len(everything), 100)]
    log2 = _new(d, max_bytes=200)
    log2.append("after reboot")
    assert store.size(d + "/audit.log") <= 200
    assert log2.tail(2) == ["line number 099", "after reboot"]


def test_long_tail_reads_across_chunks():
    d = fakes.scratch_dir("audit")
    log = _new(d)
    lines = ["x" * (i % 90) + "|%d" % i for i in range(200)]
    for line in lines:
        log.append(line)
    assert log.tail(150) == lines[50:]
    assert log.tail(1) == lines[-1:]


def test_partial_last_line_after_a_cut_is_tolerated():
    d = fakes.scratch_dir("audit")
    log = _new(d)
    log.append("complete")
    with open(d + "/audit.log", "ab") as f:
        f.write(b"half a li")
    log2 = _new(d)
    assert log2.tail(2) == ["complete", "half a li"]
    log2.append("next")
    assert log2.tail(3) == ["complete", "half a li", "next"]


def test_garbage_bytes_do_not_raise():
    d = fakes.scratch_dir("audit")
    with open(d + "/audit.log", "wb") as f:
        f.write(b"ok\n\xff\xfe\x80bad\n")
    log = _new(d)
    assert log.tail(2) == ["ok", "???bad"]
