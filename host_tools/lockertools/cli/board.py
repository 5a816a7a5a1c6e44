"""`lockerctl board`: board definitions checked before flashing (lockertools.boards does the checking)."""

from __future__ import annotations

from pathlib import Path

import click

from lockertools.boards import validate_all


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@click.group(name="board")
def board_cli() -> None:
    """Board definitions (boards/*.json)."""


@board_cli.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def check_cmd(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Validate board files: exit 1 on any error; warnings are printed but pass."""
    failed = False
    for report in validate_all(files):
        for issue in report.errors:
            click.echo(f"error: {issue}", err=True)
        for issue in report.warnings:
            click.echo(f"warning: {issue}", err=True)
        warnings = _count(len(report.warnings), "warning")
        if report.errors:
            failed = True
            click.echo(f"{report.file}: FAILED ({_count(len(report.errors), 'error')}, {warnings})")
        else:
            click.echo(f"{report.file}: ok ({warnings})")
    if failed:
        ctx.exit(1)
