"""Signed commands for a locker, built with the firmware's own protocol module."""

from __future__ import annotations

import time
import uuid
from typing import Any


class CommandSigner:
    """Builds the signed wire form of commands for one locker, with increasing sequence numbers."""

    def __init__(self, locker_id: str, key: bytes, first_seq: int | None = None) -> None:
        from locker import protocol  # type: ignore[import-not-found]
        from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

        self._protocol = protocol
        self._hkey = HmacKey(key)
        self.locker_id = locker_id
        # Milliseconds since the epoch: increasing across host restarts without a stored counter.
        self._next_seq = first_seq if first_seq is not None else 0

    def command(self, op: str, args: dict[str, Any] | None = None, ttl_s: int = 300, now: int | None = None) -> bytes:
        now = int(time.time()) if now is None else now
        payload = {
            "v": 1,
            "lid": self.locker_id,
            "seq": self._take_seq(),
            "now": now,
            "exp": now + ttl_s,
            "tx": uuid.uuid4().hex[:12],
            "op": op,
            "args": args or {},
        }
        signed: bytes = self._protocol.sign(self._hkey, self._protocol.encode(payload))
        return signed

    def _take_seq(self) -> int:
        seq = max(self._next_seq, int(time.time() * 1000))
        self._next_seq = seq + 1
        return seq
