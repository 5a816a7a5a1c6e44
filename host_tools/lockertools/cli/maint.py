"""lockerctl diag / console / selftest / update: technicians' commands (docs/maintenance.md).

A locker is reached either over its USB console (`--port`, pyserial: the technician beside it) or
through the broker (`--broker`, as the host service). Commands are signed with the locker's key: from
`--key-file` (the hex key provisioning wrote, locker.key), `--flash DIR` (a simulator flash folder) or
the fleet database (`--db` / $LOCKER_DB).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from lockertools.maint import MaintError
from lockertools.maint.bundle import build_app
from lockertools.maint.client import Maint, SeqBlocks, diag_rows, open_repl
from lockertools.maint.links import Console, Link, MqttLink, SerialConsole
from lockertools.maint.selftest import selftest
from lockertools.maint.update import CHUNK, push_update

F = TypeVar("F", bound=Callable[..., Any])


def _key_options(f: F) -> F:
    for opt in reversed(
        [
            click.option(
                "--key-file",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="The locker's key (hex, as provisioning wrote it: locker.key).",
            ),
            click.option(
                "--flash",
                "flash_dir",
                type=click.Path(exists=True, file_okay=False, path_type=Path),
                help="A simulator flash folder (its locker.key).",
            ),
            click.option(
                "--db",
                "db_path",
                envvar="LOCKER_DB",
                help="The fleet database, for the key: a path (SQLite) or a URL, sqlite:///PATH or"
                " postgresql+psycopg://USER@HOST/DB ($LOCKER_DB).",
            ),
        ]
    ):
        f = opt(f)
    return f


def _link_options(f: F) -> F:
    for opt in reversed(
        [
            click.option("--port", help="The board's USB console (e.g. /dev/ttyUSB0): talk to it directly."),
            click.option("--baud", default=115200, show_default=True, help="Console speed."),
            click.option("--broker", "broker_addr", help="HOST:PORT of the broker: talk to the locker through it."),
            click.option("--user", default="host", show_default=True, help="MQTT user (the host's)."),
            click.option(
                "--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Its password."
            ),
            click.option(
                "--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CA of the broker (TLS)."
            ),
        ]
    ):
        f = opt(f)
    return f


def locker_key(locker_id: str, key_file: Path | None, flash_dir: Path | None, db_path: str | None) -> bytes:
    """The locker's key from one of the sources; a ClickException that says what to pass otherwise."""
    try:
        if key_file is not None:
            return bytes.fromhex(key_file.read_text().strip())
        if flash_dir is not None:
            return bytes.fromhex((flash_dir / "locker.key").read_text().strip())
        if db_path is not None:
            from lockertools.service import db

            try:
                conn = db.connect(db_path)  # a path or a URL (db.database_url), as `service run --db`
            except db.Error as exc:
                raise click.ClickException(f"{db.describe(db_path)}: {exc}") from None
            try:
                row = conn.execute("SELECT key_hex FROM lockers WHERE id = ?", (locker_id,)).fetchone()
            finally:
                conn.close()
            if row is None:
                raise click.ClickException(f"locker {locker_id!r} is not in {db.describe(db_path)}")
            return bytes.fromhex(row[0])
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the locker's key: {exc}") from None
    raise click.UsageError("give the locker's key: --key-file, --flash or --db (or $LOCKER_DB)")


def shared_seqs(db_path: str | None, locker_id: str) -> SeqBlocks | None:
    """Command seqs shared with the host service when its database is at hand and knows the locker
    (maint.SeqBlocks); None: the tool numbers by the clock."""
    if db_path is None:
        return None
    from lockertools.service import db

    try:
        conn = db.connect(db_path)  # a path or a URL (db.database_url)
    except db.DatabaseMissing:
        return None
    try:
        known = conn.execute("SELECT 1 FROM lockers WHERE id = ?", (locker_id,)).fetchone() is not None
    finally:
        conn.close()
    return SeqBlocks(db_path, locker_id) if known else None


def open_link(
    locker_id: str,
    key: bytes,
    port: str | None,
    baud: int,
    broker_addr: str | None,
    user: str,
    password_file: Path | None,
    tls_ca: Path | None,
) -> Link:
    try:
        if port is not None:
            return SerialConsole(port, baud)
        if broker_addr is not None:
            host, _, p = broker_addr.rpartition(":")
            if not host or not p.isdigit():
                raise click.BadParameter("use HOST:PORT", param_hint="--broker")
            password = password_file.read_text().strip() if password_file else None
            return MqttLink(locker_id, key, host, int(p), user, password, tls_ca)
    except MaintError as exc:
        raise click.ClickException(str(exc)) from None
    raise click.UsageError("say how to reach the locker: --port (its USB console) or --broker HOST:PORT")


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console as RichConsole
    from rich.table import Table

    t = Table(title=title)
    for h in header:
        t.add_column(h)
    for r in rows:
        t.add_row(*r)
    RichConsole().print(t)


# --- diag ------------------------------------------------------------------------------------------


@click.command("diag")
@click.argument("locker_id")
@_link_options
@_key_options
@click.option("--json", "as_json", is_flag=True, help="Print the diag record as JSON.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for the answer.")
def diag_cmd(locker_id: str, as_json: bool, timeout: float, **kw: Any) -> None:
    """Ask a locker for its diagnostics (signed `diag`) and print them."""
    db_path = kw.pop("db_path")
    key = locker_key(locker_id, kw.pop("key_file"), kw.pop("flash_dir"), db_path)
    seqs = shared_seqs(db_path, locker_id)
    link = open_link(locker_id, key, **kw)
    try:
        d = Maint(link, locker_id, key, seqs).diag(timeout)
    except MaintError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        link.close()
    if as_json:
        click.echo(json.dumps(d, indent=1, sort_keys=True))
        return
    _table(f"locker {locker_id}", ["", "value"], [list(r) for r in diag_rows(d)])


# --- repl -----------------------------------------------------------------------------------------


@click.command("repl")
@click.argument("locker_id")
@click.option("--port", required=True, help="The board's USB console (e.g. /dev/ttyUSB0).")
@click.option("--baud", default=115200, show_default=True, help="Console speed.")
@_key_options
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for the answer.")
def repl_cmd(locker_id: str, port: str, baud: int, timeout: float, **kw: Any) -> None:
    """Open the REPL of a production board until it resets (signed `repl.open` on its USB console).

    A production board (`lockerctl provision --production`) ignores Ctrl-C and answers only signed
    commands; after this, Ctrl-C stops its application into the REPL, so mpremote and `lockerctl
    provision --no-firmware` work again. The next reset makes it a production board again.
    """
    db_path = kw.pop("db_path")
    key = locker_key(locker_id, kw.pop("key_file"), kw.pop("flash_dir"), db_path)
    try:
        link = SerialConsole(port, baud)
    except MaintError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        open_repl(Maint(link, locker_id, key, shared_seqs(db_path, locker_id)), timeout)
    except MaintError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        link.close()
    click.echo(f"{locker_id}: Ctrl-C on {port} reaches the REPL until the board resets")


# --- console --------------------------------------------------------------------------------------


@click.command("console")
@click.option("--port", help="The board's USB console (e.g. /dev/ttyUSB0).")
@click.option("--baud", default=115200, show_default=True)
@click.option(
    "--sim",
    "sim_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Boot a simulated board from this flash folder and follow it instead.",
)
@click.option("--app-on-flash", is_flag=True, help="With --sim: run boot.py and app/ from the flash folder.")
@click.option("--seconds", type=float, default=0.0, help="Stop after this long (0: until Ctrl-C).")
def console_cmd(port: str | None, baud: int, sim_dir: Path | None, app_on_flash: bool, seconds: float) -> None:
    """Follow a board's log (and type lines to its console: `status`, `log 20`)."""
    board = None
    con: Console
    if sim_dir is not None:
        from lockertools.maint.links import SimConsole
        from lockertools.sim.board import NET_HEAP, VirtualBoard

        board = VirtualBoard(sim_dir, heap=NET_HEAP, auto_reboot=True, app_on_flash=app_on_flash)
        board.boot()
        con = SimConsole(board)
    elif port is not None:
        try:
            con = SerialConsole(port, baud)
        except MaintError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        raise click.UsageError("--port PORT (a board) or --sim FLASH_DIR (the simulator)")
    import threading

    def typing() -> None:
        for line in sys.stdin:
            try:
                con.send_line(line.rstrip("\n"))
            except MaintError:
                pass

    if sys.stdin.isatty():
        threading.Thread(target=typing, daemon=True).start()
    end = time.monotonic() + seconds if seconds else None
    pos = 0
    try:
        while end is None or time.monotonic() < end:
            left = 0.5 if end is None else max(0.0, min(0.5, end - time.monotonic()))
            con.wait(lambda _ln: False, pos, left)
            lines = con.lines(pos)
            pos += len(lines)
            for ln in lines:
                click.echo(ln)
    except KeyboardInterrupt:
        pass
    finally:
        con.close()
        if board is not None:
            board.close()


# --- selftest -------------------------------------------------------------------------------------


class _Person:
    """The technician at the locker, through this terminal."""

    def say(self, text: str) -> None:
        click.echo(f">> {text}")

    def close_door(self, label: str) -> None:
        click.echo(f">> close door {label} (waiting for its sensor)")

    def press_keys(self, keys: str) -> None:
        click.echo(f">> press, one after the other: {' '.join(keys)}")


@click.command("selftest")
@click.argument("locker_id")
@click.option("--port", required=True, help="The board's USB console (e.g. /dev/ttyUSB0).")
@click.option("--baud", default=115200, show_default=True)
@_key_options
@click.option("--door", "doors", multiple=True, help="Only these doors (labels); default: all.")
@click.option("--close-timeout", default=60.0, show_default=True, help="Seconds to close each door.")
@click.option("--key-timeout", default=90.0, show_default=True, help="Seconds for the whole keypad.")
def selftest_cmd(
    locker_id: str,
    port: str,
    baud: int,
    doors: tuple[str, ...],
    close_timeout: float,
    key_timeout: float,
    **kw: Any,
) -> None:
    """Pulse every door, check its sensors, walk through the keypad; print a table."""
    db_path = kw.pop("db_path")
    key = locker_key(locker_id, kw.pop("key_file"), kw.pop("flash_dir"), db_path)
    seqs = shared_seqs(db_path, locker_id)
    try:
        con = SerialConsole(port, baud)
    except MaintError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        res = selftest(
            Maint(con, locker_id, key, seqs),
            con,
            _Person(),
            doors=list(doors) or None,
            close_timeout=close_timeout,
            key_timeout=key_timeout,
        )
    except MaintError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        con.close()
    print_selftest(locker_id, res)
    if not res.passed:
        sys.exit(1)


def print_selftest(locker_id: str, res: Any) -> None:
    rows = [[d.door, d.opened, d.closed, d.parcel] for d in res.doors]
    _table(f"self-test of {locker_id}", ["door", "opened", "closed", "parcel sensor"], rows)
    click.echo(f"keys seen: {res.keys_seen or '-'}   missing: {res.keys_missing or 'none'}")
    click.echo("PASSED" if res.passed else "FAILED")


# --- update ---------------------------------------------------------------------------------------


@click.group("update")
def update_cli() -> None:
    """Application updates for lockers in the field (checked, swapped at a reboot, rolled back if unhealthy)."""


@update_cli.command("push")
@click.argument("locker_id")
@click.option(
    "--app",
    "app_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The application's source tree (like firmware/).",
)
@click.option("--version", "version", help="Version to call it (default: its _VERSION + content hash).")
@click.option("--arch", default="xtensawin", show_default=True, help="mpy-cross -march ('' for the simulator).")
@_link_options
@_key_options
@click.option("--chunk", default=CHUNK, show_default=True, help="Bytes of file data per message.")
@click.option("--boots", "k", default=3, show_default=True, help="Trial boots before a rollback.")
@click.option("--healthy-s", "ok_s", default=60, show_default=True, help="Seconds of health that keep the update.")
@click.option("--no-wait", is_flag=True, help="Return after the commit.")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait for healthy / rolled back.")
def push_cmd(
    locker_id: str,
    app_dir: Path,
    version: str | None,
    arch: str,
    chunk: int,
    k: int,
    ok_s: int,
    no_wait: bool,
    timeout: float,
    **kw: Any,
) -> None:
    """Compile, send, check and commit a new application; wait until it is healthy or rolled back."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    db_path = kw.pop("db_path")
    key = locker_key(locker_id, kw.pop("key_file"), kw.pop("flash_dir"), db_path)
    seqs = shared_seqs(db_path, locker_id)
    try:
        bundle = build_app(arch=arch or None, version=version, firmware_dir=app_dir)
    except Exception as exc:  # noqa: BLE001 - mpy-cross or the tree: say what
        raise click.ClickException(f"cannot build {app_dir}: {exc}") from None
    click.echo(f"application {bundle.version}: {len(bundle.app_files())} files, {bundle.app_size} bytes")
    link = open_link(locker_id, key, **kw)
    try:
        with Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn()
        ) as bar:
            task = bar.add_task("sending", total=bundle.app_size)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = push_update(
                Maint(link, locker_id, key, seqs), bundle, chunk=chunk, progress=progress, k=k, ok_s=ok_s, wait=False
            )
        click.echo(f"committed {result.version}: the locker reboots into it, on trial ({k} boots, {ok_s} s healthy)")
        if no_wait:
            return
        from lockertools.maint.update import wait_outcome

        outcome = wait_outcome(Maint(link, locker_id, key, seqs), bundle.version, timeout)
    except MaintError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        link.close()
    if outcome.outcome == "healthy":
        click.echo(f"{locker_id} runs {bundle.version}: healthy, update kept")
    else:
        rb = outcome.detail.get("rollback") or {}
        raise click.ClickException(f"{bundle.version} did not come up healthy: rolled back to {rb.get('to')}")


@update_cli.command("status")
@click.argument("locker_id")
@_link_options
@_key_options
def status_cmd(locker_id: str, **kw: Any) -> None:
    """What the locker runs, has staged, is trying or rolled back."""
    db_path = kw.pop("db_path")
    key = locker_key(locker_id, kw.pop("key_file"), kw.pop("flash_dir"), db_path)
    seqs = shared_seqs(db_path, locker_id)
    link = open_link(locker_id, key, **kw)
    try:
        r = Maint(link, locker_id, key, seqs).call("app.status")
    except MaintError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        link.close()
    app = r.get("app") or {}
    staged = r.get("staged") or {}
    rows = [
        ["running", f"{app.get('v')} ({app.get('h')})" if app else "- (no manifest)"],
        ["staged", f"{staged.get('v')}: {staged.get('have')}/{staged.get('need')} bytes" if staged else "-"],
        ["swap pending", "yes" if r.get("swap") else "no"],
        ["on trial", json.dumps(r.get("trial")) if r.get("trial") else "no"],
        ["last rollback", json.dumps(r.get("rollback")) if r.get("rollback") else "-"],
    ]
    _table(f"application on {locker_id}", ["", ""], rows)
