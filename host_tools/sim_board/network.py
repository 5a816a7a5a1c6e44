# Simulated `network` for the MicroPython unix port: a station interface on loopback. Sockets are
# the host's own, so the firmware's network code talks to 127.0.0.1. As on the ESP32, the station
# is down until connect() (one shared interface, whatever WLAN object asks); it then comes up at
# once, unless LOCKER_SIM_WIFI=off (no access point in range: it never does).
import os

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_WRONG_PASSWORD = 202
STAT_NO_AP_FOUND = 201
STAT_CONNECT_FAIL = 203
STAT_GOT_IP = 1010

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
