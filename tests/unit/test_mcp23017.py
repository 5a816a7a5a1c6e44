# MCP23017 driver against a register-level model of the chip (datasheet DS20001952, IOCON.BANK = 0).
# Runs under pytest (CPython) and under MicroPython.
from hal.mcp23017 import MCP23017, ExpanderError

IODIRA = 0x00
IODIRB = 0x01
GPPUA = 0x0C
GPPUB = 0x0D
GPIOA = 0x12
GPIOB = 0x13
OLATA = 0x14
OLATB = 0x15
NREGS = 0x16


class FakeMCP:
    """An MCP23017 on an I2C bus, modelled at register level.

    - Power-on: IODIRA/B = 0xFF (all inputs), every other register 0.
    - Sequential mode (IOCON.SEQOP = 0): the register pointer steps by one after each byte and wraps.
    - Writing GPIO writes OLAT; reading GPIO returns, per pin, the OLAT bit for outputs and the external
      level for inputs (a floating input with its 100 kOhm pull-up reads 1, without it 0).
    - `driven[n]` is the history of levels pin n actually drove (outputs only), to catch glitches.
    """

    def __init__(self, address=0x20):
        self.address = address
        self.regs = bytearray(NREGS)
        self.regs[IODIRA] = 0xFF
        self.regs[IODIRB] = 0xFF
        self.external = [None] * 16  # None = nothing drives the pin
        self.driven = [[] for _ in range(16)]
        self.log = []  # ("w", reg, bytes) / ("r", reg, n)
        self.fail = False
        self.reads_into = 0

    # --- register helpers -----------------------------------------------------
    def reg16(self, rega):
        return self.regs[rega] | (self.regs[rega + 1] << 8)

    def level(self, n):
        """What pin n is at: driven level for an output, external/pull-up level for an input."""
        if not (self.reg16(IODIRA) >> n) & 1:
            return (self.reg16(OLATA) >> n) & 1
        if self.external[n] is not None:
            return self.external[n]
        return (self.reg16(GPPUA) >> n) & 1

    def output_level(self, n):
        """Driven level of pin n, or None while it is an input (high impedance)."""
        if (self.reg16(IODIRA) >> n) & 1:
            return None
        return (self.reg16(OLATA) >> n) & 1

    def power_cycle(self):
        for i in range(NREGS):
            self.regs[i] = 0
        self.regs[IODIRA] = 0xFF
        self.regs[IODIRB] = 0xFF

    def _note_outputs(self):
        for n in range(16):
            lv = self.output_level(n)
            if lv is not None and (not self.driven[n] or self.driven[n][-1] != lv):
                self.driven[n].append(lv)

    # --- the I2C object's interface ------------------------------------------
    def _check(self, addr):
        if self.fail:
            raise OSError(5)  # EIO
        if addr != self.address:
            raise OSError(19)  # ENODEV: no ACK

    def writeto_mem(self, addr, memaddr, buf):
        self._check(addr)
        self.log.append(("w", memaddr, bytes(buf)))
        reg = memaddr
        for b in buf:
            if reg == GPIOA or reg == GPIOB:
                self.regs[reg + 2] = b  # a GPIO write goes to OLAT
            else:
                self.regs[reg] = b
            self._note_outputs()
            reg = (reg + 1) % NREGS

    def _read(self, memaddr, n):
        out = bytearray(n)
        reg = memaddr
        for i in range(n):
            if reg == GPIOA or reg == GPIOB:
                base = 0 if reg == GPIOA else 8
                v = 0
                for bit in range(8):
                    v |= self.level(base + bit) << bit
                out[i] = v
            else:
                out[i] = self.regs[reg]
            reg = (reg + 1) % NREGS
        return out

    def readfrom_mem(self, addr, memaddr, n):
        self._check(addr)
        self.log.append(("r", memaddr, n))
        return bytes(self._read(memaddr, n))

    def readfrom_mem_into(self, addr, memaddr, buf):
        self._check(addr)
        self.log.append(("r", memaddr, len(buf)))
        self.reads_into += 1
        data = self._read(memaddr, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]


def writes(fake, reg=None):
    return [e for e in fake.log if e[0] == "w" and (reg is None or e[1] == reg)]


def reads(fake):
    return [e for e in fake.log if e[0] == "r"]


def test_init_returns_chip_to_power_on_state():
    fake = FakeMCP()
    # A previous run (before a watchdog reset) left pins 0 and 9 driven high as outputs.
    fake.regs[IODIRA] = 0xFE
    fake.regs[IODIRB] = 0xFD
    fake.regs[OLATA] = 0x01
    fake.regs[OLATB] = 0x02
    fake.regs[GPPUA] = 0x55
    MCP23017(fake, 0x20)
    assert fake.reg16(IODIRA) == 0xFFFF
    assert fake.reg16(OLATA) == 0
    assert fake.reg16(GPPUA) == 0
    assert fake.output_level(0) is None and fake.output_level(9) is None


def test_every_write_covers_both_ports_in_one_transaction():
    fake = FakeMCP()
    x = MCP23017(fake, 0x20)
    x.pin(3, output=True)
    x.pin(12, output=False, pull_up=True)
    x.pin(3, output=True).value(1)
    assert writes(fake)
    for _, reg, data in writes(fake):
        assert reg in (IODIRA, GPPUA, OLATA)
        assert len(data) == 2


def test_init_raises_a_clear_error_without_an_answer():
    fake = FakeMCP(address=0x21)
    try:
        MCP23017(fake, 0x20)
    except ExpanderError as exc:
        assert isinstance(exc, OSError)
        assert "0x20" in str(exc)
    else:
        assert False, "expected ExpanderError"


def test_output_pin_drives_port_a_and_b():
    fake = FakeMCP()
    x = MCP23017(fake, 0x20)
    a = x.pin(2, output=True)
    b = x.pin(10, output=True)
    assert fake.regs[IODIRA] == 0xFF & ~(1 << 2)
    assert fake.regs[IODIRB] == 0xFF & ~(1 << 2)
    a.value(1)
    assert fake.output_level(2) == 1 and fake.output_level(10) == 0
    b.value(1)
    assert fake.regs[OLATB] == 1 << 2
    a.value(0)
    assert fake.reg16(OLATA) == 1 << 10
    assert a.value() == 0 and b.value() == 1


def test_output_written_only_on_change():
    fake = FakeMCP()
    x = MCP23017(fake, 0x20)
    p = x.pin(5, output=True)
    before = len(writes(fake, OLATA))
    p.value(0)
    p.value(0)
    assert len(writes(fake, OLATA)) == before
    p.value(1)
    p.value(1)
    assert len(writes(fake, OLATA)) == before + 1


def test_output_latch_set_before_direction():
    # An active-low load is off at 1: the pin must never drive 0 while being configured.
    fake = FakeMCP()
    x = MCP23017(fake, 0x20)
    x.pin(7, output=True, value=1)
    x.pin(8, output=True, value=0)
    assert fake.driven[7] == [1]
    assert fake.driven[8] == [0]


def test_inputs_read_the_cache_filled_by_refresh():
    fake = FakeMCP()
    x = MCP23017(fake, 0x20)
    p = x.pin(4, pull_up=True)
    q = x.pin(13)
    fake.external[13] = 1
    assert fake.reg16(GPPUA) == 1 << 4
    x.refresh()
    assert p.value() == 1  # floating, pulled up
    assert q.value() == 1
    fake.external[4] = 0
    fake.external[13] = 0
    n = len(reads(fake))
    assert p.value() == 1 and q.value() == 1  # no bus traffic between polls
    assert len(reads(fake)) == n
    assert x.refresh()
    assert p.value() == 0 and q.value() == 0
    assert x.inputs() & (1 << 4) == 0


def test_refresh_is_one_two_byte_read_into_a_buffer():
    fake = FakeMCP()
    x = MCP23017(fake, 0x20)
    for n in range(16):
        x.pin(n, pull_up=True)
    fake.log = []
    fake.reads_into = 0
    x.refresh()
    assert fake.log == [("r", GPIOA, 2)]
    assert fake.reads_into == 1
    assert x.inputs() == 0xFFFF


def test_refresh_error_is_counted_and_keeps_last_levels():
    fake = FakeMCP()
    x = MCP23017(fake, 0x20)
    p = x.pin(0, pull_up=True)
    x.refresh()
    assert p.value() == 1
    fake.fail = True
    fake.external[0] = 0
    assert x.refresh() is False
    assert x.refresh() is False
    assert x.errors == 2 and not x.ok
    assert p.value() == 1
    fake.fail = False
    assert x.refresh() is True
    assert x.ok and p.value() == 0


def test_recovery_restores_configuration_after_expander_power_loss():
    fake = FakeMCP()
    x = MCP23017(fake, 0x20)
    sol = x.pin(1, output=True)
    x.pin(9, pull_up=True)
    sol.value(1)
    fake.fail = True
    assert not x.refresh()
    fake.power_cycle()  # brown-out of the expander while the bus was down
    fake.fail = False
    assert x.refresh()
    assert fake.output_level(1) == 1
    assert fake.reg16(GPPUA) == 1 << 9


def test_failed_output_write_is_retried_by_refresh():
    fake = FakeMCP()
    x = MCP23017(fake, 0x20)
    sol = x.pin(6, output=True)
    sol.value(1)
    fake.fail = True
    sol.value(0)  # must not raise in the door loop
    assert x.errors == 1
    assert sol.value() == 0
    fake.fail = False
    assert fake.output_level(6) == 1
    x.refresh()
    assert fake.output_level(6) == 0


def test_output_pin_reads_its_latch_not_the_input_cache():
    fake = FakeMCP()
    x = MCP23017(fake, 0x20)
    p = x.pin(15, output=True)
    p.value(1)
    assert p.value() == 1
    x.refresh()
    assert p.value() == 1 and x.inputs() & (1 << 15)


def test_pin_number_out_of_range_is_refused():
    x = MCP23017(FakeMCP(), 0x20)
    for n in (-1, 16):
        try:
            x.pin(n)
        except ValueError:
            pass
        else:
            assert False, "pin %d accepted" % n


def test_configuring_a_pin_on_a_dead_bus_raises():
    fake = FakeMCP()
    x = MCP23017(fake, 0x20)
    fake.fail = True
    try:
        x.pin(3, output=True, value=1)
    except ExpanderError as exc:
        assert "pin 3" in str(exc)
    else:
        assert False, "expected ExpanderError"


def test_active_low_pins_apply_their_polarity():
    # One object per expander pin: an active-low pin inverts reads and writes itself (hal.pins relies
    # on it instead of wrapping the pin).
    fake = FakeMCP()
    x = MCP23017(fake, 0x20)
    sol = x.pin(2, output=True, value=1, active_low=True)  # off = high on the wire
    sensor = x.pin(11, pull_up=True, active_low=True)
    plain = x.pin(12, pull_up=True)
    assert fake.driven[2] == [1]
    assert sol.output and not sensor.output
    assert sol.value() == 0  # logical off
    sol.value(1)
    assert fake.output_level(2) == 0 and sol.value() == 1
    sol.on()
    assert fake.output_level(2) == 0
    sol.off()
    assert fake.output_level(2) == 1 and sol.value() == 0
    fake.external[11] = 0
    fake.external[12] = 0
    x.refresh()
    assert sensor.value() == 1 and plain.value() == 0
    fake.external[11] = 1
    x.refresh()
    assert sensor.value() == 0
    sensor.value(1)  # ignored on an input
    assert fake.output_level(11) is None
