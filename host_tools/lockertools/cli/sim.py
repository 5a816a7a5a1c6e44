"""`lockerctl sim`: the real firmware on a simulated board, by hand (`run`), by script (`scenario`), or
online with a broker and the host service (`net`: lockertools.sim.net starts them)."""

from __future__ import annotations

import contextlib
import secrets
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import click

from lockertools import BOARDS_DIR, EXAMPLE_SCENARIOS_DIR
from lockertools.broker import BrokerError, find_mosquitto
from lockertools.sim.board import DEFAULT_HEAP, NET_HEAP, Event, SimError, VirtualBoard, format_event
from lockertools.sim.net import (
    NetStatus,
    StatusMonitor,
    exit_on_signals,
    lockerctl_argv,
    make_boards,
    prepare_workdir,
    shown,
    start_broker_and_service,
)

DEMO_SCENARIO = EXAMPLE_SCENARIOS_DIR / "pickup.yaml"
HELP = """\
  123#         type keys (digits, * and #), each one tapped
  hold 5 2000  hold a key down for 2000 ms
  open 2       open door 2 (by hand: it was unlocked, or it is forced)
  close 2      close door 2
  take 2       take the parcel out of door 2     put 2   put a parcel in
  jam 2        door 2's latch sticks             unjam 2
  cut          power cut                         boot    power on again
  reset        power cut and boot at once        time +1d / time 1760000000
  state        everything the board knows        log [n] the firmware's last n log lines
  console TEXT a line on the firmware's console  quit"""

WAIT_DEFAULT_S = 60.0
NET_HELP = """
  net          each locker's network status      wait synced [s] / wait online [s]  (default 60 s)"""

board_option = click.option(
    "--board",
    "board_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=BOARDS_DIR / "esp32-4door.json",
    show_default=True,
)
"""The `--board` option of the `sim` commands (net, web, run)."""


@click.group("sim", context_settings={"help_option_names": ["-h", "--help"]})
def sim_cli() -> None:
    """Run the real firmware on a simulated board (MicroPython unix port)."""


@sim_cli.command("web")
@board_option
@click.option("--lockers", "n_lockers", type=click.IntRange(1, 8), default=1, show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: any free port.")
@click.option("--no-browser", is_flag=True, help="Print the URL only (no browser is opened without a display).")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build/sim-web"),
    show_default=True,
    help="Broker, fleet database and flash folders; kept between runs.",
)
@click.option("--heap", default=NET_HEAP, show_default=True, help="Each locker's MicroPython heap.")
def web_cmd(board_path: Path, n_lockers: int, port: int, no_browser: bool, workdir: Path, heap: str) -> None:
    """The locker wall in a browser: broker, host service and simulated locker(s) on loopback, and a
    web page with the doors, the keypad and the display, and the staff desk beside them (logged in as
    a demo account). Ctrl-C stops everything."""
    from lockertools.sim.web.server import run_web

    run_web(board_path, n_lockers, port, not no_browser, workdir, heap, say=say)


@sim_cli.command("scenario")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--board", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Use this board file.")
@click.option("--heap", default=None, help="MicroPython heap size (default: the scenario's, else 128K).")
@click.option("-v", "--verbose", is_flag=True, help="Trace key echoes, buzzer and acks too.")
def scenario_cmd(files: tuple[Path, ...], board: Path | None, heap: str | None, verbose: bool) -> None:
    """Play scenario FILEs against the firmware; exit status 1 if any expectation fails."""
    from lockertools.sim.scenario import run_files

    results = run_files(list(files), sys.stdout, board=board, heap=heap, verbose=verbose)
    sys.exit(0 if results and all(r.passed for r in results) else 1)


@sim_cli.command("run")
@board_option
@click.option("--flash", type=click.Path(file_okay=False, path_type=Path), help="Flash folder to use (default: temp).")
@click.option("--heap", default=DEFAULT_HEAP, show_default=True, help="The firmware's MicroPython heap.")
@click.option("--codes", "n_codes", default=3, show_default=True, help="How many demo codes to provision.")
def run_cmd(board_path: Path, flash: Path | None, heap: str, n_codes: int) -> None:
    """A locker in this terminal: type keys and commands, watch what it does.

    When stdin is not a terminal, plays the demo scenario (tests/scenarios/examples/pickup.yaml) instead.
    """
    if not sys.stdin.isatty():
        from lockertools.sim.scenario import run_files

        results = run_files([DEMO_SCENARIO], sys.stdout, board=board_path, heap=heap)
        sys.exit(0 if results and results[0].passed else 1)
    with tempfile.TemporaryDirectory(prefix="locker-sim-") as tmp:
        _interactive(board_path, flash or Path(tmp) / "flash", heap, n_codes)


def _interactive(board_path: Path, flash: Path, heap: str, n_codes: int) -> None:
    import json

    from lockertools.flash import prepare

    board_spec: dict[str, Any] = json.loads(board_path.read_text())
    labels = [str(d.get("label", i + 1)) for i, d in enumerate(board_spec["doors"])]
    now = int(time.time())
    codes = [
        ("".join(secrets.choice("0123456789") for _ in range(8)), labels[i % len(labels)], now + 7 * 86400)
        for i in range(n_codes)
    ]
    prepare(flash, board_path, codes=codes, config_overrides={})
    click.echo(f"Board {board_spec.get('name')} ({len(labels)} doors), flash folder {flash}")
    click.echo("Demo codes (valid 7 days, a parcel waits behind each door):")
    for code, door, _ in codes:
        click.echo(f"  {code}  -> door {door}")
    with VirtualBoard(flash, heap=heap, on_event=event_printer(labels), auto_reboot=True) as vb:
        for _, door, _ in codes:
            vb.parcels.add(vb.door_index(door))
        vb.boot(keep_rtc=now)
        say("Type `help` for commands.")
        terminal(vb)


# Output comes from the event reader threads and the terminal: one lock keeps each block whole.
_out_lock = threading.Lock()


def say(text: str) -> None:
    """Print a block of lines without interleaving it with the other threads' output."""
    with _out_lock:
        click.echo(text)


def event_printer(labels: list[str]) -> Callable[[Event], None]:
    """An `on_event` for VirtualBoard that prints what a person at the locker would notice."""

    def show(ev: Event) -> None:
        if ev.get("ev") in ("key", "ack", "state", "buzzer"):  # the buzzer clicks on every key
            return
        if ev.get("ev") == "display":
            lines = ev.get("lines", [])
            width = max((len(ln) for ln in lines), default=16)
            rule = "  +" + "-" * width + "+"
            say("\n".join([rule, *("  |" + ln.ljust(width) + "|" for ln in lines), rule]))
        else:
            say("  " + format_event(ev, labels))

    return show


def terminal(
    vb: VirtualBoard,
    lines: Iterable[str] | None = None,
    extra: Callable[[str], bool] | None = None,
    extra_help: str = "",
) -> int:
    """The `locker>` loop, until quit, end of input or Ctrl-C. Commands come from the terminal, or
    from `lines` (echoed after the prompt, for scripts). `extra` sees each line first and returns True
    when it handled it. Returns how many commands failed."""
    source = None if lines is None else iter(lines)
    failed = 0
    while True:
        try:
            if source is None:
                line = input("locker> ").strip()
            else:
                line = next(source).strip()
                say(f"locker> {line}")
        except (EOFError, KeyboardInterrupt, StopIteration):
            if source is None:
                click.echo()
            break
        if not line:
            continue
        if line in ("quit", "exit", "q"):
            break
        try:
            if extra is None or not extra(line):
                _command(vb, line, extra_help)
        except (SimError, ValueError, IndexError) as exc:
            failed += 1
            say(f"  ! {exc}")
    return failed


def _command(vb: VirtualBoard, line: str, extra_help: str = "") -> None:
    words = shlex.split(line)
    cmd, args = words[0].lower(), words[1:]
    keys = vb.board.get("keypad", {}).get("keys", "0123456789*#")
    if all(ch in keys for ch in line.replace(" ", "")):
        for ch in line.replace(" ", ""):
            vb.tap(ch)
    elif cmd == "help":
        click.echo(HELP + extra_help)
    elif cmd == "hold":
        vb.tap(args[0], hold_ms=int(args[1]) if len(args) > 1 else 2000)
    elif cmd in ("open", "close", "take", "put", "jam", "unjam"):
        i = vb.door_index(args[0])
        {
            "open": lambda: vb.open_door(i),
            "close": lambda: vb.close_door(i),
            "take": lambda: vb.set_parcel(i, False),
            "put": lambda: vb.set_parcel(i, True),
            "jam": lambda: vb.jam(i, True),
            "unjam": lambda: vb.jam(i, False),
        }[cmd]()
    elif cmd == "cut":
        vb.power_cut()
    elif cmd == "boot":
        vb.boot()
    elif cmd == "reset":
        vb.boot("hard")
    elif cmd == "time":
        from lockertools.sim.scenario import parse_time

        vb.set_time(parse_time(args[0], int(time.time())))
    elif cmd == "state":
        st = vb.state()
        for i, d in enumerate(st["doors"]):
            click.echo(
                f"  door {vb.labels[i]}: {'OPEN' if d['open'] else 'closed'}, "
                f"{'parcel' if d['parcel'] else 'empty'}, solenoid {'ON' if d['solenoid'] else 'off'}"
                + (", JAMMED" if d["jammed"] else "")
            )
        click.echo(f"  display: {st['display']}  led: {st['led']}  rtc: {st['rtc']}  watchdog: {st['wdt']} ms")
    elif cmd == "log":
        for ln in vb.log_lines()[-(int(args[0]) if args else 20) :]:
            click.echo("  " + ln)
    elif cmd == "console":
        vb.send_console(line.split(None, 1)[1] if len(words) > 1 else "")
    else:
        click.echo(f"  ? {line!r}: type `help`")


@click.command("net")
@board_option
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build/sim-net"),
    show_default=True,
    help="Broker, fleet database and flash folders; kept between runs.",
)
@click.option("--lockers", "n_lockers", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--heap", default=NET_HEAP, show_default=True, help="Each locker's MicroPython heap.")
@click.option(
    "--script",
    type=click.File("r"),
    help="Read the terminal's commands from FILE ('-': stdin; the default when stdin is not a terminal); "
    "exit status 1 if one failed.",
)
def net_cmd(board_path: Path, workdir: Path, n_lockers: int, heap: str, script: IO[str] | None) -> None:
    """Broker, host service and simulated locker(s), all on loopback; the first locker in this terminal.

    Issue codes from another terminal with the commands it prints. q or Ctrl-C stops everything."""
    if script is None and not sys.stdin.isatty():
        script = sys.stdin
    try:
        mosquitto = find_mosquitto()  # first: the one thing the venv cannot provide
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    setup, lockers = prepare_workdir(workdir, board_path, n_lockers)
    db_path = workdir / "fleet.db"
    failed = 0
    with exit_on_signals(), contextlib.ExitStack() as stack:
        # Callbacks run last-registered first: boards, then the service, then the broker.
        start_broker_and_service(stack, workdir, setup, mosquitto, report=say)
        boards = make_boards(stack, lockers, heap, lambda n, lk: event_printer(lk.labels) if n == 0 else None)
        first = lockers[0]
        ctl = " ".join(shlex.quote(a) for a in [shown(Path(lockerctl_argv()[0])), *lockerctl_argv()[1:]])
        db = shlex.quote(shown(db_path))
        say(
            f"\nLockers {', '.join(lk.lid for lk in lockers)} ({len(first.labels)} doors each, a parcel behind "
            f"every door). In another terminal, in {Path.cwd()}:\n"
            f"  issue a code:   {ctl} codes issue --db {db} --locker {first.lid} --door {first.labels[0]}\n"
            f"  follow events:  {ctl} events -f --db {db}\n"
            f"  list lockers:   {ctl} lockers --db {db}\n"
        )
        monitor = StatusMonitor(db_path, lockers, lambda st: say(st.line(first.lid))).start()
        stack.callback(monitor.stop)
        try:
            for vb in boards:
                vb.boot(keep_rtc=int(time.time()))
        except SimError as exc:  # the firmware died at boot: its log says why
            raise click.ClickException(str(exc)) from None

        def net_command(line: str) -> bool:
            words = line.split()
            if words == ["net"]:
                say("\n".join(monitor.status[lk.lid].line(lk.lid) for lk in lockers if lk.lid in monitor.status))
                return True
            if words[0] == "wait" and len(words) in (2, 3) and words[1] in ("synced", "online"):
                timeout = float(words[2]) if len(words) == 3 else WAIT_DEFAULT_S
                want: Callable[[NetStatus], bool] = (
                    (lambda s: s.synced) if words[1] == "synced" else (lambda s: s.online)
                )
                if monitor.wait(first.lid, want, timeout) is None:
                    raise SimError(f"{first.lid} not {words[1]} after {timeout:g} s")
                say(f"  {first.lid} {words[1]}")
                return True
            return False

        say("Type `help` for commands.")
        failed = terminal(boards[0], script, extra=net_command, extra_help=NET_HELP)
    say("stopped: lockers, host service, broker")
    if script is not None and failed:
        sys.exit(1)


sim_cli.add_command(net_cmd)
