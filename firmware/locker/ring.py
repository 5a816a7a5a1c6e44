# Bounded, preallocated FIFO of small ints. put() never allocates: when the queue is
# full the value is dropped and counted, so the hot loop (keypad scan) can always call it.
# Two bytes a slot: what the queues carry fits (a key code, a door event kind << 8 | door, a lock
# board's up/down bit << 8 | address); put() refuses anything else rather than store it cut short.
from array import array

from micropython import const

_MAX = const(0xFFFF)


class Ring:
    def __init__(self, size):
        if size < 1:
            raise ValueError("ring size")
        self._buf = array("H", bytes(2 * size))  # raw zeros: no list of `size` ints to build first
        self._size = size
        self._head = 0  # next slot to read
        self._n = 0
        self.dropped = 0  # values refused because the ring was full (kept across clear())

    def put(self, v):
        if not 0 <= v <= _MAX:
            raise ValueError("ring value")
        if self._n >= self._size:
            self.dropped += 1
            return False
        i = self._head + self._n
        if i >= self._size:
            i -= self._size
        self._buf[i] = v
        self._n += 1
        return True

    def get(self):
        """The oldest value, or -1 when empty."""
        if not self._n:
            return -1
        v = self._buf[self._head]
        self._head += 1
        if self._head >= self._size:
            self._head = 0
        self._n -= 1
        return v

    def __len__(self):
        return self._n

    def clear(self):
        self._head = 0
        self._n = 0
