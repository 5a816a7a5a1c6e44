"""The help line's phone and the desk's hours ([town] in the configuration file) reach every locker
that reads them, through a real mosquitto: sent when the locker's status shows other settings, not
again once it holds them, never to a locker whose firmware has no desk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service_helpers import Rig

from lockertools.config import TownSettings
from lockertools.fleet import SimLocker
from lockertools.helpline import command_args
from tests.support.fixtures import Broker

TOWN = TownSettings(help_phone="09 210 10 10", desk_hours=["mon-fri 09:00-17:00"], timezone="Europe/Brussels")


class DeskSim(SimLocker):
    """A locker that keeps the `desk` command's args and shows their tag in its status, as the
    firmware does (locker.desk)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.desk: dict[str, Any] = {"tag": ""}

    def status(self) -> dict[str, Any]:
        return super().status() | {"desk": self.desk["tag"]}

    def _dispatch(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "desk":
            self.desk = dict(args)
            return {"ok": True}
        return super()._dispatch(op, args)


def _last_seen(rig: Rig) -> float:
    return float(rig.query("SELECT last_seen FROM lockers")[0][0])


def _desk_commands(rig: Rig) -> list[str]:
    return [r[0] for r in rig.query("SELECT state FROM commands WHERE op = 'desk'")]


def test_the_desk_settings_reach_a_locker_once(broker: Broker, tmp_path: Path) -> None:
    rig = Rig(broker, tmp_path, sim_class=DeskSim, helpline=TOWN)
    try:
        rig.start_service()
        sim = rig.start_locker()
        assert isinstance(sim, DeskSim)
        rig.wait(lambda: _desk_commands(rig) == ["ok"], "the desk command answered")
        assert sim.desk["phone"] == "09 210 10 10"
        assert sim.desk["open"] and all(a < b for a, b in sim.desk["open"])
        today = command_args(TOWN.help_phone, TOWN.desk_hours, TOWN.timezone, sim.status()["t"])
        assert sim.desk["tag"] == today["tag"]
        # Its next status shows the tag: nothing is sent again (a command would be in the same
        # transaction as the status's last_seen).
        seen = _last_seen(rig)
        rig.call(sim.publish_status())
        rig.wait(lambda: _last_seen(rig) != seen, "the status applied")
        assert sim.desk["tag"] in rig.query("SELECT status_json FROM lockers")[0][0]
        assert _desk_commands(rig) == ["ok"] and sim.ops["desk"] == 1
    finally:
        rig.close()


def test_a_locker_without_desk_in_its_status_gets_none(broker: Broker, tmp_path: Path) -> None:
    rig = Rig(broker, tmp_path, helpline=TOWN)
    try:
        rig.start_service()
        sim = rig.start_locker()
        rig.wait(lambda: rig.query("SELECT online FROM lockers")[0][0] == 1, "the locker online")
        seen = _last_seen(rig)
        rig.call(sim.publish_status())
        rig.wait(lambda: _last_seen(rig) != seen, "its second status applied")
        assert _desk_commands(rig) == [] and sim.ops["desk"] == 0
    finally:
        rig.close()
