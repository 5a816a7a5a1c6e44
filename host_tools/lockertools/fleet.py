"""A protocol-level simulated locker: what the host service sees of a real one, without a board.

It speaks docs/protocol.md over a real broker with the firmware's own pieces (`protocol.sign`, the
`CommandGate` that admits commands, `codes.tag`): retained status and doors, signed events from an
outbox that only the host's `ack` empties (resent after every reconnect), and `codes.apply` /
`codes.snapshot` applied to an in-memory code store with the replies the protocol prescribes.
Used by the service tests and the fleet benchmark; `SimLocker.lookup()` tells whether a code works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tempfile
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

MAX_ROWS = 64  # code rows per command
RECENT_TX = 8  # admitted tx remembered: a resent command is answered `dup`


@dataclass
class _Staged:
    rev: int
    parts: int
    total: int
    next_part: int = 1
    last_tag: str = ""
    rows: list[list[Any]] = field(default_factory=list)


class SimLocker:
    def __init__(
        self,
        locker_id: str,
        key: bytes,
        labels: list[str],
        host: str = "127.0.0.1",
        port: int = 1883,
        username: str | None = None,
        password: str | None = None,
        state_dir: Path | None = None,
        resend_s: float = 30.0,
    ) -> None:
        from locker import codes, protocol  # type: ignore[import-not-found]
        from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

        self._protocol: Any = protocol
        self._codes_mod: Any = codes
        self._hkey: Any = HmacKey(key)
        self.locker_id = locker_id
        self.labels = labels
        self.host, self.port = host, port
        self.username = locker_id if username is None else username
        self.password = password
        self.resend_s = resend_s
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"sim-{locker_id}-")
            state_dir = Path(self._tmp.name)
        self.gate: Any = protocol.CommandGate(self._hkey, locker_id, path=str(state_dir / "cmdseq.bin"))
        self.gate.load()
        # The code store: code id -> [tag_hex, door, kind, exp, id], as rows travel.
        self.store: dict[int, list[Any]] = {}
        self.rev = 0
        self.snap = False
        self.outbox: dict[int, bytes] = {}  # seq -> signed event, until the host acknowledges it
        self.next_seq = 1
        self.acked: set[int] = set()
        self.replies: list[dict[str, Any]] = []
        self.ops: Counter[str] = Counter()  # admitted commands by op
        self.traffic: list[tuple[str, bytes]] = []  # (topic, wire) both ways: tests check the contract
        self.received_ids: set[int] = set()  # every code id a command ever brought (tests: what travelled)
        self.refused: Counter[str] = Counter()
        self.mute_replies = 0  # tests: swallow this many replies (as if lost) to exercise resends
        self.doors: dict[str, dict[str, Any]] = {label: {"d": label, "s": "locked", "full": None} for label in labels}
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._recent_tx: OrderedDict[str, None] = OrderedDict()
        self._staged: _Staged | None = None
        self._boot = time.monotonic()

    # --- messages ---------------------------------------------------------------------------------

    def topic(self, kind: str) -> str:
        return f"lockers/{self.locker_id}/{kind}"

    def sign(self, payload: dict[str, Any]) -> bytes:
        wire: bytes = self._protocol.sign(self._hkey, self._protocol.encode(payload))
        return wire

    def status(self) -> dict[str, Any]:
        return {
            "v": 1,
            "lid": self.locker_id,
            "online": True,
            "mode": "normal",
            "fw": "sim",
            "rev": self.rev,
            "snap": self.snap,
            "codes": len(self.store),
            "outbox": len(self.outbox),
            "t": int(time.time()),
            "up": int(time.monotonic() - self._boot),
            "heap": 0,
        }

    def lookup(self, door: str, code: str) -> int | None:
        """The code id a typed code opens at this door, or None."""
        tag = self._codes_mod.tag(self._hkey, door, code.encode()).hex()
        for row in self.store.values():
            if row[0] == tag and row[1] == door:
                return int(row[4])
        return None

    # --- connection -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until cancelled (reconnecting like the firmware does)."""
        will = aiomqtt.Will(self.topic("status"), self.sign({"v": 1, "lid": self.locker_id, "online": False}), 1, True)
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    username=self.username,
                    password=self.password,
                    identifier=self.locker_id,
                    clean_session=True,
                    will=will,
                    keepalive=30,
                ) as client:
                    self._client = client
                    await client.subscribe(self.topic("cmd"), qos=1)
                    await self.publish_status()
                    await self.publish_doors()
                    self.connected.set()
                    resender = asyncio.create_task(self._resend_loop())
                    try:
                        async for message in client.messages:
                            await self._on_command(message)
                            _reraise_cancellation()
                    finally:
                        resender.cancel()
            except aiomqtt.MqttError:
                _reraise_cancellation()
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(0.2)

    def crash(self) -> None:
        """Drop the connection without DISCONNECT, as a power cut does: the broker publishes the will.
        (Cancel the run() task afterwards to keep the locker off.)"""
        if self._client is not None:
            sock = self._client._client.socket()  # aiomqtt's paho client: no public way to do this
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    async def _resend_loop(self) -> None:
        await self.resend_outbox()  # after every (re)connect
        while True:
            await asyncio.sleep(self.resend_s)
            await self.resend_outbox()

    async def publish(self, kind: str, wire: bytes, retain: bool = False) -> None:
        if self._client is not None:
            self.traffic.append((self.topic(kind), wire))
            await self._client.publish(self.topic(kind), wire, qos=1, retain=retain)

    async def publish_status(self) -> None:
        await self.publish("status", self.sign(self.status()), retain=True)

    async def publish_doors(self) -> None:
        payload = {"v": 1, "lid": self.locker_id, "t": int(time.time()), "doors": list(self.doors.values())}
        await self.publish("doors", self.sign(payload), retain=True)

    async def event(self, kind: str, repeat: int = 1, **fields: Any) -> int:
        """Record an event in the outbox and send it (now if connected, else after reconnecting);
        repeat=2 sends it twice at once (tests: a duplicate delivery)."""
        seq = self.next_seq
        self.next_seq += 1
        ev = {"k": kind, "t": int(time.time()), **fields}
        wire = self.outbox[seq] = self.sign({"v": 1, "lid": self.locker_id, "seq": seq, "ev": ev})
        for _ in range(repeat):
            await self.publish("events", wire)
        return seq

    async def resend_outbox(self) -> None:
        for seq in sorted(self.outbox):
            wire = self.outbox.get(seq)
            if wire is not None:
                await self.publish("events", wire)

    # --- commands ---------------------------------------------------------------------------------

    async def _on_command(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            self.refused["malformed"] += 1
            return
        self.traffic.append((str(message.topic), bytes(payload)))
        rev, snap = self.rev, self.snap
        reply = self.handle(bytes(payload), bool(message.retain))
        if reply is not None and self.mute_replies > 0:
            self.mute_replies -= 1
        elif reply is not None:
            self.replies.append(reply)
            await self.publish("reply", self.sign(reply))
        if (rev, snap) != (self.rev, self.snap):
            await self.publish_status()

    def handle(self, wire: bytes, retained: bool = False) -> dict[str, Any] | None:
        """Admit and run one command; the reply, or None (refused, or an ack)."""
        protocol = self._protocol
        try:
            cmd = json.loads(protocol.open_signed(self._hkey, wire))
            if isinstance(cmd, dict) and cmd.get("op") == "ack":
                self._ack(cmd, retained)
                return None
            cmd = self.gate.admit(wire, int(time.time()), retained)
        except protocol.Refused as exc:
            self.refused[exc.reason] += 1
            return None
        except ValueError:
            self.refused["malformed"] += 1
            return None
        head = {"v": 1, "lid": self.locker_id, "tx": cmd.get("tx"), "cseq": cmd["seq"]}
        if cmd.get("tx") in self._recent_tx:
            return head | {"ok": True, "dup": True}
        self.ops[cmd["op"]] += 1
        try:
            result = self._dispatch(cmd["op"], cmd.get("args") or {})
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            result = {"ok": False, "error": "bad_args", "detail": str(exc)}
        if result.get("ok") and isinstance(cmd.get("tx"), str):
            self._recent_tx[cmd["tx"]] = None
            while len(self._recent_tx) > RECENT_TX:
                self._recent_tx.popitem(last=False)
        return head | result

    def _ack(self, cmd: dict[str, Any], retained: bool) -> None:
        # Exempt from the sequence rule (idempotent, touches only the outbox); everything else holds.
        protocol = self._protocol
        if retained:
            raise protocol.Refused(protocol.RETAINED)
        if cmd.get("v") != 1 or cmd.get("lid") != self.locker_id:
            raise protocol.Refused(protocol.WRONG_LOCKER)
        if not isinstance(cmd.get("exp"), int) or cmd["exp"] < int(time.time()):
            raise protocol.Refused(protocol.EXPIRED)
        for seq in (cmd.get("args") or {}).get("seqs", []):
            if self.outbox.pop(seq, None) is not None:
                self.acked.add(seq)
        self.ops["ack"] += 1

    def _dispatch(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "time":
            return {"ok": True}
        if op == "status":
            return {"ok": True, "status": self.status() | {"doors": list(self.doors.values())}}
        if op == "codes.apply":
            if args.get("base") != self.rev:
                return {"ok": False, "error": "revision_mismatch", "rev": self.rev}
            add, dels = self._rows(args.get("add") or []), [int(i) for i in args.get("del") or []]
            if len(add) + len(dels) > MAX_ROWS:
                raise ValueError("too many changes")
            for code_id in dels:
                self.store.pop(code_id, None)
            for row in add:  # displaces a record with the same id or tag
                for old in [i for i, r in self.store.items() if r[0] == row[0]]:
                    del self.store[old]
                self.store[row[4]] = row
            self.rev = int(args["rev"])
            return {"ok": True, "rev": self.rev, "count": len(self.store)}
        if op == "codes.snapshot":
            return self._snapshot(args)
        return {"ok": False, "error": "unknown_op"}

    def _snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        part, parts, rev, total = int(args["part"]), int(args["parts"]), int(args["rev"]), int(args["total"])
        rows = self._rows(args.get("codes") or [])
        if part == 1:
            self._staged = _Staged(rev, parts, total)
        staged = self._staged
        if staged is None or part != staged.next_part or (staged.rev, staged.parts) != (rev, parts):
            self._staged = None
            return {"ok": False, "error": "snapshot_order"}
        for row in rows:
            if row[0] <= staged.last_tag:
                self._staged = None
                return {"ok": False, "error": "snapshot_order"}
            staged.last_tag = row[0]
        staged.rows.extend(rows)
        staged.next_part = part + 1
        if part < parts:
            return {"ok": True, "part": part}
        self._staged = None
        if len(staged.rows) != total:
            return {"ok": False, "error": "bad_args", "detail": "total"}
        self.store = {int(r[4]): r for r in staged.rows}
        self.rev, self.snap = rev, False
        return {"ok": True, "rev": self.rev, "count": len(self.store)}

    def _rows(self, rows: list[Any]) -> list[list[Any]]:
        if len(rows) > MAX_ROWS:
            raise ValueError("too many rows")
        out = []
        for tag_hex, door, kind, exp, code_id in rows:
            if len(bytes.fromhex(tag_hex)) != 16 or door not in self.labels:
                raise ValueError("bad row")
            out.append([tag_hex, door, int(kind), int(exp), int(code_id)])
            self.received_ids.add(int(code_id))
        return out


def _reraise_cancellation() -> None:
    """Re-raise a cancellation that something swallowed: an MqttError raised while leaving the client,
    or aiomqtt's publish (asyncio.wait_for on 3.11 can drop a cancellation that races its result)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
