# Simulated `network` for the MicroPython unix port: a station interface on loopback. Sockets are
# the host's own, so the firmware's network code talks to 127.0.0.1. As on the ESP32, the station
# is down until connect() (one shared interface, whatever WLAN object asks); it then comes up at
# once, unless LOCKER_SIM_WIFI=off (no access point in range: it never does).
# LAN: wired Ethernet with the ESP32 port's constructor (PHY wiring as keyword arguments, checked
# as the port checks them); it has an address while the simulated cable is plugged in
# (LOCKER_SIM_ETH=off at power-on, or the controller's "cable" command).
import json
import os

import _simboard as _sb

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_WRONG_PASSWORD = 202
STAT_NO_AP_FOUND = 201
STAT_CONNECT_FAIL = 203
STAT_GOT_IP = 1010
PHY_LAN8710 = 0
PHY_LAN8720 = 1
PHY_IP101 = 2
PHY_RTL8201 = 3
PHY_DP83848 = 4
PHY_KSZ8041 = 5
PHY_KSZ8081 = 6
ETH_INITIALIZED = 0
ETH_STARTED = 1
ETH_STOPPED = 2
ETH_CONNECTED = 3
ETH_DISCONNECTED = 4
ETH_GOT_IP = 5

_sta = [False, STAT_IDLE]  # active, status


class WLAN:
    def __init__(self, interface_id=STA_IF):
        self._if = interface_id

    def active(self, is_active=None):
        if is_active is None:
            return _sta[0]
        _sta[0] = bool(is_active)
        if not _sta[0]:
            _sta[1] = STAT_IDLE

    def connect(self, ssid=None, key=None, **kw):
        if not _sta[0]:
            raise OSError("STA must be active")
        _sta[1] = STAT_NO_AP_FOUND if os.getenv("LOCKER_SIM_WIFI") == "off" else STAT_GOT_IP

    def disconnect(self):
        _sta[1] = STAT_IDLE

    def isconnected(self):
        return _sta[1] == STAT_GOT_IP

    def status(self, param=None):
        return _sta[1]

    def ifconfig(self, config=None):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, *args, **kw):
        if args and args[0] == "mac":
            return b"\x24\x6f\x28\x5a\x1c" + bytes((self._if + 1,))
        if args:
            return None

    def scan(self):
        return []


def hostname(name=None):
    return "locker-sim"


_lan = []  # the one LAN object (the ESP32 port has one Ethernet MAC)


class LAN:
    def __init__(
        self,
        id=0,
        *,
        mdc=None,
        mdio=None,
        power=None,
        phy_addr=None,
        phy_type=None,
        ref_clk_mode=-1,
        ref_clk=None,
        **kw,
    ):
        import machine

        if _lan:
            raise OSError("ethernet already initialized")
        if id != 0:
            raise ValueError("invalid LAN interface identifier")
        if phy_addr is None or phy_type is None:
            raise TypeError("phy_addr and phy_type are required")
        if not 0 <= phy_addr <= 31 or phy_type not in range(PHY_LAN8710, PHY_KSZ8081 + 1):
            raise ValueError("invalid phy")
        pins = {"mdc": mdc, "mdio": mdio, "power": power, "ref_clk": ref_clk}
        for k, p in pins.items():
            if p is not None and not isinstance(p, machine.Pin):
                raise TypeError("%s: expecting a Pin" % k)
        if mdc is None or mdio is None:
            raise ValueError("mdc and mdio are required")
        if ref_clk_mode not in (-1, machine.Pin.IN, machine.Pin.OUT):
            raise ValueError("invalid ref_clk_mode")
        self._active = False
        _lan.append(self)
        got = {k: (None if p is None else p._n) for k, p in pins.items()}
        got.update(addr=phy_addr, phy=phy_type, clk_out=int(ref_clk_mode == machine.Pin.OUT))
        _sb._ev('"ev":"lan",' + json.dumps(got)[1:-1])

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)

    def status(self):
        if not self._active:
            return ETH_STOPPED
        _sb.pump()  # a "cable" command may be waiting
        return ETH_GOT_IP if _sb.cable else ETH_DISCONNECTED

    def isconnected(self):
        return self.status() == ETH_GOT_IP

    def ifconfig(self, config=None):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, *args, **kw):
        if args and args[0] == "mac":
            return b"\x24\x6f\x28\x5a\x1c\x03"
        if args:
            return None
