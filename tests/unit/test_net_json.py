# net.json's broker settings (locker.startup._net): TLS unless the file says "tls": false, so a file
# without the key never sends the locker's password in clear. Runs under CPython and MicroPython.
import json

import fakes
from locker import startup

_CA = b"\x30\x03\x02\x01\x01"


def _read(broker, ca=None):
    """_net() of a net.json with `broker`; `ca`: bytes written as the CA file it names."""
    d = fakes.scratch_dir("net-json")
    broker["ca"] = d + "/ca.der"
    if ca is not None:
        with open(broker["ca"], "wb") as f:
            f.write(ca)
    with open(d + "/net.json", "w") as f:
        f.write(json.dumps({"broker": broker}))
    return startup._net(None, d + "/net.json")


def test_no_tls_key_means_tls_on_8883_with_the_ca():
    net, problem = _read({"host": "10.0.0.5", "user": "hall-1", "password": "pw"})
    assert net is None and "CA" in problem  # no CA, no connection: never plain instead
    net, problem = _read({"host": "10.0.0.5", "user": "hall-1", "password": "pw"}, ca=_CA)
    assert problem is None
    assert net["broker"]["tls"] is True and net["broker"]["port"] == 8883 and net["ca_der"] == _CA


def test_plain_only_when_the_file_says_so():
    net, problem = _read({"host": "127.0.0.1", "tls": False, "user": "hall-1", "password": "pw"})
    assert problem is None
    assert net["broker"]["tls"] is False and net["broker"]["port"] == 1883 and net["ca_der"] is None
