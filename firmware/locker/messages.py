# What the resident reads, in plain words. Each message is two lines of at most 16 characters,
# so it fits the smallest display we support (16x2); "%s" takes a door label (up to 3 characters)
# or a number. tests/unit/test_messages.py walks every message in every language.
# The LCD driver maps accented letters to plain ASCII for displays without them.
#
# Each language is ONE string, two lines per message in the order of _KEYS: a few hundred bytes
# of heap per language instead of a dict of tuples. Only the language on screen is split.

LANGUAGES = ("nl", "fr", "en")
WIDTH = 16

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
)

_TEXTS = {
    "nl": (
        "Even geduld...\nDe kast start op\n"  # starting
        "Typ uw code\nen druk op #\n"  # idle
        "Uw code:\n%s\n"  # entry
        "Code te kort\nTyp %s cijfers\n"  # too_short
        "Deur %s\ngaat nu open\n"  # opening
        "Neem uw pakket\nSluit deur %s\n"  # take
        "Code klopt niet\nProbeer opnieuw\n"  # wrong
        "Code is verlopen\nVraag het loket\n"  # expired
        "Code al gebruikt\nVraag het loket\n"  # used
        "Te veel pogingen\nWacht %s sec\n"  # wait
        "Te veel pogingen\nWacht %s min\n"  # wait_min
        "Deur %s klemt\nProbeer opnieuw\n"  # jammed
        "Sluit deur %s\nalstublieft\n"  # close
        "Pakket ligt nog\nin deur %s\n"  # still_full
        "Dank u wel!\nTot ziens\n"  # thanks
        "Even geduld...\nUw deur volgt\n"  # busy
        "Buiten dienst\nSorry!\n"  # out_of_service
        "Kast niet klaar\nVraag het loket\n"  # no_codes
        "Nederlands\n* = andere taal\n"  # language
    ),
    "fr": (
        "Patientez...\nDémarrage\n"  # starting
        "Tapez votre code\npuis la touche #\n"  # idle
        "Votre code :\n%s\n"  # entry
        "Code trop court\nMin %s chiffres\n"  # too_short
        "Porte %s\ns'ouvre\n"  # opening
        "Prenez le colis\nFermez porte %s\n"  # take
        "Code incorrect\nRéessayez\n"  # wrong
        "Code expiré\nVoir l'accueil\n"  # expired
        "Code utilisé\nVoir l'accueil\n"  # used
        "Trop d'essais\nAttendez %s s\n"  # wait
        "Trop d'essais\nAttendez %s min\n"  # wait_min
        "La porte %s\nest bloquée\n"  # jammed
        "Fermez la porte\n%s svp\n"  # close
        "Le colis est\ndans porte %s\n"  # still_full
        "Merci !\nAu revoir\n"  # thanks
        "Un instant...\nVotre porte suit\n"  # busy
        "Hors service\nDésolé !\n"  # out_of_service
        "Pas encore prêt\nVoir l'accueil\n"  # no_codes
        "Français\n* = autre langue\n"  # language
    ),
    "en": (
        "Please wait...\nStarting up\n"  # starting
        "Type your code\nthen press #\n"  # idle
        "Your code:\n%s\n"  # entry
        "Code too short\nType %s digits\n"  # too_short
        "Door %s\nis opening\n"  # opening
        "Take your parcel\nClose door %s\n"  # take
        "Wrong code\nPlease try again\n"  # wrong
        "Code has expired\nAsk at the desk\n"  # expired
        "Code was used\nAsk at the desk\n"  # used
        "Too many tries\nWait %s sec\n"  # wait
        "Too many tries\nWait %s min\n"  # wait_min
        "Door %s\nis stuck\n"  # jammed
        "Close door %s\nplease\n"  # close
        "Parcel still in\ndoor %s\n"  # still_full
        "Thank you!\nGoodbye\n"  # thanks
        "One moment...\nDoor opens soon\n"  # busy
        "Out of service\nSorry!\n"  # out_of_service
        "Not ready yet\nAsk at the desk\n"  # no_codes
        "English\n* = language\n"  # language
    ),
}

_split = [None, None]  # [language, its lines]


def keys():
    return _KEYS


def _lines(lang):
    if _split[0] != lang:
        _split[0] = lang
        _split[1] = (_TEXTS.get(lang) or _TEXTS["nl"]).split("\n")
    return _split[1]


def render(lang, key, arg=None):
    """The two display lines for `key` in `lang` (falls back to Dutch), with `arg` filled in."""
    lines = _lines(lang)
    i = 2 * _KEYS.index(key)
    line1, line2 = lines[i], lines[i + 1]
    if arg is not None:
        if "%s" in line1:
            line1 = line1 % (arg,)
        if "%s" in line2:
            line2 = line2 % (arg,)
    return line1, line2


def next_language(lang):
    i = LANGUAGES.index(lang) if lang in LANGUAGES else -1
    return LANGUAGES[(i + 1) % len(LANGUAGES)]
