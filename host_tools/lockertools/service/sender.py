"""The service's way out: commands to the lockers over the current MQTT connection.

A broker that is slow to answer (it is saving its database, or it is just busy) must slow the sender
down, not bury it. So:

- **A window.** At most `window` publishes await their PUBACK at once (paho's own in-flight limit is
  set to the same). Everything else waits here, where it is cheap.
- **Sync commands first.** They are signed when planned (their seq and tx are stored with them) and go
  out in order, ahead of any ack; `reserved` slots of the window are theirs alone, so acks never crowd
  them out.
- **Acks coalesce per locker.** What is to be acknowledged is a set of seqs per locker, not a queue of
  messages. A locker has at most one ack in flight; seqs that come meanwhile go out together in its next
  ack (up to MAX_ACK_SEQS, the schema's limit). An ack is signed only when it leaves. Under a backlog
  the number of ack messages shrinks instead of growing with it.
- **A slow PUBACK is not a broken connection.** aiomqtt's own publish timeout (10 s by default) raises
  and leaves the message in paho; ending the connection then (what the service used to do) threw away
  every ack in flight and made the broker deliver again everything not yet acknowledged. The sender
  waits for a PUBACK as long as the connection lives: the keepalive (paho pings; no answer within
  `keepalive` ends the connection) and socket errors tell a dead connection, which the pump sees. Only
  a PUBACK missing for `stall_s` (several keepalives: the broker answers pings but not publishes) ends
  the connection.
- **Nothing acknowledged is forgotten.** When a connection ends, the seqs of the acks in flight go back
  to wait for the next one (a second ack of a seq is harmless: the locker drops what it no longer
  holds). A sync command in flight is not sent again as is (its seq may have been admitted already):
  the service's resend (same tx, new seq) covers it. Commands not yet handed to paho wait for the next
  connection.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiomqtt

from lockertools.service import db

log = logging.getLogger("lockertools.service")

MAX_ACK_SEQS = 256  # seqs per ack command: protocol/schemas/command.json (maxItems)


@dataclass
class SenderStats:
    acks_sent: int = 0  # ack commands handed to the broker
    acked_seqs: int = 0  # seqs in them
    commands_published: int = 0  # sync commands handed to the broker (resends included)
    stalls: int = 0  # PUBACKs missing for stall_s: the connection was ended
    requeued_seqs: int = 0  # seqs of acks in flight when a connection ended, sent again
    backlog_most: int = 0  # most lockers waiting for an ack at once


@dataclass(frozen=True)
class _Item:
    topic: str
    wire: bytes
    lid: str | None = None  # an ack: its locker and seqs
    seqs: tuple[int, ...] = ()


class Stalled(aiomqtt.MqttError):
    """A PUBACK did not come within stall_s: the connection is stuck, not slow."""


class Sender:
    """`command()` and `ack()` queue; `serve(client)` sends over one connection until it fails or is
    cancelled (then call it again with the next connection). `sign_ack(lid, seqs)` makes an ack
    command's wire form (its seq taken then). One asyncio loop: no locks."""

    def __init__(
        self,
        sign_ack: Callable[[str, list[int]], bytes],
        window: int = 32,
        reserved: int = 4,
        stall_s: float = 120.0,
        stats: SenderStats | None = None,
    ) -> None:
        if not 0 <= reserved < window:
            raise ValueError("reserved slots must leave at least one for acks")
        self.window = window
        self.reserved = reserved
        self.stall_s = stall_s
        self.stats = SenderStats() if stats is None else stats
        self._sign_ack = sign_ack
        self._commands: deque[_Item] = deque()
        self._pending: dict[str, set[int]] = {}  # lid -> seqs to acknowledge, not yet in an ack
        self._ready: OrderedDict[str, None] = OrderedDict()  # lids with pending seqs and no ack in flight
        self._acking: set[str] = set()  # lids with an ack in flight
        self._inflight = 0
        self._wake = asyncio.Event()
        self._failure: BaseException | None = None

    # --- queueing (called by the service) ---------------------------------------------------------

    def command(self, topic: str, wire: bytes) -> None:
        self._commands.append(_Item(topic, wire))
        self._wake.set()

    def ack(self, lid: str, seqs: Iterable[int]) -> None:
        pending = self._pending.setdefault(lid, set())
        pending.update(seqs)
        if not pending:
            del self._pending[lid]
            return
        if lid not in self._acking:
            self._ready[lid] = None
        self.stats.backlog_most = max(self.stats.backlog_most, len(self._pending))
        self._wake.set()

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return not self._commands and not self._pending and self._inflight == 0

    def queued(self) -> tuple[int, int]:
        """(sync commands waiting, seqs waiting for an ack)."""
        return len(self._commands), sum(len(s) for s in self._pending.values())

    # --- sending ----------------------------------------------------------------------------------

    async def serve(self, client: aiomqtt.Client) -> None:
        """Send until the connection fails (raises aiomqtt.MqttError) or the task is cancelled."""
        tasks: set[asyncio.Task[None]] = set()
        self._failure = None
        self._wake.set()  # whatever waited for this connection
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._failure is not None:
                    raise self._failure
                while (item := self._next()) is not None:
                    self._inflight += 1
                    task = asyncio.create_task(self._publish(client, item))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _next(self) -> _Item | None:
        if self._inflight >= self.window:
            return None
        if self._commands:
            return self._commands.popleft()
        while self._ready and self._inflight < self.window - self.reserved:
            lid, _ = self._ready.popitem(last=False)
            pending = self._pending.pop(lid, set())
            if not pending:
                continue
            seqs = sorted(pending)
            chunk, rest = seqs[:MAX_ACK_SEQS], seqs[MAX_ACK_SEQS:]
            try:
                wire = self._sign_ack(lid, chunk)
            except db.Error + (KeyError,):
                # No seq for it (the database is busy, or the locker was removed): the locker sends
                # these events again, and they are acknowledged then.
                log.exception(
                    "could not make an ack for %s; %d seqs left unacknowledged", lid, len(seqs), extra={"locker": lid}
                )
                continue
            if rest:
                self._pending[lid] = set(rest)  # in the next ack, after this one's PUBACK
            self._acking.add(lid)
            return _Item(f"lockers/{lid}/cmd", wire, lid, tuple(chunk))
        return None

    async def _publish(self, client: aiomqtt.Client, item: _Item) -> None:
        done = False
        try:
            if item.lid is None:
                self.stats.commands_published += 1
            else:
                self.stats.acks_sent += 1
                self.stats.acked_seqs += len(item.seqs)
            try:
                async with asyncio.timeout(self.stall_s):
                    # math.inf: aiomqtt's own timeout would raise and leave the message in paho.
                    await client.publish(item.topic, item.wire, qos=1, timeout=math.inf)
                done = True
            except TimeoutError:
                self.stats.stalls += 1
                self._fail(Stalled(f"no PUBACK within {self.stall_s:.0f} s"))
            except aiomqtt.MqttError as exc:  # paho refused it: the connection is gone
                self._fail(exc)
        finally:
            self._finished(item, done)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._wake.set()

    def _finished(self, item: _Item, done: bool) -> None:
        self._inflight -= 1
        lid = item.lid
        if lid is not None:
            self._acking.discard(lid)
            if not done:  # not known to have reached the broker: acknowledge these again
                self._pending.setdefault(lid, set()).update(item.seqs)
                self.stats.requeued_seqs += len(item.seqs)
            if self._pending.get(lid):
                self._ready[lid] = None
        self._wake.set()
