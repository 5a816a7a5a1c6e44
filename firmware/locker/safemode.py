# Boot counter and safe mode, after ESPHome's safe_mode: every boot counts as failed until it has
# run healthily for a while; after too many failed boots in a row the locker starts in safe mode
# (solenoids off, console and network only) and clears the counter, so the next boot tries again.
import struct

from micropython import const

from locker import store

_PATH = const("boots.bin")


class BootCounter:
    def __init__(self, limit, path=_PATH):
        self.limit = limit
        self.path = path
        self.count = 0
        self.problem = None

    def start(self):
        """Count this boot. Returns True when the locker must start in safe mode."""
        count = 0
        try:
            raw = store.load(self.path)
            if raw is not None and len(raw) == 2:
                count = struct.unpack("<H", raw)[0]
        except store.Corrupt as exc:
            self.problem = str(exc)
        self.count = count + 1
        if self.count > self.limit:
            self.mark_good()
            return True
        store.save(self.path, struct.pack("<H", self.count))
        return False

    def mark_good(self):
        """The boot was healthy long enough: the next one starts from zero."""
        self.count = 0
        store.save(self.path, struct.pack("<H", 0))
