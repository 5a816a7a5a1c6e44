"""Links to a locker: its USB console (serial or simulated) and the broker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from lockertools.maint import MaintError, Reply


class Link(Protocol):
    def request(self, wire: bytes, tx: str, timeout: float) -> Reply | None:
        """Send a signed command; its reply (None: none within timeout)."""
        ...

    def close(self) -> None: ...


class Console:
    """A board's console as lines, with waits. Subclasses feed `_add` and implement `send_line`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._lines: list[str] = []

    def send_line(self, line: str) -> None:
        raise NotImplementedError

    def _add(self, line: str) -> None:
        with self._cond:
            self._lines.append(line)
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self._lines)

    def lines(self, since: int = 0) -> list[str]:
        with self._cond:
            return self._lines[since:]

    def wait(self, pred: Callable[[str], Any], since: int, timeout: float) -> Any:
        """pred's first truthy value on a line from index `since`, or None after timeout."""
        deadline = time.monotonic() + timeout
        i = since
        with self._cond:
            while True:
                while i < len(self._lines):
                    v = pred(self._lines[i])
                    i += 1
                    if v:
                        return v
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def request(self, wire: bytes, tx: str, timeout: float) -> Reply | None:
        since = self.mark()
        self.send_line(wire.decode())

        def reply(line: str) -> Reply | None:
            obj = parse_reply(line)
            if obj is None:
                return None
            # a refusal (bad signature, replay...) carries no tx: the command could not be read
            return obj if obj.get("tx") == tx or ("tx" not in obj and obj.get("ok") is False) else None

        got: Reply | None = self.wait(reply, since, timeout)
        return got

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in (parse_event(ln) for ln in self.lines(since)) if e is not None]

    def close(self) -> None:
        pass


def parse_reply(line: str) -> Reply | None:
    i = line.find("re|")
    if i < 0:
        return None
    try:
        obj = json.loads(line[i + 3 :])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def parse_event(line: str) -> dict[str, Any] | None:
    """An event the firmware printed (`event {"k": ..., "d": ...}`), else None."""
    if not line.startswith("event {"):
        return None
    try:
        obj = json.loads(line[6:])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def parse_key(line: str) -> str | None:
    """A key echoed during the keypad walk-through (`key|<ch>`), else None."""
    return line[4:5] if line.startswith("key|") and len(line) >= 5 else None


class SimConsole(Console):
    """A VirtualBoard's console: its log lines (across reboots) and its stdin."""

    def __init__(self, board: Any) -> None:
        super().__init__()
        self.board = board
        self._seen = 0
        self._stop = False
        self._thread = threading.Thread(target=self._follow, daemon=True, name="sim-console")
        self._thread.start()

    def _follow(self) -> None:
        # The board's log is a bounded deque: follow it by content, waking on every new line.
        last: list[str] = []
        while not self._stop:
            lines = self.board.log_lines()
            start = _overlap(last, lines)
            for ln in lines[start:]:
                self._add(ln)
            last = n = lines
            self.board.watch(lambda n=n: self._stop or len(self.board.log_lines()) != len(n) or None, 0.5)

    def send_line(self, line: str) -> None:
        from lockertools.sim.board import SimError

        try:
            self.board.send_console(line)
        except (SimError, OSError, ValueError) as exc:  # rebooting: the caller retries
            raise MaintError(f"console: {exc}") from exc

    def close(self) -> None:
        self._stop = True


def _overlap(old: list[str], new: list[str]) -> int:
    """Where the lines not seen yet start in `new` (the log may have dropped lines off its front)."""
    if len(new) >= len(old) and new[: len(old)] == old:
        return len(old)
    for k in range(min(len(old), len(new)), 0, -1):
        if old[-k:] == new[:k]:
            return k
    return 0


class SerialConsole(Console):
    """A board's USB console through pyserial: every line it prints, and lines typed to it."""

    def __init__(self, port: str, baud: int = 115200) -> None:
        super().__init__()
        import serial  # type: ignore[import-untyped]

        try:
            self._ser = serial.Serial(port, baud, timeout=0.2)
        except serial.SerialException as exc:
            raise MaintError(
                f"cannot open {port}: {exc} (is it the board's port? is mpremote or a terminal using it?)"
            ) from exc
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True, name="serial-console")
        self._thread.start()

    def _read(self) -> None:
        buf = b""
        while not self._stop:
            try:
                data = self._ser.read(256)
            except Exception:  # noqa: BLE001 - unplugged: the reader ends
                return
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                self._add(raw.decode("utf-8", errors="replace").rstrip("\r"))

    def send_line(self, line: str) -> None:
        self._ser.write(line.encode() + b"\r\n")
        self._ser.flush()

    def close(self) -> None:
        self._stop = True
        self._thread.join(1.0)
        self._ser.close()


class MqttLink:
    """Commands through the broker, as the host service sends them; replies checked (signed by the locker)."""

    def __init__(
        self,
        locker_id: str,
        key: bytes,
        host: str,
        port: int,
        user: str | None,
        password: str | None,
        ca: Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        from locker import protocol  # type: ignore[import-not-found]
        from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

        self._protocol = protocol
        self._hkey = HmacKey(key)
        self.lid = locker_id
        self._cond = threading.Condition()
        self._replies: dict[str, Reply] = {}
        self._status: dict[str, Any] | None = None
        self._ready = False
        self._c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"lockerctl-{time.time_ns() % 10**9}")
        if user:
            self._c.username_pw_set(user, password)
        if ca is not None:
            self._c.tls_set(ca_certs=str(ca))
        self._c.on_connect = self._on_connect
        self._c.on_message = self._on_message
        try:
            self._c.connect(host, port, keepalive=30)
        except OSError as exc:
            raise MaintError(f"broker {host}:{port} unreachable: {exc}") from exc
        self._c.loop_start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready, timeout):
                self.close()
                raise MaintError(f"broker {host}:{port}: no connection within {timeout:g}s (user/password/TLS?)")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if getattr(rc, "is_failure", False):
            return
        client.subscribe([(f"lockers/{self.lid}/reply", 1), (f"lockers/{self.lid}/status", 1)])
        with self._cond:
            self._ready = True
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            obj = self._protocol.open_message(self._hkey, bytes(msg.payload))
        except self._protocol.Refused:
            return  # not from this locker: ignored
        with self._cond:
            if msg.topic.endswith("/reply") and isinstance(obj.get("tx"), str):
                self._replies[obj["tx"]] = obj
            elif msg.topic.endswith("/status"):
                self._status = obj
            self._cond.notify_all()

    def request(self, wire: bytes, tx: str, timeout: float) -> Reply | None:
        self._c.publish(f"lockers/{self.lid}/cmd", wire, qos=1)
        with self._cond:
            self._cond.wait_for(lambda: tx in self._replies, timeout)
            return self._replies.pop(tx, None)

    def close(self) -> None:
        self._c.loop_stop()
        self._c.disconnect()
