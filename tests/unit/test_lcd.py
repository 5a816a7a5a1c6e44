# HD44780-behind-PCF8574 driver against a byte-level decoder of the backpack and a model of the
# controller (8-bit at power-on, 4-bit after function set DL=0). Runs under pytest and MicroPython.
import hal.lcd as lcd_mod
from hal.lcd import Lcd, LcdError, fold

RS = 0x01
RW = 0x02
E = 0x04
BL = 0x08

lcd_mod.delay_us = lambda us: None  # the tests don't need the real HD44780 delays


class FakeBackpack:
    """PCF8574 at `address` driving an HD44780: decodes E falling edges into nibbles and executes them."""

    def __init__(self, address=0x27, cols=16, rows=2):
        self.address = address
        self.cols = cols
        self.rows = rows
        self.ddram = bytearray(b"\xff" * 128)  # power-on garbage
        self.eight_bit = True
        self.pending = None
        self.addr = 0
        self.function = None
        self.display = 0
        self.entry = 0
        self.commands = []
        self.init_nibbles = []  # nibbles received while in 8-bit mode
        self.data_writes = 0
        self.transactions = 0
        self.last = 0
        self.rw_seen = False
        self.unstable = False  # data lines changed while E was high
        self.bl_bytes = []
        self.fail = False

    def writeto(self, addr, buf):
        if self.fail:
            raise OSError(5)
        if addr != self.address:
            raise OSError(19)
        self.transactions += 1
        for b in bytes(buf):
            self._byte(b)
        return len(buf)

    def _byte(self, b):
        if b & RW:
            self.rw_seen = True
        self.bl_bytes.append(b & BL)
        if (self.last & E) and (b & E) and (self.last & 0xF1) != (b & 0xF1):
            self.unstable = True
        if (self.last & E) and not (b & E):
            self._nibble(self.last >> 4, self.last & RS)
        self.last = b

    def _nibble(self, nib, rs):
        if self.eight_bit:
            self.init_nibbles.append(nib)
            self._execute(nib << 4, rs)  # D3-D0 aren't wired: read as 0
        elif self.pending is None:
            self.pending = nib
        else:
            v = (self.pending << 4) | nib
            self.pending = None
            self._execute(v, rs)

    def _execute(self, v, rs):
        if rs:
            self.ddram[self.addr] = v
            self.addr = (self.addr + 1) & 0x7F
            self.data_writes += 1
            return
        self.commands.append(v)
        if v & 0x80:
            self.addr = v & 0x7F
        elif v & 0x40:
            pass  # CGRAM address: not modelled
        elif v & 0x20:
            self.eight_bit = bool(v & 0x10)
            self.pending = None
            self.function = v
        elif v & 0x08:
            self.display = v
        elif v & 0x04:
            self.entry = v
        elif v & 0x02:
            self.addr = 0
        elif v == 0x01:
            for i in range(128):
                self.ddram[i] = 32
            self.addr = 0

    def row(self, r):
        start = (0x00, 0x40, self.cols, 0x40 + self.cols)[r]
        return "".join(chr(c) for c in self.ddram[start : start + self.cols])

    def screen(self):
        return [self.row(r) for r in range(self.rows)]


def make(cols=16, rows=2):
    bus = FakeBackpack(cols=cols, rows=rows)
    return bus, Lcd(bus, 0x27, cols, rows)


def test_init_sequence_reaches_4bit_mode():
    bus, lcd = make()
    assert bus.init_nibbles[:4] == [0x3, 0x3, 0x3, 0x2]
    assert not bus.eight_bit
    assert bus.commands[-5:] == [0x28, 0x08, 0x01, 0x06, 0x0C]
    assert bus.function == 0x28 and bus.display == 0x0C and bus.entry == 0x06
    assert bus.screen() == [" " * 16, " " * 16]
    assert not bus.rw_seen and not bus.unstable
    assert lcd.ok


def test_one_line_display_uses_1_line_function_set():
    bus, _ = make(cols=16, rows=1)
    assert bus.function == 0x20


def test_backlight_is_on_and_can_be_switched():
    bus, lcd = make()
    assert all(bus.bl_bytes)
    lcd.backlight(False)
    lcd.show(["x"])
    assert bus.bl_bytes[-1] == 0
    lcd.backlight(True)
    assert bus.bl_bytes[-1] == BL


def test_show_writes_rows_padded_and_clipped():
    bus, lcd = make()
    assert lcd.show(["Hello", "A much longer second line"])
    assert bus.screen() == ["Hello           ", "A much longer se"]
    assert lcd.text() == bus.screen()
    assert not bus.unstable


def test_show_missing_rows_are_blank_and_str_splits_lines():
    bus, lcd = make()
    lcd.show(["one", "two"])
    lcd.show(["only"])
    assert bus.screen() == ["only            ", " " * 16]
    lcd.show("a\nb")
    assert bus.screen() == ["a" + " " * 15, "b" + " " * 15]


def test_20x4_row_addresses():
    bus, lcd = make(cols=20, rows=4)
    lines = ["row zero", "row one", "row two", "row three"]
    lcd.show(lines)
    assert bus.screen() == [s + " " * (20 - len(s)) for s in lines]


def test_only_changed_characters_are_written():
    bus, lcd = make()
    lcd.show(["Code: 1234", "Door 3"])
    bus.data_writes = 0
    bus.transactions = 0
    lcd.show(["Code: 1234", "Door 3"])
    assert bus.transactions == 0 and bus.data_writes == 0
    lcd.show(["Code: 1235", "Door 3"])
    assert bus.data_writes == 1 and bus.transactions == 1
    assert bus.screen()[0] == "Code: 1235      "
    bus.data_writes = 0
    lcd.show(["Xode: 1235", "Door 4"])  # far apart: two short runs, not the whole screen
    assert bus.data_writes == 2
    assert bus.screen() == ["Xode: 1235      ", "Door 4          "]


def test_no_delays_after_init():
    bus, lcd = make()
    calls = []
    lcd_mod.delay_us = lambda us: calls.append(us)
    try:
        lcd.show(["Parcel for you", "Door 12"])
        lcd.show(["Merci", ""])
    finally:
        lcd_mod.delay_us = lambda us: None
    assert calls == []
    assert bus.screen() == ["Merci           ", " " * 16]


def test_fold_maps_nl_and_fr_to_ascii():
    cases = [
        ("Dépôt réussi", "Depot reussi"),
        ("À bientôt, Noël", "A bientot, Noel"),
        ("Ça coûte 2€", "Ca coute 2EUR"),
        ("Œuvre naïve", "OEuvre naive"),
        ("ĳsbeer geëindigd", "ijsbeer geeindigd"),
        ("«Entrez» – code…", '"Entrez" - code...'),
        ("l’accès", "l'acces"),
        ("Prêt ?", "Pret ?"),
    ]
    for text, want in cases:
        out = bytearray(len(want))
        fold(text, out)
        assert bytes(out) == want.encode(), (text, bytes(out))


def test_fold_pads_clips_and_marks_unknown():
    out = bytearray(6)
    fold("ab", out)
    assert bytes(out) == b"ab    "
    fold("abcdefgh", out)
    assert bytes(out) == b"abcdef"
    fold("a☃b\tc", out)
    assert bytes(out) == b"a?b c "
    fold("20°C", out)
    assert bytes(out) == b"20\xdfC  "
    fold("é" * 10, out)
    assert bytes(out) == b"eeeeee"
    fold("œœœœ", out)
    assert bytes(out) == b"oeoeoe"


def test_show_folds_accents_on_the_display():
    bus, lcd = make()
    lcd.show(["Dépôt réussi", "Porte fermée"])
    assert bus.screen() == ["Depot reussi    ", "Porte fermee    "]


def test_init_without_answer_raises_lcd_error():
    bus = FakeBackpack(address=0x3F)
    try:
        Lcd(bus, 0x27, 16, 2)
    except LcdError as exc:
        assert isinstance(exc, OSError)
        assert "0x27" in str(exc)
    else:
        assert False, "expected LcdError"


def test_bus_error_is_counted_then_display_recovers():
    bus, lcd = make()
    lcd.show(["hello", "world"])
    bus.fail = True
    assert lcd.show(["HELLO", "WORLD"]) is False
    assert lcd.errors == 1 and not lcd.ok
    # Half a byte may have reached the controller: put it out of step, as a real glitch would.
    bus.fail = False
    bus.pending = 0x4
    assert lcd.show(["HELLO", "WORLD"]) is True
    assert lcd.ok
    assert bus.screen() == ["HELLO           ", "WORLD           "]
    assert not bus.eight_bit
