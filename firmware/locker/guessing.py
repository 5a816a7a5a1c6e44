# The guessing arithmetic of the keypad throttle (locker/throttle.py), for docs/security.md and the
# tests: never imported by the running firmware.
#
# The attacker's model: they never hit a code (so the count never resets), type the digits of the
# next guess during the wait and press # the moment it ends (a guess still takes at least
# seconds_per_guess), and may pause to let the count decay. The first guess is at the start of the
# day; every # pressed within the 24 hours counts.
from micropython import const

from locker.throttle import cap_level, delay_after

_DAY_MS = const(86_400_000)


def _rounds(free_failures, base_delay_ms, max_delay_ms, seconds_per_guess, decay_ms, day_ms, keep):
    """Earliest time of the g-th guess for each count after it, guess by guess (a count above
    cap_level waits and decays as cap_level does). keep: a list that gets, per guess after the first,
    (previous count, decay steps waited) for each count, so that the best attack can be traced back."""
    level = cap_level(free_failures, base_delay_ms, max_delay_ms)
    typing = int(seconds_per_guess * 1000)
    none = -1
    best = [none] * (level + 1)  # best[n]: earliest time of this guess, leaving the count at n
    best[1] = 0
    g = 1
    while True:
        nxt = [none] * (level + 1)
        prev = bytearray(level + 1)
        steps = bytearray(level + 1)
        for n in range(1, level + 1):
            t = best[n]
            if t < 0:
                continue
            wait = delay_after(n, free_failures, base_delay_ms, max_delay_ms)
            top = min(n, level) if decay_ms else 0
            for k in range(top + 1):
                at = t + max(typing, wait + k * decay_ms if k else wait)
                m = n if not k else max(0, min(n, level) - k)
                m = min(m + 1, level)
                if at < day_ms and (nxt[m] < 0 or at < nxt[m]):
                    nxt[m] = at
                    prev[m] = n
                    steps[m] = k
        if max(nxt) < 0:
            return g, best
        if keep is not None:
            keep.append((prev, steps))
        best = nxt
        g += 1


def max_guesses_per_day(free_failures, base_delay_ms, max_delay_ms, seconds_per_guess=4, decay_ms=0):
    """Most codes one keypad takes in 24 h from the best attacker of the model above (decay_ms 0:
    no decay)."""
    return _rounds(free_failures, base_delay_ms, max_delay_ms, seconds_per_guess, decay_ms, _DAY_MS, None)[0]


def best_attack(free_failures, base_delay_ms, max_delay_ms, seconds_per_guess=4, decay_ms=0):
    """The attack that reaches max_guesses_per_day: per guess after the first, how many decay steps
    to wait after the wait ran out before pressing # (a bytearray)."""
    keep = []
    g, best = _rounds(free_failures, base_delay_ms, max_delay_ms, seconds_per_guess, decay_ms, _DAY_MS, keep)
    n = 1
    for m in range(len(best)):
        if best[m] >= 0:
            n = m
            break
    plan = bytearray(g - 1)
    for i in range(g - 2, -1, -1):
        prev, steps = keep[i]
        plan[i] = steps[n]
        n = prev[n]
    return plan
