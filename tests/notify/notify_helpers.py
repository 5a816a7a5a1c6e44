"""Shared rigs of the residents' messages tests: a fleet with a delivery, the settings, an SMTP sink
(aiosmtpd on loopback) and an HTTP sink for the SMS gateway."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from lockertools.config import EmailSettings, MessagesSettings, Settings, SmsSettings, TownSettings
from lockertools.notify import Outbox, set_locker_place
from lockertools.service import db, fleet_db, ingest

KEY = bytes(range(32))
LABELS = ["A1", "A2", "A3"]
TOWN = TownSettings(name="Gent", help_phone="09 210 10 10", help_hours="ma-vr 9-17 uur")
ADDRESS = "Botermarkt 1, 9000 Gent"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fleet(path: Path) -> db.Connection:
    conn = db.connect(path, create=True)
    fleet_db.add_locker(conn, "hall-1", KEY, LABELS)
    set_locker_place(conn, "hall-1", ADDRESS)
    return conn


_seq = [0]


def loaded_delivery(
    conn: db.Connection,
    resident: fleet_db.Resident,
    item: str = "document",
    door: str = "A2",
) -> fleet_db.IssuedDelivery:
    """A delivery prepared for `resident` and loaded at `door` (the locker's event, applied)."""
    issued = fleet_db.prepare_delivery(conn, "hall-1", item=item, resident=resident)
    _seq[0] += 1
    event = {"v": 1, "lid": "hall-1", "seq": _seq[0], "ev": {"k": "loaded", "t": int(time.time()), "d": door,
                                                               "id": issued.number}}  # fmt: skip
    with db.transaction(conn):
        ingest.apply_event(conn, "hall-1", event, time.time())
    return issued


def settings(
    channels: list[str],
    smtp_port: int | None = None,
    sms_url: str | None = None,
    templates: Path | None = None,
    thank_you: bool = False,
) -> Settings:
    sms = SmsSettings(
        url=sms_url,
        headers=["Authorization: Bearer {{ token }}"],
        body='{"to": {{ to | tojson }}, "text": {{ text | tojson }}, "ref": {{ reference | tojson }}}',
        success_status="201",
        sender="Gent",
    )
    return Settings(
        town=TOWN,
        messages=MessagesSettings(
            channels=channels, templates=templates, retry_min_s=0.01, retry_max_s=0.05, thank_you=thank_you
        ),
        email=EmailSettings(host="127.0.0.1", port=smtp_port or 25, security="none", sender="loket@gent.example"),
        sms=sms,
    )


def run_until(outbox: Outbox, conn: db.Connection, done: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Run the outbox round after round until `done()`; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        asyncio.run(outbox.run_once(conn))


# --- the SMTP sink -----------------------------------------------------------------------------------


@dataclass
class SmtpSink:
    port: int
    received: list[EmailMessage] = field(default_factory=list)
    controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(message)
        return "250 OK"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


# --- the SMS gateway sink ----------------------------------------------------------------------------


class GatewaySink:
    """An HTTP server recording each request (method, path, headers, JSON body); answers `status`."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 201
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                )
                self.send_response(sink.status)
                self.end_headers()
                self.wfile.write(b'{"status": "queued"}')

            do_POST = _any  # noqa: N815 - http.server's naming
            do_PUT = _any  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/messages"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
