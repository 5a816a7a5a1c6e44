"""The staff desk beside the simulator: `lockerctl sim web` serves the real desk (lockertools.desk's
`create_app`, the one implementation) on the simulator's fleet database, on a loopback port of its
own, logged in as a demo account the simulator creates.

The demo account (`DEMO_NAME`, role `DEMO_ROLE`) gets a fresh random password at every run that
nobody is told: the way in is a one-time login link. The simulator's page (which alone has the run's
token) links to the simulator's `/desk?token=...`, which mints a ticket (random, valid `TICKET_S`,
good for one login) and sends the browser on to the desk's `/sim-login?ticket=...`; that opens a
desk session for the demo account, in the audit trail as a login `via` the simulator. The desk
answers only to a loopback Host with its own port (as the simulator does: a DNS-rebound name gets
nothing), and is otherwise the desk as deployed: sessions, roles, CSRF, the audit trail.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

DEMO_NAME = "demo"
DEMO_ROLE = "manager"  # deliveries, codes, staff PINs, doors: what the simulator's exercises need
TICKET_S = 60.0
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class SimDesk:
    """The desk application on `db_path`, its demo account and its one-time login tickets."""

    def __init__(self, db_path: Path, port: int, clock: Callable[[], float] = time.time) -> None:
        from lockertools.config import Settings
        from lockertools.desk.app import create_app
        from lockertools.desk.base import public
        from lockertools.service import db

        self.clock = clock
        self.port = port
        self.hosts = {f"{name}:{port}" for name in LOOPBACK_NAMES}
        self.engine = db.engine_for(str(db_path))
        self.tickets: dict[str, float] = {}  # ticket -> when it stops being valid
        self.account_id = self._demo_account()
        self.app = create_app(self.engine, Settings(), clock=clock)
        self.app.middlewares.insert(0, self._guard)

        @public  # it makes the session
        async def sim_login(request: web.Request) -> web.StreamResponse:
            return await self._login(request)

        self.app.router.add_get("/sim-login", sim_login, name="sim_login")

    def _demo_account(self) -> int:
        """The demo account, created or (from an earlier run) enabled, with a new random password."""
        from lockertools.desk import audit, auth
        from lockertools.service import db

        password = secrets.token_urlsafe(24)
        with db.Connection(self.engine) as conn:
            try:
                account = auth.find_account(conn, DEMO_NAME)
            except auth.AuthError:
                account = auth.add_account(conn, DEMO_NAME, DEMO_ROLE, password, self.clock())
                audit.record(
                    conn, at=self.clock(), who="sim", account_id=None, role=None, address="local",
                    action="account.add", target=DEMO_NAME, detail={"role": DEMO_ROLE},
                )  # fmt: skip
            else:
                auth.reset_password(conn, account.id, password)
                if account.disabled:
                    auth.set_disabled(conn, account.id, False, self.clock())
        return account.id

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def ticket(self) -> str:
        """A one-time login link's ticket (the simulator's /desk, behind its token, asks for one)."""
        at = self.clock()
        self.tickets = {t: until for t, until in self.tickets.items() if until > at}
        ticket = secrets.token_urlsafe(32)
        self.tickets[ticket] = at + TICKET_S
        return ticket

    def login_url(self) -> str:
        return f"{self.url}sim-login?ticket={self.ticket()}"

    def _take_ticket(self, given: str) -> bool:
        at = self.clock()
        for ticket, until in list(self.tickets.items()):
            if secrets.compare_digest(ticket.encode(), given.encode()):
                del self.tickets[ticket]
                return until > at
        return False

    async def _login(self, request: web.Request) -> web.StreamResponse:
        from lockertools.desk import audit, auth
        from lockertools.desk.base import SESSION_COOKIE, address_of, run_db

        if not self._take_ticket(request.query.get("ticket", "")):
            return web.Response(
                status=403, text="this login link is used or expired: open the desk again from the simulator's page"
            )
        address, at = address_of(request), self.clock()

        def start(conn: Any) -> str:
            account = auth.find_account(conn, self.account_id)
            session_id = auth.open_session(conn, account, address, at)
            audit.record(
                conn, at=at, who=account.name, account_id=account.id, role=account.role, address=address,
                action="login", detail={"via": "simulator"},
            )  # fmt: skip
            return session_id

        session_id = await run_db(request, start)
        response = web.HTTPSeeOther("/lockers")
        response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="Strict", path="/")
        raise response

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        host = request.headers.get("Host", "").lower()
        if host not in self.hosts:
            return web.Response(status=403, text=f"this desk answers only as {', '.join(sorted(self.hosts))}")
        response: web.StreamResponse = await handler(request)
        return response
