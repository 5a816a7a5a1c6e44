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
from tests.support.mosquitto import wait_until

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


def to_front(page: Any) -> None:
    """Make `page` the tab a person looks at: Chromium stops drawing a hidden tab (no animation
    frames, which Playwright's waits and the page's `shown` stamps run on) and slows its timers."""
    if getattr(page.context, "front", None) is not page:
        page.bring_to_front()
        page.context.front = page


class Driver:
    """A person at the simulated locker: every action is a click on the page (counted in `clicks`),
    every wait is on the page's DOM, which the server updates as things happen. Staff work happens
    on the desk (`Desk`), in another tab."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.clicks = 0

    def click(self, selector: str) -> None:
        to_front(self.page)
        self.page.click(selector)
        self.clicks += 1

    def open(self, url: str) -> None:
        to_front(self.page)
        self.page.goto(url)
        self.page.wait_for_selector("#door-0", timeout=WAIT_MS)
        self.page.wait_for_selector('#net[data-online="1"]', timeout=WAIT_MS)  # the locker is online

    # what the page shows

    def lcd(self) -> str:
        text: str = self.page.inner_text("#lcd")
        return text

    def lid(self) -> str:
        """The locker on the current tab."""
        text: str = self.page.inner_text('#tabs [aria-selected="true"]')
        return text.split(" ", 1)[0]

    def host_rev(self) -> int:
        return int(self.page.get_attribute("#net", "data-host-rev"))

    def door_attr(self, label: str, attr: str) -> str:
        value: str = self.page.get_attribute(f'.door[data-door="{label}"]', f"data-{attr}")
        return value

    def wait_door(self, label: str, timeout: int = STEP_MS, **attrs: str) -> None:
        to_front(self.page)
        sel = f'.door[data-door="{label}"]' + "".join(f'[data-{k}="{v}"]' for k, v in attrs.items())
        self.page.wait_for_selector(sel, timeout=timeout)

    def wait_open_door(self, timeout: int = STEP_MS) -> str:
        """The label of the door that is open (there must be exactly one)."""
        to_front(self.page)
        self.page.wait_for_selector('.door[data-state="open"]', timeout=timeout)
        labels: list[str] = self.page.eval_on_selector_all(
            '.door[data-state="open"]', "ds => ds.map(d => d.dataset.door)"
        )
        assert len(labels) == 1, f"one door open, not {labels}"
        return labels[0]

    def wait_synced_after(self, host_rev: int) -> None:
        """Until the locker holds what staff issued on the desk since the page showed `host_rev`: the
        host's revision moved past it and the locker reports that revision."""
        to_front(self.page)
        self.page.wait_for_function(
            """(rev) => { const n = document.querySelector('#net');
                 return n.dataset.online === '1' && +n.dataset.hostRev > rev
                   && +n.dataset.lockerRev >= +n.dataset.hostRev; }""",
            arg=host_rev,
            timeout=WAIT_MS,
        )

    def wait_event(self, source: str, kind: str, count: int = 1, timeout: int = WAIT_MS) -> None:
        to_front(self.page)
        self.page.wait_for_function(
            "([s, k, n]) => document.querySelectorAll(`#events li[data-source='${s}'][data-kind='${k}']`).length >= n",
            arg=[source, kind, count],
            timeout=timeout,
        )

    def wait_note(self, kind: str, count: int = 1, timeout: int = WAIT_MS) -> None:
        """Until the page shows `count` messages of `kind` from the service's hook."""
        to_front(self.page)
        self.page.wait_for_function(
            "([k, n]) => document.querySelectorAll(`#notes .note[data-kind='${k}']`).length >= n",
            arg=[kind, count],
            timeout=timeout,
        )

    # what a person does

    def keys(self, keys: str) -> None:
        for ch in keys:
            self.click(f'#keypad [data-key="{ch}"]')

    def keys_applied(self) -> None:
        """Until every key clicked so far has been applied on the board (a person typing at a
        person's pace never gets ahead of the locker)."""
        to_front(self.page)
        self.page.wait_for_selector('body[data-keys-pending="0"]', timeout=STEP_MS)

    def door_index(self, label: str) -> str:
        return self.page.get_attribute(f'.door[data-door="{label}"]', "id").split("-")[1]  # type: ignore[no-any-return]

    def parcel(self, label: str, present: bool) -> None:
        self.click(f"#parcel-{self.door_index(label)}")
        self.wait_door(label, parcel="1" if present else "0")

    def jam(self, label: str, on: bool = True) -> None:
        """The fault: door `label`'s latch sticks (its spring no longer pops the door), or works again."""
        self.click(f"#jam-{self.door_index(label)}")
        self.wait_door(label, jammed="1" if on else "0")

    def push_shut(self, label: str) -> None:
        """Wait for the latch's click (shut while energized, the door springs open again), push it shut."""
        self.wait_door(label, solenoid="0")
        self.click(f'.door[data-door="{label}"]')
        self.wait_door(label, state="closed")

    def pickup(self, code: str) -> str:
        """A resident: the code and #, the door opens, the parcel out, the door shut. Returns the door."""
        self.keys(code + "#")
        label = self.wait_open_door()
        self.parcel(label, False)
        self.push_shut(label)
        return label

    def load(self, pin: str, number: str) -> str:
        """Staff at the keypad: PIN, #, 1 (load), the delivery number, #; the locker opens a door that
        fits; the parcel in, the door shut; * ends the session. Returns the door."""
        self.keys(pin + "#")
        self.wait_event("host", "staff_in")
        self.keys("1" + number + "#")
        label = self.wait_open_door()
        self.parcel(label, True)
        self.push_shut(label)
        self.keys("*")
        self.wait_event("host", "staff_out")
        return label

    def return_item(self, code: str) -> str:
        """A resident returns an item with a return code: an empty door that fits opens, the item goes
        in, the door is shut. Returns the door."""
        self.keys(code + "#")
        label = self.wait_open_door()
        self.parcel(label, True)
        self.push_shut(label)
        return label

    # the fewest clicks on the locker's page a delivery loaded and picked up takes
    @staticmethod
    def fewest_load_and_pickup(pin_digits: int, number_digits: int, code_digits: int) -> int:
        staff = pin_digits + 1 + 1 + number_digits + 1 + 2 + 1  # PIN #, 1, number #, parcel in, shut, *
        resident = code_digits + 1 + 2  # code #, parcel out, shut
        return staff + resident


class Desk:
    """A member of staff on the real desk, in a browser tab of its own, in English; every action a
    form filled in and submitted, every answer read from the page the desk renders."""

    def __init__(self, page: Any, url: str) -> None:
        self.page = page
        self.url = url.rstrip("/")
        if not hasattr(page, "errors"):  # the page's uncaught JavaScript errors, as chromium_page's
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.errors = errors

    @classmethod
    def from_sim(cls, sim_page: Any) -> Desk:
        """The desk opened from the simulator's page (its link: a new tab, logged in as demo)."""
        with sim_page.context.expect_page() as opened:
            sim_page.click("#desk-link")
        page = opened.value
        page.wait_for_url(re.compile(r"/lockers$"), timeout=WAIT_MS)
        desk = cls(page, page.url.rsplit("/lockers", 1)[0])
        desk.go("/language/en?next=/lockers")
        return desk

    def go(self, path: str) -> None:
        to_front(self.page)
        self.page.goto(self.url + path)

    def submit(self, button: str, within: str = "main") -> None:
        with self.page.expect_navigation(timeout=WAIT_MS):
            self.page.locator(within).get_by_role("button", name=button).first.click()

    def log_in(self, name: str, password: str) -> None:
        self.go("/language/en?next=/login")
        self.page.fill("#name", name)
        self.page.fill("#password", password)
        with self.page.expect_navigation(timeout=WAIT_MS):
            self.page.keyboard.press("Enter")
        assert self.page.url.endswith("/lockers"), self.page.url
        assert name in self.page.inner_text("header")

    def prepare_delivery(self, locker: str, size: str = "M", case: str = "", name: str = "") -> tuple[str, str]:
        """New delivery: (the delivery number staff type at the locker, the resident's code)."""
        self.go("/deliveries/new")
        self.page.select_option("#d-locker", locker)
        self.page.select_option("#d-size", size)
        self.page.fill("#d-name", name)
        self.page.fill("#d-case", case)
        self.submit("Prepare the delivery")
        return self.page.inner_text("#delivery-number").strip(), self.page.inner_text("#resident-code").strip()

    def staff_pin(self, name: str, locker: str) -> str:
        """A member of staff added (once) and today's PIN for `locker`, shown once."""
        self.go("/staff")
        row = self.page.locator("main tbody tr", has=self.page.locator("th", has_text=name))
        if row.count() == 0:
            self.page.fill("#staff-name", name)
            self.submit("Add")
            row = self.page.locator("main tbody tr", has=self.page.locator("th", has_text=name))
        row.locator("select").select_option(locker)
        with self.page.expect_navigation(timeout=WAIT_MS):
            row.get_by_role("button").click()
        pin: str = self.page.inner_text("#staff-pin")
        return pin.strip()

    def pickup_code(self, locker: str, door: str) -> str:
        self.go("/codes")
        self.page.select_option("#p-locker", locker)
        self.page.fill("#p-door", door)
        self.submit("Issue a pickup code")
        code: str = self.page.inner_text("#resident-code")
        return code.strip()

    def return_code(self, locker: str, size: str = "M") -> str:
        self.go("/codes")
        self.page.select_option("#r-locker", locker)
        self.page.select_option("#r-size", size)
        self.submit("Issue a return code")
        code: str = self.page.inner_text("#resident-code")
        return code.strip()

    def remote_open(self, locker: str, door: str, reason: str) -> None:
        self.go(f"/doors/{locker}")
        row = self.page.locator("main tbody tr", has=self.page.locator("th", has_text=door)).first
        row.locator('input[name="reason"]').fill(reason)
        with self.page.expect_navigation(timeout=WAIT_MS):
            row.get_by_role("button", name=re.compile(r"^Open")).click()

    def wait_delivery_state(self, number: str, state: str) -> None:
        """Until the delivery's page says `state` (reloaded: the server renders it as it is now)."""

        def shows() -> bool:
            self.go(f"/deliveries/{number}")
            text: str = self.page.inner_text("#delivery-state")
            return text.strip() == state

        wait_until(shows, WAIT_MS / 1000, f"delivery {number}'s page to say {state!r}", poll=0.25)
