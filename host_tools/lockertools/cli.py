"""lockerctl: the one command technicians and staff use on the host side."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="lockerctl")
def main() -> None:
    """Parcel-locker controller: boards, simulator, provisioning."""


def _register() -> None:
    from lockertools.boards import board_cli
    from lockertools.sim_cli import sim_cli

    main.add_command(board_cli, "board")
    main.add_command(sim_cli, "sim")


_register()
