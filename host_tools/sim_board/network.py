# Simulated `network` for the MicroPython unix port: a station interface that is always up on
# loopback. Sockets are the host's own, so the firmware's network code talks to 127.0.0.1.
STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010


class WLAN:
    def __init__(self, interface_id=STA_IF):
        self._if = interface_id
        self._on = True

    def active(self, is_active=None):
        if is_active is None:
            return self._on
        self._on = bool(is_active)

    def connect(self, ssid=None, key=None, **kw):
        pass

    def disconnect(self):
        pass

    def isconnected(self):
        return self._on

    def status(self, param=None):
        return STAT_GOT_IP if self._on else STAT_IDLE

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
