# What residents read in French: ONE string, two lines per screen in the order of locker.messages._KEYS.
# Imported for the language on screen only (the others stay on flash).
TEXT = (
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
    "La porte %s\ns'ouvre encore\n"  # reopen
    "Porte en panne\nVoir l'accueil\n"  # door_oos
    "Pas encore livré\nRevenez bientôt\n"  # not_yet
    "Pas de porte\nlibre. Accueil\n"  # no_door
    "Posez-le porte\n%s et fermez\n"  # return_open
    "Merci !\nObjet bien reçu\n"  # returned
    "Porte vide\nCode encore bon\n"  # return_empty
    "Session finie\nAu revoir\n"  # staff_bye
)
