# Every resident-facing message, in every language, fits the smallest display (16x2).
from locker import messages

WIDTH = 16  # the smallest display's line
TAKE_KEYS = (
    "take",
    "take_document",
    "take_permit",
    "take_bags",
    "take_material",
)  # the take screens, by item (codes.bin v2)

# The widest value each placeholder takes: a 3-character door label, a wait of 300 s,
# a 12-digit code shown masked.
LONGEST_ARGS = ("123", "300")
MASKED_CODE = "*" * 12
LONGEST_PHONE = "+31 20 12345"  # the help line's number, at its longest (messages.PHONE_MAX)


def test_every_message_fits_16_columns_in_every_language():
    too_long = []
    for lang in messages.LANGUAGES:
        for key in messages.keys():
            if key == "entry":
                args = (MASKED_CODE,)
            elif key in messages.HELP_KEYS or key == "desk_closed":
                args = (None, LONGEST_PHONE)  # the desk open, then closed
            else:
                args = LONGEST_ARGS
            for arg in args:
                for line in messages.render(lang, key, arg):
                    if len(line) > WIDTH:
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


def test_every_staff_screen_fits_16_columns_in_every_language():
    too_long = []
    for lang in messages.LANGUAGES:
        text = messages._load("stafftext_" + lang)
        assert len(text.split("\n")) == 2 * len(messages.STAFF_KEYS) + 1, lang
        for key in messages.STAFF_KEYS:
            # a delivery number is up to 6 digits, a door label up to 3 characters
            for arg in ("123456",) if key in ("staff_number",) else ("123",):
                line1, line2 = messages.render(lang, key, arg)  # staff keys render through messages
                assert line1, (lang, key)
                for line in (line1, line2):
                    if len(line) > WIDTH:
                        too_long.append((lang, key, line))
    assert not too_long, too_long


def test_every_language_text_has_one_message_per_key():
    for lang in messages.LANGUAGES:
        assert len(messages._text(lang).split("\n")) == 2 * len(messages.keys()) + 1, lang


def test_no_resident_message_names_another_door_or_a_code():
    # "wrong" and "used" say nothing about which door a code belongs to
    for lang in messages.LANGUAGES:
        for key in ("wrong", "used", "expired", "not_yet", "no_door"):
            assert "%s" not in messages._text(lang).split("\n")[2 * messages.keys().index(key)]
            line1, line2 = messages.render(lang, key, None if key in messages.HELP_KEYS else "7")
            assert "7" not in line1 + line2, (lang, key)


def test_the_take_text_names_the_item_in_every_language():
    assert len(LONGEST_PHONE) == messages.PHONE_MAX
    assert messages.render("nl", messages.take_key(1), "3") == ("Neem uw document", "Sluit deur 3")
    assert messages.render("nl", messages.take_key(3), "3") == ("Neem uw zakken", "Sluit deur 3")
    assert messages.render("fr", messages.take_key(1), "3")[0] == "Prenez le pli"
    assert messages.render("en", messages.take_key(2), "3")[0] == "Take your permit"
    for lang in messages.LANGUAGES:
        firsts = [messages.render(lang, key, "123")[0] for key in TAKE_KEYS]
        assert len(set(firsts)) == len(firsts), (lang, firsts)  # every item its own words
        for key in TAKE_KEYS:
            assert messages.render(lang, key, "123")[1] == messages.render(lang, "take", "123")[1], (lang, key)


def test_an_unknown_item_shows_the_parcel_text():
    assert messages.take_key(0) == "take"
    assert messages.take_key(len(TAKE_KEYS)) == "take"  # a newer host's item
    assert messages.take_key(255) == "take"


def test_the_help_line_sends_to_the_desk_or_gives_the_number():
    assert messages.render("nl", "expired") == ("Code is verlopen", "Vraag het loket")
    assert messages.render("nl", "expired", "020 1234567") == ("Code is verlopen", "Bel 020 1234567")
    assert messages.render("fr", "no_door", "020 1234567") == ("Plus de place", "Tél 020 1234567")
    assert messages.render("en", "door_oos", "020 1234567") == ("Door is broken", "Tel 020 1234567")
    for lang in messages.LANGUAGES:
        for key in messages.HELP_KEYS:
            assert messages.render(lang, key, LONGEST_PHONE)[1].endswith(LONGEST_PHONE), (lang, key)
