"""Technicians' tools: diagnostics, the self-test, application bundles and updates (docs/maintenance.md).

Everything here talks to a locker with signed commands (lockertools.commands.CommandSigner, the
firmware's own protocol module) over a `Link`:

- `MqttLink`: the broker, as the host service (the locker answers on lockers/<id>/reply, signed);
- `SerialConsole`: a board's USB console (pyserial), where the firmware prints its log, its events
  (`event {...}`), the keypad echo (`key|<ch>`) and its replies to signed commands (`re|{...}`);
- `SimConsole`: a VirtualBoard's console (the same lines, from the simulator).

The application layout on flash (what provisioning installs and updates replace) is `build_app` /
`install_app`: boot.py and main.py at the root, the application compiled under app/ with its manifest
app/app.json.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lockertools import FIRMWARE_DIR

Reply = dict[str, Any]

LOADER_FILES = ("boot.py", "main.py")  # at the root of the board's filesystem, never updated
APP_DIR = "app"
MANIFEST = "app/app.json"
# Update state on the board (boot.py, locker/update.py). Provisioning removes them on a fresh install.
UPDATE_STATE = ("app.new", "app.old", "app.bad", "app.swap", "app.trial", "app.rolled", "app.rb")
FILES_PER_MSG = 16  # manifest entries per app.begin / app.files (the firmware's limit)
CHUNK = 1024  # bytes of file data per app.chunk: ~1.4 KB of base64; small beside 8 KB messages and the heap


class MaintError(RuntimeError):
    """A locker refused or did not answer; the message says what to do."""


# --- the application bundle ------------------------------------------------------------------------


def manifest_text(version: str, files: Iterable[dict[str, Any]]) -> bytes:
    """The bytes a manifest's signature covers (firmware locker/update.py `text`, byte for byte)."""
    parts = [f"app|{version}\n"]
    parts += [f"{f['path']}|{int(f['size'])}|{f['sha256']}\n" for f in files]
    return "".join(parts).encode()


def manifest_sig(key: bytes, version: str, files: Iterable[dict[str, Any]]) -> str:
    """HMAC-SHA256(locker key, SHA-256(manifest text)): what app.begin's `sig` carries."""
    import hmac

    digest = hashlib.sha256(manifest_text(version, files)).digest()
    return hmac.new(key, digest, hashlib.sha256).hexdigest()


@dataclass
class AppBundle:
    """What goes on a board: `files` maps board paths (boot.py, main.py, app/...) to their bytes."""

    version: str
    files: dict[str, bytes]
    manifest: dict[str, Any] = field(default_factory=dict)

    def app_files(self) -> list[dict[str, Any]]:
        """The manifest's file list (paths relative to app/)."""
        return list(self.manifest["files"])

    def app_bytes(self, path: str) -> bytes:
        return self.files[f"{APP_DIR}/{path}"]

    @property
    def app_size(self) -> int:
        return sum(int(f["size"]) for f in self.manifest["files"])


def firmware_version(firmware_dir: Path) -> str:
    """The version string in the tree's locker/startup.py (`_VERSION = "..."`), or "0"."""
    import re

    src = (
        (firmware_dir / "locker" / "startup.py").read_text()
        if (firmware_dir / "locker" / "startup.py").exists()
        else ""
    )
    m = re.search(r'^_VERSION = "([^"]+)"', src, re.M)
    return m.group(1) if m else "0"


def build_app(
    arch: str | None = None,
    version: str | None = None,
    firmware_dir: Path = FIRMWARE_DIR,
    mpy_cross: Path | None = None,
) -> AppBundle:
    """Compile a firmware source tree (mpy-cross; `arch` e.g. "xtensawin" for an ESP32, None: bytecode
    for any port, the simulator's) into the board's layout. The default version is the tree's
    _VERSION plus "+" and 8 hex digits of the application's content."""
    from lockertools.build import compile_tree

    kind = "app" if arch is None else f"app-{arch}"
    out = compile_tree(Path(firmware_dir), kind, arch=arch, mpy_cross=mpy_cross)
    files: dict[str, bytes] = {}
    rows: list[dict[str, Any]] = []
    for p in sorted(q for q in out.rglob("*") if q.is_file()):
        rel = p.relative_to(out).as_posix()
        data = p.read_bytes()
        if rel in LOADER_FILES:
            files[rel] = data
            continue
        files[f"{APP_DIR}/{rel}"] = data
        rows.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    if version is None:
        digest = hashlib.sha256(manifest_text("", rows)).hexdigest()[:8]
        version = f"{firmware_version(Path(firmware_dir))}+{digest}"
    if not 0 < len(version) <= 16 or "|" in version or "\n" in version:
        raise MaintError(f"bad version {version!r}: 1-16 characters, no '|'")
    manifest = {"version": version, "files": rows}
    files[MANIFEST] = json.dumps(manifest, indent=1).encode()
    return AppBundle(version, files, manifest)


def install_app(flash_dir: Path, bundle: AppBundle) -> None:
    """Write a bundle into a board's filesystem folder (the simulator's flash folder, or a folder a
    littlefs image is made from): a fresh install, so any update state goes."""
    flash_dir = Path(flash_dir)
    for name in (APP_DIR, *UPDATE_STATE):
        p = flash_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    for rel, data in bundle.files.items():
        dest = flash_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


# --- links -------------------------------------------------------------------------------------------


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
        from lockertools.sim import SimError

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

        from lockertools import use_firmware_modules

        use_firmware_modules()
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


# --- the technician's client --------------------------------------------------------------------------


class SeqBlocks:
    """Command seqs for a technician's tool, shared with the host service through its database: blocks
    reserved above everything the service handed out or reserved (db.reserve_seq_block), used in order.
    Before each command the stored top is read again: once the service (or another tool) has gone past
    this block, the next command takes a new block above it. Without this a tool numbers by the clock,
    and right after a service restart (whose reservation runs up to 10 minutes ahead of the clock) the
    locker refuses the tool's commands as replays."""

    def __init__(self, db_path: Path, locker_id: str) -> None:
        self.db_path = db_path
        self.locker_id = locker_id
        self.blocks = 0  # how many blocks were reserved
        self._next = 0
        self._end = -1  # the last seq of the current block

    def __call__(self) -> int:
        from lockertools.service import db

        conn = db.connect(self.db_path)  # one per command: a tool sends few, and nothing is left open
        try:
            if self._next > self._end or db.stored_seq_top(conn, self.locker_id) > self._end:
                first = db.reserve_seq_block(conn, self.locker_id)
                self._next, self._end = first, first + db.SEQ_BLOCK - 1
                self.blocks += 1
        except KeyError:
            raise MaintError(f"locker {self.locker_id!r} is not in {self.db_path}") from None
        finally:
            conn.close()
        seq = self._next
        self._next += 1
        return seq


class Maint:
    """Signed technicians' commands for one locker over a link."""

    def __init__(self, link: Link, locker_id: str, key: bytes, seqs: Callable[[], int] | None = None) -> None:
        """`seqs`: where command seqs come from (`SeqBlocks`: shared with the host service through its
        database); None: ms since the epoch, as the service's, for a locker with no database at hand."""
        from lockertools import use_firmware_modules

        use_firmware_modules()
        from locker import protocol
        from locker.hmac256 import HmacKey

        self._protocol = protocol
        self._hkey = HmacKey(key)
        self.link = link
        self.locker_id = locker_id
        self.key = key
        self._seqs = seqs
        self._next_seq = 0

    def sign(self, op: str, args: dict[str, Any], tx: str, ttl_s: int = 300) -> bytes:
        """A signed command; seq strictly increasing: from `seqs`, else ms since the epoch."""
        if self._seqs is not None:
            seq = self._seqs()
        else:
            seq = max(self._next_seq, int(time.time() * 1000))
            self._next_seq = seq + 1
        now = int(time.time())
        payload = {"v": 1, "lid": self.locker_id, "seq": seq, "now": now, "exp": now + ttl_s}
        payload |= {"tx": tx, "op": op, "args": args}
        wire: bytes = self._protocol.sign(self._hkey, self._protocol.encode(payload))
        return wire

    def call(self, op: str, args: dict[str, Any] | None = None, timeout: float = 10.0, retries: int = 0) -> Reply:
        """The locker's reply; MaintError when it does not answer. A retry re-sends under the same tx
        (a new seq), so an op that acts once still acts once."""
        import uuid

        tx = uuid.uuid4().hex[:12]
        for attempt in range(retries + 1):
            wire = self.sign(op, args or {}, tx)
            try:
                reply = self.link.request(wire, tx, timeout)
            except MaintError:
                if attempt == retries:
                    raise
                time.sleep(min(1.0, timeout))  # the link is down (rebooting): try again shortly
                continue
            if reply is not None:
                return reply
        raise MaintError(f"{op}: no reply within {timeout:g}s (is the locker online? is the key right?)")

    def diag(self, timeout: float = 10.0) -> dict[str, Any]:
        r = self.call("diag", {}, timeout)
        if not r.get("ok"):
            raise MaintError(f"diag refused: {r.get('error')} {r.get('detail', '')}".strip())
        d: dict[str, Any] = r["diag"]
        return d


def open_repl(m: Maint, timeout: float = 10.0) -> None:
    """Signed `repl.open`: Ctrl-C on the board's USB console reaches the REPL again until the board
    resets (a production board has it off). MaintError when refused or unanswered."""
    r = m.call("repl.open", {}, timeout)
    if not r.get("ok"):
        raise MaintError(f"repl.open refused: {r.get('error')} {r.get('detail', '')}".strip())


def diag_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    """A diag record as (field, value) rows for a table."""
    app = d.get("app") or {}
    rows = [
        ("firmware", str(d.get("fw"))),
        ("micropython", str(d.get("mp"))),
        ("application", f"{app.get('v')} ({app.get('h')})" if app else "-"),
        ("mode", "SAFE: " + str(d["safe"]) if d.get("safe") else "normal"),
        ("uptime", f"{d.get('up')} s"),
        ("last reset", str(d.get("reset"))),
        ("heap free / used", f"{d.get('heap_free')} / {d.get('heap_used')} bytes"),
        ("codes (rev)", f"{d.get('codes')} (rev {d.get('rev')})"),
        ("outbox (lost)", f"{d.get('outbox')} ({d.get('lost')} lost)"),
    ]
    for door in d.get("doors") or []:
        rows.append((f"door {door.get('d')}", f"{door.get('s')}{', parcel' if door.get('full') else ''}"))
    if d.get("trial"):
        t = d["trial"]
        rows.append(("update on trial", f"{t.get('v')}: boot {t.get('n')} of {t.get('k')}"))
    if d.get("rollback"):
        rb = d["rollback"]
        rows.append(("app_rollback", f"{rb.get('from')} -> {rb.get('to')} after {rb.get('n')} boots"))
    return rows


# --- updates --------------------------------------------------------------------------------------------


@dataclass
class UpdateResult:
    version: str
    outcome: str  # "healthy" | "rolled_back" | "committed" (not waited for)
    detail: dict[str, Any] = field(default_factory=dict)


def push_update(
    m: Maint,
    bundle: AppBundle,
    *,
    chunk: int = CHUNK,
    progress: Callable[[int, int], None] | None = None,
    k: int = 3,
    ok_s: int = 60,
    wdt_ms: int = 30000,
    wait: bool = True,
    timeout: float = 600.0,
    sig: str | None = None,
    mangle: Callable[[str, int, bytes], bytes] | None = None,
) -> UpdateResult:
    """Stage, check and commit `bundle` on the locker, then (wait) follow it until it is healthy or
    rolled back. Resumes a staging of the same version. `sig`: the manifest signature to send
    (default: the right one). `mangle(path, off, data)`: a test's hook to corrupt data in transit."""
    files = bundle.app_files()
    st = _ok(m.call("app.status", {}, retries=2), "app.status")
    staged = st.get("staged") or {}
    have: dict[str, int] = {}
    if staged.get("v") == bundle.version and staged.get("ready") and sig is None:
        # resume: the files before `next` are complete (they are sent in order), `next` has some
        nxt = staged.get("next") or [None, 0]
        paths = [f["path"] for f in files]
        cut = paths.index(nxt[0]) if nxt[0] in paths else len(paths)
        for i, f in enumerate(files):
            have[f["path"]] = int(f["size"]) if i < cut else int(nxt[1]) if i == cut else 0
    else:
        first = {"version": bundle.version, "count": len(files), "size": bundle.app_size}
        first["sig"] = sig or manifest_sig(m.key, bundle.version, files)
        for i in range(0, len(files), FILES_PER_MSG):
            part = files[i : i + FILES_PER_MSG]
            if i == 0:
                r = m.call("app.begin", {**first, "files": part}, retries=2)
            else:
                r = m.call("app.files", {"files": part}, retries=2)
            _ok(r, "app.begin" if i == 0 else "app.files")
    total = bundle.app_size
    done = sum(min(have.get(f["path"], 0), int(f["size"])) for f in files)
    if progress:
        progress(done, total)
    for f in files:
        path, data = f["path"], bundle.app_bytes(f["path"])
        off = have.get(path, 0)
        while off < len(data):
            piece = data[off : off + chunk]
            sent = mangle(path, off, piece) if mangle else piece
            r = m.call("app.chunk", {"path": path, "off": off, "data": base64.b64encode(sent).decode()}, retries=2)
            if not r.get("ok") and r.get("error") == "offset":
                off = int(r.get("have", 0))  # the locker has another amount: go on from there
                continue
            _ok(r, f"app.chunk {path}@{off}")
            done += int(r["have"]) - off
            off = int(r["have"])
            if progress:
                progress(done, total)
    r = _ok(m.call("app.commit", {"k": k, "ok_s": ok_s, "wdt": wdt_ms}, retries=2), "app.commit")
    if not wait:
        return UpdateResult(bundle.version, "committed", r)
    return wait_outcome(m, bundle.version, timeout)


def wait_outcome(m: Maint, version: str, timeout: float = 600.0, poll_s: float = 1.0) -> UpdateResult:
    """After a commit: the locker reboots into `version` on trial; "healthy" once it reports it runs
    `version` with no trial, "rolled_back" once it reports the rollback of `version`."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            r = m.call("app.status", {}, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
        except MaintError:
            time.sleep(poll_s)  # rebooting, or the broker has not seen it yet
            continue
        if r.get("ok"):
            last = r
            app = r.get("app") or {}
            rb = r.get("rollback") or {}
            if rb.get("from") == version and not r.get("trial") and not r.get("swap"):
                return UpdateResult(version, "rolled_back", r)
            if app.get("v") == version and not r.get("trial") and not r.get("swap"):
                return UpdateResult(version, "healthy", r)
        time.sleep(poll_s)
    raise MaintError(f"update {version}: neither healthy nor rolled back within {timeout:g}s (last status {last})")


def _ok(r: Reply, what: str) -> Reply:
    if not r.get("ok"):
        detail = {k: v for k, v in r.items() if k not in ("v", "lid", "tx", "cseq", "ok")}
        raise MaintError(f"{what} refused: {detail}")
    return r


# --- the self-test --------------------------------------------------------------------------------------


class Technician(Protocol):
    """The person at the locker: told what to do (a test plays this part)."""

    def say(self, text: str) -> None: ...

    def close_door(self, label: str) -> None:
        """Asked to close door `label` (returns at once; the locker's `closed` event is the answer)."""
        ...

    def press_keys(self, keys: str) -> None:
        """Asked to press every key of `keys` in turn."""
        ...


@dataclass
class DoorResult:
    door: str
    opened: str  # "ok" | "JAMMED" | "no" | "refused: ..."
    closed: str  # "ok" | "no" | "-"
    parcel: str  # "empty" | "full" | "?"

    @property
    def passed(self) -> bool:
        return self.opened == "ok" and self.closed == "ok"


@dataclass
class SelftestResult:
    doors: list[DoorResult]
    keys_seen: str
    keys_missing: str

    @property
    def passed(self) -> bool:
        return all(d.passed for d in self.doors) and not self.keys_missing


def selftest(
    m: Maint,
    console: Console,
    tech: Technician,
    *,
    doors: list[str] | None = None,
    open_timeout: float = 10.0,
    close_timeout: float = 60.0,
    key_timeout: float = 60.0,
    key_idle: float = 15.0,
) -> SelftestResult:
    """Pulse each door in turn (`door.open` by "selftest") and check its sensor follows (`opened`, or
    `jammed`), ask the technician to close it and check `closed`, read its parcel sensor; then the
    keypad walk-through (`selftest.keys`): every key pressed in turn must come back as `key|<ch>`."""
    d = m.diag()
    labels = doors or [str(x["d"]) for x in d.get("doors") or []]
    if d.get("safe"):
        raise MaintError(f"the locker is in safe mode ({d['safe']}): fix that first (lockerctl diag)")
    results: list[DoorResult] = []
    for label in labels:
        since = console.mark()
        r = m.call("door.open", {"door": label, "by": "selftest"})
        if not r.get("ok"):
            results.append(DoorResult(label, f"refused: {r.get('error')}", "-", "?"))
            continue

        def door_ev(line: str, label: str = label) -> str | None:
            e = parse_event(line)
            if e is not None and e.get("d") == label and e.get("k") in ("opened", "jammed", "closed"):
                return str(e["k"])
            return None

        first = console.wait(lambda ln: door_ev(ln) in ("opened", "jammed") and door_ev(ln), since, open_timeout)
        if first != "opened":
            results.append(DoorResult(label, "JAMMED" if first == "jammed" else "no", "-", _parcel(m, label)))
            tech.say(f"door {label} did not open ({first or 'no sensor change'}): check its latch and sensor")
            continue
        tech.say(f"door {label} is open: close it now")
        tech.close_door(label)
        closed = console.wait(lambda ln: door_ev(ln) == "closed", since, close_timeout)
        results.append(DoorResult(label, "ok", "ok" if closed else "no", _parcel(m, label)))
    # the keypad
    r = _ok(m.call("selftest.keys", {"on": True}), "selftest.keys")
    keys = str(r.get("keys") or "")
    since = console.mark()
    tech.say(f"press each key in turn: {' '.join(keys)}")
    tech.press_keys(keys)
    seen: list[str] = []
    deadline = time.monotonic() + key_timeout
    pos = since
    while len(set(seen)) < len(set(keys)) and time.monotonic() < deadline:
        got = console.wait(parse_key, pos, min(key_idle, max(0.0, deadline - time.monotonic())))
        if got is None:
            break  # nothing for key_idle: the rest are dead
        pos = _after(console, pos, got)
        if got not in seen:
            seen.append(got)
    m.call("selftest.keys", {"on": False})
    missing = "".join(k for k in keys if k not in seen)
    return SelftestResult(results, "".join(k for k in keys if k in seen), missing)


def _after(console: Console, pos: int, key: str) -> int:
    lines = console.lines(pos)
    for i, ln in enumerate(lines):
        if parse_key(ln) == key:
            return pos + i + 1
    return pos + len(lines)


def _parcel(m: Maint, label: str) -> str:
    try:
        d = m.diag()
    except MaintError:
        return "?"
    for door in d.get("doors") or []:
        if str(door.get("d")) == label:
            return "full" if door.get("full") else "empty"
    return "?"
