"""config.json overrides that make the whole firmware quick to drive in tests: short messages and
pulses, quick debounce. Each suite adds what it needs on top."""

FAST_TIMINGS = {
    "message_ms": 1000,
    "confirm_ms": 500,
    "pulse_ms": 100,
    "pulse_gap_ms": 20,
    "sensor_debounce_ms": 10,
    "key_debounce_ms": 10,
}
