"""Dutch and French texts of the residents' messages at the desk: a delivery's messages and letter,
the letters to print, the failed messages (pages/messages.py, its templates, delivery.html's part);
i18n.py merges them into its catalogues."""

from __future__ import annotations

NL: dict[str, str] = {
    "Letters to print": "Te printen brieven",
    "Failed messages": "Mislukte berichten",
    "Messages": "Berichten",
    "Messages to the resident": "Berichten aan de inwoner",
    "Reaches the resident by: {channels}": "Bereikt de inwoner via: {channels}",
    "Channel": "Kanaal",
    "Message": "Bericht",
    "Tries": "Pogingen",
    "Queued": "In de wachtrij",
    "Sent or printed": "Verzonden of geprint",
    "Next try": "Volgende poging",
    "Error": "Fout",
    "Retry": "Opnieuw",
    "Retry now": "Nu opnieuw proberen",
    "delivery {number}": "levering {number}",
    "e-mail": "e-mail",
    "text message": "sms",
    "letter": "brief",
    "notification hook": "meldingskoppeling",
    "no channel": "geen kanaal",
    "new code": "nieuwe code",
    "reminder": "herinnering",
    "thank you": "bedankt",
    "returned (to staff)": "teruggebracht (aan het personeel)",
    "taken back (to staff)": "teruggenomen (aan het personeel)",
    "waiting": "wacht",
    "sending": "wordt verzonden",
    "sent": "verzonden",
    "failed": "mislukt",
    "letter to print": "brief te printen",
    "printed": "geprint",
    "not sent": "niet verzonden",
    "hand over the letter": "geef de brief af",
    "Hand over the letter": "Geef de brief af",
    "No e-mail or text message reaches this resident: print the letter with the code and hand it over or post it.": (
        "Geen e-mail of sms bereikt deze inwoner: print de brief met de code en geef hem af of post hem."
    ),
    "No e-mail or text message reaches this resident: hand over the code now, or the letter once the item is loaded.": (
        "Geen e-mail of sms bereikt deze inwoner: geef de code nu, of de brief zodra het voorwerp geladen is."
    ),
    "Print the letter (PDF)": "De brief printen (PDF)",
    "The letter went out: mark it printed": "De brief is weg: als geprint markeren",
    "The letter can be printed here once the item is loaded.": (
        "De brief kan hier geprint worden zodra het voorwerp geladen is."
    ),
    "No messages yet: they go once the item is loaded.": "Nog geen berichten: ze gaan zodra het voorwerp geladen is.",
    "No letter to print": "Geen brief te printen",
    "Delivery {number} has no letter: only one no e-mail or SMS reaches, once loaded.": (
        "Levering {number} heeft geen brief: alleen wie geen e-mail of sms bereikt, zodra geladen."
    ),
    "The letter of delivery {number} can no longer be printed: its code is gone.": (
        "De brief van levering {number} kan niet meer geprint worden: de code is weg."
    ),
    "No letters are waiting to be printed.": "Er wachten geen brieven om geprint te worden.",
    "Not printed: {reason}": "Niet geprint: {reason}",
    "No letters were marked: none was given.": "Geen brieven gemarkeerd: er werd er geen gegeven.",
    "{n} letter(s) marked printed.": "{n} brief/brieven als geprint gemarkeerd.",
    "{n} letter(s) waiting to be printed.": "{n} brief/brieven wachten om geprint te worden.",
    "Print them all (one PDF, a page per letter)": "Alles printen (één PDF, een pagina per brief)",
    "Put each letter in an envelope, hand it over or post it.": (
        "Steek elke brief in een envelop, geef hem af of post hem."
    ),
    "The {n} letter(s) went out: mark them printed": "De {n} brief/brieven zijn weg: als geprint markeren",
    "The first {n} are shown and printed: mark them printed to see the next ones.": (
        "De eerste {n} worden getoond en geprint: markeer ze als geprint om de volgende te zien."
    ),
    "{n} message(s) failed; the service tries each again by itself, waiting longer each time.": (
        "{n} bericht(en) mislukt; de dienst probeert elk opnieuw, telkens na een langere wachttijd."
    ),
    "No failed messages.": "Geen mislukte berichten.",
    "No such failed message.": "Geen zo'n mislukt bericht.",
    "That message is not failed any more: nothing to retry.": (
        "Dat bericht is niet meer mislukt: niets opnieuw te proberen."
    ),
    "The message will be sent again in a moment.": "Het bericht wordt zo dadelijk opnieuw verzonden.",
    "The failed messages, with a retry": "De mislukte berichten, om opnieuw te proberen",
}

FR: dict[str, str] = {
    "Letters to print": "Lettres à imprimer",
    "Failed messages": "Messages en échec",
    "Messages": "Messages",
    "Messages to the resident": "Messages à l'habitant",
    "Reaches the resident by: {channels}": "Joint l'habitant par : {channels}",
    "Channel": "Canal",
    "Message": "Message",
    "Tries": "Essais",
    "Queued": "En file",
    "Sent or printed": "Envoyé ou imprimé",
    "Next try": "Prochain essai",
    "Error": "Erreur",
    "Retry": "Réessayer",
    "Retry now": "Réessayer maintenant",
    "delivery {number}": "livraison {number}",
    "e-mail": "e-mail",
    "text message": "SMS",
    "letter": "lettre",
    "notification hook": "crochet de notification",
    "no channel": "aucun canal",
    "new code": "nouveau code",
    "reminder": "rappel",
    "thank you": "remerciement",
    "returned (to staff)": "rapporté (au personnel)",
    "taken back (to staff)": "repris (au personnel)",
    "waiting": "en attente",
    "sending": "en cours d'envoi",
    "sent": "envoyé",
    "failed": "échec",
    "letter to print": "lettre à imprimer",
    "printed": "imprimée",
    "not sent": "non envoyé",
    "hand over the letter": "remettre la lettre",
    "Hand over the letter": "Remettre la lettre",
    "No e-mail or text message reaches this resident: print the letter with the code and hand it over or post it.": (
        "Aucun e-mail ni SMS ne joint cet habitant : imprimez la lettre avec le code et remettez-la ou postez-la."
    ),
    "No e-mail or text message reaches this resident: hand over the code now, or the letter once the item is loaded.": (
        "Aucun e-mail ni SMS ne joint cet habitant : donnez le code maintenant, ou la lettre une fois l'objet chargé."
    ),
    "Print the letter (PDF)": "Imprimer la lettre (PDF)",
    "The letter went out: mark it printed": "La lettre est partie : la marquer imprimée",
    "The letter can be printed here once the item is loaded.": "La lettre s'imprime ici une fois l'objet chargé.",
    "No messages yet: they go once the item is loaded.": (
        "Pas encore de messages : ils partent une fois l'objet chargé."
    ),
    "No letter to print": "Pas de lettre à imprimer",
    "Delivery {number} has no letter: only one no e-mail or SMS reaches, once loaded.": (
        "La livraison {number} n'a pas de lettre : seulement sans e-mail ni SMS, une fois chargée."
    ),
    "The letter of delivery {number} can no longer be printed: its code is gone.": (
        "La lettre de la livraison {number} ne peut plus être imprimée : son code n'est plus là."
    ),
    "No letters are waiting to be printed.": "Aucune lettre n'attend d'être imprimée.",
    "Not printed: {reason}": "Non imprimé : {reason}",
    "No letters were marked: none was given.": "Aucune lettre marquée : aucune n'a été donnée.",
    "{n} letter(s) marked printed.": "{n} lettre(s) marquée(s) imprimée(s).",
    "{n} letter(s) waiting to be printed.": "{n} lettre(s) à imprimer.",
    "Print them all (one PDF, a page per letter)": "Tout imprimer (un PDF, une page par lettre)",
    "Put each letter in an envelope, hand it over or post it.": (
        "Mettez chaque lettre sous enveloppe, remettez-la ou postez-la."
    ),
    "The {n} letter(s) went out: mark them printed": "Les {n} lettre(s) sont parties : les marquer imprimées",
    "The first {n} are shown and printed: mark them printed to see the next ones.": (
        "Les {n} premières sont affichées et imprimées : marquez-les imprimées pour voir les suivantes."
    ),
    "{n} message(s) failed; the service tries each again by itself, waiting longer each time.": (
        "{n} message(s) en échec ; le service réessaie chacun de lui-même, en attendant plus longtemps à chaque fois."
    ),
    "No failed messages.": "Aucun message en échec.",
    "No such failed message.": "Ce message en échec n'existe pas.",
    "That message is not failed any more: nothing to retry.": "Ce message n'est plus en échec : rien à réessayer.",
    "The message will be sent again in a moment.": "Le message sera renvoyé dans un instant.",
    "The failed messages, with a retry": "Les messages en échec, à réessayer",
}
