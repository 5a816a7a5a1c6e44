"""Support for the browser tests of `lockerctl sim web` (tests/web): the command itself, started as
a person starts it (`--no-browser --port 0`, a fresh work directory), and a headless Chromium page on
the URL it prints. Everything is stopped at teardown, and nothing of the simulator may be left running.

Chromium is the system's (/usr/bin/chromium; never downloaded); the tests skip, saying so, without it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lockertools.sim import default_micropython
from tests.support import REPO_ROOT

LOCKERCTL = REPO_ROOT / ".venv" / "bin" / "lockerctl"
CHROMIUM = Path(os.environ.get("LOCKER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_S = 90.0  # broker, service, firmware boot and the locker's first connect, on a loaded host
HAVE_MOSQUITTO = shutil.which("mosquitto") is not None or os.access("/usr/sbin/mosquitto", os.X_OK)

needs_browser = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
)
needs_the_stack = pytest.mark.skipif(
    not (default_micropython().exists() and HAVE_MOSQUITTO), reason="needs micropython (unix port) and mosquitto"
)


class WebSimProc:
    """`lockerctl sim web` in a child process; its output lines collected by a thread."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir = workdir
        argv = [str(LOCKERCTL), "sim", "web", "--no-browser", "--port", "0", "--workdir", str(workdir), *extra]
        self.proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pred: Callable[[str], bool], what: str, timeout: float = START_S) -> str:
        def found() -> str | None:
            return next((ln for ln in self.lines if pred(ln)), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None or not self._reader.is_alive(), timeout)
            line = found()
        if line is None:
            raise AssertionError(f"`sim web` printed no {what}; its output:\n" + "\n".join(self.lines[-40:]))
        return line

    def url(self) -> str:
        line = self.wait_line(lambda ln: "http://127.0.0.1:" in ln, "URL")
        m = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert m is not None
        return m.group(0)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """SIGTERM (a terminal closing, a service manager) or SIGINT (Ctrl-C); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return int(self.proc.returncode)


@contextlib.contextmanager
def chromium_page() -> Iterator[Any]:
    """A page in a fresh headless Chromium profile (the system's binary; nothing downloaded).
    `page.errors` collects the page's uncaught JavaScript errors."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="websim-chromium-")
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                page = ctx.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.errors = errors
                yield page
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# --- raw HTTP, as any program (or a browser after DNS rebinding) can send it ------------------------

HTTP_S = 60.0


def addr_of(url: str) -> tuple[str, int]:
    host, port = url.split("//")[1].rstrip("/").split(":")
    return host, int(port)


def http_raw(
    url: str, method: str, path: str, host: str | None = None, headers: tuple[str, ...] = (), body: bytes = b""
) -> tuple[int, bytes]:
    """(status, body) of one raw HTTP/1.1 request, with the Host header as given."""
    addr, port = addr_of(url)
    head = [f"{method} {path} HTTP/1.1", f"Host: {host or f'{addr}:{port}'}", *headers]
    if not any(h.lower().startswith("connection:") for h in headers):
        head.append("Connection: close")
    head.append(f"Content-Length: {len(body)}")
    with socket.create_connection((addr, port), timeout=HTTP_S) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", header)
        want = int(length.group(1)) if length else 0
        while len(rest) < want and (chunk := s.recv(65536)):
            rest += chunk
    return int(header.split()[1]), rest


def ws_handshake(url: str, query: str, host: str | None = None, origin: str | None = None) -> int:
    """The HTTP status of a WebSocket handshake on /ws<query> (101: accepted)."""
    headers = ["Upgrade: websocket", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if origin is not None:
        headers.append(f"Origin: {origin}")
    status, _ = http_raw(url, "GET", f"/ws{query}", host=host, headers=("Connection: Upgrade", *headers))
    return status


def page_token(url: str) -> str:
    """The run's token, from the page it serves (as a browser gets it)."""
    status, page = http_raw(url, "GET", "/")
    assert status == 200
    m = re.search(rb'<meta name="sim-token" content="([^"]+)">', page)
    assert m is not None, "the page carries the run's token"
    return m.group(1).decode()


# --- driving the page, by clicks alone (the tests and bench/web.py) --------------------------------

WAIT_MS = 60_000  # a sync round trip or a boot on a loaded host
STEP_MS = 20_000


class Driver:
    """A person at the page: every action is a click on a button (counted in `clicks`) or typing in
    a form field; every wait is on the page's DOM, which the server updates as things happen."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.clicks = 0

    def click(self, selector: str) -> None:
        self.page.click(selector)
        self.clicks += 1

    def button(self, name: str) -> None:
        self.page.get_by_role("button", name=name, exact=True).click()
        self.clicks += 1

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector("#door-0", timeout=WAIT_MS)
        self.page.wait_for_selector('#net[data-online="1"]', timeout=WAIT_MS)  # the locker is online

    # what the page shows

    def lcd(self) -> str:
        text: str = self.page.inner_text("#lcd")
        return text

    def host_rev(self) -> int:
        return int(self.page.get_attribute("#net", "data-host-rev"))

    def door_attr(self, label: str, attr: str) -> str:
        value: str = self.page.get_attribute(f'.door[data-door="{label}"]', f"data-{attr}")
        return value

    def wait_door(self, label: str, timeout: int = STEP_MS, **attrs: str) -> None:
        sel = f'.door[data-door="{label}"]' + "".join(f'[data-{k}="{v}"]' for k, v in attrs.items())
        self.page.wait_for_selector(sel, timeout=timeout)

    def wait_open_door(self, timeout: int = STEP_MS) -> str:
        """The label of the door that is open (there must be exactly one)."""
        self.page.wait_for_selector('.door[data-state="open"]', timeout=timeout)
        labels: list[str] = self.page.eval_on_selector_all(
            '.door[data-state="open"]', "ds => ds.map(d => d.dataset.door)"
        )
        assert len(labels) == 1, f"one door open, not {labels}"
        return labels[0]

    def wait_synced(self) -> None:
        """Until the locker holds every code the staff desk issued on this page: the newest message's
        `rev` (the host's revision once it was issued) is the locker's revision, or an older one."""
        self.page.wait_for_function(
            """() => { const revs = [...document.querySelectorAll('#notes .note[data-rev]')].map(n => +n.dataset.rev);
                 const n = document.querySelector('#net');
                 return n.dataset.online === '1' && +n.dataset.lockerRev >= Math.max(0, ...revs); }""",
            timeout=WAIT_MS,
        )

    def wait_event(self, source: str, kind: str, count: int = 1, timeout: int = WAIT_MS) -> None:
        self.page.wait_for_function(
            "([s, k, n]) => document.querySelectorAll(`#events li[data-source='${s}'][data-kind='${k}']`).length >= n",
            arg=[source, kind, count],
            timeout=timeout,
        )

    def notes(self, kind: str) -> int:
        n: int = self.page.locator(f'#notes .note[data-kind="{kind}"]').count()
        return n

    def wait_note(self, kind: str, count_before: int, timeout: int = WAIT_MS) -> str:
        """The code (or number) of the next message of `kind` on the page (the newest is on top)."""
        self.page.wait_for_function(
            "([k, n]) => document.querySelectorAll(`#notes .note[data-kind='${k}']`).length > n",
            arg=[kind, count_before],
            timeout=timeout,
        )
        text: str = self.page.locator(f'#notes .note[data-kind="{kind}"]').first.locator(".code").inner_text()
        return text.strip()

    # what a person does

    def keys(self, keys: str) -> None:
        for ch in keys:
            self.click(f'#keypad [data-key="{ch}"]')

    def keys_applied(self) -> None:
        """Until every key clicked so far has been applied on the board (a person typing at a
        person's pace never gets ahead of the locker)."""
        self.page.wait_for_selector('body[data-keys-pending="0"]', timeout=STEP_MS)

    def door_index(self, label: str) -> str:
        return self.page.get_attribute(f'.door[data-door="{label}"]', "id").split("-")[1]  # type: ignore[no-any-return]

    def parcel(self, label: str, present: bool) -> None:
        self.click(f"#parcel-{self.door_index(label)}")
        self.wait_door(label, parcel="1" if present else "0")

    def push_shut(self, label: str) -> None:
        """Wait for the latch's click (shut while energized, the door springs open again), push it shut."""
        self.wait_door(label, solenoid="0")
        self.click(f'.door[data-door="{label}"]')
        self.wait_door(label, state="closed")

    def issue_pickup(self, label: str) -> str:
        before = self.notes("code")
        self.page.select_option("#pickup-door", label)
        self.button("Issue pickup code")
        return self.wait_note("code", before)

    def add_staff(self, name: str) -> str:
        before = self.notes("staff")
        self.page.fill('#f-staff input[name="name"]', name)
        self.button("Add staff member")
        return self.wait_note("staff", before)

    def prepare_delivery(self, size: str = "M", low: bool = False) -> str:
        before = self.notes("delivery")
        self.page.select_option('#f-delivery select[name="size"]', size)
        if low:
            self.page.check('#f-delivery input[name="low"]')
        self.button("Prepare delivery")
        return self.wait_note("delivery", before)

    def remote_open(self, label: str, by: str = "desk", reason: str = "") -> str:
        """The staff desk opens a door (a signed door.open the host service sends); it is shut again."""
        self.page.select_option("#remote-door", self.door_index(label))
        self.page.fill('#f-remote input[name="by"]', by)
        self.page.fill('#f-remote input[name="reason"]', reason)
        self.button("Open door")
        opened = self.wait_open_door(timeout=WAIT_MS)
        self.push_shut(opened)
        return opened

    def return_item(self, size: str = "M") -> tuple[str, str]:
        """A return code from the staff desk; the resident types it, the locker opens a free door that
        fits, the item goes in, the door is shut. Returns (code, door)."""
        before = self.notes("return")
        self.page.select_option('#f-return select[name="size"]', size)
        self.button("Issue return code")
        code = self.wait_note("return", before)
        self.wait_synced()
        self.keys(code + "#")
        label = self.wait_open_door()
        self.parcel(label, True)
        self.push_shut(label)
        return code, label

    def pickup(self, code: str) -> str:
        """A resident: the code and #, the door opens, the parcel out, the door shut. Returns the door."""
        self.keys(code + "#")
        label = self.wait_open_door()
        self.parcel(label, False)
        self.push_shut(label)
        return label

    def delivery_and_pickup(self, staff_name: str = "Alex") -> dict[str, str]:
        """Staff add themselves and prepare a delivery; at the locker: PIN, #, 1 (load), the number, #;
        the locker opens a door that fits; the parcel in, the door shut; * ends the session; the
        resident gets the code (the hook's `loaded` message) and picks it up.
        Returns the PIN, the delivery number, the door and the resident's code."""
        pin = self.add_staff(staff_name)
        number = self.prepare_delivery("M")
        self.wait_synced()  # both codes on the locker
        loaded_before = self.notes("loaded")
        self.keys(pin + "#")
        self.wait_event("host", "staff_in")
        self.keys("1" + number + "#")
        label = self.wait_open_door()
        self.parcel(label, True)
        self.push_shut(label)
        code = self.wait_note("loaded", loaded_before)
        self.keys("*")
        self.wait_event("host", "staff_out")
        assert self.pickup(code) == label
        return {"pin": pin, "number": number, "door": label, "code": code}

    # the fewest clicks these flows can take on this page
    @staticmethod
    def fewest_delivery_and_pickup(pin_digits: int, number_digits: int, code_digits: int) -> int:
        staff_desk = 2  # add staff member, prepare delivery
        staff = pin_digits + 1 + 1 + number_digits + 1 + 2 + 1  # PIN #, 1, number #, parcel in, shut, *
        resident = code_digits + 1 + 2  # code #, parcel out, shut
        return staff_desk + staff + resident
