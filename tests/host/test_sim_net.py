"""`lockerctl sim net` end to end, as a person would use it: the demo in one process (its commands on
stdin, `--script -`), and in "another terminal" the exact commands it prints: issue a code, follow
the events, list the lockers. Then a second run in the same work directory (it must pick up where the
first stopped), and after each run no process of the demo is left.

Every wait is a condition wait on a process's output with a deadline; every process is stopped at the end.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lockertools.sim import default_micropython
from tests.support import REPO_ROOT
from tests.support.procs import left_behind

LOCKERCTL = REPO_ROOT / ".venv" / "bin" / "lockerctl"
WAIT = 60.0  # boot, connect, a sync round trip: seconds each, more on a loaded host
SYNCED = re.compile(r"\[net\] sim-1 online \| codes: locker rev (\d+), host rev \1 \(in sync\)")

HAVE_MOSQUITTO = shutil.which("mosquitto") is not None or os.access("/usr/sbin/mosquitto", os.X_OK)
needs_the_stack = pytest.mark.skipif(
    not (default_micropython().exists() and HAVE_MOSQUITTO), reason="needs micropython (unix port) and mosquitto"
)


class Proc:
    """A child process whose output lines a thread collects; `wait_line` waits on them."""

    def __init__(self, argv: list[str], stdin: bool = False) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
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

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def wait_line(self, pred: Callable[[str], bool], what: str, since: int = 0, timeout: float = WAIT) -> str:
        def found() -> str | None:
            return next((ln for ln in self.lines[since:] if pred(ln)), None)

        with self._cond:
            ok = self._cond.wait_for(lambda: found() is not None or not self._reader.is_alive(), timeout)
            line = found()
            if not ok or line is None:
                tail = "\n".join(self.lines[-40:])
                raise AssertionError(f"no line with {what} from {self.argv[1:3]}; output ends:\n{tail}")
            return line

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in reversed(started):
            p.stop()


def _printed_command(demo: Proc, label: str) -> list[str]:
    line = demo.wait_line(lambda ln: ln.strip().startswith(label), f"the {label!r} command")
    return shlex.split(line.split(":", 1)[1])


def _quit(demo: Proc, workdir: Path) -> None:
    demo.send("quit")
    assert demo.proc.wait(30) == 0, "\n".join(demo.lines[-40:])
    demo.wait_line(lambda ln: ln.startswith("stopped:"), "the stop report")
    assert left_behind(workdir) == []


@pytest.mark.scenario
@needs_the_stack
def test_sim_net_issue_sync_pickup_and_rerun(tmp_path: Path, procs: list[Proc]) -> None:
    workdir = tmp_path / "sim-net"
    demo = Proc([str(LOCKERCTL), "sim", "net", "--workdir", str(workdir), "--script", "-"], stdin=True)
    procs.append(demo)
    issue = _printed_command(demo, "issue a code:")
    events = _printed_command(demo, "follow events:")
    lockers = _printed_command(demo, "list lockers:")
    assert issue[1:] == ["codes", "issue", "--db", str(workdir / "fleet.db"), "--locker", "sim-1", "--door", "1"]

    # Staff issue a code in another terminal; the locker gets it from the service.
    out = subprocess.run(issue, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=True).stdout
    match = re.search(r"code (\d{8}) for sim-1 door 1", out)
    assert match, out
    code = match.group(1)
    line = demo.wait_line(lambda ln: bool(SYNCED.search(ln)) and "locker rev 0," not in ln, "rev 1 in sync")
    assert "locker rev 1, host rev 1" in line

    follow = Proc(events)
    procs.append(follow)
    mark = demo.mark()
    demo.send(f"{code}#")
    demo.wait_line(lambda ln: "door 1 opened" in ln, "door 1 opening", since=mark)
    demo.send("take 1")
    # Shut while the latch is still energized, the door springs open again (as a real one would).
    demo.wait_line(lambda ln: "solenoid door 1 off" in ln, "the latch released", since=mark)
    demo.send("close 1")
    follow.wait_line(lambda ln: "sim-1#" in ln and "pickup door 1" in ln, "the pickup in `lockerctl events -f`")
    # The service marks the code used (host revision 2: the code leaves the locker's store). It sends
    # that at the locker's next status, which may be 5 minutes away: not waited for here.
    demo.wait_line(lambda ln: "host rev 2" in ln, "host revision 2", since=mark)
    follow.stop()
    _quit(demo, workdir)

    # Again in the same directory: same broker users, key and codes; the locker comes back in sync.
    again = Proc([str(LOCKERCTL), "sim", "net", "--workdir", str(workdir), "--script", "-"], stdin=True)
    procs.append(again)
    assert _printed_command(again, "issue a code:") == issue
    again.send("wait synced 60")
    again.wait_line(lambda ln: ln.strip() == "sim-1 synced", "`wait synced` done")
    # On connect the locker's status says revision 1: the service sends the pending removal.
    assert any("online | codes: locker rev 2, host rev 2 (in sync)" in ln for ln in again.lines)
    _quit(again, workdir)
    table = subprocess.run(lockers, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=True).stdout
    assert re.search(r"^sim-1\s+(yes|no)\s+2/2\s", table, re.M), table


def test_sim_net_without_mosquitto_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from lockertools import broker
    from lockertools.cli.sim import sim_cli

    monkeypatch.setattr(broker, "MOSQUITTO_PATHS", ())
    monkeypatch.setenv("PATH", str(tmp_path))  # no mosquitto on it
    result = CliRunner().invoke(sim_cli, ["net", "--workdir", str(tmp_path / "w"), "--script", "-"], input="quit\n")
    assert result.exit_code == 1
    assert "sudo apt-get install -y mosquitto" in result.output
    assert not (tmp_path / "w").exists(), "nothing is set up before the check"
