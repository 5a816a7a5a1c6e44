# What staff read in French: ONE string, two lines per screen in the order of locker.messages.STAFF_KEYS.
# Imported for the language on screen only (the others stay on flash).
TEXT = (
    "1Charger 2Taille\n3Reprise 4Porte\n"  # staff_menu
    "N° de livraison\n%s\n"  # staff_number
    "Taille? 1S 2M 3L\n* = retour\n"  # staff_size
    "Quelle porte ?\n%s\n"  # staff_door
    "Porte %s: posez\nl'objet, fermez\n"  # staff_open
    "Porte %s pleine\nC'est fait !\n"  # staff_loaded
    "Porte %s vide\nRien de chargé\n"  # staff_empty
    "Numéro inconnu\n* = retour\n"  # staff_unknown
    "Déjà chargé ou\nexpiré\n"  # staff_done_already
    "Pas de porte\nlibre qui va\n"  # staff_no_door
    "Porte %s: videz\net fermez-la\n"  # staff_take
    "# = suivante\n* = menu\n"  # staff_next
    "Rien d'expiré\n* = menu\n"  # staff_none
    "Porte %s\nhors service\n"  # staff_off
    "Porte %s\nen service\n"  # staff_on
    "Porte %s vide\nMerci\n"  # staff_taken
)
