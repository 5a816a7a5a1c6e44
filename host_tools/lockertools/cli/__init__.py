"""lockerctl: the one command technicians and staff use on the host side.

Every click command lives in this package (board, broker, sim, service and the staff commands, maint,
provision); it imports the libraries of lockertools, which never import it (tests/host/test_layout.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lockertools.cli.config import load_for
from lockertools.extras import ExtraMissing, missing_extra


class _Lockerctl(click.Group):
    """The command group; a module that an optional extra brings, missing, names the extra to install."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            message = missing_extra(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None
        except ExtraMissing as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Lockerctl, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="lockerctl")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The configuration file (TOML; default: $LOCKERTOOLS_CONFIG). Options given here override it.",
)
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """Parcel-locker controller: boards, simulator, provisioning."""
    if ctx.invoked_subcommand != "config":  # `config check` reports a broken file itself
        load_for(ctx, config)


def _register() -> None:
    from lockertools.cli.board import board_cli
    from lockertools.cli.broker import broker_cli
    from lockertools.cli.config import config_cli
    from lockertools.cli.db import db_cli
    from lockertools.cli.messages import messages_cli
    from lockertools.cli.service import codes_cli, events_cmd, locker_cli, lockers_cmd, service_cli
    from lockertools.cli.sim import sim_cli

    main.add_command(config_cli, "config")
    main.add_command(board_cli, "board")
    main.add_command(sim_cli, "sim")
    main.add_command(broker_cli, "broker")
    main.add_command(service_cli, "service")
    main.add_command(locker_cli, "locker")
    main.add_command(lockers_cmd, "lockers")
    main.add_command(codes_cli, "codes")
    main.add_command(events_cmd, "events")
    main.add_command(db_cli, "db")
    from lockertools.cli.incidents import incidents_cli

    main.add_command(incidents_cli, "incidents")

    from lockertools.cli.api import api_cli

    main.add_command(api_cli, "api")
    main.add_command(messages_cli, "messages")

    from lockertools.cli.maint import console_cmd, diag_cmd, repl_cmd, selftest_cmd, update_cli

    main.add_command(diag_cmd, "diag")
    main.add_command(repl_cmd, "repl")
    main.add_command(console_cmd, "console")
    main.add_command(selftest_cmd, "selftest")
    main.add_command(update_cli, "update")
    from lockertools.cli.provision import provision_cli

    main.add_command(provision_cli, "provision")
    from lockertools.cli.desk import desk_cli
    from lockertools.cli.user import user_cli

    main.add_command(desk_cli, "desk")
    main.add_command(user_cli, "user")
    from lockertools.cli.service import STAFF_COMMANDS

    for name, command in STAFF_COMMANDS.items():  # notifications, delivery, returns, staff, door
        main.add_command(command, name)


_register()
