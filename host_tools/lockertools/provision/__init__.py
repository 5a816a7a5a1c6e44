"""Provisioning: from a blank ESP32 on a USB port to a registered locker online (docs/provisioning.md).

- `stage`: what goes on the board's filesystem (the compiled application, board.json, config.json and
  the secrets), built in a private folder, with the SHA-256 of every file (the manifest).
- `esp`: the esptool command lines (MicroPython image, the application as a littlefs image at the
  `vfs` partition's offset) and the checks esptool can make without a chip.
- `link`: the application copied over the serial REPL with mpremote, every file read back and
  hashed on the board, and the install marker written last.
- `virtual`: a virtual board (MicroPython's unix port behind a pty) that mpremote drives like a board.
- `steps`: the steps in order, each safe to re-run, each failing with what to do.

The commands, `lockerctl provision` and `lockerctl provision bulk`, are lockertools.cli.provision.

Secrets (the locker key, the broker and Wi-Fi passwords) are never printed or logged: they live in
`stage.Secrets`, whose repr hides them, and in files of mode 0600 that are deleted after the run.
"""

from __future__ import annotations


class ProvisionError(Exception):
    """A step failed. The text says what happened and what to do; it never holds a secret."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message

    def __str__(self) -> str:
        return f"{self.step}: {self.message}"
