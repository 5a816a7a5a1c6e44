# What the resident reads, in plain words. Each message is two lines of at most 16 characters,
# so it fits the smallest display we support (16x2); "%s" takes a door label (up to 3 characters)
# or a number. tests/unit/test_messages.py walks every message in every language.
# The LCD driver maps accented letters to plain ASCII for displays without them.
#
# Each language is ONE string, two lines per message in the order of _KEYS, in its own module
# (locker/msg_nl.py, msg_fr.py, msg_en.py): only the language on screen is on the heap. render()
# finds a message's lines in place.

from micropython import const

LANGUAGES = ("nl", "fr", "en")

_KEYS = (
    "starting",
    "idle",
    "entry",
    "too_short",
    "opening",
    "take",
    "wrong",
    "expired",
    "used",
    "wait",
    "wait_min",
    "jammed",
    "close",
    "still_full",
    "thanks",
    "busy",
    "out_of_service",
    "no_codes",
    "language",
    "reopen",
    "door_oos",
    "not_yet",
    "no_door",
    "return_open",
    "returned",
    "return_empty",
    "staff_bye",  # the end of a staff session (a resident message: shown after the session is gone)
    "take_document",
    "take_permit",
    "take_bags",
    "take_material",
    "desk_closed",  # its line 2 ("Bel %s") is the help line while the desk is closed
)

# "take" for each item kind, by the item number the host sends with a code (its ITEMS order:
# parcel, document, permit, waste bags, borrowed material); an unknown number shows the parcel text.
_TAKE_KEYS = const(("take", "take_document", "take_permit", "take_bags", "take_material"))
# The messages whose line 2 sends the resident to the desk: given a phone number as their argument
# (the desk is closed), they show desk_closed's line 2 ("Bel 020 1234567") there instead.
HELP_KEYS = ("expired", "used", "no_codes", "door_oos", "no_door")
PHONE_MAX = 12  # the help line's prefix ("Bel ", "Tél ", "Tel ") leaves 12 of the 16 columns

# Staff screens (locker.staff), in the same layout: locker/stafftext_<lang>.py, on the heap only
# during a staff session. docs/operation.md, "At the locker: staff", explains every screen.
STAFF_KEYS = (
    "staff_menu",
    "staff_number",
    "staff_size",
    "staff_door",
    "staff_open",
    "staff_loaded",
    "staff_empty",
    "staff_unknown",
    "staff_done_already",
    "staff_no_door",
    "staff_take",
    "staff_next",
    "staff_none",
    "staff_off",
    "staff_on",
    "staff_taken",
)

_cur = [None, None]  # [language, its text]: one language's text on the heap at a time
_staff = [None, None]  # the same for the staff screens


def _text(lang):
    """The one string of a language's messages (locker/msg_<lang>.py; Dutch for an unknown one),
    imported when that language is first shown and kept until another one is."""
    if _cur[0] != lang:
        _cur[1] = None  # the old text goes before the new one comes
        name = "msg_" + (lang if lang in LANGUAGES else "nl")
        _cur[1] = _load(name)
        _cur[0] = lang
    return _cur[1]


def _load(name):
    """locker.<name>.TEXT, the module itself dropped at once (only its string stays)."""
    from locker import lazy

    text = lazy.load(name).TEXT
    lazy.drop(name)
    return text


def keys():
    return _KEYS


def render(lang, key, arg=None):
    """The two display lines for `key` in `lang` (falls back to Dutch), with `arg` filled in."""
    if key in _KEYS:
        text = _text(lang)
        i = _KEYS.index(key)
    else:  # a staff screen (locker/stafftext_<lang>.py, with the staff session)
        text = _staff_text(lang)
        i = STAFF_KEYS.index(key)
    p = 0
    for _ in range(2 * i):
        p = text.index("\n", p) + 1
    q = text.index("\n", p)
    line1, line2 = text[p:q], text[q + 1 : text.index("\n", q + 1)]
    if arg is not None and key in HELP_KEYS:
        return line1, render(lang, "desk_closed", arg)[1]
    if arg is not None:
        if "%s" in line1:
            line1 = line1 % (arg,)
        if "%s" in line2:
            line2 = line2 % (arg,)
    return line1, line2


def _staff_text(lang):
    cur = _staff
    if cur[0] != lang:
        cur[1] = None
        cur[1] = _load("stafftext_" + (lang if lang in LANGUAGES else "nl"))
        cur[0] = lang
    return cur[1]


def drop_staff_text():
    """The staff session is over: its screens' text goes."""
    _staff[0] = _staff[1] = None


def take_key(item):
    """The "take" message for an item number (0 or unknown: the parcel's)."""
    return _TAKE_KEYS[item] if 0 < item < len(_TAKE_KEYS) else "take"


def next_language(lang):
    i = LANGUAGES.index(lang) if lang in LANGUAGES else -1
    return LANGUAGES[(i + 1) % len(LANGUAGES)]
