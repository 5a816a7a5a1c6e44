# Events waiting for the host: one framed file per event in a directory, named by sequence number.
#
# Sequence numbers only grow, across reboots and across an emptied outbox: hwm.bin holds a
# reservation, rewritten once every _RESERVE events (before the first number past it is used), and
# the next number after a boot is past both the reservation and the newest file.
# When full, the oldest event is dropped and counted in `dropped` (the app reports it).
import os
import struct
from array import array

from micropython import const

from locker import store

_RESERVE = const(64)
_SUFFIX = const(".ev")
_HWM = const("hwm.bin")


try:
    _ilistdir = os.ilistdir
except AttributeError:  # CPython (the tests)

    def _ilistdir(d):
        for e in os.scandir(d):
            yield (e.name,)


def _name(seq):
    return "%010d.ev" % seq


class Outbox:
    def __init__(self, directory="outbox", capacity=500):
        self.directory = directory
        self.capacity = capacity
        self.dropped = 0
        self.problems = []  # damaged events found after load() (by peek)
        # Sequence numbers on flash, oldest first: one preallocated array, so a locker whose host
        # is away for days does not grow (and fragment) a list by one entry per event.
        self._seqs = array("I", bytes(4 * (capacity + 1)))  # raw zeros: 4-byte items on both runtimes
        self._n = 0
        self._next = 1
        self._reserved = 0

    def _path(self, seq):
        return store.join(self.directory, _name(seq))

    def load(self):
        """Scan the directory: remove stray tmp files and damaged events. Returns a list of problems."""
        problems = []
        d = self.directory
        try:
            os.mkdir(d)
        except OSError:
            pass
        for name in store.cleanup(d):
            problems.append("outbox: removed %s" % name)
        reserved = 0
        try:
            raw = store.load(store.join(d, _HWM))
            if raw is not None and len(raw) == 4:
                reserved = struct.unpack("<I", raw)[0]
            elif raw is not None:
                problems.append("outbox: bad %s" % _HWM)
        except store.Corrupt as exc:
            problems.append(str(exc))
        # Streamed (ilistdir), straight into the preallocated index kept in order: a locker with
        # hundreds of queued events builds no list of names at boot. Files are removed after the
        # scan, not during it.
        doomed = []  # rare: stray, damaged, or past capacity
        seqs = self._seqs
        cap = self.capacity
        n = 0
        top = 0
        for entry in _ilistdir(d):
            name = entry[0]
            if name == _HWM:
                continue
            seq = -1
            if name.endswith(_SUFFIX) and len(name) == 13:
                try:
                    seq = int(name[:10])
                except ValueError:
                    seq = -1
            path = store.join(d, name)
            if seq < 0:
                problems.append("outbox: removed stray %s" % name)
                doomed.append(path)
                continue
            try:
                payload = store.load(path)
            except store.Corrupt as exc:
                payload = None
                problems.append(str(exc))
            if payload is None:
                doomed.append(path)
                continue
            payload = None
            top = max(top, seq)
            i = n
            if n and seqs[n - 1] > seq:  # names usually come in order: an append
                i = self._index(seq, n)
                mv = memoryview(seqs)
                mv[i + 1 : n + 1] = mv[i:n]
            seqs[i] = seq
            n += 1
            if n > cap:  # the oldest goes, as put() does when full
                doomed.append(self._path(seqs[0]))
                self.dropped += 1
                mv = memoryview(seqs)
                mv[0:cap] = mv[1 : cap + 1]
                n = cap
        for path in doomed:
            store.remove(path)
        self._n = n
        self._reserved = reserved
        self._next = max(reserved, top + 1, 1)
        self.problems = []
        return problems

    def _index(self, seq, n=None):
        """Index of the first stored number >= seq (binary search of the ordered index)."""
        seqs = self._seqs
        lo = 0
        hi = self._n if n is None else n
        while lo < hi:
            mid = (lo + hi) >> 1
            if seqs[mid] < seq:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def __len__(self):
        return self._n

    def _forget(self, i):
        """Remove entry i, keeping the order (a memmove of at most `capacity` ints)."""
        n = self._n
        if i < n - 1:
            mv = memoryview(self._seqs)
            mv[i : n - 1] = mv[i + 1 : n]
        self._n = n - 1

    def _drop_oldest(self):
        store.remove(self._path(self._seqs[0]))
        self._forget(0)
        self.dropped += 1

    def put(self, payload):
        """Store one event (bytes) on flash; returns its sequence number."""
        seq = self._next
        if seq >= self._reserved:
            reserved = seq + _RESERVE
            store.save(store.join(self.directory, _HWM), struct.pack("<I", reserved))
            self._reserved = reserved
        store.save(self._path(seq), payload)
        self._next = seq + 1
        if self._n >= self.capacity:
            self._drop_oldest()
        self._seqs[self._n] = seq
        self._n += 1
        return seq

    def peek(self):
        """(seq, payload) of the oldest event, or None. A damaged event is removed and skipped."""
        return self.after(-1)

    def after(self, seq):
        """(seq, payload) of the first event numbered above seq, or None. A damaged event is removed
        and skipped."""
        i = self._index(seq + 1)
        while i < self._n:
            seq = self._seqs[i]
            try:
                payload = store.load(self._path(seq))
            except store.Corrupt as exc:
                payload = None
                self.problems.append(str(exc))
            if payload is not None:
                return (seq, payload)
            store.remove(self._path(seq))
            self._forget(i)
        return None

    def ack(self, seq):
        """The host has the event: forget it. Unknown numbers are ignored."""
        i = self._index(seq)
        if i < self._n and self._seqs[i] == seq:
            store.remove(self._path(seq))
            self._forget(i)
