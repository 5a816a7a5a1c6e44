"""systemd's notification protocol (sd_notify(3)), written out: one datagram to $NOTIFY_SOCKET.

The unit is `Type=notify` with `WatchdogSec=` (packaging/systemd/): the service says READY=1 once it
is connected and subscribed, WATCHDOG=1 from its main loop while its loops are healthy, STOPPING=1
when it leaves. Without $NOTIFY_SOCKET (not under systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        # An abstract socket's name starts with '@', which stands for the leading NUL byte.
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.watchdog_s = _watchdog_s(env)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send `READY=1`, `WATCHDOG=1`, `STOPPING=1`, `STATUS=...` in one datagram; False if it could
        not go (systemd gone or no socket): the service runs on regardless."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(fields).encode())
        except OSError:
            return False
        return True


def _watchdog_s(env: dict[str, str] | os._Environ[str]) -> float | None:
    """The watchdog timeout systemd set for this process (WatchdogSec=), or None."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (a parent that exec'd us keeps its own watchdog)
    return int(usec) / 1e6
