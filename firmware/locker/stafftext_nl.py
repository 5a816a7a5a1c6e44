# What staff read in Dutch: ONE string, two lines per screen in the order of locker.messages.STAFF_KEYS.
# Imported for the language on screen only (the others stay on flash).
TEXT = (
    "1 Laden  2 Maat\n3 Terug  4 Deur\n"  # staff_menu
    "Leveringsnummer\n%s\n"  # staff_number
    "Maat? 1S 2M 3L\n* = terug\n"  # staff_size
    "Welk deurnummer?\n%s\n"  # staff_door
    "Deur %s open\nLeg erin, sluit\n"  # staff_open
    "Deur %s geladen\nKlaar!\n"  # staff_loaded
    "Deur %s leeg\nNiets geladen\n"  # staff_empty
    "Nummer onbekend\n* = terug\n"  # staff_unknown
    "Al geladen of\nverlopen\n"  # staff_done_already
    "Geen deur vrij\ndie past\n"  # staff_no_door
    "Deur %s open\nHaal eruit,sluit\n"  # staff_take
    "# = volgende\n* = menu\n"  # staff_next
    "Niets verlopen\n* = menu\n"  # staff_none
    "Deur %s\nbuiten dienst\n"  # staff_off
    "Deur %s\nweer in dienst\n"  # staff_on
    "Deur %s is leeg\nGoed zo\n"  # staff_taken
)
