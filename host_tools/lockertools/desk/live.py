"""Live door states on a locker's wall: server-sent events from the desk process.

The browser opens one EventSource per wall page (`/lockers/{id}/live`) and never polls. The desk
learns of the service's commits by itself (`DoorFeed`):
- PostgreSQL: LISTEN on `db.DOORS_CHANNEL`, which the service's ingest NOTIFYs (with the locker's id)
  in every transaction that moves a door; the notification arrives as the commit does;
- SQLite: `PRAGMA data_version` on a connection of its own, read every `SQLITE_POLL_S` (a counter in
  shared memory: no disk read), moves when another process commits.
Then it reads the doors of the lockers someone is watching, and sends each door that changed to
their streams (`event: door`). A new stream first gets every door (`event: doors`). Every
`HEARTBEAT_S` the stream checks that its session is still alive (not logged out, idle past the
time-out or disabled: the stream does not keep a session alive) and ends with `event: end` when
it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from typing import Any

from aiohttp import web

from lockertools.desk import auth, fleetview
from lockertools.desk.base import ENGINE, SESSION_COOKIE, desk_settings, now, requires, run_db
from lockertools.service import db

SQLITE_POLL_S = 0.2
PG_RECHECK_S = 30.0  # PostgreSQL: read the watched lockers again this often, notified or not
HEARTBEAT_S = 15.0
QUEUE_MAX = 256


class DoorFeed:
    """Door changes of the lockers someone watches, fanned out to their streams' queues."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.watchers: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = {}
        self.known: dict[str, dict[str, dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.refreshes = 0  # how many times the watched lockers were read (tests, bench)

    # --- subscribers ------------------------------------------------------------------------------

    async def subscribe(self, locker_id: str) -> tuple[asyncio.Queue[dict[str, Any] | None], dict[str, Any]]:
        """A queue of this locker's door changes, and every door as it is now."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_MAX)
        doors = await run_db(self.app, lambda conn: fleetview.door_states(conn, locker_id))
        self.watchers.setdefault(locker_id, set()).add(queue)
        self.known.setdefault(locker_id, doors)
        return queue, doors

    def unsubscribe(self, locker_id: str, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        queues = self.watchers.get(locker_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self.watchers[locker_id]
                self.known.pop(locker_id, None)

    # --- the watcher ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="desk door feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for queues in self.watchers.values():
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)

    async def _run(self) -> None:
        engine = self.app[ENGINE]
        if engine.dialect.name == "sqlite":
            await self._run_sqlite()
        else:
            await self._run_postgres()

    async def _run_sqlite(self) -> None:
        conn = db.Connection(self.app[ENGINE])
        try:
            seen = await asyncio.to_thread(db.data_version, conn)
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), SQLITE_POLL_S)
                woken = self._wake.is_set()
                self._wake.clear()
                version = await asyncio.to_thread(db.data_version, conn)
                if (version != seen or woken) and self.watchers:
                    await self.refresh(list(self.watchers))
                seen = version
        finally:
            conn.close()

    async def _run_postgres(self) -> None:
        listener = await asyncio.to_thread(db.ChangeListener, self.app[ENGINE].url, None, db.DOORS_CHANNEL)
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(listener.fileno(), readable.set)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(readable.wait(), PG_RECHECK_S)
                readable.clear()
                lockers = set(listener.drain_payloads()) if listener.fileno() >= 0 else set()
                if self._wake.is_set() or not lockers:
                    self._wake.clear()
                    lockers = set(self.watchers)
                watched = [lid for lid in lockers if lid in self.watchers]
                if watched:
                    await self.refresh(watched)
        finally:
            loop.remove_reader(listener.fileno())
            listener.close()

    def wake(self) -> None:
        """Read the watched lockers again now (a change this process made itself)."""
        self._wake.set()

    async def refresh(self, locker_ids: list[str]) -> None:
        def read(conn: db.Connection) -> dict[str, dict[str, dict[str, Any]]]:
            return {lid: fleetview.door_states(conn, lid) for lid in locker_ids}

        self.refreshes += 1
        states = await run_db(self.app, read)
        for lid, doors in states.items():
            before = self.known.get(lid, {})
            self.known[lid] = doors
            changed = [door for label, door in doors.items() if before.get(label) != door]
            for queue in list(self.watchers.get(lid, ())):
                for door in changed:
                    with contextlib.suppress(asyncio.QueueFull):  # a stalled reader gets the next full state
                        queue.put_nowait(door)


FEED: web.AppKey[DoorFeed] = web.AppKey("desk_door_feed")


def setup(app: web.Application) -> None:
    app.router.add_get("/lockers/{locker_id}/live", stream, name="wall_live")
    feed = DoorFeed(app)
    app[FEED] = feed

    async def start(_app: web.Application) -> None:
        await feed.start()

    async def stop(_app: web.Application) -> None:
        await feed.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)  # before the server waits for open handlers: the streams end first


def _alive(conn: db.Connection, cookie: str, at: float, idle_s: float) -> bool:
    return auth.session_alive(conn, cookie, at, idle_s)


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@requires("desk")
async def stream(request: web.Request) -> web.StreamResponse:
    locker_id = request.match_info["locker_id"]
    exists = await run_db(
        request, lambda conn: conn.execute("SELECT 1 FROM lockers WHERE id = ?", (locker_id,)).fetchone()
    )
    if exists is None:
        raise web.HTTPNotFound()
    feed = request.app[FEED]
    cookie = request.cookies.get(SESSION_COOKIE, "")
    idle_s = desk_settings(request).idle_minutes * 60.0
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    queue, doors = await feed.subscribe(locker_id)
    try:
        await response.write(b"retry: 5000\n" + _event("doors", list(doors.values())))
        while True:
            try:
                door = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
            except TimeoutError:
                alive = await run_db(request, functools.partial(_alive, cookie=cookie, at=now(request), idle_s=idle_s))
                if not alive:
                    await response.write(_event("end", {"reason": "session"}))
                    break
                await response.write(b": still here\n\n")
                continue
            if door is None:  # the desk is stopping
                await response.write(_event("end", {"reason": "stopping"}))
                break
            await response.write(_event("door", door))
    except ConnectionResetError:
        pass  # the reader went away
    finally:
        feed.unsubscribe(locker_id, queue)
    return response
