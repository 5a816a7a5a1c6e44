# On-board audit log: text lines appended to one file, rotated to path + ".1" when it grows past
# max_bytes (so at most about 2 x max_bytes on flash). A cut during an append can leave a partial
# last line; the next append starts on a fresh line and tail() returns what is there.
from micropython import const

from locker import store

_CHUNK = const(256)


def _text(raw):
    try:
        return raw.decode()
    except UnicodeError:
        return "".join(chr(b) if 32 <= b < 127 else "?" for b in raw)


class AuditLog:
    def __init__(self, path="audit.log", max_bytes=16384):
        self.path = path
        self.max_bytes = max_bytes
        self._size = -1  # unknown until the first append
        self._fresh = True  # the file ends with a newline (or is empty)

    def _probe(self):
        self._size = store.size(self.path)
        self._fresh = True
        if self._size > 0:
            f = open(self.path, "rb")
            try:
                f.seek(self._size - 1)
                self._fresh = f.read(1) == b"\n"
            finally:
                f.close()
        elif self._size < 0:
            self._size = 0

    def append(self, line):
        """Append one line (newlines inside it become spaces)."""
        if self._size < 0:
            self._probe()
        data = line.replace("\n", " ").replace("\r", " ").encode() + b"\n"
        if not self._fresh:
            data = b"\n" + data
        if self._size and self._size + len(data) > self.max_bytes:
            store.rename(self.path, self.path + ".1")
            self._size = 0
            if not self._fresh:
                data = data[1:]
        try:
            store.append(self.path, data)
        except Exception:
            self._size = -1  # part of the line may be on flash: look again before the next append
            raise
        self._size += len(data)
        self._fresh = True

    def tail(self, n):
        """The last n lines, oldest first (from the rotated file too when needed)."""
        if n <= 0:
            return []
        lines = self._tail_of(self.path, n)
        if len(lines) < n:
            lines = self._tail_of(self.path + ".1", n - len(lines)) + lines
        return lines

    def _tail_of(self, path, n):
        size = store.size(path)
        if size <= 0:
            return []
        f = open(path, "rb")
        try:
            pos = size
            raw = b""
            while pos > 0 and raw.count(b"\n") <= n:
                step = _CHUNK if pos > _CHUNK else pos
                pos -= step
                f.seek(pos)
                raw = f.read(step) + raw
        finally:
            f.close()
        parts = raw.split(b"\n")
        if parts and not parts[-1]:
            parts.pop()  # the file ends with a newline
        if pos > 0:
            parts = parts[1:]  # the first piece may be the end of an older line
        return [_text(p) for p in parts[-n:]]
