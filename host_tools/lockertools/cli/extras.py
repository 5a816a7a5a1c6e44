"""Which optional extra of the distribution brings a module, so a command missing one names it.

Each machine installs what it runs (pyproject.toml): the base install has what every command needs,
`service` the host service, `tech` flashing and field maintenance, `sim` the simulator.
"""

from __future__ import annotations

EXTRA_OF_MODULE = {
    "aiomqtt": "service",
    "paho": "tech",
    "esptool": "tech",
    "espefuse": "tech",
    "mpremote": "tech",
    "littlefs": "tech",
    "serial": "tech",
    "amqtt": "sim",
    "aiohttp": "sim",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The message for a module an extra would have brought; None for any other missing module."""
    top = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return f"this command needs {top!r}, from the {extra!r} extra: pip install 'lockertools[{extra}]'"
