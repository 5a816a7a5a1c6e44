"""Every text the desk shows exists in Dutch and French (English is the key itself)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lockertools import SCHEMA_DIR
from lockertools.desk import auth, i18n
from lockertools.service import ingest

DESK = Path(i18n.__file__).resolve().parent
_LITERAL = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
_NAV = re.compile(r"""add_nav\(app, "[^"]+", "([^"]+)\"""")


def _texts() -> set[str]:
    found: set[str] = set()
    sources = [*DESK.glob("templates/*.html"), *DESK.glob("pages/*.py"), *DESK.glob("*.py")]
    for path in (p for p in sources if p.name != "i18n.py"):  # its docstring's examples are not shown
        text = path.read_text()
        for double, single in _LITERAL.findall(text):
            found.add(double or single)
        found.update(_NAV.findall(text))
    # texts chosen at run time: door states (the protocol's and the service's), roles
    states = json.loads((SCHEMA_DIR / "common.json").read_text())["$defs"]["door_state"]["enum"]
    found.update(states)
    found.update(s for s, _ in ingest._DOOR_EFFECTS.values() if s)
    found.update(auth.ROLES)
    found.discard("")
    return found


def test_every_text_has_its_dutch_and_french() -> None:
    texts = _texts()
    assert len(texts) > 50  # the scan found the templates' texts
    for name, catalogue in (("NL", i18n.NL), ("FR", i18n.FR)):
        missing = sorted(t for t in texts if t not in catalogue)
        assert not missing, f"{name} lacks: {missing}"


def test_fields_of_a_text_survive_translation() -> None:
    for name, catalogue in (("NL", i18n.NL), ("FR", i18n.FR)):
        for english, translated in catalogue.items():
            assert set(re.findall(r"\{\w+\}", english)) == set(re.findall(r"\{\w+\}", translated)), (name, english)


def test_a_translator_falls_back_to_english() -> None:
    assert i18n.translator("nl")("Lockers") == "Kluizen"
    assert i18n.translator("fr")("Wall of locker {id}", id="A") == "Façade de la consigne A"
    assert i18n.translator("en")("Lockers") == "Lockers"
    assert i18n.pick_language("de", "nl") == "nl"
