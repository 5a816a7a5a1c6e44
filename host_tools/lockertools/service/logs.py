"""Structured log lines for the service: one JSON object a line (journald and log shippers read it).

`{"ts": ..., "level": ..., "logger": ..., "msg": ..., "locker": ...}`: `locker` comes from the call's
`extra={"locker": lid}`, `error` holds a traceback. What is logged never holds a code, a PIN, a key or
a password: the callers log ids, doors, states and reasons only (tests/service/test_service_ops.py
runs a whole flow with codes and looks for them in the log).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FORMATS = ("json", "text")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        locker = getattr(record, "locker", None)
        if locker is not None:
            line["locker"] = locker
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup(level: int, fmt: str = "json") -> None:
    """The service's logging on stderr (journald under systemd). Like logging.basicConfig, it leaves
    a logging set up already (a test harness, a program embedding the service) as it is."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
