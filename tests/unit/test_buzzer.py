# Non-blocking buzzer patterns on a fake PWM. Runs under pytest and MicroPython.
from hal.buzzer import ACCEPTED, ALARM, CLOSE_DOOR, DOOR_OPEN, KEY_CLICK, PATTERNS, WRONG, Buzzer
from locker.ticks import ticks_add


class FakePWM:
    """Records what a listener would hear: the tone (Hz) or 0 after every change."""

    def __init__(self):
        self._freq = 0
        self._duty = 0
        self.freq_calls = 0
        self.heard = []

    def freq(self, hz=None):
        if hz is None:
            return self._freq
        self._freq = hz
        self.freq_calls += 1
        return None

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        self._duty = d
        return None

    def sound(self):
        return self._freq if self._duty else 0


def test_starts_silent():
    pwm = FakePWM()
    b = Buzzer(pwm)
    assert pwm.sound() == 0
    assert not b.playing()
    assert b.update(1000) is False


def test_key_click_plays_then_stops():
    pwm = FakePWM()
    b = Buzzer(pwm)
    b.play(KEY_CLICK, 100)
    freq, ms = KEY_CLICK[0]
    assert pwm.sound() == freq and pwm.duty_u16() > 0
    assert b.update(100 + ms - 1) is True
    assert pwm.sound() == freq
    assert b.update(100 + ms) is False
    assert pwm.sound() == 0 and not b.playing()


def test_steps_follow_the_schedule_including_silences():
    pwm = FakePWM()
    b = Buzzer(pwm)
    b.play(ACCEPTED, 0)
    t = 0
    for freq, ms in ACCEPTED:
        assert b.update(t) is True
        assert pwm.sound() == freq
        assert b.update(t + ms - 1) is True
        assert pwm.sound() == freq
        t += ms
    assert b.update(t) is False
    assert pwm.sound() == 0


def test_late_update_jumps_to_the_step_due_without_stretching():
    pwm = FakePWM()
    b = Buzzer(pwm)
    b.play(DOOR_OPEN, 0)
    # DOOR_OPEN: on 0-60, off 60-120, on 120-180, off 180-240, on 240-300
    assert b.update(250) is True
    assert pwm.sound() == DOOR_OPEN[4][0]
    assert b.update(299) is True
    assert b.update(300) is False
    b.play(DOOR_OPEN, 1000)
    assert b.update(5000) is False  # far too late: the pattern is over, silence
    assert pwm.sound() == 0


def test_works_across_ticks_wraparound():
    pwm = FakePWM()
    b = Buzzer(pwm)
    start = ticks_add(0, -10)  # 10 ms before the tick counter wraps
    b.play(WRONG, start)
    total = 0
    for _, ms in WRONG:
        total += ms
    assert b.update(ticks_add(start, 5)) is True
    assert pwm.sound() == WRONG[0][0]
    assert b.update(ticks_add(start, WRONG[0][1])) is True
    assert pwm.sound() == 0  # the gap
    assert b.update(ticks_add(start, total - 1)) is True
    assert b.update(ticks_add(start, total)) is False


def test_play_replaces_the_current_pattern_and_stop_silences():
    pwm = FakePWM()
    b = Buzzer(pwm)
    b.play(ALARM, 0)
    assert pwm.sound() == ALARM[0][0]
    b.play(KEY_CLICK, 10)
    assert pwm.sound() == KEY_CLICK[0][0]
    assert b.update(10 + KEY_CLICK[0][1]) is False
    b.play(CLOSE_DOOR, 50)
    b.stop()
    assert pwm.sound() == 0 and not b.playing()
    b.play((), 60)
    assert pwm.sound() == 0 and not b.playing()


def test_frequency_set_only_when_it_changes():
    pwm = FakePWM()
    b = Buzzer(pwm)
    b.play(DOOR_OPEN, 0)
    for t in range(0, 300, 5):
        b.update(t)
    assert pwm.freq_calls == 1


def test_public_patterns_are_well_formed_and_distinct():
    pats = [KEY_CLICK, ACCEPTED, WRONG, DOOR_OPEN, CLOSE_DOOR, ALARM]
    for p in pats:
        assert isinstance(p, tuple) and len(p) > 0
        for step in p:
            freq, ms = step
            assert freq == 0 or 100 <= freq <= 10000
            assert 0 < ms <= 2000
        assert p[0][0] > 0  # starts audibly
    for i in range(len(pats)):
        for j in range(i + 1, len(pats)):
            assert pats[i] != pats[j]
    assert len(PATTERNS) == 6
    for p in pats:
        assert p in PATTERNS.values()
    assert KEY_CLICK[0][1] <= 30  # a click must not slow typing down
