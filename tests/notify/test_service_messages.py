"""The service runs the outbox: a loaded delivery's e-mail goes out while the service runs (no broker
needed for that: the messages loop is the service's own), beside the notification hook; the plain
code waits for both; bad templates stop the service at start with the file and the line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from notify_helpers import SmtpSink, fleet, free_port, loaded_delivery, settings

from lockertools.config import Settings
from lockertools.notify import messages_of_delivery, words
from lockertools.service import db, fleet_db
from lockertools.service.runner import Service, ServiceConfig, ServiceError


@pytest.fixture(autouse=True)
def _on_both_databases(database: str) -> str:
    return database


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict[str, Any]], threading.Event]]:
    """An HTTP notification hook that answers only once `release` is set (503 before)."""
    received: list[dict[str, Any]] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if release.is_set():
                received.append(body)
            self.send_response(200 if release.is_set() else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received, release
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _serve(path: Path, messages: Settings, until: Callable[[], bool], **config: Any) -> None:
    async def main() -> None:
        service = Service(
            ServiceConfig(db_path=path, port=free_port(), messages=messages, notify_retry_min_s=0.02, **config)
        )
        task = asyncio.create_task(service.run())
        try:
            for _ in range(2000):
                if until() or task.done():
                    break
                await asyncio.sleep(0.01)
            if task.done():
                task.result()
            assert until(), "the condition was not met while the service ran"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(main())


def test_the_service_sends_the_email_and_keeps_the_code_until_the_hook_took_it_too(
    tmp_path: Path, smtp_sink: SmtpSink, hook: tuple[str, list[dict[str, Any]], threading.Event]
) -> None:
    url, received, release = hook
    path = tmp_path / "fleet.db"
    conn = fleet(path)
    issued = loaded_delivery(conn, fleet_db.Resident(email="jan@example.org", language="en"))
    messages = settings(["email"], smtp_port=smtp_sink.port)

    def held() -> bool:
        return conn.execute("SELECT 1 FROM held_codes WHERE code_id = ?", (issued.number,)).fetchone() is not None

    def emailed_and_hook_failed() -> bool:
        failed = conn.execute("SELECT 1 FROM notifications WHERE state = 'failed'").fetchone()
        return len(smtp_sink.received) == 1 and failed is not None

    _serve(path, messages, emailed_and_hook_failed, notify_url=url)
    assert held()  # the e-mail went, the hook has not taken it yet: the code stays
    release.set()
    _serve(path, messages, lambda: len(received) == 1 and not held(), notify_url=url)
    assert received[0]["code"] == issued.code
    assert len(smtp_sink.received) == 1  # not sent again by the second run
    assert [v.state for v in messages_of_delivery(conn, issued.number)] == ["sent"]
    conn.close()


def test_the_service_refuses_to_start_with_a_bad_template(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    fleet(path).close()
    own = tmp_path / "own" / "fr"
    own.mkdir(parents=True)
    (own / "loaded.txt").write_text(
        "{% block subject %}{{ town }}{% endblock %}\n{% block body %}\npas de code\n{% endblock %}\n"
        "{% block sms %}{{ code }}{% endblock %}\n"
    )
    with pytest.raises(ServiceError, match=r"own/fr/loaded\.txt:2: the body block never shows \{\{ code \}\}"):
        _serve(path, settings(["email"], templates=tmp_path / "own"), lambda: False)
    assert db.connect(path).execute("SELECT count(*) FROM resident_messages").fetchone()[0] == 0


def test_the_service_deletes_ended_deliveries_contacts_even_without_channels(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    conn = fleet(path)
    resident = fleet_db.Resident(name="Jan Janssens", email="jan@example.org", language="nl")
    ended = loaded_delivery(conn, resident)
    waiting = loaded_delivery(conn, resident, door="A3")
    with db.transaction(conn):
        conn.execute("UPDATE codes SET state = 'used', used_at = used_at WHERE id = ?", (ended.number,))
        conn.execute("UPDATE codes SET used_at = ? WHERE id = ?", (1_000_000.0, ended.number))

    def purged() -> bool:
        return fleet_db.delivery_resident(conn, ended.number) == fleet_db.Resident(language="nl")

    _serve(path, Settings(), purged)
    assert fleet_db.delivery_resident(conn, waiting.number) == resident.checked()
    conn.close()


def test_a_hook_that_took_the_code_first_does_not_take_it_from_the_email(
    tmp_path: Path, hook: tuple[str, list[dict[str, Any]], threading.Event]
) -> None:
    url, received, release = hook
    release.set()
    path = tmp_path / "fleet.db"
    conn = fleet(path)
    issued = loaded_delivery(conn, fleet_db.Resident(email="jan@example.org", language="nl"))
    sink = SmtpSink(free_port())  # not started yet: the e-mail fails, the hook goes
    messages = settings(["email"], smtp_port=sink.port)

    def hook_done_email_failed() -> bool:
        return len(received) == 1 and any(v.state == "failed" for v in messages_of_delivery(conn, issued.number))

    _serve(path, messages, hook_done_email_failed, notify_url=url)
    assert conn.execute("SELECT code FROM held_codes WHERE code_id = ?", (issued.number,)).fetchone()[0] == issued.code
    sink.start()
    try:
        _serve(path, messages, lambda: len(sink.received) == 1, notify_url=url)
    finally:
        sink.stop()
    body = sink.received[0].get_body(("plain",))
    assert body is not None and words.grouped(issued.code) in str(body.get_content())
    assert conn.execute("SELECT count(*) FROM held_codes").fetchone()[0] == 0
    conn.close()
