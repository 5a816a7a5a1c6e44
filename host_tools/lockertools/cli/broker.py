"""`lockerctl broker`: a fleet's mosquitto set-up (lockertools.broker.BrokerSetup) from the command line."""

from __future__ import annotations

import os
from pathlib import Path

import click

from lockertools.broker import DEFAULT_PORT, DEFAULT_TLS_PORT, BrokerError, BrokerSetup, find_mosquitto, write_file


def _secret_out(password: str, password_file: Path | None, what: str) -> None:
    if password_file is None:
        click.echo(f"{what} password (shown once, store it now): {password}")
        return
    try:
        write_file(password_file, (password + "\n").encode(), 0o600)
    except OSError as exc:
        raise click.ClickException(f"{password_file}: {exc.strerror}") from None
    click.echo(f"{what} password written to {password_file} (mode 0600)")


def _wrap(exc: BrokerError) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group("broker", context_settings={"help_option_names": ["-h", "--help"]})
def broker_cli() -> None:
    """The fleet's mosquitto broker: configuration, users, TLS."""


@broker_cli.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the listeners bind to.")
@click.option("--tls-port", type=click.IntRange(0, 65535), default=None, help="TLS port [8883].")
@click.option("--name", "names", multiple=True, help="Host name or address lockers use (server certificate).")
@click.option(
    "--plain",
    is_flag=True,
    help="INSECURE: plain MQTT instead of TLS (passwords readable on the wire): loopback or a lab only.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Plain MQTT port, with --plain [1883].")
@click.option("--tls", is_flag=True, help="With --plain: keep a TLS listener too.")
def init_cmd(
    directory: Path,
    host: str,
    tls_port: int | None,
    names: tuple[str, ...],
    plain: bool,
    port: int | None,
    tls: bool,
) -> None:
    """Create (or update) the broker set-up in DIRECTORY: MQTT over TLS, with a CA created here (plain
    MQTT only with --plain). Users and the CA are kept."""
    if port is not None and not plain:
        raise click.UsageError("--port is the plain MQTT port: plain MQTT needs --plain (TLS: --tls-port)")
    if plain:
        port = DEFAULT_PORT if port is None else port
    if (tls or not plain) and tls_port is None:  # --tls-port alone keeps TLS beside --plain too
        tls_port = DEFAULT_TLS_PORT
    try:
        setup = BrokerSetup(directory, host=host, port=port, tls_port=tls_port, names=names)
        conf = setup.write()
    except BrokerError as exc:
        raise _wrap(exc) from None
    click.echo(f"wrote {conf}")
    if setup.tls_port is not None:
        click.echo(f"  MQTT over TLS on {setup.host}:{setup.tls_port}, certificate for {', '.join(setup.names)}")
        click.echo(f"  CA for lockers and the host: {setup.ca_path}")
    if setup.port is not None:
        click.echo(
            f"  PLAIN MQTT on {setup.host}:{setup.port}: passwords travel in clear, anyone on the network"
            " can read them and log in as a locker; loopback or a lab only"
        )
    click.echo(f"  {len(setup.lockers)} locker(s), host users: {', '.join(setup.host_users) or 'none'}")


def _reloaded(setup: BrokerSetup) -> None:
    pid = setup.reload_running()
    if pid is not None:
        click.echo(f"the running broker (pid {pid}) reloaded its users")
    else:
        click.echo("no `lockerctl broker run` broker here: reload yours (systemctl reload mosquitto) to let it in")


@broker_cli.command("add-locker")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("lid")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), help="Write the password here.")
@click.option("--rotate", is_flag=True, help="The locker exists: give it a new password.")
def add_locker_cmd(directory: Path, lid: str, password_file: Path | None, rotate: bool) -> None:
    """Add locker LID (its MQTT user name) and show its password once."""
    try:
        setup = BrokerSetup.open(directory)
        password = setup.add_locker(lid, rotate=rotate)
    except BrokerError as exc:
        raise _wrap(exc) from None
    _secret_out(password, password_file, f"locker {lid}")
    _reloaded(setup)


@broker_cli.command("add-host")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--user", default="host", show_default=True, help="User name of the host service.")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), help="Write the password here.")
@click.option("--rotate", is_flag=True, help="The user exists: give it a new password.")
def add_host_cmd(directory: Path, user: str, password_file: Path | None, rotate: bool) -> None:
    """Add the host service's user and show its password once."""
    try:
        setup = BrokerSetup.open(directory)
        password = setup.add_host(user, rotate=rotate)
    except BrokerError as exc:
        raise _wrap(exc) from None
    _secret_out(password, password_file, f"host user {user}")
    _reloaded(setup)


@broker_cli.command("include")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/etc/mosquitto/conf.d/lockers.conf"),
    show_default=True,
    help="The file Debian's mosquitto includes (its mosquitto.conf: include_dir /etc/mosquitto/conf.d).",
)
@click.option("--group", default="mosquitto", show_default=True, help="The broker's group: it reads the files.")
def include_cmd(directory: Path, out: Path, group: str) -> None:
    """Serve DIRECTORY's fleet from the system's mosquitto service: write its conf.d file, and let the
    broker's group read the password file, the ACL and the server's certificate (not the CA's key)."""
    try:
        setup = BrokerSetup.open(directory)
        path = setup.include(out, group)
    except BrokerError as exc:
        raise _wrap(exc) from None
    except OSError as exc:
        raise click.ClickException(f"{exc.filename}: {exc.strerror}") from None
    click.echo(f"wrote {path}: restart the broker (systemctl restart mosquitto) to open its listeners")
    click.echo("  later `lockerctl broker add-locker` runs keep it; `systemctl reload mosquitto` lets new users in")


@broker_cli.command("run")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def run_cmd(directory: Path) -> None:
    """Run mosquitto in the foreground with DIRECTORY's configuration (Ctrl-C stops it)."""
    try:
        setup = BrokerSetup.open(directory)
        exe = find_mosquitto()
        conf = setup.write()
    except BrokerError as exc:
        raise _wrap(exc) from None
    click.echo(f"{exe} -c {conf}", err=True)
    # mosquitto keeps this process's pid: adding a locker or a host user reloads it (reload_running)
    setup.pid_path.write_text(f"{os.getpid()}\n")
    os.execv(exe, [exe, "-c", str(conf)])
