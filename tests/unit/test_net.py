# hal.net's Ethernet set-up: the board definition's "ethernet" section -> network.LAN's arguments
# on the ESP32 port. Runs under CPython (pytest) and MicroPython (mpy_runner): plain asserts, fake
# network and Pin (nothing here touches a radio or a PHY).
from hal import net


class FakePin:
    IN = 1
    OUT = 3

    def __init__(self, n):
        self.n = n


class FakeNetwork:
    PHY_LAN8720 = 1
    PHY_IP101 = 2
    PHY_RTL8201 = 3


def _pins(kw):
    return {k: (None if v is None else v.n) for k, v in kw.items() if k in ("mdc", "mdio", "power", "ref_clk")}


def test_olimex_poe_wiring_clock_out_on_17():
    spec = {"phy": "LAN8720", "addr": 0, "mdc": 23, "mdio": 18, "power": 12, "clock": "out17"}
    kw = net.lan_config(spec, FakeNetwork, FakePin)
    assert _pins(kw) == {"mdc": 23, "mdio": 18, "power": 12, "ref_clk": 17}
    assert kw["phy_addr"] == 0
    assert kw["phy_type"] == FakeNetwork.PHY_LAN8720
    assert kw["ref_clk_mode"] == FakePin.OUT


def test_clock_in_on_gpio0_and_no_power_pin():
    spec = {"phy": "IP101", "addr": 1, "mdc": 23, "mdio": 18, "power": None, "clock": "in0"}
    kw = net.lan_config(spec, FakeNetwork, FakePin)
    assert _pins(kw) == {"mdc": 23, "mdio": 18, "power": None, "ref_clk": 0}
    assert kw["phy_type"] == FakeNetwork.PHY_IP101
    assert kw["ref_clk_mode"] == FakePin.IN
    assert kw["phy_addr"] == 1


def test_clock_out_on_16():
    spec = {"phy": "RTL8201", "addr": 31, "mdc": 4, "mdio": 5, "clock": "out16"}
    kw = net.lan_config(spec, FakeNetwork, FakePin)
    assert kw["ref_clk"].n == 16 and kw["ref_clk_mode"] == FakePin.OUT
    assert kw["power"] is None  # no "power" key: always powered


def test_an_unknown_phy_is_an_error_not_a_default():
    spec = {"phy": "W5500", "addr": 0, "mdc": 23, "mdio": 18, "clock": "in0"}
    try:
        net.lan_config(spec, FakeNetwork, FakePin)
    except AttributeError:
        return
    raise AssertionError("an unknown PHY was accepted")
