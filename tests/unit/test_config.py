import fakes
from locker import config


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_defaults_when_missing():
    d = fakes.scratch_dir("cfg")
    cfg = config.load(d + "/config.json")
    assert cfg.code_min == 8 and cfg.language == "nl"
    assert cfg.problems and "missing" in cfg.problems[0]


def test_corrupt_json_falls_back_to_defaults_and_says_so():
    d = fakes.scratch_dir("cfg")
    _write(d + "/config.json", '{"locker_id": "a", "pulse_ms": 3')
    cfg = config.load(d + "/config.json")
    assert cfg.pulse_ms == 300
    assert "not valid JSON" in cfg.problems[0]


def test_out_of_range_value_is_replaced_by_its_default():
    cfg = config.settings(
        {"locker_id": "L1", "pulse_ms": 50000, "language": "de", "code_min": 6, "open_alarm_ms": 9000}
    )
    assert cfg.locker_id == "L1"
    assert cfg.pulse_ms == 300
    assert cfg.language == "nl"
    assert cfg.code_min == 6
    assert cfg.open_alarm_ms == 9000
    assert len(cfg.problems) == 2


def test_booleans_are_not_numbers():
    cfg = config.settings({"unlock_retries": True})
    assert cfg.unlock_retries == 1
    assert cfg.problems


def test_code_max_never_below_code_min():
    cfg = config.settings({"code_min": 10, "code_max": 8})
    assert cfg.code_max == 10


def test_key_must_be_32_bytes_of_hex():
    d = fakes.scratch_dir("key")
    assert config.load_key(d + "/locker.key") is None
    _write(d + "/locker.key", "ab" * 31)
    assert config.load_key(d + "/locker.key") is None
    _write(d + "/locker.key", "zz" * 32)
    assert config.load_key(d + "/locker.key") is None
    _write(d + "/locker.key", "ab" * 32 + "\n")
    assert config.load_key(d + "/locker.key") == b"\xab" * 32
