"""The notification hook: a local HTTP server on 127.0.0.1 and a command writing to a temp file."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from lockertools.service.notify import CommandNotifier, HttpNotifier, Notification, NotifyError, make_notifier

NOTE = Notification(locker="hall-1", door="A2", code="12345678", expires=1800000000, code_id=77, recipient="ann")


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/notify", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_http_hook_gets_the_json_once(hook_server: tuple[str, type[_Hook]]) -> None:
    url, handler = hook_server
    HttpNotifier(url, timeout_s=5).send(NOTE)
    assert handler.received == [
        (
            "application/json",
            {
                "locker": "hall-1",
                "door": "A2",
                "code": "12345678",
                "expires": 1800000000,
                "code_id": 77,
                "recipient": "ann",
                "kind": "code",
                "item": None,
                "staff": None,
            },
        )
    ]


def test_http_error_is_reported_without_the_code(hook_server: tuple[str, type[_Hook]]) -> None:
    url, handler = hook_server
    handler.status = 503
    with pytest.raises(NotifyError, match="HTTP 503") as err:
        HttpNotifier(url, timeout_s=5).send(NOTE)
    assert "12345678" not in str(err.value)


def test_unreachable_http_hook_is_an_error() -> None:
    from service_helpers import free_port

    with pytest.raises(NotifyError, match="unreachable"):
        HttpNotifier(f"http://127.0.0.1:{free_port()}/", timeout_s=2).send(NOTE)


def test_command_hook_reads_the_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "note.json"
    script = f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())"
    CommandNotifier(f"{sys.executable} -c {json.dumps(script)}").send(NOTE)
    assert json.loads(out.read_text())["code"] == "12345678"


def test_command_hook_failures_are_errors_without_the_code(tmp_path: Path) -> None:
    with pytest.raises(NotifyError, match="status 3") as err:
        CommandNotifier(f"{sys.executable} -c 'import sys; sys.exit(3)'").send(NOTE)
    assert "12345678" not in str(err.value)
    with pytest.raises(NotifyError):
        CommandNotifier(str(tmp_path / "no-such-program")).send(NOTE)
    with pytest.raises(NotifyError):
        CommandNotifier(f"{sys.executable} -c 'import time; time.sleep(5)'", timeout_s=0.2).send(NOTE)


def test_notification_repr_hides_the_code_and_one_hook_only() -> None:
    assert "12345678" not in repr(NOTE)
    with pytest.raises(ValueError):
        make_notifier("cat", "http://x/")
    assert make_notifier(None, None) is None
