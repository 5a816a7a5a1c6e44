"""`lockerctl config check`, and how the configuration file becomes the commands' defaults.

The file's settings fill in the options a command was not given (click's default_map), so options on
the command line override the file. Secrets are read from where the file says; never from an option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lockertools.config import ConfigError, Settings, config_path, describe, load

SETTINGS_KEY = "lockertools.settings"


def settings_of(ctx: click.Context) -> Settings:
    """The settings `lockerctl --config` loaded (defaults when no file was given)."""
    found = ctx.find_root().meta.get(SETTINGS_KEY)
    return found if isinstance(found, Settings) else Settings()


def _defaults(settings: Settings) -> tuple[dict[str, Any], dict[tuple[str, ...], dict[str, Any]]]:
    """Option values by parameter name: for every command that has it, and for one command (or group)."""
    s, b, n = settings.service, settings.broker, settings.notify
    everywhere = {"db_path": s.db, "notify_command": n.command, "notify_url": n.url}
    per_command: dict[tuple[str, ...], dict[str, Any]] = {
        ("service", "run"): {
            "broker_addr": f"{s.broker_host}:{s.broker_port}",
            "user": s.user,
            "tls_ca": s.tls_ca,
            "plain": s.plain,
            "client_id": s.client_id,
            "verbose": s.verbose,
        },
        ("broker",): {"directory": b.directory},
        ("broker", "init"): {
            "host": b.host,
            "tls_port": b.tls_port,
            "port": b.port,
            "names": b.names or None,
            "plain": b.plain,
            "tls": b.tls,
        },
        ("broker", "add-host"): {"user": s.user},
        ("api", "serve"): {"host": settings.api.host, "port": settings.api.port},
        ("desk", "run"): {"host": settings.desk.host, "port": settings.desk.port},
    }
    return everywhere, per_command


def default_map(settings: Settings, group: click.Group) -> dict[str, Any]:
    """click's default_map for `group`'s command tree from the settings (unset values left out)."""
    everywhere, per_command = _defaults(settings)

    def walk(command: click.Command, path: tuple[str, ...]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        wanted = dict(everywhere)
        for depth in range(1, len(path) + 1):
            wanted.update(per_command.get(path[:depth], {}))
        for param in command.params:
            if param.name in wanted and wanted[param.name] is not None:
                values[param.name] = wanted[param.name]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                inner = walk(sub, (*path, name))
                if inner:
                    values[name] = inner
        return values

    return walk(group, ())


def load_for(ctx: click.Context, given: Path | None) -> None:
    """Load the configuration file (if any) into the context: its settings and the defaults they give."""
    path = config_path(given)
    if path is None:
        return
    try:
        settings = load(path)
    except ConfigError as exc:
        raise click.ClickException(f"configuration file has errors:\n{exc}\n(lockerctl config check)") from None
    ctx.meta[SETTINGS_KEY] = settings
    assert isinstance(ctx.command, click.Group)
    ctx.default_map = default_map(settings, ctx.command)


@click.group("config")
def config_cli() -> None:
    """The host's configuration file (TOML: docs/configuration.md)."""


@config_cli.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def check_cmd(ctx: click.Context, file: Path | None) -> None:
    """Check FILE (default: lockerctl --config, else $LOCKERTOOLS_CONFIG): every error with its file
    and field, exit status 1; when all is well, the effective settings, secrets masked."""
    path = file or config_path(ctx.find_root().params.get("config"))
    if path is None:
        raise click.UsageError("no configuration file: give FILE, --config or $LOCKERTOOLS_CONFIG")
    try:
        settings = load(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None
    click.echo(f"{path}: ok")
    for line in describe(settings):
        click.echo(line)
