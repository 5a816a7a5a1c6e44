"""The host tools as a town's IT department installs them: a wheel in a fresh virtual environment,
run from a directory outside the checkout (docs/configuration.md, "Installing").

The wheel is built with `pip wheel --no-deps`; its dependencies come from the configured index
(pip's cache makes the second run quick). With the `service` extra: `config check`, the service
against a loopback mosquitto (configured by the file alone) until a protocol-level locker is online
and has a code `codes issue` gave, `delivery prepare`; a command of another extra names the extra.
Then with `tech` and `sim`: `provision --dry-run` and the scripted `sim run`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lockertools.fleet import SimLocker
from tests.provision.images import fake_micropython
from tests.support import REPO_ROOT
from tests.support.fixtures import Broker
from tests.support.mosquitto import wait_until

# One worker builds the wheel and the venv once for both tests (make test: --dist loadgroup).
pytestmark = [pytest.mark.packaging, pytest.mark.xdist_group("wheel_install")]

KEY = bytes(range(32))
SOURCES = ("pyproject.toml", "LICENSE", "host_tools", "firmware", "boards", "protocol", "tests/scenarios/examples")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
INSTALL_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what pyproject.toml takes: setuptools' build/ and egg-info stay out of
    # the checkout, and nothing left there from an earlier build slips into the wheel.
    source = out / "source"
    for name in SOURCES:
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy2
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        copy(REPO_ROOT / name, source / name, **({"ignore": _IGNORED} if copy is shutil.copytree else {}))
    _pip(sys.executable, "wheel", "--no-deps", "-w", str(out), str(source))
    (built,) = out.glob("lockertools-*.whl")
    return built


def _pip(python: str, *args: str) -> None:
    done = subprocess.run([python, "-m", "pip", "-q", "--disable-pip-version-check", *args], capture_output=True,
                          text=True, timeout=INSTALL_TIMEOUT_S, cwd="/")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


class Venv:
    def __init__(self, root: Path, work: Path) -> None:
        self.root, self.work = root, work
        self.bin = root / "bin"
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LOCKER_DB")}
        self.env.pop("LOCKERTOOLS_CONFIG", None)
        self.env.update(PATH=f"{self.bin}:{os.environ.get('PATH', '')}", XDG_CACHE_HOME=str(work / "cache"))

    def install(self, requirement: str) -> None:
        _pip(str(self.bin / "python"), "install", requirement)

    def python(self, code: str) -> str:
        return self.run(str(self.bin / "python"), "-c", code).stdout

    def lockerctl(self, *args: str, ok: bool = True, **kw: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.bin / "lockerctl"), *args, ok=ok, **kw)

    def run(self, *argv: str, ok: bool = True, **extra_env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(list(argv), cwd=self.work, env={**self.env, **extra_env}, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
        if ok:
            assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
        return done


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    base = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=300)
    work = base / "work"
    work.mkdir()
    env = Venv(base / "venv", work)
    env.install(f"{wheel}[service]")
    return env


class LockerThread:
    """A protocol-level locker (lockertools.fleet.SimLocker) on its own event loop, in this process."""

    def __init__(self, locker: SimLocker) -> None:
        self.locker = locker
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.task: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(locker.run(), self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(self.loop)])
        try:
            self.task.result(timeout=30)
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


WHERE = """
import sys, lockertools, locker.protocol, micropython
print(lockertools.__file__, locker.protocol.__file__, micropython.__file__)
print(lockertools.FIRMWARE_DIR, lockertools.BOARDS_DIR, lockertools.SCHEMA_DIR, lockertools.SIM_BOARD_DIR)
print(sys.path)
"""


def test_the_service_extra_runs_the_service_and_the_staff_commands_outside_the_checkout(
    venv: Venv, broker: Broker
) -> None:
    site = str(venv.root)
    files, dirs, path = venv.python(WHERE).splitlines()
    assert all(p.startswith(site) for p in files.split()), files  # the wheel's modules, not the checkout's
    assert all(p.startswith(site) and Path(p).is_dir() for p in dirs.split()), dirs  # package data
    assert str(REPO_ROOT) not in path
    boards = Path(dirs.split()[1])

    (venv.work / "host.password").write_text(broker.passwords[broker.host_user] + "\n")
    (venv.work / "host.password").chmod(0o600)
    (venv.work / "hook.py").write_text("import sys\nopen('hook.json', 'wb').write(sys.stdin.buffer.read())\n")
    hook = f"{venv.bin / 'python'} {venv.work / 'hook.py'}"
    config = venv.work / "lockertools.toml"
    config.write_text(
        f"""[service]
db = "{venv.work / "fleet.db"}"
broker_host = "{broker.host}"
broker_port = {broker.port}
user = "{broker.host_user}"
password_file = "host.password"
plain = true

[notify]
command = "{hook}"
"""
    )
    checked = venv.lockerctl("config", "check", str(config))
    assert f"{config}: ok" in checked.stdout and "password = ******" in checked.stdout
    assert broker.passwords[broker.host_user] not in checked.stdout + checked.stderr
    venv.env["LOCKERTOOLS_CONFIG"] = str(config)

    (venv.work / "hall-1.key").write_text(KEY.hex())
    added = venv.lockerctl("locker", "add", "hall-1", "--board", str(boards / "esp32-4door.json"), "--key-file",
                           str(venv.work / "hall-1.key"))  # fmt: skip
    assert "registered with 4 doors" in added.stdout
    locker_password = broker.add_locker("hall-1")

    service = subprocess.Popen([str(venv.bin / "lockerctl"), "service", "run"], cwd=venv.work, env=venv.env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)  # fmt: skip
    locker = LockerThread(SimLocker("hall-1", KEY, ["1", "2", "3", "4"], broker.host, broker.port, "hall-1",
                                    locker_password))  # fmt: skip
    try:

        def online() -> bool:
            assert service.poll() is None, service.communicate()[0]
            table = venv.lockerctl("lockers").stdout
            return re.search(r"^hall-1\s+yes\s", table, re.M) is not None

        wait_until(online, 60, "the service to see hall-1 online")

        issued = venv.lockerctl("codes", "issue", "--locker", "hall-1", "--door", "2")
        found = re.search(r"code (\d{8}) for hall-1 door 2", issued.stdout)
        assert found is not None, issued.stdout
        code = found.group(1)
        assert code in (venv.work / "hook.json").read_text()  # the configured hook got it
        wait_until(lambda: locker.locker.lookup("2", code) is not None, 60, "the code on the locker")
        # (after the sync: the protocol-level locker takes pickup codes only, not a delivery's door "*")
        prepared = venv.lockerctl("delivery", "prepare", "hall-1", "--size", "M")
        assert re.search(r"delivery \d+ for hall-1: parcel, size M", prepared.stdout), prepared.stdout

        # A command of an extra not installed says which one.
        missing = venv.lockerctl("sim", "run", "--board", str(boards / "esp32-4door.json"), ok=False)
        assert missing.returncode == 1 and "pip install 'lockertools[sim]'" in missing.stdout + missing.stderr, (
            missing.stdout + missing.stderr
        )
    finally:
        locker.stop()
        service.send_signal(signal.SIGTERM)
        output = service.communicate(timeout=60)[0]
    assert service.returncode == 0, output


def test_the_tech_and_sim_extras_provision_and_simulate_outside_the_checkout(venv: Venv, wheel: Path) -> None:
    boards = Path(venv.python("import lockertools; print(lockertools.BOARDS_DIR)").strip())
    image = venv.work / "ESP32_GENERIC-v1.29.0.bin"
    fake_micropython(image, version="v1.29.0")
    args = ["provision", "--board", str(boards / "esp32-4door.json"), "--port", "/dev/ttyUSB7", "--locker", "hall-9"]
    args += ["--image", str(image), "--install", "littlefs", "--dry-run", "--workdir", str(venv.work / "provision")]
    env = {k: v for k, v in venv.env.items() if k != "LOCKERTOOLS_CONFIG"}
    before = subprocess.run([str(venv.bin / "lockerctl"), *args], cwd=venv.work, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert before.returncode == 1 and "pip install 'lockertools[tech]'" in before.stdout + before.stderr, (
        before.stdout + before.stderr
    )

    venv.install(f"{wheel}[service,tech,sim]")
    saved = venv.env
    venv.env = env
    try:
        dry = venv.lockerctl(*args)
        assert "write-flash" in dry.stdout and (venv.work / "provision" / "hall-9" / "littlefs.img").exists()
        demo = venv.lockerctl("sim", "run", "--board", str(boards / "esp32-4door.json"))
        assert "PASS" in demo.stdout, demo.stdout
    finally:
        venv.env = saved
