# The guessing bound of docs/security.md: computed by locker.guessing, reached by the best attack
# played against the real Throttle, and not beaten by other attacks.
import fakes
from locker import guessing, throttle

DAY_MS = 86400 * 1000
DEFAULTS = (3, 5000, 300000)  # throttle_free, throttle_base_ms, throttle_max_ms
DECAY_MS = 300000  # throttle_decay_ms
TYPING_MS = 4000


def _play(pauses, name):
    """Guesses the real Throttle takes in 24 h from an attacker who types during each wait, presses #
    as it runs out, after pauses(i) decay periods more. pauses: a function of the guess number."""
    d = fakes.scratch_dir(name)
    t = throttle.Throttle(d + "/throttle.bin", DEFAULTS[0], DEFAULTS[1], DEFAULTS[2], DECAY_MS)
    t.load()
    start = now = 1000
    guesses = 0
    while True:
        t.settle(now)  # as the app's loop does
        assert t.wait_ms(now) == 0
        t.failure(now)
        guesses += 1
        nxt = now + t.wait_ms(now) + pauses(guesses - 1) * t.decay_ms
        now = max(nxt, now + TYPING_MS)
        if now - start >= DAY_MS:
            return guesses


def test_the_best_attack_on_the_real_throttle_reaches_the_computed_bound():
    best = guessing.max_guesses_per_day(*DEFAULTS, seconds_per_guess=4, decay_ms=DECAY_MS)
    plan = guessing.best_attack(*DEFAULTS, seconds_per_guess=4, decay_ms=DECAY_MS)
    assert len(plan) == best - 1
    assert _play(lambda i: plan[i] if i < len(plan) else 0, "guess-best") == best
    assert best == 296  # quoted in docs/security.md


def test_other_attacks_do_not_beat_the_bound():
    best = guessing.max_guesses_per_day(*DEFAULTS, seconds_per_guess=4, decay_ms=DECAY_MS)
    assert _play(lambda i: 0, "guess-greedy") <= best  # never pause
    assert _play(lambda i: 1 if i % 7 == 3 else 0, "guess-some") <= best
    assert _play(lambda i: 10, "guess-patient") <= best  # let the count decay fully each time
    seed = [12345]

    def rand(i):
        seed[0] = (seed[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (seed[0] >> 16) % 4 if seed[0] & 8 else 0

    assert _play(rand, "guess-random") <= best


def test_eight_digit_codes_on_24_doors_are_safe_for_a_day():
    per_day = guessing.max_guesses_per_day(*DEFAULTS, seconds_per_guess=4, decay_ms=DECAY_MS)
    assert per_day * 24 / 10**8 < 1e-4
    # Typing faster does not help (the waits dominate); the decay gives a patient attacker nothing.
    assert guessing.max_guesses_per_day(*DEFAULTS, seconds_per_guess=1, decay_ms=DECAY_MS) == per_day
    assert guessing.max_guesses_per_day(*DEFAULTS, seconds_per_guess=4) == per_day


def test_the_model_itself():
    # By hand, with no pause: guesses at 0, 4 and 8 s (free), 12 s (then 5 s of wait), 17, 27, 47, 87,
    # 167 and 327 s; from the 10th on one every 300 s, the last before 86400 s.
    assert guessing.max_guesses_per_day(*DEFAULTS, seconds_per_guess=4) == 9 + (86400 - 327) // 300 + 1
    # a decay quicker than the longest wait would buy guesses: why Throttle never allows one
    assert guessing.max_guesses_per_day(*DEFAULTS, seconds_per_guess=4, decay_ms=120000) > 416
