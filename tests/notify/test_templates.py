"""What a message says: every shipped template in every language renders the facts a resident
needs in plain, short sentences; the town's own templates are checked at start-up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lockertools.notify import TemplateError, Templates, words
from lockertools.notify.templates import KINDS, LANGUAGES

MAX_WORDS = 15


def _context(language: str, kind: str, help_phone: str | None = "09 210 10 10") -> dict[str, object]:
    context: dict[str, object] = {
        "town": "Sint-Martens-Latem",
        "help_phone": help_phone,
        "help_hours": "ma-vr 9-17 uur",
        "address": "Dorpsstraat 1, 9830 Sint-Martens-Latem",
        "hours": words.OPEN_ALWAYS[language],
        "item": words.item_words("borrowed material", language),  # the longest item name
        "name": "Ann Peeters",
        "greeting": f"{words.DEAR[language]} Ann Peeters,",
        "deadline": words.date_words(1_800_000_000, language),
        "deadline_time": "14:00",
    }
    if kind == "loaded":
        context["code"] = words.grouped("12345678")
    return context


def _sentences(text: str) -> list[str]:
    # A sentence ends at . ! or ? followed by a space or the end, or at a line's end (a step, a title).
    out = []
    for line in text.splitlines():
        out.extend(s for s in re.split(r"(?<=[.!?])\s+", line) if s.strip())
    return out


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("help_phone", ["09 210 10 10", None])
def test_every_sentence_is_short(language: str, kind: str, help_phone: str | None) -> None:
    rendered = Templates.load().render(kind, language, _context(language, kind, help_phone))
    for part in (rendered.subject, rendered.body):
        for sentence in _sentences(part):
            count = len(sentence.split())
            assert count <= MAX_WORDS, f"{language}/{kind}: {count} words: {sentence!r}"


STEPS = {
    "nl": ("Typ de code.", "Druk op #.", "De deur gaat open."),
    "fr": ("Tapez le code.", "Appuyez sur #.", "La porte s'ouvre."),
    "en": ("Type the code.", "Press #.", "The door opens."),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_loaded_message_has_what_the_resident_needs(language: str) -> None:
    rendered = Templates.load().render("loaded", language, _context(language, "loaded"))
    deadline = words.date_words(1_800_000_000, language)
    for part in (rendered.body, rendered.sms):
        assert "1234 5678" in part
        assert deadline in part
        assert "Dorpsstraat 1" in part
        assert "09 210 10 10" in part
    assert "1234 5678" in rendered.paragraphs()  # a paragraph of its own: shown in large digits
    for step in STEPS[language]:
        assert step in rendered.body
    assert words.item_words("borrowed material", language) in rendered.body
    assert "ma-vr 9-17 uur" in rendered.body and words.OPEN_ALWAYS[language] in rendered.body


def test_a_reminder_names_the_deadline_but_not_the_code() -> None:
    rendered = Templates.load().render("reminder", "fr", _context("fr", "reminder"))
    assert words.date_words(1_800_000_000, "fr") in rendered.body
    assert "1234" not in rendered.body + rendered.sms


def test_the_item_is_named_not_called_a_parcel() -> None:
    context = _context("nl", "loaded") | {"item": words.item_words("document", "nl")}
    rendered = Templates.load().render("loaded", "nl", context)
    assert "uw document" in rendered.body and "pakket" not in rendered.body


def _own(tmp_path: Path, language: str, kind: str, text: str) -> Path:
    (tmp_path / language).mkdir(parents=True, exist_ok=True)
    (tmp_path / language / f"{kind}.txt").write_text(text)
    return tmp_path


GOOD = (
    "{% block subject %}{{ town }}{% endblock %}\n"
    "{% block body %}\n{{ greeting }}\n\n{{ code }}\n{% endblock %}\n"
    "{% block sms %}{{ code }}{% endblock %}\n"
)


def test_the_towns_template_replaces_the_shipped_one(tmp_path: Path) -> None:
    own = _own(tmp_path, "nl", "loaded", GOOD.replace("{{ town }}", "Afhaalkluis {{ town }}"))
    templates = Templates.load(own)
    assert templates.render("loaded", "nl", _context("nl", "loaded")).subject == "Afhaalkluis Sint-Martens-Latem"
    assert templates.origins[("nl", "loaded")] == str(own / "nl" / "loaded.txt")
    assert templates.origins[("fr", "loaded")].startswith("(shipped)")


def test_an_unknown_field_is_refused_with_file_and_line(tmp_path: Path) -> None:
    own = _own(tmp_path, "fr", "loaded", GOOD.replace("{{ greeting }}", "{{ greeting }}\n{{ adress }}"))
    with pytest.raises(TemplateError) as caught:
        Templates.load(own)
    assert str(caught.value).startswith(f"{own / 'fr' / 'loaded.txt'}:4: unknown field 'adress'")


def test_a_loaded_template_without_the_code_is_refused_with_file_and_line(tmp_path: Path) -> None:
    own = _own(tmp_path, "en", "loaded", GOOD.replace("\n\n{{ code }}\n", "\n\nsee the desk\n"))
    with pytest.raises(TemplateError) as caught:
        Templates.load(own)
    assert str(caught.value) == f"{own / 'en' / 'loaded.txt'}:2: the body block never shows {{{{ code }}}}"


def test_a_reminder_cannot_show_the_code_it_does_not_have(tmp_path: Path) -> None:
    own = _own(tmp_path, "nl", "reminder", GOOD)
    with pytest.raises(TemplateError, match=r"reminder\.txt:5: unknown field 'code' \(only a `loaded` message"):
        Templates.load(own)


def test_a_syntax_error_and_a_missing_block_are_refused(tmp_path: Path) -> None:
    own = _own(tmp_path, "nl", "loaded", GOOD.replace("{% endblock %}\n{% block sms", "\n{% block sms", 1))
    with pytest.raises(TemplateError, match=r"nl/loaded\.txt:\d+: "):
        Templates.load(own)
    own = _own(tmp_path, "nl", "loaded", GOOD.replace("{% block sms %}{{ code }}{% endblock %}\n", ""))
    with pytest.raises(TemplateError, match=r"nl/loaded\.txt:1: no \{% block sms %\}"):
        Templates.load(own)


def test_the_configuration_files_sections_are_checked(tmp_path: Path) -> None:
    from lockertools.config import ConfigError, load

    path = tmp_path / "lockertools.toml"
    path.write_text('[messages]\nchannels = ["email", "fax", "letter"]\n\n[email]\nsecurity = "ssl"\n\n'
                    '[sms]\nurl = "ftp://x"\nsuccess_status = "ok"\n')  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load(path)
    problems = "\n".join(caught.value.problems)
    assert "messages.channels: 'fax' is not a channel" in problems
    assert "'letter'" not in problems
    assert "email: the e-mail channel needs host and sender" in problems
    assert "email.security: starttls, tls or none, not 'ssl'" in problems
    assert "sms.url: must start with http:// or https://" in problems
    assert 'sms.success_status: "2xx" or statuses like "200,201"' in problems
