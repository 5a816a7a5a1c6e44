# config.json -> settings. A missing, corrupt or out-of-range value never stops the locker: it
# falls back to the default and the problem is reported (event + log) so a technician can fix it.
import json

# name: (default, minimum, maximum) for numbers; (default, allowed) for strings.
_NUMBERS = {
    "code_min": (8, 6, 12),
    "code_max": (12, 6, 16),
    "entry_timeout_ms": (30000, 5000, 300000),
    "message_ms": (6000, 1000, 60000),
    "pulse_ms": (300, 50, 1000),
    "pulse_gap_ms": (150, 0, 5000),
    "confirm_ms": (3000, 500, 30000),
    "unlock_retries": (1, 0, 3),
    "open_alarm_ms": (120000, 5000, 3600000),
    "sensor_debounce_ms": (50, 5, 1000),
    "key_debounce_ms": (20, 5, 200),
    "scan_ms": (5, 1, 50),
    "throttle_free": (3, 1, 10),
    "throttle_base_ms": (5000, 1000, 60000),
    "throttle_max_ms": (300000, 10000, 3600000),
    "throttle_decay_ms": (300000, 10000, 3600000),  # quiet time per step down (never below throttle_max_ms)
    "safe_mode_boots": (10, 2, 100),
    "boot_ok_ms": (60000, 1000, 600000),
    "safe_mode_reboot_ms": (300000, 10000, 3600000),
    "watchdog_ms": (8000, 2000, 60000),
    "task_silence_ms": (3000, 500, 30000),
    "outbox_capacity": (500, 10, 5000),
    "code_capacity": (512, 16, 2000),
    "grace_ms": (120000, 0, 600000),  # a resident may reopen their door with the same code
    "staff_timeout_ms": (120000, 10000, 900000),  # a session's door open: ends after this without a key
    "staff_idle_ms": (30000, 5000, 300000),  # at a staff screen: the session ends after this without a key
    "idle_turn_ms": (3000, 0, 60000),  # the idle prompt shows each language in turn for this (0: default only)
}
_STRINGS = {
    "language": ("nl", ("nl", "fr", "en")),
}


class Settings:
    """Plain attributes, no methods: once the locker has booted, this module can be unloaded
    (runtime drops it from sys.modules) and its tables freed, while the settings stay."""


def settings(values=None):
    """Settings from a parsed config.json object: defaults for what is missing or out of range."""
    cfg = Settings()
    cfg.problems = []
    cfg.locker_id = "locker"
    for name, spec in _NUMBERS.items():
        setattr(cfg, name, spec[0])
    for name, spec in _STRINGS.items():
        setattr(cfg, name, spec[0])
    if values is not None:
        _apply(cfg, values)
    return cfg


def _apply(cfg, values):
    if not isinstance(values, dict):
        cfg.problems.append("config: not a JSON object; using defaults")
        return
    lid = values.get("locker_id")
    if isinstance(lid, str) and 0 < len(lid) <= 32:
        cfg.locker_id = lid
    elif lid is not None:
        cfg.problems.append("config: locker_id must be a string of 1-32 characters")
    for name, value in values.items():
        if name in _NUMBERS:
            default, low, high = _NUMBERS[name]
            if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
                setattr(cfg, name, value)
            else:
                cfg.problems.append("config: %s=%r out of range %d..%d; using %d" % (name, value, low, high, default))
        elif name in _STRINGS:
            default, allowed = _STRINGS[name]
            if value in allowed:
                setattr(cfg, name, value)
            else:
                cfg.problems.append("config: %s=%r not one of %s; using %s" % (name, value, allowed, default))
    if cfg.code_max < cfg.code_min:
        cfg.problems.append("config: code_max < code_min; using code_max=%d" % cfg.code_min)
        cfg.code_max = cfg.code_min


def load(path="config.json"):
    """Read the config file; never raises: problems are listed on the result."""
    try:
        with open(path) as f:
            values = json.load(f)
    except OSError:
        cfg = settings()
        cfg.problems.append("config: %s missing; using defaults" % path)
        return cfg
    except ValueError:
        cfg = settings()
        cfg.problems.append("config: %s is not valid JSON; using defaults" % path)
        return cfg
    return settings(values)


def load_key(path="locker.key"):
    """The locker's 32-byte secret (hex in the file). None when missing or malformed."""
    import binascii

    try:
        with open(path) as f:
            text = f.read().strip()
        key = binascii.unhexlify(text)
    except (OSError, ValueError):
        return None
    return key if len(key) == 32 else None
