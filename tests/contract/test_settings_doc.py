"""The settings table of docs/operation.md gives every number setting of the firmware
(firmware/locker/config.py) with its default and range, as the firmware has them: a host or a
technician writing config.json from the doc alone gets what the locker accepts."""

from __future__ import annotations

import re

from tests.support import REPO_ROOT

_UNITS = {"": 1, "s": 1000, "min": 60_000, "h": 3_600_000}


def _table() -> dict[str, tuple[str, str]]:
    """setting -> (default, range) as written in the table."""
    text = (REPO_ROOT / "docs" / "operation.md").read_text()
    section = text.split("## Settings (`config.json`)", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-z_]+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split(",")]
        ranges = [r.strip() for r in cells[2].split(",")] if cells[2] else []
        for i, name in enumerate(names):
            out[name] = (defaults[i] if i < len(defaults) else "", ranges[i] if i < len(ranges) else "")
    return out


def _bounds(text: str, in_ms: bool) -> tuple[int, int]:
    """ "5 s–5 min" -> (5000, 300000) for a setting in ms; a side without a unit takes the other's."""
    sides = [re.fullmatch(r"([0-9.]+) ?(s|min|h)?", side.strip()) for side in text.split("–")]
    assert len(sides) == 2 and all(sides), f"not a range: {text!r}"
    values = [(float(m.group(1)), m.group(2) or "") for m in sides if m]
    unit = values[1][1] or values[0][1]
    scale = [_UNITS[u or unit] if in_ms else 1 for _, u in values]
    assert in_ms or not unit, f"a unit on a setting that is not in ms: {text!r}"
    return round(values[0][0] * scale[0]), round(values[1][0] * scale[1])


def _accepts(config: object, name: str, value: int) -> bool:
    """Whether the firmware takes this value (out of range, it falls back and reports a problem).
    code_max is probed with code_min at its lowest: a code_max below code_min is raised to it."""
    values = {"code_min": 6, name: value} if name == "code_max" else {name: value}
    cfg = config.settings(values)  # type: ignore[attr-defined]
    return getattr(cfg, name) == value and not cfg.problems


def test_the_settings_table_has_the_firmwares_defaults_and_ranges() -> None:
    from locker import config  # type: ignore[import-not-found]

    defaults = vars(config.settings())
    numbers = {k: v for k, v in defaults.items() if isinstance(v, int) and not isinstance(v, bool)}
    assert len(numbers) > 20, numbers
    table = _table()
    wrong = []
    for name, default in numbers.items():
        if name not in table:
            wrong.append(f"{name}: not in the table")
            continue
        doc_default, doc_range = table[name]
        if doc_default != str(default):
            wrong.append(f"{name}: default {doc_default!r} in the doc, {default} in the firmware")
        if not doc_range:
            wrong.append(f"{name}: no range in the doc")
            continue
        low, high = _bounds(doc_range, name.endswith("_ms"))
        if not (_accepts(config, name, low) and _accepts(config, name, high)):
            wrong.append(f"{name}: the firmware refuses an end of {doc_range!r}")
        if _accepts(config, name, low - 1) or _accepts(config, name, high + 1):
            wrong.append(f"{name}: the firmware takes more than {doc_range!r}")
    assert wrong == []
