# The network below MQTT: Wi-Fi station bring-up, the broker's address, and one TCP (or TLS)
# connection as asyncio streams. The only part of the uplink that needs the real radio: kept thin.
import asyncio

try:
    from time import ticks_diff, ticks_ms  # MicroPython
except ImportError:  # CPython (tests)
    from locker.ticks import ticks_diff, ticks_ms  # type: ignore[no-redef]

from micropython import const

TYPE_CHECKING = const(False)  # the compiler drops `if TYPE_CHECKING:` blocks; mypy enters them
if TYPE_CHECKING:
    from typing import Any, List, Optional, Tuple  # TYPE_CHECKING only: mpy-cross drops the block

_STABLE_MS = const(3000)  # a link counts once it has stayed up this long (mqtt_as: it flaps at first)
_POLL_MS = const(250)
_DNS_POLL_MS = const(50)
_DNS_WAIT_MS = const(20000)

_wlan = None  # type: Any
_lan = None  # type: Any
_up_since = -1  # type: Any
_ctx = None  # type: Any  # the TLS context: the CA is parsed once, not on every reconnect
_addr = {}  # type: dict[str, str]  # host -> address: DNS on the first connect and after a failure


async def wifi_up(ssid: str, password: "Optional[str]") -> None:
    """Returns once the station has stayed connected for _STABLE_MS. The radio connects in the
    background and this polls, so the loop never blocks. A caller that timed out and calls again
    does not restart a connection in progress."""
    global _wlan
    import network

    if _wlan is None:
        _wlan = network.WLAN(network.STA_IF)
        _wlan.active(True)
    w = _wlan

    def up() -> bool:
        if w.isconnected():
            return True
        if w.status() != network.STAT_CONNECTING:  # idle, failed, wrong password, no AP: again
            w.connect(ssid, password)
        return False

    await _stable(up)


async def lan_up(spec: "Any") -> None:
    """Wired Ethernet (the board definition's "ethernet" section): the PHY is set up once, then
    this returns once the link has had an address for _STABLE_MS. The driver renegotiates a pulled
    cable and renews DHCP by itself: there is nothing to retry here."""
    global _lan
    import network
    from machine import Pin

    if _lan is None:
        _lan = network.LAN(**lan_config(spec, network, Pin))
        _lan.active(True)
    lan = _lan
    await _stable(lambda: lan.status() == network.ETH_GOT_IP)


def lan_config(spec: "Any", network: "Any", pin: "Any") -> "dict[str, Any]":
    """network.LAN's keyword arguments on the ESP32 port for a board's "ethernet" section
    (lockertools.boards has checked the pins): the RMII reference clock comes in on GPIO 0 from
    the PHY's oscillator ("in0") or goes out on GPIO 16/17 ("out16", "out17")."""
    clock = spec["clock"]
    power = spec.get("power")
    return {
        "mdc": pin(spec["mdc"]),
        "mdio": pin(spec["mdio"]),
        "power": None if power is None else pin(power),
        "phy_addr": spec["addr"],
        "phy_type": getattr(network, "PHY_" + spec["phy"]),
        "ref_clk_mode": pin.IN if clock == "in0" else pin.OUT,
        "ref_clk": pin(0 if clock == "in0" else int(clock[3:])),
    }


async def _stable(up: "Any") -> None:
    global _up_since
    while True:
        if up():
            now = ticks_ms()
            if _up_since < 0:
                _up_since = now
            if ticks_diff(now, _up_since) >= _STABLE_MS:
                return
        else:
            _up_since = -1
        await asyncio.sleep_ms(_POLL_MS)


def _numeric(host: str) -> bool:
    for c in host:
        if c not in "0123456789.":
            return False
    return True


def _lookup(host: str, port: int, out: "List[Any]") -> None:
    import socket

    try:
        out.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1])
    except Exception as exc:
        out.append(exc)


def _text(sockaddr: "Any") -> str:
    if isinstance(sockaddr, tuple):  # ESP32 and CPython: (ip, port)
        return str(sockaddr[0])
    import socket  # unix port: a raw struct sockaddr_in

    return str(socket.inet_ntop(socket.AF_INET, sockaddr[4:8]))  # type: ignore[attr-defined]


async def resolve(host: str, port: int) -> str:
    """The broker's address. DNS blocks for seconds on the ESP32 (lwIP) and would stall the keypad,
    so it runs on a thread (the ESP32 port releases the GIL in getaddrinfo), and only when needed:
    an IP literal needs none, a name is cached until forget()."""
    if _numeric(host):
        return host
    addr = _addr.get(host)
    if addr is not None:
        return addr
    out = []  # type: List[Any]
    try:
        import _thread

        _thread.start_new_thread(_lookup, (host, port, out))
    except (ImportError, OSError, RuntimeError):  # no threads on this build: once, blocking
        _lookup(host, port, out)
    t0 = ticks_ms()
    while not out:
        if ticks_diff(ticks_ms(), t0) > _DNS_WAIT_MS:
            raise OSError("DNS timeout: %s" % host)
        await asyncio.sleep_ms(_DNS_POLL_MS)
    r = out[0]
    if isinstance(r, Exception):
        raise r
    addr = _text(r)
    _addr[host] = addr
    return addr


def forget(host: str) -> None:
    """After a failed connection: look the name up again next time (the broker may have moved)."""
    _addr.pop(host, None)


def tls_context(ca_der: bytes) -> "Any":
    """A client context that requires the broker's certificate to chain to ca_der (DER) and, when
    wrapped with server_hostname, to name that host. MicroPython's ssl verifies nothing unless
    asked: CERT_REQUIRED is the point."""
    global _ctx
    if _ctx is None:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]
        ctx.load_verify_locations(cadata=ca_der)
        _ctx = ctx
    return _ctx


async def open_connection(
    host: str, port: int, tls: bool = False, ca_der: "Optional[bytes]" = None, server_hostname: "Optional[str]" = None
) -> "Tuple[Any, Any]":
    """(reader, writer) to the broker. MicroPython's asyncio.open_connection (1.22 and later) takes
    ssl= and server_hostname= itself; the handshake runs non-blocking on the first read or write,
    inside the MQTT client's timeouts. A wrong CA or host name fails it (OSError/ValueError)."""
    addr = await resolve(host, port)
    ctx = None
    if tls:
        if ca_der is None:
            raise ValueError("TLS needs the CA certificate")
        ctx = tls_context(ca_der)
    try:
        from asyncio import core  # type: ignore[attr-defined]  # MicroPython's asyncio internals
        from asyncio.stream import Stream  # type: ignore[import-not-found]
    except ImportError:  # not MicroPython's asyncio (CPython tests): the library's own
        if ctx is None:
            return await asyncio.open_connection(addr, port)
        return await asyncio.open_connection(addr, port, ssl=ctx, server_hostname=server_hostname or host)
    conn = await _connect(core, Stream, addr, port, ctx, server_hostname or host)
    return conn[0], conn[1]


def _connect(core: "Any", stream: "Any", addr: str, port: int, ctx: "Any", server_hostname: str) -> "Any":
    # MicroPython's asyncio.open_connection, plus TCP_NODELAY: an MQTT client writes small packets
    # back to back (a PUBACK, then a reply), and Nagle would hold the second until the broker's
    # delayed ACK, 40 ms later. A generator, as asyncio's own: `yield` waits until connected.
    import socket
    from errno import EINPROGRESS

    ai = socket.getaddrinfo(addr, port, 0, socket.SOCK_STREAM)[0]  # a numeric address: no DNS here
    s = socket.socket(ai[0], ai[1], ai[2])
    try:
        s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: the same numbers in lwIP and Linux
    except (OSError, ValueError):
        pass  # a port without the option: correct, only slower
    s.setblocking(False)
    try:
        s.connect(ai[-1])
    except OSError as er:
        if er.errno != EINPROGRESS:
            raise er
    if ctx is not None:
        s = ctx.wrap_socket(s, server_hostname=server_hostname, do_handshake_on_connect=False)
        s.setblocking(False)
    ss = stream(s)
    yield core._io_queue.queue_write(s)
    return ss, ss
