"""`lockerctl broker include`: the fleet served by Debian's own mosquitto service. A real mosquitto runs
with Debian's /etc/mosquitto/mosquitto.conf (its paths moved into a scratch directory) and, as root,
drops to the `mosquitto` user as the packaged service does: it reads the fleet's files through the
group, its listeners take the fleet's users and ACL, and a locker added later gets in after a reload."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from lockertools.broker import BrokerSetup, find_mosquitto, free_port
from lockertools.cli import main
from tests.support.mosquitto import MqttClient, _accepts, wait_until

# Debian's file as the package ships it (used when this machine has none at /etc/mosquitto).
DEBIAN_CONF = """\
pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
"""


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mosquitto") is None or not _has_user("mosquitto"),
    reason="needs root, mosquitto and its user (Debian's package) to run the broker as the service does",
)


@pytest.fixture
def root() -> Iterator[Path]:
    """A scratch directory the mosquitto user can reach (pytest's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="lockers-debian-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _debian_conf(root: Path) -> Path:
    installed = Path("/etc/mosquitto/mosquitto.conf")
    text = installed.read_text() if installed.exists() else DEBIAN_CONF
    assert "include_dir /etc/mosquitto/conf.d" in text
    mosquitto = pwd.getpwnam("mosquitto")
    for sub in ("run", "lib", "log"):
        (root / sub).mkdir()
        os.chown(root / sub, mosquitto.pw_uid, mosquitto.pw_gid)
    (root / "conf.d").mkdir()
    for old, new in {
        "/run/mosquitto/": f"{root}/run/",
        "/var/lib/mosquitto/": f"{root}/lib/",
        "/var/log/mosquitto/": f"{root}/log/",
        "/etc/mosquitto/conf.d": f"{root}/conf.d",
    }.items():
        text = text.replace(old, new)
    conf = root / "mosquitto.conf"
    conf.write_text(text)
    return conf


def _start(conf: Path, ports: list[int], log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=log.open("ab"), stderr=subprocess.STDOUT)
    wait_until(lambda: proc.poll() is not None or all(_accepts("127.0.0.1", p) for p in ports), 20, "mosquitto")
    assert proc.poll() is None, log.read_text()
    return proc


def test_debian_s_mosquitto_serves_the_fleet_from_its_conf_d(root: Path) -> None:
    conf = _debian_conf(root)
    fleet = root / "fleet"
    setup = BrokerSetup(fleet, host="127.0.0.1", port=free_port(), tls_port=free_port(), names=["localhost"])
    host_pw, locker_pw = setup.add_host("host"), setup.add_locker("hall-1")
    result = CliRunner().invoke(main, ["broker", "include", str(fleet), "--out", str(root / "conf.d" / "lockers.conf")])
    assert result.exit_code == 0, result.output
    include = (root / "conf.d" / "lockers.conf").read_text()
    settings = {line.split()[0] for line in include.splitlines() if line.strip() and not line.startswith("#")}
    assert {"password_file", "acl_file", "listener", "allow_anonymous"} <= settings
    # Debian's file sets these; mosquitto refuses pid_file and persistence_location twice.
    assert not settings & {"pid_file", "persistence", "persistence_location", "log_dest", "user"}
    gid = grp.getgrnam("mosquitto").gr_gid
    for name in ("passwd", "acl", "ca.crt", "server.crt", "server.key"):
        st = (fleet / name).stat()
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (gid, 0o640), name
    assert stat.S_IMODE((fleet / "ca.key").stat().st_mode) == 0o600  # the CA's key: root only
    log = root / "mosquitto.out"
    proc = _start(conf, [setup.port or 0, setup.tls_port or 0], log)
    clients: list[MqttClient] = []
    try:
        assert pwd.getpwuid(os.stat(f"/proc/{proc.pid}").st_uid).pw_name == "mosquitto"  # dropped to it
        host = MqttClient("127.0.0.1", setup.tls_port or 0, "host", host_pw, client_id="host", ca=setup.ca_path)
        hall = MqttClient("127.0.0.1", setup.tls_port or 0, "hall-1", locker_pw, ca=setup.ca_path)
        anonymous = MqttClient("127.0.0.1", setup.port or 0)
        clients += [host, hall, anonymous]
        assert host.connect() == 0 and hall.connect() == 0
        assert anonymous.connect() != 0  # allow_anonymous false
        host.subscribe("lockers/+/events")
        hall.publish("lockers/hall-1/events", b"mine")
        hall.publish("lockers/hall-2/events", b"not mine")  # the ACL drops it
        hall.publish("lockers/hall-1/events", b"after")
        host.wait_message("lockers/hall-1/events", b"after")
        assert [m.payload for m in host.received("lockers/hall-1/events")] == [b"mine", b"after"]
        assert host.received("lockers/hall-2/events") == []
        # A locker added later: the files stay readable by the broker, a reload lets it in.
        setup2 = BrokerSetup.open(fleet)
        new_pw = setup2.add_locker("hall-2")
        st = (fleet / "passwd").stat()
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (gid, 0o640)
        proc.send_signal(signal.SIGHUP)
        hall2 = MqttClient("127.0.0.1", setup.tls_port or 0, "hall-2", new_pw, ca=setup.ca_path)
        clients.append(hall2)
        wait_until(lambda: hall2.connect() == 0, 20, "hall-2 let in after the reload")
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        proc.wait(20)
    assert "Error" not in log.read_text()


def test_the_standalone_configuration_would_not_do_as_an_include(root: Path) -> None:
    """Why there is a second output: mosquitto.conf of `broker init` repeats what Debian's file sets."""
    conf = _debian_conf(root)
    setup = BrokerSetup(root / "fleet", host="127.0.0.1", port=free_port(), tls_port=None)
    setup.write()
    (root / "conf.d" / "lockers.conf").write_text(setup.conf_text())
    done = subprocess.run([find_mosquitto(), "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert done.returncode != 0 and "Duplicate" in done.stdout + done.stderr
