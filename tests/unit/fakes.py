# Test doubles shared by the unit tests. MicroPython-compatible: these tests run on both runtimes.
import os

try:
    _TMP = os.getenv("LOCKER_TEST_TMP") or "/tmp"
except AttributeError:  # pragma: no cover - very old ports
    _TMP = "/tmp"

_counter = [0]


def _rmtree(path):
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for name in entries:
        p = path + "/" + name
        try:
            os.remove(p)
        except OSError:
            _rmtree(p)
    try:
        os.rmdir(path)
    except OSError:
        pass


def scratch_dir(name):
    """An empty directory for one test, unique per process."""
    _counter[0] += 1
    path = "%s/locker-test-%d-%s-%d" % (_TMP, os.getpid() if hasattr(os, "getpid") else 0, name, _counter[0])
    _rmtree(path)
    os.mkdir(path)
    return path


class FakePin:
    """A logical pin: .value() reads, .value(v) writes; records every write with the fake time."""

    def __init__(self, level=0, clock=None):
        self.level = level
        self.writes = []
        self.clock = clock

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0
        self.writes.append((self.clock.now if self.clock else 0, self.level))
        return None

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class FakeClock:
    """Millisecond ticks under the test's control."""

    def __init__(self, start=0):
        self.now = start

    def advance(self, ms):
        self.now += ms
        return self.now
