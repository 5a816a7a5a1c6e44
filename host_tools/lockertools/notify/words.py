"""The words messages are made of that are not in the templates: item names, dates, default hours."""

from __future__ import annotations

import time

# What is waiting, as a resident reads it (fleet ITEMS), with its possessive: "uw pakket".
ITEM_WORDS = {
    "nl": {
        "parcel": "uw pakket",
        "document": "uw document",
        "permit": "uw vergunning",
        "waste bags": "uw afvalzakken",
        "borrowed material": "het geleende materiaal",
    },
    "fr": {
        "parcel": "votre colis",
        "document": "votre document",
        "permit": "votre permis",
        "waste bags": "vos sacs poubelle",
        "borrowed material": "le matériel emprunté",
    },
    "en": {
        "parcel": "your parcel",
        "document": "your document",
        "permit": "your permit",
        "waste bags": "your waste bags",
        "borrowed material": "the borrowed material",
    },
}
ANY_ITEM = {"nl": "uw spullen", "fr": "vos affaires", "en": "your things"}
OPEN_ALWAYS = {"nl": "dag en nacht open", "fr": "ouvert jour et nuit", "en": "open day and night"}
DEAR = {"nl": "Beste", "fr": "Bonjour", "en": "Dear"}
RESIDENT = {"nl": "inwoner", "fr": "Madame, Monsieur", "en": "resident"}

_DAYS = {
    "nl": ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTHS = {
    "nl": ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober",
           "november", "december"),
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
}  # fmt: skip


def item_words(item: str | None, language: str) -> str:
    return ITEM_WORDS[language].get(item or "", ANY_ITEM[language])


def date_words(epoch_s: float, language: str) -> str:
    """A date as people write it, in the host's local time: "vrijdag 11 december 2026"."""
    t = time.localtime(epoch_s)
    day = "1er" if language == "fr" and t.tm_mday == 1 else str(t.tm_mday)
    return f"{_DAYS[language][t.tm_wday]} {day} {_MONTHS[language][t.tm_mon - 1]} {t.tm_year}"


def time_words(epoch_s: float) -> str:
    t = time.localtime(epoch_s)
    return f"{t.tm_hour:02d}:{t.tm_min:02d}"


def grouped(code: str) -> str:
    """The code in groups of four digits, for reading it off a screen or paper: "1234 5678"."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))
