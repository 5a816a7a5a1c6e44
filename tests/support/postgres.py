"""A real PostgreSQL server for tests: a throwaway cluster in a temporary directory, on loopback only.

`PostgresServer(base_dir)` runs Debian's `initdb` and `postgres` (postgresql-NN, found under
/usr/lib/postgresql) as an unprivileged user when the tests run as root (PostgreSQL refuses to run as
root): the `postgres` account Debian's package creates, else `nobody`. It listens on 127.0.0.1 on a
free port and on a Unix socket in its own directory, trusts local connections (a throwaway cluster),
and has fsync off (tests do not survive power cuts of the host). `start()` returns once the server
accepts connections; `stop()` is a fast shutdown, `kill()` SIGKILL. `create_database(name)` makes
a fresh, empty database and returns its SQLAlchemy URL (`postgresql+psycopg://...`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from lockertools.broker import free_port

START_TIMEOUT = 30.0


class PostgresError(Exception):
    pass


def find_pg_bin() -> Path:
    """The newest installed PostgreSQL server's bin directory (Debian: /usr/lib/postgresql/NN/bin)."""
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    raise PostgresError("PostgreSQL server not found: run `make test` (it installs Debian's postgresql)")


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, or None to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return pw.pw_uid, pw.pw_gid
    raise PostgresError("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


class PostgresServer:
    def __init__(self, base_dir: Path, *, start_timeout: float = START_TIMEOUT) -> None:
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "run"
        self.log_path = self.base_dir / "postgres.log"
        self.bin = find_pg_bin()
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = "lockers"
        self.proc: subprocess.Popen[bytes] | None = None
        self._ids = _run_as()

    # --- life -------------------------------------------------------------------------------------

    def _demote(self) -> None:
        if self._ids is not None:
            uid, gid = self._ids
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

    def _own(self, path: Path) -> None:
        if self._ids is not None:
            os.chown(path, *self._ids)

    def _initdb(self) -> None:
        for d in (self.base_dir, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
            self._own(d)
        if self._ids is not None:
            # the server user must be able to reach its directories through the parents (tmp dirs are 0700)
            for parent in [self.base_dir, *self.base_dir.parents]:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
        if (self.data_dir / "PG_VERSION").exists():
            return
        argv = [str(self.bin / "initdb"), "-D", str(self.data_dir), "-U", self.user, "-A", "trust", "-E", "UTF8"]
        res = subprocess.run(
            [*argv, "--no-sync", "--locale=C"], capture_output=True, text=True, preexec_fn=self._demote, check=False
        )
        if res.returncode != 0:
            raise PostgresError(f"initdb failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")

    def start(self) -> PostgresServer:
        if self.running:
            return self
        self._initdb()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server's stderr for its whole life
        self._own(self.log_path)
        argv = [str(self.bin / "postgres"), "-D", str(self.data_dir), "-h", self.host, "-p", str(self.port)]
        argv += ["-k", str(self.socket_dir), "-c", "fsync=off", "-c", "synchronous_commit=off"]
        argv += ["-c", "full_page_writes=off", "-c", "max_connections=100", "-c", "listen_addresses=" + self.host]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, preexec_fn=self._demote)
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while not self._accepts():
            if self.proc.poll() is not None:
                raise PostgresError(f"postgres exited ({self.proc.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise PostgresError(
                    f"postgres did not accept connections in {self.start_timeout} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        return self

    def _accepts(self) -> bool:
        # pg_isready speaks the protocol: a TCP accept alone comes before the server takes logins
        res = subprocess.run(
            [str(self.bin / "pg_isready"), "-h", self.host, "-p", str(self.port), "-U", self.user, "-q"],
            capture_output=True,
            check=False,
        )
        return res.returncode == 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Fast shutdown (SIGINT): sessions are ended, the server checkpoints and exits."""
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- databases ---------------------------------------------------------------------------------

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql as the cluster's superuser; its output (tuples only, unaligned)."""
        res = subprocess.run(
            [str(self.bin / "psql"), "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database]
            + ["-v", "ON_ERROR_STOP=1", "-tA", "-c", sql],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise PostgresError(f"psql failed: {res.stderr.strip()}")
        return res.stdout

    def create_database(self, name: str) -> str:
        """A fresh, empty database `name` (dropped first if it exists); its SQLAlchemy URL."""
        if not name.replace("_", "").isalnum():
            raise PostgresError(f"database names here are letters, digits and _: {name!r}")
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"
