"""The notification hook: where a newly issued plain code goes, once, to reach its recipient; also
where the service tells residents an item is loaded (with its code), reminds them, and tells staff of
returns and take-backs (docs/protocol.md, "Deliveries, returns and staff on the host").

Either a command (the JSON document on its stdin) or an HTTP POST (the JSON document as the body).
The code is in the document and nowhere else: not in a log line, not in an error message (errors
name the hook's exit status or the HTTP status only), and not in the database, but for a delivery's
code waiting for its `loaded` notification (held_codes, deleted once the hook took it).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass(frozen=True)
class Notification:
    """What the hook receives. `kind`: `code` (a new code, from `codes issue`), `loaded` (to the
    resident: the item is in door `door`, with the code), `reminder` (to the resident: the pickup
    window ends in a day; no code), `returned` and `taken_back` (to staff; no code). `code` is None
    whenever the notification carries none."""

    locker: str
    door: str
    code: str | None
    expires: int  # epoch seconds, 0: none
    code_id: int | None
    recipient: str | None
    kind: str = "code"
    item: str | None = None  # parcel, document, permit, waste bags, borrowed material
    staff: str | None = None  # the member of staff who loaded or took back the item (a name)

    def __repr__(self) -> str:
        return f"Notification(kind={self.kind!r}, locker={self.locker!r}, door={self.door!r}, code_id={self.code_id})"

    def body(self) -> bytes:
        return json.dumps(asdict(self)).encode()


class NotifyError(Exception):
    """The hook failed; the text never contains the code."""


class Notifier(Protocol):
    def send(self, note: Notification) -> None: ...

    def describe(self) -> str: ...


class CommandNotifier:
    """Runs a command (shell-style words, no shell) with the notification as JSON on its stdin."""

    def __init__(self, command: str, timeout_s: float = 10.0) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("empty notify command")
        self.timeout_s = timeout_s

    def describe(self) -> str:
        return f"command {self.argv[0]}"

    def send(self, note: Notification) -> None:
        try:
            done = subprocess.run(
                self.argv, input=note.body(), capture_output=True, timeout=self.timeout_s, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NotifyError(
                f"{self.argv[0]}: {type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        if done.returncode != 0:
            raise NotifyError(f"{self.argv[0]} exited with status {done.returncode}")


class HttpNotifier:
    """POSTs the notification as JSON; any 2xx is success."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("notify URL must be http:// or https://")
        self.url = url
        self.timeout_s = timeout_s

    def describe(self) -> str:
        return f"POST {self.url.split('?')[0]}"

    def send(self, note: Notification) -> None:
        request = urllib.request.Request(
            self.url, data=note.body(), method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            raise NotifyError(f"HTTP {exc.code} from the notification hook") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotifyError(f"notification hook unreachable: {reason}") from None
        if not 200 <= status < 300:
            raise NotifyError(f"HTTP {status} from the notification hook")


def make_notifier(command: str | None, url: str | None, timeout_s: float = 10.0) -> Notifier | None:
    if command and url:
        raise ValueError("choose one of --notify-command and --notify-url")
    if command:
        return CommandNotifier(command, timeout_s)
    if url:
        return HttpNotifier(url, timeout_s)
    return None
