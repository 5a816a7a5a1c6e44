"""A webhook receiver on loopback and the check of what it got (every request signed with the
webhook's secret, HMAC-SHA256 over f"{t}.{body}", and its body as the API's contract describes it):
tests/api's webhook tests and the desk's browser chain (tests/e2e) use both."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from tests.service.service_helpers import free_port


class Receiver:
    """A webhook receiver on loopback: records each request (time received, headers, raw body)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.got: list[tuple[float, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/town/hooks?src=lockers"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.got.append((time.time(), dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(body) for _, _, body in self.got]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class WebhookContract(Protocol):
    def check_webhook(self, body: Any) -> None: ...


def check_signed(receiver: Receiver, secret: str, contract: WebhookContract) -> None:
    """Every request: its signature over f"{t}.{body}" with the webhook's secret, t when it was sent."""
    for received, headers, body in receiver.got:
        fields = dict(part.split("=", 1) for part in headers["Locker-Signature"].split(","))
        assert set(fields) == {"t", "v1"}
        expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(fields["v1"], expected)
        assert abs(received - int(fields["t"])) < 5
        assert headers["Content-Type"] == "application/json"
        contract.check_webhook(json.loads(body))
