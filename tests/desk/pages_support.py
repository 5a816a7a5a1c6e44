"""Support for the tests of the deliveries, codes, staff, doors and reports pages: a registered
locker (esp32-4door: doors 1-2 S and low, 3 M, 4 L) and its events as the host service applies
them, and every GET page of the desk with its path parameters filled in."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from desk_support import DeskServer

from lockertools import BOARDS_DIR
from lockertools.boards import door_sizes
from lockertools.service import db, fleet_db, ingest

LOCKER = "hall-1"
NASTY = "<script>alert('x')</script>';DROP/**/TABLE/**/codes;--"
NASTY_SHOWN = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#39;;DROP/**/TABLE/**/codes;--"


class Locker:
    def __init__(self, server: DeskServer, locker_id: str = LOCKER) -> None:
        self.server = server
        self.id = locker_id
        self.seq = 0
        board = json.loads((BOARDS_DIR / "esp32-4door.json").read_text())
        with server.connect() as conn:
            fleet_db.add_locker(conn, locker_id, bytes(32), ["1", "2", "3", "4"], door_sizes(board))
            with db.transaction(conn):
                status = {"online": True, "mode": "normal", "rev": 0, "snap": False}
                ingest.apply_status(conn, locker_id, status, time.time())

    def event(self, kind: str, door: str, when: float | None = None, **fields: Any) -> None:
        """One event of the locker, applied and committed as the service does."""
        self.seq += 1
        at = int(time.time() if when is None else when)
        msg = {"seq": self.seq, "ev": {"t": at, "k": kind, "d": door, **fields}}
        with self.server.connect() as conn, db.transaction(conn):
            ingest.apply_event(conn, self.id, msg, time.time())


_FIELD = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def get_pages(server: DeskServer, values: dict[str, str]) -> list[str]:
    """The path of every GET route of the desk, its {fields} from `values` (a route with a field
    not in `values` fails the test: a new page is walked too); not the live streams or static files."""
    paths = []
    for route in server.app.router.routes():
        if route.method != "GET" or route.resource is None:
            continue
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter")
        if path is None or path.startswith("/static") or path.endswith("/live") or path.startswith("/api/"):
            continue
        missing = [f for f in _FIELD.findall(path) if f not in values]
        assert not missing, f"no value for {missing} of {path}"
        paths.append(_FIELD.sub(lambda m: values[m.group(1)], path))
    return paths


_ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.S)
_CELL = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.S)
_TAG = re.compile(r"<[^>]+>")


def table_rows(html: str, after: str = "") -> list[list[str]]:
    """The body rows of the first table after the text `after`: each cell's text (tags dropped,
    spaces squeezed; entities as they are)."""
    table = html.split(after, 1)[1] if after else html
    body = table.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [[" ".join(_TAG.sub(" ", cell).split()) for cell in _CELL.findall(row)] for row in _ROW.findall(body)]
