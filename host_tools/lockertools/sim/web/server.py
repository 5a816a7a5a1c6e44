"""The web simulator's server: the lockers' state for the page, and the page's hands on the lockers.

One asyncio loop (aiohttp) serves static/ and a WebSocket at /ws. Each VirtualBoard reports its
events on its reader thread; they are handed to the loop (`call_soon_threadsafe`), applied to the
locker's view and pushed to every page at once, so the page never polls. The page's requests are
what a person does to the locker itself (a key, a door pulled, a parcel, a latch that sticks): they
run off the loop, a board's on a one-thread executor of its own (keys stay in order). Staff work on
the real desk (desk.py), beside the page; this server has no staff operations of its own. The host
service is another process, so what it records (the lockers' events, online status) is read from
the fleet database when SQLite's `data_version` says it changed (every POLL_S: there is nothing else
to wait on). The notification hook the service is given (`--notify-url`) is this server's /hook:
the page shows each message as it leaves the service, its code masked (the desk shows a code once,
on the answer to the request that created it; no page here shows one).

Only this machine's browser, on this server's own page, may use it (`guard`): every request must
name a loopback Host with the port it listens on (a DNS-rebound name is refused), and the WebSocket
and /hook need the run's token, which only the served page (and the host service's hook URL) has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import socket
import threading
import time
import webbrowser
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from aiohttp import WSMsgType, web

from lockertools.sim.board import Event, SimError, VirtualBoard, format_event
from lockertools.sim.web.desk import DEMO_NAME, SimDesk

if TYPE_CHECKING:
    from lockertools.service.db import Connection

STATIC_DIR = Path(__file__).with_name("static")
LOOPBACK = "127.0.0.1"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")  # what a browser on this machine puts in Host
TOKEN_PLACEHOLDER = "{{SIM_TOKEN}}"  # in static/index.html
POLL_S = 0.25  # the fleet database is the host service's (another process): read when it changed
KEEP_EVENTS = 200  # the event log a page gets when it connects
KEEP_NOTES = 50
STOP_S = 30.0  # the web server's start or stop, on its loop
# Board events worth a line in the page's event log (keys, acks, buzzer and display show elsewhere).
LOGGED_BOARD_EVENTS = {"solenoid", "door", "reset", "exit", "hello", "boot", "error", "power_cut", "wdt"}

T = TypeVar("T")


@dataclass
class DoorView:
    label: str
    size: str = "M"
    low: bool = False
    open: bool = False
    solenoid: bool = False
    parcel: bool = False
    jammed: bool = False
    service: bool = False  # out of service (the host's door_service events)


@dataclass
class LockerView:
    """What the page draws for one locker."""

    lid: str
    doors: list[DoorView]
    keys: str = "123456789*0#"
    key_cols: int = 3  # the keypad's columns: keys are in row order
    cols: int = 16
    rows: int = 2
    display: list[str] = field(default_factory=list)
    backlight: bool = True
    led: bool = False
    buzzer: list[int] = field(default_factory=lambda: [0, 0])
    running: bool = False
    online: bool = False
    locker_rev: int | None = None
    host_rev: int = 0

    def to_json(self, n: int) -> dict[str, Any]:
        return {"n": n, **asdict(self)}


def door_views(board: dict[str, Any]) -> list[DoorView]:
    return [
        DoorView(str(d.get("label", i + 1)), str(d.get("size", "M")), bool(d.get("low", False)))
        for i, d in enumerate(board.get("doors", []))
    ]


class WebSim:
    """The page's view of the lockers and the page's requests. Construct on the running loop."""

    def __init__(
        self, db_path: Path, port: int, token: str, boards: list[tuple[str, VirtualBoard]] | None = None
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.db_path = db_path
        self.token = token
        self.hosts = {f"{name}:{port}" for name in LOOPBACK_NAMES}
        if port == 80:  # a browser leaves the default port out
            self.hosts.update(LOOPBACK_NAMES)
        self.boards: list[VirtualBoard] = []
        self.views: list[LockerView] = []
        self.clients: set[web.WebSocketResponse] = set()
        self.events: deque[dict[str, Any]] = deque(maxlen=KEEP_EVENTS)
        self.notes: deque[dict[str, Any]] = deque(maxlen=KEEP_NOTES)
        self.ready = asyncio.Event()
        self._board_exec: list[ThreadPoolExecutor] = []
        self._db_exec = ThreadPoolExecutor(1, thread_name_prefix="websim-db")
        self._conn: Connection | None = None
        self._last_event_id = 0
        self._data_version = -1
        self.poller: asyncio.Task[None] | None = None
        self.desk: SimDesk | None = None  # the staff desk beside the lockers (run_web starts it)
        for lid, vb in boards or []:
            self.add_board(lid, vb)

    def start_serving(self) -> None:
        """The lockers are up (on the loop): pages get them, and the host's database is followed."""
        self.ready.set()
        self.broadcast(self.hello())  # pages that connected during start-up
        self.poller = self.loop.create_task(self.poll_host())

    # --- boards ---------------------------------------------------------------------------------

    def listener(self, n: int) -> Callable[[Event], None]:
        """An `on_event` for board n (called on its reader thread): the event goes to the loop."""

        def on_event(ev: Event) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: we are stopping
                self.loop.call_soon_threadsafe(self._board_event, n, dict(ev))

        return on_event

    def add_board(self, lid: str, vb: VirtualBoard) -> None:
        """Register a VirtualBoard (built with `on_event=self.listener(len(self.boards))`)."""
        kp = vb.board.get("keypad", {})
        disp = vb.board.get("display", {})
        view = LockerView(
            lid,
            door_views(vb.board),
            keys=str(kp.get("keys", "123456789*0#")),
            key_cols=len(kp.get("cols", [])) or 3,
            cols=int(disp.get("cols", 16)),
            rows=int(disp.get("rows", 2)),
        )
        for i, d in enumerate(view.doors):
            d.parcel = i in vb.parcels
            d.open = i in vb.opened
            d.jammed = i in vb.jammed
        self.boards.append(vb)
        self.views.append(view)
        self._board_exec.append(ThreadPoolExecutor(1, thread_name_prefix=f"websim-{lid}"))

    def sync_from_board(self, n: int) -> None:
        """Read board n's whole state (after its boot); called on any thread."""
        st = self.boards[n].state()
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._apply_state, n, st)

    def _apply_state(self, n: int, st: Event) -> None:
        view = self.views[n]
        for d, s in zip(view.doors, st.get("doors", []), strict=False):
            d.open, d.parcel = bool(s.get("open")), bool(s.get("parcel"))
            d.solenoid, d.jammed = bool(s.get("solenoid")), bool(s.get("jammed"))
        view.display = list(st.get("display", view.display))
        view.backlight = bool(st.get("backlight", True))
        view.led = bool(st.get("led"))
        view.running = True
        self._push_view(n, st)

    def _board_event(self, n: int, ev: Event) -> None:
        view = self.views[n]
        kind = ev.get("ev")
        i = ev.get("door")
        door = view.doors[i] if isinstance(i, int) and 0 <= i < len(view.doors) else None
        changed = True
        if kind == "solenoid" and door is not None:
            door.solenoid = bool(ev.get("on"))
        elif kind == "door" and door is not None:
            door.open = bool(ev.get("open"))
        elif kind == "display":
            view.display = list(ev.get("lines", []))
        elif kind == "buzzer":
            view.buzzer = [int(ev.get("freq") or 0), int(ev.get("duty") or 0)]
        elif kind == "led":
            view.led = bool(ev.get("on"))
        elif kind == "hello":
            view.running = True
        elif kind in ("exit", "power_cut"):
            view.running = False
            for d in view.doors:
                d.solenoid = False
        else:
            changed = False
        if changed:
            self._push_view(n, ev)
        if kind in LOGGED_BOARD_EVENTS:
            labels = [d.label for d in view.doors]
            self._log(n, "board", str(kind), format_event(ev, labels), door.label if door else None)

    def _push_view(self, n: int, cause: Event) -> None:
        msg = {
            "type": "locker",
            "view": self.views[n].to_json(n),
            "cause": {"ev": cause.get("ev"), "t": cause.get("t")},
        }
        self.broadcast(msg)

    def _log(self, n: int, source: str, kind: str, text: str, door: str | None = None) -> None:
        entry = {
            "type": "event",
            "locker": n,
            "lid": self.views[n].lid,
            "source": source,
            "kind": kind,
            "door": door,
            "text": text,
            "at": time.time(),
        }
        self.events.append(entry)
        self.broadcast(entry)

    def broadcast(self, msg: dict[str, Any]) -> None:
        data = json.dumps(msg, separators=(",", ":"))
        for ws in list(self.clients):
            if ws.closed:
                self.clients.discard(ws)
            else:
                self.loop.create_task(self._send_str(ws, data))

    def _share_note(self, note: dict[str, Any]) -> None:
        """A message the host service sent (the hook): kept, and pushed to every page, its code masked."""
        masked = _masked(note)
        self.notes.append(masked)
        self.broadcast({"type": "note", "note": masked})

    async def _send_str(self, ws: web.WebSocketResponse, data: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(data)

    # --- the host's database ----------------------------------------------------------------------

    def _db(self) -> Connection:
        if self._conn is None:
            from lockertools.service import db

            self._conn = db.connect(self.db_path)
        return self._conn

    async def in_db(self, fn: Callable[[Connection], T]) -> T:
        return await self.loop.run_in_executor(self._db_exec, lambda: fn(self._db()))

    def _read_host(self, first: bool) -> dict[str, Any] | None:
        """What changed in the fleet database since the last look (None: nothing)."""
        from lockertools.service import db, fleet_db

        conn = self._db()
        version = db.data_version(conn)
        if version == self._data_version and not first:
            return None
        self._data_version = version
        lids = [v.lid for v in self.views]
        marks = ",".join("?" * len(lids))
        if first:
            row = conn.execute(f"SELECT max(id) FROM events WHERE locker_id IN ({marks})", lids).fetchone()
            self._last_event_id = max(0, int(row[0] or 0) - 30)  # the last few, for context
        events = [
            dict(r)
            for r in conn.execute(
                f"SELECT id, locker_id, seq, kind, door, json, received_at FROM events "
                f"WHERE locker_id IN ({marks}) AND id > ? ORDER BY id",
                [*lids, self._last_event_id],
            )
        ]
        if events:
            self._last_event_id = int(events[-1]["id"])
        for e in events:  # staff are known to the locker by their code's id; the host has the name
            sid = json.loads(e["json"]).get("staff")
            e["staff_name"] = fleet_db.staff_name(conn, e["locker_id"], sid) if sid else None
        lockers = {
            r["id"]: {"online": bool(r["online"]), "locker_rev": r["locker_rev"], "host_rev": int(r["host_rev"])}
            for r in conn.execute(f"SELECT id, online, locker_rev, host_rev FROM lockers WHERE id IN ({marks})", lids)
        }
        # The latest door_service event of each door says whether it is out of service.
        service: dict[str, dict[str, bool]] = {}
        for r in conn.execute(
            f"SELECT locker_id, door, json FROM events WHERE kind = 'door_service' AND locker_id IN ({marks}) "
            "ORDER BY id",
            lids,
        ):
            service.setdefault(r["locker_id"], {})[r["door"]] = bool(json.loads(r["json"]).get("on"))
        return {"events": events, "lockers": lockers, "service": service}

    def _apply_host(self, got: dict[str, Any]) -> None:
        for n, view in enumerate(self.views):
            st = got["lockers"].get(view.lid)
            changed = False
            if st is not None and (st["online"], st["locker_rev"], st["host_rev"]) != (
                view.online,
                view.locker_rev,
                view.host_rev,
            ):
                view.online, view.locker_rev, view.host_rev = st["online"], st["locker_rev"], st["host_rev"]
                changed = True
            for d in view.doors:
                in_service = got["service"].get(view.lid, {}).get(d.label)  # door_service `on`
                if in_service is not None and d.service == in_service:
                    d.service = not in_service
                    changed = True
            if changed:
                self._push_view(n, {"ev": "host"})
        index = {v.lid: n for n, v in enumerate(self.views)}
        for r in got["events"]:
            ev = json.loads(r["json"])
            if r.get("staff_name"):
                ev["staff"] = r["staff_name"]
            extra = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("k", "t", "d"))
            door = f" door {r['door']}" if r["door"] else ""
            self._log(index[r["locker_id"]], "host", str(r["kind"]), f"{r['kind']}{door} {extra}".rstrip(), r["door"])

    async def poll_host(self) -> None:
        first = True
        while True:
            try:
                got = await self.in_db(lambda _c, f=first: self._read_host(f))  # type: ignore[misc]
                first = False
                if got is not None:
                    self._apply_host(got)
            except Exception as exc:  # noqa: BLE001 - the database busy (sqlite3 or SQLAlchemy's error): next round
                if not _is_database_error(exc):
                    raise
            await asyncio.sleep(POLL_S)

    # --- the page's requests ------------------------------------------------------------------

    async def on_board(self, n: int, fn: Callable[[VirtualBoard], T]) -> T:
        vb = self.boards[n]
        return await self.loop.run_in_executor(self._board_exec[n], lambda: fn(vb))

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """One request from the page: what a person does to the locker itself -> the reply's `result`.
        Raises ValueError/SimError."""
        op = str(req.get("op"))
        n = int(req.get("locker", 0))
        if not 0 <= n < len(self.views):
            raise ValueError(f"no locker {n}")
        view = self.views[n]
        if op == "key":
            key = str(req.get("key", ""))
            if len(key) != 1 or key not in view.keys:
                raise ValueError(f"no key {key!r}")
            await self.on_board(n, lambda vb: vb.tap(key))
            return {}
        door_i = self._door(view, req) if op in ("door", "parcel", "jam") else -1
        if op == "door":
            want = bool(req.get("open"))
            d = view.doors[door_i]
            if want and not d.open and not d.solenoid and not req.get("force"):
                # A person pulling a locked door: it does not move (shift-click forces it, as a thief would).
                raise ValueError(
                    f"door {d.label} is locked: it opens while its latch is energized (shift-click forces it)"
                )
            await self.on_board(n, lambda vb: vb.open_door(door_i) if want else vb.close_door(door_i))
            d.open = want
            self._push_view(n, {"ev": "door", "t": time.time_ns() // 1000})
            did = ("forced open" if req.get("force") and not d.solenoid else "opened") if want else "closed"
            self._log(n, "you", "door", f"you {did} door {d.label}", d.label)
            return {}
        if op == "parcel":
            want = bool(req.get("present"))
            d = view.doors[door_i]
            await self.on_board(n, lambda vb: vb.set_parcel(door_i, want))
            d.parcel = want
            self._push_view(n, {"ev": "parcel", "t": time.time_ns() // 1000})
            what = f"you put a parcel in door {d.label}" if want else f"you took the parcel out of door {d.label}"
            self._log(n, "you", "parcel", what, d.label)
            return {}
        if op == "jam":
            # The latch sticks (or works again): the spring can no longer pop the door, as in the field.
            want = bool(req.get("on"))
            d = view.doors[door_i]
            await self.on_board(n, lambda vb: vb.jam(door_i, want))
            d.jammed = want
            self._push_view(n, {"ev": "jam", "t": time.time_ns() // 1000})
            what = f"door {d.label}'s latch sticks" if want else f"door {d.label}'s latch works again"
            self._log(n, "you", "jam", what, d.label)
            return {}
        raise ValueError(f"unknown request {op!r}")

    @staticmethod
    def _door(view: LockerView, req: dict[str, Any]) -> int:
        i = req.get("door")
        if not isinstance(i, int) or not 0 <= i < len(view.doors):
            raise ValueError(f"no door {i!r}")
        return i

    # --- the web side -------------------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "lockers": [v.to_json(n) for n, v in enumerate(self.views)],
            "events": list(self.events),
            "notes": list(self.notes),
            "ready": self.ready.is_set(),
        }

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        # Only this server's own page: another site open in the same browser must not drive the lockers.
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"http://{request.host}":
            return web.Response(status=403, text="this WebSocket is for the simulator's own page")
        if not self._has_token(request):
            return _refused_token()
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        self.clients.add(ws)
        try:
            await ws.send_str(json.dumps(self.hello(), separators=(",", ":")))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = json.loads(msg.data)
                except ValueError:
                    continue
                self.loop.create_task(self._answer(ws, req))
        finally:
            self.clients.discard(ws)
        return ws

    async def _answer(self, ws: web.WebSocketResponse, req: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"type": "reply", "rid": req.get("rid")}
        try:
            reply.update(ok=True, result=await self.handle(req))
        except (ValueError, TypeError, SimError) as exc:
            reply.update(ok=False, error=str(exc).split("\n", 1)[0])
        await self._send_str(ws, json.dumps(reply, separators=(",", ":")))

    async def hook_handler(self, request: web.Request) -> web.Response:
        """The host service's notification hook (`--notify-url`, with the token): show the message."""
        if not self._has_token(request):
            return _refused_token()
        if request.content_type != "application/json":  # what the hook sends; a browser form cannot
            return web.Response(status=415, text="JSON only")
        try:
            note = await request.json()
        except ValueError:
            return web.Response(status=400, text="not JSON")
        if not isinstance(note, dict):
            return web.Response(status=400, text="not an object")
        note.setdefault("kind", "code")
        note["via"] = "hook"
        self._share_note(note)
        return web.Response(text="ok")

    async def desk_handler(self, request: web.Request) -> web.StreamResponse:
        """The staff desk, logged in as the demo account: a one-time login link, for the page that
        has the run's token only (desk.py)."""
        if not self._has_token(request):
            return _refused_token()
        if self.desk is None:
            return web.Response(status=503, text="the staff desk is not running")
        raise web.HTTPSeeOther(self.desk.login_url(), headers={"Cache-Control": "no-store"})

    def _has_token(self, request: web.Request) -> bool:
        return secrets.compare_digest(request.query.get("token", "").encode(), self.token.encode())

    @web.middleware
    async def guard(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        """Every request names this server by a loopback address and its port: a page of another
        name (DNS rebinding: evil.example resolved to 127.0.0.1) gets nothing, not even the page."""
        host = request.headers.get("Host", "").lower()
        if host not in self.hosts:
            allowed = ", ".join(sorted(self.hosts))
            return web.Response(status=403, text=f"this simulator answers only as {allowed}, not Host {host!r}")
        response: web.StreamResponse = await handler(request)
        return response

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        page = (STATIC_DIR / "index.html").read_text(encoding="utf-8").replace(TOKEN_PLACEHOLDER, self.token)

        async def index(_request: web.Request) -> web.Response:
            # The token is this run's: a page kept from another run must not be served from a cache;
            # no other site may frame the page (clicks on it would be its visitor's).
            headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}
            headers["Content-Security-Policy"] = "frame-ancestors 'none'"
            return web.Response(text=page, content_type="text/html", headers=headers)

        app.router.add_get("/", index)
        app.router.add_get("/ws", self.ws_handler)
        app.router.add_post("/hook", self.hook_handler)
        app.router.add_get("/desk", self.desk_handler)
        app.router.add_static("/static/", STATIC_DIR)
        return app

    def close(self) -> None:
        for ex in self._board_exec:
            ex.shutdown(wait=False, cancel_futures=True)
        self._db_exec.shutdown(wait=True, cancel_futures=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _refused_token() -> web.Response:
    return web.Response(status=403, text="no or wrong token: open the page this run of `lockerctl sim web` printed")


def _masked(note: dict[str, Any]) -> dict[str, Any]:
    """The message as pages other than the one that created its code see it: no code."""
    return {**note, "code": None, "masked": True} if note.get("code") else note


# --- the command ---------------------------------------------------------------------------------


def run_web(
    board: Path,
    n_lockers: int,
    port: int,
    open_browser: bool,
    workdir: Path,
    heap: str,
    say: Callable[[str], None] = click.echo,
) -> None:
    """Everything `lockerctl sim web` runs, until Ctrl-C, SIGTERM or SIGHUP; then every piece stops,
    in order: the web server, the lockers, the host service, the broker.

    The broker, the service and the lockers are started from this (the main) thread, as `sim net`
    does: their PR_SET_PDEATHSIG is tied to the thread that started them, so they must not come from
    a worker thread that may end first. The web server runs on an asyncio loop in a thread of its own.
    """
    from lockertools.sim import net as sim_net

    mosquitto = sim_net.find_broker()
    setup, lockers = sim_net.prepare_workdir(workdir, board, n_lockers)
    sock = _listen(port)
    desk_sock = _listen(0)  # the staff desk: a port of its own (its pages' paths are its own)
    url = f"http://{LOOPBACK}:{sock.getsockname()[1]}/"
    token = secrets.token_urlsafe(32)  # this run's: in the served page and the service's hook URL
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="websim-web", daemon=True)
    thread.start()

    def on_loop(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(STOP_S)

    try:
        with sim_net.exit_on_signals(), contextlib.ExitStack() as stack:
            stack.callback(_stop_loop, loop, thread)  # the very last
            sim, runner = on_loop(_start_web(workdir / "fleet.db", sock, token))
            desk_runner = on_loop(_start_desk(sim, workdir / "fleet.db", desk_sock))
            stopped = False

            def stop_web() -> None:
                nonlocal stopped
                if not stopped:
                    stopped = True
                    on_loop(_stop_web(sim, runner, desk_runner))

            stack.callback(stop_web)  # if start-up fails before the lockers are up
            # Callbacks run last-registered first: the web server, the boards, the service, the broker.
            sim_net.start_broker_and_service(
                stack, workdir, setup, mosquitto, report=say, service_args=["--notify-url", f"{url}hook?token={token}"]
            )
            boards = sim_net.make_boards(stack, lockers, heap, lambda n, _lk: sim.listener(n))
            stack.callback(stop_web)
            for lk, vb in zip(lockers, boards, strict=True):
                # Parcels wait behind the first half of the doors; the rest are free for deliveries.
                vb.parcels.clear()
                vb.parcels.update(range(len(lk.labels) // 2))
                loop.call_soon_threadsafe(sim.add_board, lk.lid, vb)
            try:
                for n, vb in enumerate(boards):
                    vb.boot(keep_rtc=int(time.time()))
                    sim.sync_from_board(n)
            except SimError as exc:  # the firmware died at boot: its log says why
                raise click.ClickException(str(exc)) from None
            loop.call_soon_threadsafe(sim.start_serving)
            labels = ", ".join(lk.lid for lk in lockers)
            doors = len(lockers[0].labels)
            say(f"\nSimulator ready: lockers {labels} ({doors} doors each, parcels behind the first half).")
            say(f"Open {url} in a browser. Ctrl-C stops everything.")
            assert sim.desk is not None
            say(f"The staff desk ({sim.desk.url}) opens from that page, logged in as {DEMO_NAME!r}.")
            if open_browser and _can_open_browser():
                with contextlib.suppress(webbrowser.Error):
                    webbrowser.open(url)
            threading.Event().wait()  # until Ctrl-C (KeyboardInterrupt), SIGTERM or SIGHUP (SystemExit)
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and exc.code not in (128 + signal.SIGTERM, 128 + signal.SIGHUP):
            raise
    say("stopped: web server, lockers, host service, broker")


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {LOOPBACK}:{port}: {exc.strerror} (try --port 0)") from None
    sock.listen(64)
    return sock


async def _start_web(db_path: Path, sock: socket.socket, token: str) -> tuple[WebSim, web.AppRunner]:
    sim = WebSim(db_path, sock.getsockname()[1], token)
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return sim, runner


async def _start_desk(sim: WebSim, db_path: Path, sock: socket.socket) -> web.AppRunner:
    sim.desk = SimDesk(db_path, sock.getsockname()[1])
    runner = web.AppRunner(sim.desk.app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


async def _stop_web(sim: WebSim, runner: web.AppRunner, desk_runner: web.AppRunner) -> None:
    if sim.poller is not None:
        sim.poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim.poller
    for ws in list(sim.clients):
        with contextlib.suppress(Exception):
            await ws.close()
    await runner.cleanup()
    await desk_runner.cleanup()
    if sim.desk is not None:
        sim.desk.engine.dispose()
    sim.close()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(STOP_S)
    if not thread.is_alive():
        loop.close()


def _can_open_browser() -> bool:
    import os
    import sys

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return True


def _is_database_error(exc: BaseException) -> bool:
    from lockertools.service import db

    return isinstance(exc, db.Error)
