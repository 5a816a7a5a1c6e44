# What residents read in French: ONE string, two lines per screen in the order of locker.messages._KEYS.
# Imported for the language on screen only (the others stay on flash).
TEXT = (
    "Patientez...\nDémarrage\n"  # starting
    "Tapez votre code\net validez par #\n"  # idle
    "Votre code :\n%s\n"  # entry
    "Code trop court\nMin %s chiffres\n"  # too_short
    "La porte %s\ns'ouvre\n"  # opening
    "Prenez le colis\nFermez la porte\n"  # take
    "Code incorrect\nRéessayez\n"  # wrong
    "Code expiré\nVoir l'accueil\n"  # expired
    "Ce code a servi\nVoir l'accueil\n"  # used
    "Trop d'essais\nAttendez %s s\n"  # wait
    "Trop d'essais\nAttendez %s min\n"  # wait_min
    "Porte %s coince\nRéessayez\n"  # jammed
    "Fermez la porte\n%s, merci\n"  # close
    "Le colis est\ntoujours là\n"  # still_full
    "Merci !\nAu revoir\n"  # thanks
    "Votre porte va\nbientôt s'ouvrir\n"  # busy
    "Hors service\nDésolé !\n"  # out_of_service
    "Pas encore prêt\nVoir l'accueil\n"  # no_codes
    "Français\n* = autre langue\n"  # language
    "La porte %s\nse rouvre\n"  # reopen
    "Porte en panne\nVoir l'accueil\n"  # door_oos
    "Pas encore livré\nRevenez bientôt\n"  # not_yet
    "Plus de place\nVoir l'accueil\n"  # no_door
    "Porte %s: posez\nl'objet, fermez\n"  # return_open
    "Merci !\nObjet bien reçu\n"  # returned
    "Porte vide\nCode valable\n"  # return_empty
    "Session terminée\nAu revoir\n"  # staff_bye
    "Prenez le pli\nFermez la porte\n"  # take_document
    "Prenez le permis\nFermez la porte\n"  # take_permit
    "Prenez les sacs\nFermez la porte\n"  # take_bags
    "Prenez l'objet\nFermez la porte\n"  # take_material
    "Accueil fermé\nTél %s\n"  # desk_closed
)
