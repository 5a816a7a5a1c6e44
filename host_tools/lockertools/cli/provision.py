"""`lockerctl provision` (one board) and `lockerctl provision bulk` (a CSV of boards)."""

from __future__ import annotations

import csv
import shlex
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from lockertools.provision import ProvisionError
from lockertools.provision.steps import (
    DEFAULT_WORKDIR,
    Board,
    Options,
    Provisioner,
    Result,
    SerialBoard,
    SilentReporter,
    redact,
)

LANGUAGES = ("nl", "fr", "en")


class ConsoleReporter:
    """Each step as a line (a spinner while it runs), a byte bar while files are copied."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self._status: Any = None
        self._progress: Any = None
        self._task: Any = None

    def start(self, step: str, text: str) -> None:
        self._stop_status()
        self._status = self.console.status(f"[bold]{step}[/bold] {_esc(text)}")
        self._status.start()

    def done(self, step: str, text: str) -> None:
        self._stop_status()
        self._stop_progress()
        self.console.print(f"[green]✓[/green] [bold]{step:<9}[/bold] {_esc(text)}")

    def note(self, text: str) -> None:
        self.console.print(_esc(text))

    def copy_total(self, total: int) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self._stop_status()
        if not self.console.is_terminal:
            return  # a log gets the step's line when it is done, not a bar
        self._progress = Progress(
            TextColumn("  copying {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("", total=total)

    def copy_advance(self, path: str, n: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, description=path)

    def fail(self, step: str, text: str) -> None:
        self._stop_status()
        self._stop_progress()
        self.console.print(f"[red]✗[/red] [bold]{step:<9}[/bold] {_esc(text)}")

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _reload_command(cmd: str | None) -> Callable[[], None] | None:
    if not cmd:
        return None

    def reload() -> None:
        proc = subprocess.run(shlex.split(cmd), capture_output=True, text=True)
        if proc.returncode != 0:
            raise ProvisionError(
                "register",
                f"--broker-reload {cmd!r} failed ({proc.returncode}): {proc.stderr.strip()[-200:]}; "
                "reload the broker by hand (systemctl reload mosquitto) and run the same command again",
            )

    return reload


def _read_secret(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text().strip() or None
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror}") from None


def _shared(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options both forms take (a batch shares them)."""
    opts = [
        click.option(
            "--db",
            "db_path",
            envvar="LOCKER_DB",
            help="The host service's fleet database: a path (SQLite) or a URL, sqlite:///PATH or"
            " postgresql+psycopg://USER@HOST/DB [$LOCKER_DB].",
        ),
        click.option(
            "--broker-dir",
            envvar="LOCKER_BROKER_DIR",
            type=click.Path(file_okay=False, path_type=Path),
            help="The broker's set-up (`lockerctl broker init`): passwords and ACL [$LOCKER_BROKER_DIR].",
        ),
        click.option("--broker", help="HOST:PORT the locker connects to [the broker set-up's address]."),
        click.option(
            "--plain",
            is_flag=True,
            help="INSECURE: plain MQTT instead of TLS (the broker's plain listener; its password travels in "
            "clear): a lab or loopback only.",
        ),
        click.option(
            "--broker-reload",
            help="Command that makes the running broker reread its users, e.g. 'systemctl reload mosquitto'.",
        ),
        click.option(
            "--image",
            help="MicroPython image: the build the board needs (ESP32_GENERIC, ESP32_GENERIC-SPIRAM, ESP32_GENERIC_S3, "
            "ESP32_GENERIC_S3-SPIRAM_OCT .bin), or 'cached': the last one used of that build [cached].",
        ),
        click.option("--no-firmware", is_flag=True, help="The board runs MicroPython already: no esptool."),
        click.option("--erase/--no-erase", default=True, show_default=True, help="Erase the whole flash first."),
        click.option(
            "--install",
            "install_mode",
            type=click.Choice(["mpremote", "littlefs"]),
            default="mpremote",
            show_default=True,
            help="Copy the application over the REPL, or write it as a littlefs image in the esptool run.",
        ),
        click.option("--language", type=click.Choice(LANGUAGES), help="What residents read [the board's default]."),
        click.option(
            "--wifi-ssid",
            help="Wi-Fi network [none: wired Ethernet when the board definition has an ethernet section].",
        ),
        click.option(
            "--wifi-pass-file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="File holding the Wi-Fi password (never on the command line).",
        ),
        click.option("--new-key", is_flag=True, help="An existing locker gets a new HMAC key."),
        click.option(
            "--app",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            help="The application: a firmware source tree (compiled now), or a release folder with app/app.json "
            "(installed byte for byte) [firmware/, compiled now].",
        ),
        click.option(
            "--app-version",
            help="The application's version in app/app.json (1-16 characters) [_VERSION+content hash].",
        ),
        click.option(
            "--arch",
            type=click.Choice(["xtensawin", "bytecode"]),
            default="xtensawin",
            show_default=True,
            help="mpy-cross -march: xtensawin for an ESP32; bytecode for a virtual board (any port).",
        ),
        click.option(
            "--production",
            is_flag=True,
            help="A production board: once installed, Ctrl-C no longer reaches the REPL and the console admits "
            "signed commands only (`lockerctl repl` opens the REPL until the next reset).",
        ),
        click.option("--dry-run", is_flag=True, help="Check the inputs, build the images, print the commands."),
        click.option("--timeout", "online_timeout", default=120.0, show_default=True, help="Seconds to wait online."),
        click.option("--no-wait", is_flag=True, help="Do not wait for the locker to come online."),
        click.option(
            "--workdir",
            type=click.Path(file_okay=False, path_type=Path),
            default=DEFAULT_WORKDIR,
            show_default=True,
            help="Where the private staging folders and images are made (deleted after each run).",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _options(
    board: Path, locker_id: str, kw: dict[str, Any], *, image_required: bool = True
) -> tuple[Options, list[str]]:
    missing = [name for name, key in (("--db", "db_path"), ("--broker-dir", "broker_dir")) if not kw.get(key)]
    if missing and not kw["dry_run"]:
        raise click.UsageError(f"{' and '.join(missing)} required (or $LOCKER_DB / $LOCKER_BROKER_DIR)")
    image = kw.get("image")
    wifi_password = _read_secret(kw.get("wifi_pass_file"))
    if kw.get("wifi_ssid") and not wifi_password:
        raise click.UsageError("--wifi-ssid needs --wifi-pass-file")
    opts = Options(
        board=board,
        locker_id=locker_id,
        db_path=kw.get("db_path") or Path("fleet.db"),
        broker_dir=kw.get("broker_dir"),
        broker=kw.get("broker"),
        plain=kw.get("plain", False),
        image=None if image in (None, "cached") else Path(image),
        firmware=not kw["no_firmware"],
        install=kw["install_mode"],
        language=kw.get("language"),
        wifi_ssid=kw.get("wifi_ssid"),
        wifi_password=wifi_password,
        new_key=kw["new_key"],
        dry_run=kw["dry_run"],
        erase=kw["erase"],
        arch=None if kw["arch"] == "bytecode" else kw["arch"],
        app=kw.get("app"),
        app_version=kw.get("app_version"),
        workdir=kw["workdir"],
        online_timeout_s=kw["online_timeout"],
        wait_online=not kw["no_wait"],
        broker_reload=_reload_command(kw.get("broker_reload")),
        production=kw["production"],
    )
    return opts, [wifi_password] if wifi_password else []


@click.group("provision", invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--board", type=click.Path(dir_okay=False, path_type=Path), help="Board definition (boards/*.json).")
@click.option("--port", help="Serial port of the board, e.g. /dev/ttyUSB0.")
@click.option("--locker", "locker_id", help="The locker's id (1-32 of A-Z a-z 0-9 _ -).")
@click.option(
    "--selftest",
    "with_selftest",
    is_flag=True,
    help="Once it is online: pulse every door and walk through the keypad with the technician (lockerctl selftest).",
)
@click.option(
    "--burn-efuses",
    is_flag=True,
    help="IRREVERSIBLE: burn the ESP32's flash encryption and Secure Boot V2 keys before the image is written "
    "(docs/hardware.md); asks you to type the chip and port. With --dry-run: print the commands only.",
)
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --burn-efuses: the fleet's Secure Boot V2 signing key (PEM) the image is signed with.",
)
@click.option(
    "--efuse-keys",
    "efuse_keys_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --burn-efuses: where each board's flash encryption key is kept [efuse-keys/ beside a --db file].",
)
@_shared
@click.pass_context
def provision_cli(
    ctx: click.Context,
    /,
    board: Path | None,
    port: str | None,
    locker_id: str | None,
    with_selftest: bool,
    burn_efuses: bool,
    signing_key: Path | None,
    efuse_keys_dir: Path | None,
    **kw: Any,
) -> None:
    """Provision one board: validate, register, flash MicroPython, install, verify, boot, wait online.

    Safe to run again on the same board: what is already right is kept (the locker's key, its
    broker password, files whose hash matches), the rest is done again. Secrets are never shown.
    `lockerctl provision bulk FILE.csv` provisions a batch.
    """
    if ctx.invoked_subcommand is not None:
        return
    missing = [n for n, v in (("--board", board), ("--port", port), ("--locker", locker_id)) if not v]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}")
    assert board is not None and port is not None and locker_id is not None
    opts, extra_secrets = _options(board, locker_id, kw)
    if with_selftest:
        from lockertools.cli.maint import _Person

        opts = replace(opts, selftest=_Person())
    if burn_efuses:
        opts = replace(opts, **_efuse_options(opts, port, signing_key, efuse_keys_dir))
    elif signing_key or efuse_keys_dir:
        raise click.UsageError("--signing-key and --efuse-keys go with --burn-efuses")
    reporter = ConsoleReporter()
    prov = Provisioner(opts, SerialBoard(port), reporter)
    try:
        result = prov.run()
    except ProvisionError as exc:
        reporter.fail(exc.step, redact(exc.message, prov.result.secret_texts + extra_secrets))
        if prov.result.selftest is not None:
            from lockertools.cli.maint import print_selftest

            print_selftest(locker_id, prov.result.selftest)
        ctx.exit(1)
    except Exception as exc:  # noqa: BLE001 - said in one line, without a secret, rather than a traceback
        text = redact(f"unexpected {type(exc).__name__}: {exc}", prov.result.secret_texts + extra_secrets)
        reporter.fail("error", text + " (run the same command again; report it if it stays)")
        ctx.exit(1)
    _summary_one(reporter, result, opts)


def _efuse_options(opts: Options, port: str, signing_key: Path | None, keys_dir: Path | None) -> dict[str, Any]:
    """--burn-efuses: the keys, and the confirmation typed by the technician (not asked for a dry run)."""
    import json

    from lockertools.provision.efuse import EfuseKeys, confirmation

    if signing_key is None:
        raise click.UsageError("--burn-efuses needs --signing-key PEM (the fleet's Secure Boot V2 signing key)")
    if keys_dir is None:
        if "://" in str(opts.db_path):
            raise click.UsageError(
                "--burn-efuses with a database URL needs --keys-dir (no database file to keep them beside)"
            )
        keys_dir = Path(opts.db_path).parent / "efuse-keys"
    keys = EfuseKeys(signing_key, keys_dir)
    if opts.dry_run:
        return {"efuse_keys": keys}
    try:
        chip = str(json.loads(opts.board.read_text()).get("chip", "esp32"))
    except (OSError, ValueError):
        chip = "esp32"  # the board step reports the file's problem
    want = confirmation(port, chip)
    click.echo(
        f"Burning eFuses on {port} is IRREVERSIBLE: the board then boots only images signed with {signing_key}, "
        "and its flash can be read back only as ciphertext (docs/hardware.md).",
        err=True,
    )
    typed = click.prompt(f"Type {want!r} to burn them", default="", show_default=False, err=True)
    return {"efuse_keys": keys, "efuse_confirmed": typed.strip() == want}


def _summary_one(reporter: ConsoleReporter, result: Result, opts: Options) -> None:
    if opts.dry_run:
        reporter.note("dry run: nothing was registered, burned or written. The commands:")
        for argv in result.commands:
            from lockertools.provision.esp import shell_line

            click.echo(shell_line(argv))
        return
    if result.selftest is not None:
        from lockertools.cli.maint import print_selftest

        print_selftest(result.locker_id, result.selftest)
    total = sum(result.times.values())
    reporter.note(f"{result.locker_id}: provisioned in {total:.1f} s, application {result.app_version}")


# --- bulk ----------------------------------------------------------------------------------------


@dataclass
class Row:
    locker_id: str
    board: Path
    port: str
    language: str | None
    line: int


def read_csv(path: Path) -> list[Row]:
    """Rows of locker_id, board, port [, language]; a header line is optional. Errors name the line."""
    rows: list[Row] = []
    seen: dict[str, int] = {}
    ports: dict[str, int] = {}
    with open(path, newline="") as f:
        for n, rec in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in rec]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if n == 1 and cells[0].lower() in ("locker_id", "locker"):
                continue
            if len(cells) not in (3, 4):
                raise click.ClickException(f"{path}:{n}: want locker_id,board,port[,language], got {len(cells)} cells")
            lid, board, port = cells[:3]
            lang = cells[3] if len(cells) == 4 and cells[3] else None
            if lang is not None and lang not in LANGUAGES:
                raise click.ClickException(f"{path}:{n}: language {lang!r}: one of {', '.join(LANGUAGES)}")
            if lid in seen:
                raise click.ClickException(f"{path}:{n}: locker {lid} is on line {seen[lid]} already")
            if port in ports:
                raise click.ClickException(f"{path}:{n}: port {port} is on line {ports[port]} already")
            seen[lid] = n
            ports[port] = n
            board_path = Path(board)
            if not board_path.is_absolute() and not board_path.exists():
                board_path = path.parent / board  # relative to the CSV
            rows.append(Row(lid, board_path, port, lang, n))
    if not rows:
        raise click.ClickException(f"{path}: no boards in it")
    return rows


@dataclass
class Outcome:
    row: Row
    ok: bool
    seconds: float
    detail: str  # ok: a summary; failed: the step and what to do


def run_bulk(
    rows: list[Row],
    base: Options,
    make_board: Callable[[Row], Board],
    *,
    jobs: int = 1,
    on_done: Callable[[Outcome], None] | None = None,
    on_step: Callable[[Row, str], None] | None = None,
    secret_texts: list[str] | None = None,
) -> list[Outcome]:
    """Provision every row; a failure is recorded and the batch goes on. `jobs` boards at a time
    (one per USB port). Returns the outcomes in the rows' order."""

    def one(row: Row) -> Outcome:
        t0 = time.monotonic()
        opts = replace(base, board=row.board, locker_id=row.locker_id, language=row.language or base.language)
        rep = _StepReporter(row, on_step)
        prov = Provisioner(opts, make_board(row), rep)
        try:
            res = prov.run()
            extra = f", online after {res.online_s:.1f} s" if res.online_s is not None else ""
            copied = f"{len(res.install.copied)} files" if res.install is not None else "image"
            out = Outcome(row, True, time.monotonic() - t0, f"{copied}{extra}")
        except ProvisionError as exc:
            text = redact(str(exc), prov.result.secret_texts + (secret_texts or []))
            out = Outcome(row, False, time.monotonic() - t0, text)
        except Exception as exc:  # noqa: BLE001 - one board's surprise must not stop the batch
            text = redact(f"{type(exc).__name__}: {exc}", prov.result.secret_texts + (secret_texts or []))
            out = Outcome(row, False, time.monotonic() - t0, text)
        if on_done is not None:
            on_done(out)
        return out

    if jobs <= 1:
        return [one(r) for r in rows]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, rows))


class _StepReporter(SilentReporter):
    def __init__(self, row: Row, on_step: Callable[[Row, str], None] | None) -> None:
        super().__init__()
        self.row = row
        self.on_step = on_step

    def start(self, step: str, text: str) -> None:
        super().start(step, text)
        if self.on_step is not None:
            self.on_step(self.row, step)


class BulkProgress:
    """One bar for the batch (boards done of all), the steps of the boards in progress, a line per board."""

    def __init__(self, total: int, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.progress = Progress(
            TextColumn("[bold]provisioning[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.console,
        )
        self.task = self.progress.add_task("", total=total)
        self._now: dict[str, str] = {}

    def __enter__(self) -> BulkProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def step(self, row: Row, step: str) -> None:
        self._now[row.locker_id] = step
        self._show()

    def done(self, out: Outcome) -> None:
        self._now.pop(out.row.locker_id, None)
        mark = "[green]ok[/green]" if out.ok else "[red]FAILED[/red]"
        self.progress.console.print(f"  {_esc(out.row.locker_id)} {mark} ({out.seconds:.1f} s) {_esc(out.detail)}")
        self.progress.advance(self.task)
        self._show()

    def _show(self) -> None:
        now = ", ".join(f"{lid}: {step}" for lid, step in list(self._now.items())[:4])
        self.progress.update(self.task, description=_esc(now))


def summary_table(outcomes: list[Outcome], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    table = Table(title="provisioning summary")
    for col in ("locker", "board", "port", "result", "time", "detail"):
        table.add_column(col, overflow="fold")
    for o in outcomes:
        table.add_row(
            o.row.locker_id,
            o.row.board.stem,
            o.row.port,
            "[green]ok[/green]" if o.ok else "[red]failed[/red]",
            f"{o.seconds:.1f} s",
            _esc(o.detail),
        )
    console.print(table)
    ok = sum(1 for o in outcomes if o.ok)
    console.print(f"{ok} of {len(outcomes)} boards provisioned, {len(outcomes) - ok} failed")


@provision_cli.command("bulk")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_shared
@click.option("--jobs", type=click.IntRange(1, 16), default=1, show_default=True, help="Boards at a time.")
@click.pass_context
def bulk_cmd(ctx: click.Context, /, csv_file: Path, jobs: int, **kw: Any) -> None:
    """Provision the boards of a CSV (locker_id, board, port [, language]); failures do not stop the batch.

    A progress bar follows the batch; a table at the end says, per board, ok or what failed and why.
    Exit status 1 if any board failed: run the same command again, what is done is kept.
    """
    rows = read_csv(csv_file)
    base, extra = _options(rows[0].board, rows[0].locker_id, kw)
    with BulkProgress(len(rows)) as bar:
        outcomes = run_bulk(
            rows,
            base,
            lambda r: SerialBoard(r.port),
            jobs=jobs,
            on_done=bar.done,
            on_step=bar.step,
            secret_texts=extra,
        )
    summary_table(outcomes)
    if not all(o.ok for o in outcomes):
        ctx.exit(1)
