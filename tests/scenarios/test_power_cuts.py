"""Power-cut campaign: the firmware under MicroPython on the simulated board, its power cut (SIGKILL)
at random moments during pickups, code changes and boots, and the flash folder checked after every
cut (tests/scenarios/power_cut_campaign.py has the harness; docs/simulator.md, "Power-cut campaign").

Every test prints its seed; LOCKER_CUT_SEED=<seed> replays the same choices. LOCKER_CUT_SCALE
multiplies the number of cuts (e.g. 5 for a long soak).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from lockertools.sim import default_micropython

sys.path.insert(0, str(Path(__file__).resolve().parent))
from power_cut_campaign import Campaign, Plan, campaign_seed, run  # noqa: E402

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]

SCALE = float(os.environ.get("LOCKER_CUT_SCALE", "1"))

# Pickup stages a cut is tied to, with the longest random delay after each (seconds).
PICKUP_STAGES = {
    "digit": 0.02,  # a digit's echo: nothing is on flash yet
    "hash": 0.025,  # the '#' echo: lookup, consume (journal), latch, unlock event
    "journal": 0.0,  # used.bin replaced: the code is consumed, the latch comes next
    "solenoid": 0.006,  # the latch turned on: the unlock event is being written
    "open": 0.02,  # the door popped: 'opened' is recorded after the sensor's debounce
    "take": 0.01,
    "close": 0.025,  # the door shut: debounce, pickup event, journal completed
    "pickup": 0.002,  # the pickup was printed: complete() is being written
    "thanks": 0.05,
}
PICKUP_WEIGHTS = {
    "digit": 3,
    "hash": 14,
    "journal": 8,
    "solenoid": 12,
    "open": 14,
    "take": 8,
    "close": 16,
    "pickup": 18,
    "thanks": 5,
}


def cuts(n: int) -> int:
    return max(1, round(n * SCALE))


def event_plan(camp: Campaign, phase: str, stages: dict[str, int]) -> Plan:
    rng = camp.rng
    stage = rng.choices(list(stages), weights=list(stages.values()))[0]
    delay = 0.0 if rng.random() < 0.25 else rng.uniform(0, PICKUP_STAGES.get(stage, 0.02))
    return Plan(phase, stage, delay, arg=rng.randrange(8))


def jammed(camp: Campaign) -> Plan:
    """The latch is stuck: pulse, confirm window, retry, 'jammed'; the cut anywhere in it."""
    return Plan("pickup", "solenoid", camp.rng.uniform(0, 1.3), jam=True)


def pickup_events(camp: Campaign) -> Plan:
    r = camp.rng.random()
    if r < 0.06:
        return jammed(camp)
    if r < 0.82:
        return event_plan(camp, "pickup", PICKUP_WEIGHTS)
    return event_plan(camp, "used" if r < 0.94 else "wrong", {"hash": 3, "verdict": 1})


def random_moments(camp: Campaign) -> Plan:
    rng = camp.rng
    r = rng.random()
    if r < 0.05:
        return jammed(camp)
    phase = "pickup" if r < 0.75 else "used" if r < 0.9 else "wrong"
    if rng.random() < 0.8:
        return Plan(phase, "hash", rng.uniform(0, 0.3))  # from the '#' to well after the thank-you
    return Plan(phase, "start", rng.uniform(0, 0.7))  # anywhere in the action, typing included


def code_changes(camp: Campaign) -> Plan:
    rng = camp.rng
    r = rng.random()
    if r < 0.30:
        return Plan("apply", "sent", rng.uniform(0, 1.5 * camp.apply_latency))
    if r < 0.50:
        return Plan("apply", "tmp", rng.choice([0.0, rng.uniform(0, 0.001)]))
    if r < 0.60:
        return Plan("apply", "reply", rng.uniform(0, 0.002))
    if r < 0.75:
        return event_plan(camp, "apply+pickup", PICKUP_WEIGHTS)  # an applied code opens its door
    if r < 0.87:
        # the code is deleted while its door is open: cut in the apply or in the rest of the pickup
        if rng.random() < 0.5:
            return Plan("pickup+apply", "sent", rng.uniform(0, 1.5 * camp.apply_latency))
        return event_plan(camp, "pickup+apply", {"reply": 1, "close": 2, "pickup": 2})
    return event_plan(camp, "pickup", PICKUP_WEIGHTS)


def boots(camp: Campaign) -> Plan:
    rng = camp.rng
    if not camp.pending and rng.random() < 0.6:
        # leave an interrupted pickup for the next boots to settle
        return event_plan(camp, "pickup", {"hash": 2, "open": 3, "take": 3, "close": 4, "pickup": 3})
    if any(door in camp.b.opened for _, door in camp.pending) and rng.random() < 0.4:
        return Plan("boot", "settle_close", rng.uniform(0, 0.03))  # a resident shuts a door left open
    r = rng.random()
    if r < 0.5:
        return Plan("boot", "hello", rng.uniform(0, 0.2))  # loading, boot counter, boot event, settling
    if r < 0.75:
        return Plan("boot", "ready", rng.uniform(0, 0.08))  # settling interrupted pickups
    if r < 0.9:
        return Plan("boot", "settle_close", rng.uniform(0, 0.03))  # a resident shuts a door left open
    return Plan("boot", "settled", rng.uniform(0, 0.05))


@pytest.mark.parametrize(
    ("name", "rounds", "choose"),
    [
        ("pickup_events", 65, pickup_events),
        ("random_moments", 55, random_moments),
        ("code_changes", 65, code_changes),
        ("boots", 55, boots),
    ],
    ids=["pickup-events", "random-moments", "code-changes", "boots"],
)
def test_power_cuts(tmp_path: Path, name: str, rounds: int, choose: object) -> None:
    seed, rng = campaign_seed(name)
    camp = Campaign(tmp_path, name, seed, rng)
    stats = run(camp, cuts(rounds), choose)  # type: ignore[arg-type]
    assert stats.cuts == cuts(rounds)
