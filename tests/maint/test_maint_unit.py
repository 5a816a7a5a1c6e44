"""The firmware's maintenance modules and loader under CPython (fw_cases.py; the same functions run
under MicroPython in test_maint_micropython.py), and the host's side of the manifest signature."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.maint import fw_cases

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted(n for n in dir(fw_cases) if n.startswith("test_"))


@pytest.fixture(autouse=True)
def _scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import fakes  # type: ignore[import-not-found]

    monkeypatch.setattr(fakes, "_TMP", str(tmp_path))
    monkeypatch.setenv("LOCKER_BOOT_PY", str(ROOT / "firmware" / "boot.py"))
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


@pytest.mark.parametrize("name", CASES)
def test_case(name: str) -> None:
    fn: Callable[[], None] = getattr(fw_cases, name)
    fn()


def test_host_signature_is_what_the_locker_computes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lockertools.maint.bundle import manifest_sig

    monkeypatch.chdir(tmp_path)
    man = fw_cases._manifest()
    assert manifest_sig(fw_cases.KEY, "2.0", man) == fw_cases._sig("2.0", man)
    rt = fw_cases.FakeRt()
    args = {"version": "2.0", "count": 3, "size": sum(f["size"] for f in man), "files": man}
    args["sig"] = manifest_sig(fw_cases.KEY, "2.0", man)
    assert fw_cases._run(rt, "app.begin", args)["ok"]


def test_bundle_layout_and_messages_follow_the_contract(tmp_path: Path) -> None:
    import base64
    import json

    from lockertools.contract import check
    from lockertools.maint.bundle import build_app, install_app, manifest_sig
    from lockertools.maint.update import FILES_PER_MSG

    b = build_app(version="2.0.0")
    assert set(b.files) >= {"boot.py", "main.py", "app/app.json", "app/locker/runtime.mpy", "app/hal/board.mpy"}
    assert not any(p.startswith("app/") and p.endswith(".py") for p in b.files)
    raw = b.files["app/app.json"]
    assert raw[:40].decode().replace(" ", "").replace("\n", "").startswith('{"version":"2.0.0"')
    assert json.loads(raw) == b.manifest and len(b.app_files()) == len(b.files) - 3
    install_app(tmp_path, b)
    (tmp_path / "app.swap").write_text("{}")
    install_app(tmp_path, b)  # a fresh install clears update state
    assert not (tmp_path / "app.swap").exists() and (tmp_path / "app" / "locker" / "maint.mpy").exists()
    base = {"v": 1, "lid": "a", "seq": 1, "now": 1, "exp": 2, "tx": "t"}
    files = b.app_files()
    sig = manifest_sig(b"k" * 32, "2.0.0", files)
    begin = {"version": "2.0.0", "count": len(files), "size": b.app_size, "sig": sig}
    check("command", {**base, "op": "app.begin", "args": {**begin, "files": files[:FILES_PER_MSG]}})
    check("command", {**base, "op": "app.files", "args": {"files": files[FILES_PER_MSG : 2 * FILES_PER_MSG]}})
    data = base64.b64encode(b"x" * 4096).decode()
    check("command", {**base, "op": "app.chunk", "args": {"path": files[0]["path"], "off": 0, "data": data}})
    check("command", {**base, "op": "app.commit", "args": {"k": 3, "ok_s": 60, "wdt": 30000}})
    check("command", {**base, "op": "diag", "args": {}})
    check("command", {**base, "op": "selftest.keys", "args": {"on": True}})
    from lockertools.contract import ContractError

    for path in ("../x", "a/./b", "/abs"):
        with pytest.raises(ContractError):
            check("command", {**base, "op": "app.chunk", "args": {"path": path, "off": 0, "data": ""}})


def test_cli_console_follows_a_simulated_board(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lockertools import BOARDS_DIR
    from lockertools.cli import main
    from lockertools.flash import prepare

    prepare(tmp_path, BOARDS_DIR / "esp32-4door.json", locker_id="C1")
    r = CliRunner().invoke(main, ["console", "--sim", str(tmp_path), "--seconds", "3"])
    assert r.exit_code == 0, r.output
    assert "ready normal" in r.output and '"k": "boot"' in r.output
