"""Application updates end to end on a VirtualBoard that runs the loader and the application from its
flash folder (as provisioning installs them): the host's push_update over the board's console, signed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockertools import BOARDS_DIR, FIRMWARE_DIR
from lockertools.flash import prepare
from lockertools.maint import MaintError
from lockertools.maint.bundle import AppBundle, build_app, install_app
from lockertools.maint.client import Maint
from lockertools.maint.links import SimConsole
from lockertools.maint.update import push_update
from lockertools.sim import CONSOLE_SYNC_HEAP, VirtualBoard
from tests.support.settings import FAST_TIMINGS

pytestmark = pytest.mark.scenario
BOARD = BOARDS_DIR / "esp32-4door.json"
NOW = 1_790_000_000
LID = "U1"


class Rig:
    def __init__(self, flash: Path, key: bytes, board: VirtualBoard, console: SimConsole) -> None:
        self.flash, self.key, self.board, self.console = flash, key, board, console
        self.m = Maint(console, LID, key)

    def app_version(self) -> str:
        return str(json.loads((self.flash / "app" / "app.json").read_text())["version"])

    def tree(self, name: str = "app") -> dict[str, bytes]:
        root = self.flash / name
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def v1() -> AppBundle:
    return build_app(version="1.0.0")


@pytest.fixture(scope="module")
def v2() -> AppBundle:
    return build_app(version="2.0.0")


@pytest.fixture
def rig(tmp_path: Path, v1: AppBundle) -> Iterator[Rig]:
    secrets = prepare(tmp_path, BOARD, locker_id=LID, config_overrides=FAST_TIMINGS)
    install_app(tmp_path, v1)
    board = VirtualBoard(tmp_path, heap=CONSOLE_SYNC_HEAP, auto_reboot=True, app_on_flash=True)
    console = SimConsole(board)
    try:
        board.boot(keep_rtc=NOW)
        board.wait_log("ready normal", 20)
        yield Rig(tmp_path, secrets.key, board, console)
    finally:
        console.close()
        board.close()


def _event(rig: Rig, kind: str, timeout: float = 20.0) -> dict[str, object]:
    from lockertools.maint.links import parse_event

    found = rig.console.wait(lambda ln: (e := parse_event(ln)) is not None and e.get("k") == kind and e, 0, timeout)
    assert found, f"no {kind} event\n{rig.board.log_tail(40)}"
    return dict(found)


def test_a_good_update_runs_on_trial_and_is_kept_once_healthy(rig: Rig, v2: AppBundle) -> None:
    seen: list[tuple[int, int]] = []
    result = push_update(rig.m, v2, ok_s=2, wdt_ms=5000, timeout=60, progress=lambda d, t: seen.append((d, t)))
    assert result.outcome == "healthy", result
    assert seen[-1] == (v2.app_size, v2.app_size) and len(seen) > len(v2.app_files())
    assert rig.app_version() == "2.0.0" and rig.tree() == {
        **{f["path"]: v2.app_bytes(f["path"]) for f in v2.app_files()},
        "app.json": rig.tree()["app.json"],
    }
    assert _event(rig, "app_ok")["v"] == "2.0.0"
    d = rig.m.diag()
    assert d["app"]["v"] == "2.0.0" and d["trial"] is None and d["rollback"] is None and d["reset"] == "hard"
    # the previous application is kept until the next update (a rollback target while on trial)
    assert json.loads((rig.flash / "app.old" / "app.json").read_text())["version"] == "1.0.0"
    assert not (rig.flash / "app.swap").exists() and not (rig.flash / "app.trial").exists()


def test_a_corrupt_chunk_is_refused_and_the_old_application_untouched(rig: Rig, v2: AppBundle) -> None:
    before = rig.tree()
    victim = v2.app_files()[3]["path"]

    def flip(path: str, off: int, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1]) if path == victim and data else data

    with pytest.raises(MaintError, match=f"app.chunk {victim}.*'error': 'hash'"):
        push_update(rig.m, v2, mangle=flip, wait=False)
    try:
        st = rig.m.call("app.status")
    except MaintError:
        raise AssertionError(rig.board.log_tail(30)) from None
    assert st["swap"] is False and st["app"]["v"] == "1.0.0"
    assert st["staged"]["next"] == [victim, 0]
    assert rig.m.call("app.commit", {"reboot": False})["error"] == "incomplete"
    assert rig.tree() == before and not (rig.flash / "app.swap").exists()
    # sent again, correctly: the staging resumes where it stopped and the update goes through
    assert push_update(rig.m, v2, ok_s=1, wdt_ms=5000, timeout=60).outcome == "healthy"
    assert rig.app_version() == "2.0.0"


def test_a_bad_signature_is_refused_before_anything_is_staged(rig: Rig, v2: AppBundle) -> None:
    before = rig.tree()
    with pytest.raises(MaintError, match="bad_signature"):
        push_update(rig.m, v2, sig="ab" * 32, wait=False)
    assert not (rig.flash / "app.new").exists()
    # and commands signed with another key are refused by the locker's gate
    forged = Maint(rig.console, LID, b"\x07" * 32)
    r = forged.call("app.begin", {"version": "6.6.6", "count": 1, "size": 1, "files": []})
    assert r["ok"] is False and r["error"] == "bad_signature"
    assert rig.tree() == before and not (rig.flash / "app.new").exists() and rig.app_version() == "1.0.0"


def test_a_power_cut_in_the_middle_of_the_swap_is_finished_by_the_loader(rig: Rig, v2: AppBundle) -> None:
    r = push_update(rig.m, v2, wait=False, ok_s=1, wdt_ms=5000, k=2)
    assert r.outcome == "committed"
    rig.board.power_cut()  # before the locker's own reboot
    assert (rig.flash / "app.swap").exists()
    # the power went after the loader's first rename (app -> app.old), before the second
    (rig.flash / "app").rename(rig.flash / "app.old")
    assert not (rig.flash / "app").exists()
    rig.board.boot(keep_rtc=NOW)
    rig.board.wait_log("swapped in, on trial")
    from lockertools.maint.update import wait_outcome

    assert wait_outcome(rig.m, "2.0.0", timeout=60).outcome == "healthy"
    assert rig.app_version() == "2.0.0"
    assert json.loads((rig.flash / "app.old" / "app.json").read_text())["version"] == "1.0.0"


def test_an_application_that_crashes_on_boot_is_rolled_back(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> None:
    src = tmp_path_factory.mktemp("bad-firmware") / "firmware"
    shutil.copytree(FIRMWARE_DIR, src)
    runtime = src / "locker" / "runtime.py"
    text = runtime.read_text()
    runtime.write_text(text.replace("def main():\n", "def main():\n    raise RuntimeError('broken build')\n", 1))
    bad = build_app(version="3.0.0-bad", firmware_dir=src)
    before = rig.tree()
    result = push_update(rig.m, bad, k=2, ok_s=2, wdt_ms=3000, timeout=90)
    assert result.outcome == "rolled_back", result
    assert result.detail["rollback"] == {"from": "3.0.0-bad", "to": "1.0.0", "n": 2}
    assert rig.app_version() == "1.0.0" and rig.tree() == before
    ev = _event(rig, "app_rollback")
    assert ev["from"] == "3.0.0-bad" and ev["to"] == "1.0.0"
    log = "\n".join(rig.board.log_lines())
    assert log.count("broken build") >= 2 and "rolled back to 1.0.0" in log
    d = rig.m.diag()
    assert d["rollback"]["from"] == "3.0.0-bad" and d["app"]["v"] == "1.0.0" and d["safe"] is None


def test_a_power_cut_while_staging_loses_nothing_sent_and_the_push_goes_on(rig: Rig, v2: AppBundle) -> None:
    chunks = [0]
    mark = [0]

    def cut_once(path: str, off: int, data: bytes) -> bytes:
        chunks[0] += 1
        if chunks[0] == 20:  # the board dies halfway through the copy, and comes back
            rig.board.power_cut()
            assert not (rig.flash / "app.swap").exists() and (rig.flash / "app.new" / "app.lst").exists()
            mark[0] = len(rig.board.log_lines())
            rig.board.boot(keep_rtc=NOW)
            rig.board.wait_for(lambda: any("ready normal" in ln for ln in rig.board.log_lines()[mark[0] :]), 20)
        return data

    assert push_update(rig.m, v2, mangle=cut_once, ok_s=1, wdt_ms=5000, timeout=60).outcome == "healthy"
    assert chunks[0] > 20 and rig.app_version() == "2.0.0"
    assert rig.tree()["locker/maint.mpy"] == v2.app_bytes("locker/maint.mpy")
