"""A mosquitto 2 set-up for a locker fleet: configuration, users, topic ACL and a private TLS CA.

`BrokerSetup(directory, ...)` keeps everything the broker needs in one directory:

- ``mosquitto.conf``: ``allow_anonymous false``, password file, ACL file, persistence saved every
  ``AUTOSAVE_S`` seconds and at a clean shutdown (a restart keeps the host's queued events; a
  ``kill -9`` loses what came since the last save, which the lockers send again: docs/protocol.md,
  "Broker"), listeners bound to the given address only, ``use_username_as_clientid`` (a locker cannot
  take over another's session), limits on packet size, queues and memory (MAX_PACKET_BYTES and the
  rest below: one locker's password cannot exhaust the broker), TLS by default (plain MQTT only when
  asked for, ``port=0, tls_port=None``: the simulator and tests on loopback);
- ``passwd``: one PBKDF2-SHA512 entry per user (mosquitto's ``$7$`` format, written in pure Python so
  no password goes on a command line); a password is returned once and only its hash is kept;
- ``acl``: the patterns of docs/protocol.md ("Broker");
- with TLS: ``ca.crt``/``ca.key`` (the fleet's CA, kept across runs) and ``server.crt``/``server.key``;
- ``broker.json``: the settings and which users are host users, so a later run can add users.

Keys, the password file and the ACL are written 0600. Running it again keeps users and the CA.

For Debian's own mosquitto service, `include(path, group)` writes a file for /etc/mosquitto/conf.d/
instead (`include_text()`): the fleet's settings and listeners without what Debian's
/etc/mosquitto/mosquitto.conf already sets (pid_file, persistence and its location, log_dest, user:
mosquitto refuses some of them twice), and makes what the broker reads (passwd, acl, ca.crt,
server.crt, server.key, and the directory) readable by `group` (mosquitto 2 reads them after
dropping to its user); ca.key stays 0600. Later runs keep the group.
The ``lockerctl broker`` commands (init, add-locker, add-host, run) are lockertools.cli.broker.
"""

from __future__ import annotations

import base64
import datetime as dt
import grp
import hashlib
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
PASSWORD_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes; the broker reads the count from each entry
SALT_BYTES = 12
DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
# The limits below keep one client's credentials from exhausting the broker the whole fleet uses
# (docs/security.md, "The broker's limits"). Every figure comes from the protocol's own limits.
# The largest message the protocol has is a host command of 8 KiB (the firmware's protocol.MAX_MESSAGE;
# snapshot parts, app.chunk and every locker message are smaller: 4 KiB at most from a locker, the
# service's ingest.MAX_PAYLOAD); its PUBLISH adds a topic of at most 44 bytes and 7 of headers. 12 KiB
# leaves a third in hand; mosquitto disconnects a client that sends a larger packet, of any kind.
MAX_PACKET_BYTES = 12 * 1024
# Per client, for messages waiting to go to it (in practice the host's persistent session, which every
# locker's messages go to while the service is away): 200 lockers with a full outbox (500 events each)
# fit in the count, and 100,000 events of the usual 150-300 bytes in the bytes. Beyond either, mosquitto
# drops new messages silently; the lockers send what was dropped again, as after a broker crash.
MAX_QUEUED_MESSAGES = 100_000
MAX_QUEUED_BYTES = 32 * 1024 * 1024
MAX_INFLIGHT_MESSAGES = 20  # QoS 1 messages sent to one client and not yet acknowledged (mosquitto's default)
# A backstop for the whole broker, far above what the queues above add up to with a few host users:
# past it mosquitto refuses the allocation and disconnects the client it was for, instead of growing
# until the OOM killer takes the broker (and every locker's connection) down.
MEMORY_LIMIT_BYTES = 512 * 1024 * 1024
# The broker writes its whole database at each save. Saving on every change (each event queued for the
# host, each ack queued for a locker) capped a 200-locker fleet at a few hundred messages a second
# (docs/benchmarks.md, "Fleet"); delivery is end to end (the locker keeps an event until the host's ack
# and sends it again), so a save every 30 s and at shutdown is enough.
AUTOSAVE_S = 30
SETTINGS_VERSION = 1
SERVER_CERT_DAYS = 825
SERVER_CERT_RENEW_DAYS = 90
CA_CERT_YEARS = 20
# Certificates are valid from 2000-01-01: a board whose clock is not yet set (MicroPython's RTC starts
# at 2000-01-01) must still accept the broker's certificate if its TLS stack checks dates.
NOT_BEFORE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")  # not on a normal user's PATH
INSTALL_HINT = "mosquitto is not installed: run `sudo apt-get install -y mosquitto` (or `make system-packages`)"

ACL_LOCKER_WRITE = ("status", "doors", "events", "reply")
ACL_LOCKER_READ = ("cmd",)


class BrokerError(Exception):
    """A set-up that cannot be made or used; the message is for people."""


def check_lid(lid: str) -> str:
    """Returns `lid` if it is a valid locker id (1-32 of [A-Za-z0-9_-]); ACL patterns use %u, so
    `+`, `#` and `/` in a user name would widen them."""
    if not isinstance(lid, str) or not LID_RE.fullmatch(lid):
        raise BrokerError(f"bad locker id {lid!r}: use 1-32 characters of A-Z, a-z, 0-9, '_' and '-'")
    return lid


def hash_password(password: str, *, iterations: int = PASSWORD_ITERATIONS, salt: bytes | None = None) -> str:
    """A mosquitto 2 password-file hash: ``$7$<iterations>$<b64 salt>$<b64 PBKDF2-HMAC-SHA512>``."""
    if not password:
        raise BrokerError("empty password")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """True if `password` matches a ``$7$`` (or ``$6$``: one SHA-512 round) mosquitto hash."""
    parts = encoded.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            salt, want = base64.b64decode(parts[3]), base64.b64decode(parts[4])
            got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]))
        elif len(parts) == 4 and parts[1] == "6":
            salt, want = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            got = hashlib.sha512(password.encode("utf-8") + salt).digest()
        else:
            return False
    except ValueError:
        return False
    return secrets.compare_digest(got, want)


def new_password() -> str:
    """A random password (192 bits, URL-safe: fits a JSON file and a MicroPython string)."""
    return secrets.token_urlsafe(24)


def find_mosquitto() -> str:
    """The mosquitto executable, or BrokerError naming the package to install."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in MOSQUITTO_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError(INSTALL_HINT)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the kernel's pick)."""
    family = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Writes `path` whole (tmp + rename), created with `mode` so a secret is never readable by others."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _check_conf_path(path: Path) -> None:
    text = str(path)
    if any(c.isspace() for c in text) or "#" in text:
        raise BrokerError(f"{text}: mosquitto cannot read paths with spaces or '#'; choose another directory")


class BrokerSetup:
    """The broker's directory. The constructor states the wanted settings; `write()` makes the files.

    `tls_port` is the TLS listener (None: no TLS; 0, the default: a free port, kept on later runs),
    `port` the plain MQTT listener (None, the default: none; 0: a free port). Plain MQTT shows every
    password to whoever sees the traffic: only the simulator and tests on loopback ask for it, with
    ``port=0, tls_port=None``. Both listen on `host` only. `names` are extra host
    names or addresses for the server certificate (`host` is in it unless it is a wildcard address).
    If the directory was set up before, its users and CA are kept.
    """

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        tls_port: int | None = 0,
        names: Sequence[str] = (),
    ) -> None:
        self.directory = Path(directory).resolve()
        _check_conf_path(self.directory)
        if not host or any(c.isspace() for c in host):
            raise BrokerError(f"bad listen address {host!r}")
        for p in (port, tls_port):
            if p is not None and not 0 <= p <= 65535:
                raise BrokerError(f"bad port {p}")
        if port is None and tls_port is None:
            raise BrokerError("no listener: give a port, a TLS port or both")
        self.host = host
        self.names: list[str] = []
        for name in [host, *names]:
            if name in ("0.0.0.0", "::", "") or name in self.names:
                continue
            if any(c.isspace() for c in name):
                raise BrokerError(f"bad host name {name!r}")
            self.names.append(name)
        self._users: dict[str, str] = {}  # user -> hash, in file order
        self._hosts: list[str] = []
        self.group: str | None = None  # set by include(): the broker's group reads its files
        self.include_path: Path | None = None
        old: dict[str, Any] = {}
        if self.settings_path.exists():
            old = self._load_settings()
            self._users = self._read_passwd()
            self.group = str(old["group"]) if old.get("group") else None
            self.include_path = Path(old["include"]) if old.get("include") else None
        if port == 0 and old.get("port") and old.get("host") == host:
            port = int(old["port"])
        if tls_port == 0 and old.get("tls_port") and old.get("host") == host:
            tls_port = int(old["tls_port"])
        self.port = free_port(host) if port == 0 else port
        self.tls_port = free_port(host) if tls_port == 0 else tls_port

    @classmethod
    def open(cls, directory: Path) -> BrokerSetup:
        """The set-up already in `directory` (BrokerError if `lockerctl broker init` never ran there)."""
        directory = Path(directory)
        path = directory / "broker.json"
        if not path.exists():
            raise BrokerError(f"{directory}: not a broker directory (run `lockerctl broker init {directory}` first)")
        try:
            data = json.loads(path.read_text())
            return cls(
                directory,
                host=str(data["host"]),
                port=data.get("port"),
                tls_port=data.get("tls_port"),
                names=[str(n) for n in data.get("names", [])],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BrokerError(f"{path}: damaged ({exc})") from None

    # -- paths

    @property
    def conf_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def passwd_path(self) -> Path:
        return self.directory / "passwd"

    @property
    def acl_path(self) -> Path:
        return self.directory / "acl"

    @property
    def settings_path(self) -> Path:
        return self.directory / "broker.json"

    @property
    def ca_path(self) -> Path:
        """The CA certificate lockers and the host trust (exists once `write()` ran with a TLS port)."""
        return self.directory / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert_path(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key_path(self) -> Path:
        return self.directory / "server.key"

    @property
    def persistence_dir(self) -> Path:
        return self.directory / "data"

    @property
    def persistence_file(self) -> Path:
        return self.persistence_dir / "mosquitto.db"

    @property
    def log_path(self) -> Path:
        """Where `tests.support.mosquitto` sends the broker's log (`lockerctl broker run` logs to the terminal)."""
        return self.directory / "mosquitto.log"

    @property
    def pid_path(self) -> Path:
        """The pid of the mosquitto `lockerctl broker run` started here (exec keeps the pid)."""
        return self.directory / "broker.pid"

    @property
    def tls(self) -> bool:
        return self.tls_port is not None

    def reload_running(self) -> int | None:
        """SIGHUP to the mosquitto `lockerctl broker run` started with this directory, if it still runs:
        it rereads the password file and the ACL. Returns its pid; None when there is none (no pid file,
        a stale one, or a process that is not a mosquitto on this configuration: nothing is sent)."""
        try:
            pid = int(self.pid_path.read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if (
            not argv
            or not os.path.basename(argv[0]).startswith(b"mosquitto")
            or str(self.conf_path).encode() not in argv
        ):
            return None
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError:
            return None
        return pid

    # -- users

    @property
    def lockers(self) -> list[str]:
        return [u for u in self._users if u not in self._hosts]

    @property
    def host_users(self) -> list[str]:
        return list(self._hosts)

    def add_locker(self, lid: str, *, rotate: bool = False) -> str:
        """Adds locker `lid` (user name = locker id) and returns its new password: the only time it is
        seen, only its hash is stored. An existing locker is refused unless `rotate`."""
        check_lid(lid)
        if lid in self._hosts:
            raise BrokerError(f"{lid!r} is a host user, not a locker")
        return self._set_password(lid, rotate)

    def add_host(self, user: str = "host", *, rotate: bool = False) -> str:
        """Adds a host-service user (reads every locker's topics, writes commands); returns its password."""
        if not LID_RE.fullmatch(user):
            raise BrokerError(f"bad user name {user!r}: use 1-32 characters of A-Z, a-z, 0-9, '_' and '-'")
        if user in self._users and user not in self._hosts:
            raise BrokerError(f"{user!r} is a locker, not a host user")
        password = self._set_password(user, rotate)
        if user not in self._hosts:
            self._hosts.append(user)
            self.write()
        return password

    def _set_password(self, user: str, rotate: bool) -> str:
        if user in self._users and not rotate:
            raise BrokerError(f"user {user!r} exists already (rotate its password to get a new one)")
        password = new_password()
        self._users[user] = hash_password(password)
        self.write()
        return password

    def check_password(self, user: str, password: str) -> bool:
        """True if `password` is the stored one for `user`."""
        encoded = self._users.get(user)
        return encoded is not None and verify_password(password, encoded)

    # -- files

    def write(self) -> Path:
        """Writes every file (configuration, passwords, ACL, CA and server certificate with TLS) and
        returns the configuration's path. A running broker rereads passwords and ACL on SIGHUP."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self.persistence_dir.mkdir(exist_ok=True)
        if self.tls:
            self._ensure_certificates()
        passwd = "".join(f"{user}:{encoded}\n" for user, encoded in self._users.items())
        write_file(self.passwd_path, passwd.encode(), 0o600)
        write_file(self.acl_path, self.acl_text().encode(), 0o600)
        write_file(self.conf_path, self.conf_text().encode(), 0o600)
        settings = {
            "version": SETTINGS_VERSION,
            "host": self.host,
            "port": self.port,
            "tls_port": self.tls_port,
            "names": [n for n in self.names if n != self.host],
            "hosts": self._hosts,
        }
        if self.group is not None:
            settings |= {"group": self.group, "include": str(self.include_path)}
        write_file(self.settings_path, (json.dumps(settings, indent=2) + "\n").encode(), 0o600)
        if self.group is not None:
            self._share_with_group(self.group)
            if self.include_path is not None:
                self._write_include(self.include_path, self.group)
        return self.conf_path

    # -- Debian's mosquitto service (include_dir /etc/mosquitto/conf.d)

    def include(self, path: Path, group: str = "mosquitto") -> Path:
        """Write every file, and `path` (a conf.d file) for a mosquitto whose main configuration
        includes it; the broker's `group` gets read access to what it reads. Returns `path`."""
        try:
            grp.getgrnam(group)
        except KeyError:
            raise BrokerError(f"no group {group!r} (is Debian's mosquitto package installed?)") from None
        path = Path(path).resolve()
        _check_conf_path(path)
        self.group, self.include_path = group, path
        self.write()
        return path

    def include_text(self) -> str:
        lines = [
            "# Written by lockerctl broker include (docs/deployment.md); changes here are overwritten.",
            f"# The parcel-locker fleet in {self.directory}, for a mosquitto whose own configuration",
            "# sets pid_file, persistence, persistence_location and log_dest (Debian's does).",
            *self._broker_lines(),
            *self._listener_lines(),
        ]
        return "\n".join(lines) + "\n"

    def _write_include(self, path: Path, group: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, self.include_text().encode(), 0o640)
        os.chown(path, -1, grp.getgrnam(group).gr_gid)

    def _share_with_group(self, group: str) -> None:
        gid = grp.getgrnam(group).gr_gid
        os.chown(self.directory, -1, gid)
        os.chmod(self.directory, 0o750)
        for path in (self.passwd_path, self.acl_path, self.ca_path, self.server_cert_path, self.server_key_path):
            if path.exists():
                os.chown(path, -1, gid)
                os.chmod(path, 0o640)

    def acl_text(self) -> str:
        lines = ['# Written by lockerctl broker (docs/protocol.md, "Broker"); changes here are overwritten.', ""]
        for user in self._hosts:
            lines += [f"user {user}", "topic read lockers/+/#", "topic write lockers/+/cmd", ""]
        lines.append("# every other user is a locker: its own topics only (%u = its user name = locker id)")
        lines += [f"pattern write lockers/%u/{leaf}" for leaf in ACL_LOCKER_WRITE]
        lines += [f"pattern read lockers/%u/{leaf}" for leaf in ACL_LOCKER_READ]
        return "\n".join(lines) + "\n"

    def conf_text(self) -> str:
        lines = [
            '# Written by lockerctl broker (docs/protocol.md, "Broker"); changes here are overwritten.',
            "persistence true",
            f"persistence_location {self.persistence_dir}/",
            f"persistence_file {self.persistence_file.name}",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            # As root, mosquitto would switch to the `mosquitto` user, who cannot read this directory.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            *self._broker_lines(),
            *self._listener_lines(),
        ]
        return "\n".join(lines) + "\n"

    def _broker_lines(self) -> list[str]:
        """The settings a fleet needs of any mosquitto, standalone or included."""
        return [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {self.passwd_path}",
            f"acl_file {self.acl_path}",
            "autosave_on_changes false",
            f"autosave_interval {AUTOSAVE_S}",
            f"max_packet_size {MAX_PACKET_BYTES}",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            f"max_queued_bytes {MAX_QUEUED_BYTES}",
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
            f"memory_limit {MEMORY_LIMIT_BYTES}",
            "set_tcp_nodelay true",
            "log_type error",
            "log_type warning",
            "log_type notice",  # connections; "information" would add a line per database save and more
        ]

    def _listener_lines(self) -> list[str]:
        # Each listener sets use_username_as_clientid (a listener setting: set before any listener it
        # would open mosquitto's default one on 1883): the client id is the user name, so there is one
        # session per locker and no locker can take over another's.
        lines: list[str] = []
        if self.port is not None:
            lines += ["", f"listener {self.port} {self.host}", "protocol mqtt", "use_username_as_clientid true"]
        if self.tls_port is not None:
            lines += [
                "",
                f"listener {self.tls_port} {self.host}",
                "protocol mqtt",
                "use_username_as_clientid true",
                f"cafile {self.ca_path}",
                f"certfile {self.server_cert_path}",
                f"keyfile {self.server_key_path}",
                "tls_version tlsv1.2",
                "require_certificate false",
            ]
        return lines

    # -- internals

    def _load_settings(self) -> dict[str, Any]:
        try:
            data = json.loads(self.settings_path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not an object")
            self._hosts = [str(u) for u in data.get("hosts", [])]
            return data
        except ValueError as exc:
            raise BrokerError(f"{self.settings_path}: damaged ({exc})") from None

    def _read_passwd(self) -> dict[str, str]:
        users: dict[str, str] = {}
        if not self.passwd_path.exists():
            return users
        for n, line in enumerate(self.passwd_path.read_text().splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            user, sep, encoded = line.partition(":")
            if not sep or not encoded.startswith("$"):
                raise BrokerError(f"{self.passwd_path}:{n}: not a mosquitto password entry")
            users[user] = encoded
        return users

    def _ensure_certificates(self) -> None:
        now = dt.datetime.now(dt.UTC)
        if self.ca_path.exists() and self.ca_key_path.exists():
            ca_cert = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
            loaded = serialization.load_pem_private_key(self.ca_key_path.read_bytes(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise BrokerError(f"{self.ca_key_path}: not an EC key")
            ca_key = loaded
        else:
            ca_key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "locker fleet CA " + secrets.token_hex(4))])
            ca_cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(ca_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(NOT_BEFORE)
                .not_valid_after(now + dt.timedelta(days=365 * CA_CERT_YEARS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=True,
                        crl_sign=True,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            write_file(self.ca_key_path, _key_pem(ca_key), 0o600)
            write_file(self.ca_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        if self._server_cert_ok(ca_cert, now):
            return
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n) for n in self.names
        ]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.names[0] if self.names else "")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE)
            .not_valid_after(now + dt.timedelta(days=SERVER_CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        write_file(self.server_key_path, _key_pem(key), 0o600)
        write_file(self.server_cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def _server_cert_ok(self, ca_cert: x509.Certificate, now: dt.datetime) -> bool:
        """The server certificate exists, comes from this CA, names exactly `names` and is not near expiry."""
        if not (self.server_cert_path.exists() and self.server_key_path.exists()):
            return False
        cert = x509.load_pem_x509_certificate(self.server_cert_path.read_bytes())
        try:
            cert.verify_directly_issued_by(ca_cert)
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
            return False
        have = {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
        have |= set(sans.get_values_for_type(x509.DNSName))
        want = {str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in self.names}
        return have == want and cert.not_valid_after_utc - now > dt.timedelta(days=SERVER_CERT_RENEW_DAYS)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
