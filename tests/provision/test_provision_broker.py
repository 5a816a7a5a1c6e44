"""Provisioning's broker step: the locker gets TLS whenever the broker has it, plain MQTT only with
--plain (docs/provisioning.md, "Options"). A dry run: the broker is not contacted."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from lockertools.broker import BrokerSetup
from lockertools.provision import ProvisionError
from lockertools.provision.stage import Secrets, net_json
from lockertools.provision.steps import Options, Provisioner, SerialBoard

BOARD = Path(__file__).resolve().parents[2] / "boards" / "esp32-4door.json"


def _check(directory: Path, **kw: bool) -> Provisioner:
    opts = Options(BOARD, "hall-1", directory / "fleet.db", broker_dir=directory, dry_run=True, **kw)
    return Provisioner(opts, SerialBoard("/dev/null"))


def test_a_broker_with_tls_gets_the_locker_on_tls_even_beside_a_plain_listener(tmp_path: Path) -> None:
    setup = BrokerSetup(tmp_path / "b", port=0, tls_port=0, names=["broker.lan"])
    setup.write()
    addr = _check(setup.directory).check_broker()
    assert (addr.tls, addr.port, addr.ca_file) == (True, setup.tls_port, setup.ca_path)
    assert addr.server_hostname == "127.0.0.1"  # the certificate's first name
    net = net_json(addr, "hall-1", Secrets(secrets.token_bytes(32), "pw", None), None)
    assert net["broker"]["tls"] is True and net["broker"]["port"] == setup.tls_port

    plain = _check(setup.directory, plain=True).check_broker()
    assert (plain.tls, plain.port, plain.ca_file) == (False, setup.port, None)


def test_plain_mqtt_only_when_asked_for_and_only_where_the_broker_has_it(tmp_path: Path) -> None:
    plain_only = BrokerSetup(tmp_path / "plain", port=0, tls_port=None)
    plain_only.write()
    with pytest.raises(ProvisionError, match="no TLS listener.*--plain"):
        _check(plain_only.directory).check_broker()
    assert _check(plain_only.directory, plain=True).check_broker().tls is False

    tls_only = BrokerSetup(tmp_path / "tls")
    tls_only.write()
    with pytest.raises(ProvisionError, match="no plain listener"):
        _check(tls_only.directory, plain=True).check_broker()
    assert _check(tls_only.directory).check_broker().tls is True
