"""Technicians' tools: diagnostics, the self-test, application bundles and updates (docs/maintenance.md).

Everything here talks to a locker with signed commands (lockertools.commands.CommandSigner, the
firmware's own protocol module) over a `Link`:

- `links`: `MqttLink`, the broker, as the host service (the locker answers on lockers/<id>/reply,
  signed); `SerialConsole`, a board's USB console (pyserial), where the firmware prints its log, its
  events (`event {...}`), the keypad echo (`key|<ch>`) and its replies to signed commands (`re|{...}`);
  `SimConsole`, a VirtualBoard's console (the same lines, from the simulator).
- `client`: `Maint`, the technician's client (signed calls over a link, command seqs from the
  service's database), diagnostics.
- `bundle`: the application layout on flash (what provisioning installs and updates replace),
  `build_app` / `install_app`: boot.py and main.py at the root, the application compiled under app/
  with its manifest app/app.json.
- `update`: an application pushed to a locker and its outcome (healthy or rolled back).
- `selftest`: the guided self-test of doors, sensors and keypad.
"""

from __future__ import annotations

from typing import Any

Reply = dict[str, Any]


class MaintError(RuntimeError):
    """A locker refused or did not answer; the message says what to do."""
