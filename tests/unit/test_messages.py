# Every resident-facing message, in every language, fits the smallest display (16x2).
from locker import messages

# The widest value each placeholder takes: a 3-character door label, a wait of 300 s,
# a 12-digit code shown masked.
LONGEST_ARGS = ("123", "300")
MASKED_CODE = "*" * 12


def test_every_message_fits_16_columns_in_every_language():
    too_long = []
    for lang in messages.LANGUAGES:
        for key in messages.keys():
            for arg in (MASKED_CODE,) if key == "entry" else LONGEST_ARGS:
                for line in messages.render(lang, key, arg):
                    if len(line) > messages.WIDTH:
                        too_long.append((lang, key, arg, line))
    assert not too_long, too_long


def test_every_language_has_every_message():
    for lang in messages.LANGUAGES:
        for key in messages.keys():
            line1, line2 = messages.render(lang, key, "1")
            assert line1, (lang, key)


def test_arguments_are_filled_in():
    assert messages.render("nl", "opening", "3") == ("Deur 3", "gaat nu open")
    assert messages.render("en", "take", "12")[1] == "Close door 12"


def test_unknown_language_falls_back_to_dutch():
    assert messages.render("xx", "idle") == messages.render("nl", "idle")


def test_language_key_cycles_through_all_languages():
    seen = []
    lang = "nl"
    for _ in messages.LANGUAGES:
        seen.append(lang)
        lang = messages.next_language(lang)
    assert lang == "nl"
    assert sorted(seen) == sorted(messages.LANGUAGES)
