# Events waiting for the host: one framed file per event in a directory, named by sequence number.
#
# Sequence numbers only grow, across reboots and across an emptied outbox: hwm.bin holds a
# reservation, rewritten once every _RESERVE events (before the first number past it is used), and
# the next number after a boot is past both the reservation and the newest file.
# When full, the oldest event is dropped and counted in `dropped` (the app reports it); so is an
# event 65,536 or more numbers older than the newest (the index keeps 2 bytes an event: that takes
# thousands of boots with the same event still unsent).
import os
import struct
from array import array

from micropython import const

from locker import store

_RESERVE = const(64)
# The index holds each number as its distance from `_base` in two bytes: the events on flash span
# far fewer numbers than that (at most `capacity` events, plus _RESERVE skipped at each boot).
_SPAN = const(0xFFFF)
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


def _seq_of(name):
    """An event file's number from its name; -1 for any other name."""
    if name.endswith(_SUFFIX) and len(name) == 13:
        try:
            return int(name[:10])
        except ValueError:
            pass
    return -1


class Outbox:
    def __init__(self, directory="outbox", capacity=500):
        self.directory = directory
        self.capacity = capacity
        self.dropped = 0
        self.problems = []  # damaged events found after load() (by peek)
        # Sequence numbers on flash, oldest first: one preallocated array, so a locker whose host
        # is away for days does not grow (and fragment) a list by one entry per event. Each entry is
        # seq - _base in two bytes (raw zeros: 2-byte items on both runtimes); _fit() moves _base on.
        self._seqs = array("H", bytes(2 * (capacity + 1)))
        self._base = 0
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
        # The newest number first (names only, nothing read): the index spans the _SPAN numbers up
        # to it, and an event older than that goes as the oldest go when the outbox is full.
        newest = 0
        for entry in _ilistdir(d):
            newest = max(newest, _seq_of(entry[0]))
        base = max(0, newest - _SPAN)
        self._base = base
        for entry in _ilistdir(d):
            name = entry[0]
            if name == _HWM:
                continue
            seq = _seq_of(name)
            path = store.join(d, name)
            if seq < 0:
                problems.append("outbox: removed stray %s" % name)
                doomed.append(path)
                continue
            if seq < base:
                doomed.append(path)
                self.dropped += 1
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
            if n and seqs[n - 1] > seq - base:  # names usually come in order: an append
                i = self._index(seq, n)
                mv = memoryview(seqs)
                mv[i + 1 : n + 1] = mv[i:n]
            seqs[i] = seq - base
            n += 1
            if n > cap:  # the oldest goes, as put() does when full
                doomed.append(self._path(base + seqs[0]))
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
        key = seq - self._base  # below 0 or above _SPAN: before or after every entry
        lo = 0
        hi = self._n if n is None else n
        while lo < hi:
            mid = (lo + hi) >> 1
            if seqs[mid] < key:
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
        store.remove(self._path(self._base + self._seqs[0]))
        self._forget(0)
        self.dropped += 1

    def _fit(self, seq):
        """Make room in the index's span for seq (above every stored number): _base moves to the
        oldest event, and when even that is too far back, the oldest events go (counted)."""
        while self._n and seq - self._base - self._seqs[0] > _SPAN:
            self._drop_oldest()
        if not self._n:
            self._base = seq
        elif seq - self._base > _SPAN:
            shift = self._seqs[0]
            seqs = self._seqs
            for i in range(self._n):  # rare: once per tens of thousands of events
                seqs[i] -= shift
            self._base += shift

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
        self._fit(seq)
        self._seqs[self._n] = seq - self._base
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
            seq = self._base + self._seqs[i]
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
        if i < self._n and self._base + self._seqs[i] == seq:
            store.remove(self._path(seq))
            self._forget(i)
