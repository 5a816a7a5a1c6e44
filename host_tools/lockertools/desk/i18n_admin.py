"""Dutch and French texts of the admin pages: integrations (API tokens, webhooks) and settings
(pages/integrations.py, settings.py and their templates); i18n.py merges them into its catalogues."""

from __future__ import annotations

NL: dict[str, str] = {
    "Integrations": "Koppelingen",
    "API tokens": "API-sleutels",
    "Attempts": "Pogingen",
    "Back to the integrations": "Terug naar de koppelingen",
    "Cancel: back to the integrations": "Annuleren: terug naar de koppelingen",
    "Copy this signing secret into the receiving system now: the desk does not show it again.": (
        "Kopieer dit ondertekeningsgeheim nu naar het ontvangende systeem: de balie toont het niet opnieuw."
    ),
    "Copy this token into the integration now: the desk does not show it again.": (
        "Kopieer deze sleutel nu naar de koppeling: de balie toont hem niet opnieuw."
    ),
    "Create a token": "Een sleutel aanmaken",
    "Create the token": "Sleutel aanmaken",
    "Created": "Aangemaakt",
    "Description (optional)": "Omschrijving (niet verplicht)",
    "Description": "Omschrijving",
    "Each request carries the header Locker-Signature: an HMAC-SHA256 of its time and body under this secret.": (
        "Elk verzoek draagt de header Locker-Signature: een HMAC-SHA256 van zijn tijd en inhoud met dit geheim."
    ),
    "A webhook is told of every state change of a delivery: {events}.": (
        "Een webhook hoort elke wijziging van de toestand van een levering: {events}."
    ),
    "Event": "Gebeurtenis",
    "Last error": "Laatste fout",
    "Last used": "Laatst gebruikt",
    "Name of the integration": "Naam van de koppeling",
    "Next attempt": "Volgende poging",
    "No API tokens.": "Geen API-sleutels.",
    "No configuration file: every setting has its default.": (
        "Geen configuratiebestand: elke instelling heeft haar standaardwaarde."
    ),
    "No webhook request has failed.": "Geen enkel webhookverzoek is mislukt.",
    "No webhooks.": "Geen webhooks.",
    "Nothing more is sent to this URL; what it was not sent yet is dropped.": (
        "Er wordt niets meer naar deze URL gestuurd; wat nog niet verstuurd was, vervalt."
    ),
    "Number": "Nummer",
    "Register a webhook": "Een webhook registreren",
    "Register the webhook": "Webhook registreren",
    "Registered": "Geregistreerd",
    "Remove the webhook {id}?": "Webhook {id} verwijderen?",
    "Remove the webhook": "Webhook verwijderen",
    "Remove": "Verwijderen",
    "Retry now": "Nu opnieuw proberen",
    "Revoke the token {name}?": "Sleutel {name} intrekken?",
    "Revoke the token": "Sleutel intrekken",
    "Revoke": "Intrekken",
    "Scopes": "Rechten",
    "Setting": "Instelling",
    "Settings": "Instellingen",
    "Signing secret": "Ondertekeningsgeheim",
    "The configuration file: {path}": "Het configuratiebestand: {path}",
    "The integration sends it in the header Authorization: Bearer followed by the token.": (
        "De koppeling stuurt hem in de header Authorization: Bearer gevolgd door de sleutel."
    ),
    "The integration using this token is refused from its next request on. This cannot be undone: it would"
    " need a new token.": (
        "De koppeling met deze sleutel wordt vanaf haar volgende verzoek geweigerd. Dit kan niet ongedaan"
        " worden gemaakt: er is dan een nieuwe sleutel nodig."
    ),
    "This page only shows the settings: they are changed in the file, and take effect when the desk and the"
    " service are restarted.": (
        "Deze pagina toont de instellingen alleen: ze worden in het bestand gewijzigd en gelden zodra de balie"
        " en de dienst opnieuw gestart zijn."
    ),
    "Token": "Sleutel",
    "URL (http:// or https://)": "URL (http:// of https://)",
    "URL": "URL",
    "Value": "Waarde",
    "Webhook requests that failed": "Mislukte webhookverzoeken",
    "Webhooks": "Webhooks",
    "create and cancel deliveries; reads too": "leveringen aanmaken en annuleren; ook lezen",
    "given up": "opgegeven",
    "not set": "niet ingesteld",
    "read deliveries, list lockers": "leveringen lezen, kluizen oplijsten",
    "revoked on {at}": "ingetrokken op {at}",
    "removed on {at}": "verwijderd op {at}",
    "set (from the environment variable {name})": "ingesteld (uit de omgevingsvariabele {name})",
    "set (from the file {path})": "ingesteld (uit het bestand {path})",
    "set ({source})": "ingesteld ({source})",
    "webhook {id}": "webhook {id}",
    "Token {name} created": "Sleutel {name} aangemaakt",
    "Token {name} revoked.": "Sleutel {name} ingetrokken.",
    "Webhook {id} registered": "Webhook {id} geregistreerd",
    "Webhook {id} removed.": "Webhook {id} verwijderd.",
    "The event is sent again at the next round (within seconds).": (
        "De gebeurtenis wordt bij de volgende ronde opnieuw verstuurd (binnen enkele seconden)."
    ),
    "read": "lezen",
    "deliveries": "leveringen",
}

FR: dict[str, str] = {
    "Integrations": "Intégrations",
    "API tokens": "Jetons d'API",
    "Attempts": "Essais",
    "Back to the integrations": "Retour aux intégrations",
    "Cancel: back to the integrations": "Annuler : retour aux intégrations",
    "Copy this signing secret into the receiving system now: the desk does not show it again.": (
        "Copiez ce secret de signature dans le système destinataire maintenant : le guichet ne le montre plus."
    ),
    "Copy this token into the integration now: the desk does not show it again.": (
        "Copiez ce jeton dans l'intégration maintenant : le guichet ne le montre plus."
    ),
    "Create a token": "Créer un jeton",
    "Create the token": "Créer le jeton",
    "Created": "Créé",
    "Description (optional)": "Description (facultative)",
    "Description": "Description",
    "Each request carries the header Locker-Signature: an HMAC-SHA256 of its time and body under this secret.": (
        "Chaque requête porte l'en-tête Locker-Signature : un HMAC-SHA256 de son heure et de son contenu"
        " sous ce secret."
    ),
    "A webhook is told of every state change of a delivery: {events}.": (
        "Un webhook est informé de chaque changement d'état d'une livraison : {events}."
    ),
    "Event": "Événement",
    "Last error": "Dernière erreur",
    "Last used": "Dernier usage",
    "Name of the integration": "Nom de l'intégration",
    "Next attempt": "Prochain essai",
    "No API tokens.": "Aucun jeton d'API.",
    "No configuration file: every setting has its default.": (
        "Aucun fichier de configuration : chaque réglage a sa valeur par défaut."
    ),
    "No webhook request has failed.": "Aucune requête de webhook n'a échoué.",
    "No webhooks.": "Aucun webhook.",
    "Nothing more is sent to this URL; what it was not sent yet is dropped.": (
        "Plus rien n'est envoyé à cette URL ; ce qui ne lui avait pas encore été envoyé est abandonné."
    ),
    "Number": "Numéro",
    "Register a webhook": "Enregistrer un webhook",
    "Register the webhook": "Enregistrer le webhook",
    "Registered": "Enregistré",
    "Remove the webhook {id}?": "Supprimer le webhook {id} ?",
    "Remove the webhook": "Supprimer le webhook",
    "Remove": "Supprimer",
    "Retry now": "Réessayer maintenant",
    "Revoke the token {name}?": "Révoquer le jeton {name} ?",
    "Revoke the token": "Révoquer le jeton",
    "Revoke": "Révoquer",
    "Scopes": "Droits",
    "Setting": "Réglage",
    "Settings": "Réglages",
    "Signing secret": "Secret de signature",
    "The configuration file: {path}": "Le fichier de configuration : {path}",
    "The integration sends it in the header Authorization: Bearer followed by the token.": (
        "L'intégration l'envoie dans l'en-tête Authorization : Bearer suivi du jeton."
    ),
    "The integration using this token is refused from its next request on. This cannot be undone: it would"
    " need a new token.": (
        "L'intégration qui utilise ce jeton est refusée dès sa prochaine requête. C'est irréversible : il"
        " faudrait un nouveau jeton."
    ),
    "This page only shows the settings: they are changed in the file, and take effect when the desk and the"
    " service are restarted.": (
        "Cette page ne fait que montrer les réglages : ils se changent dans le fichier et prennent effet au"
        " redémarrage du guichet et du service."
    ),
    "Token": "Jeton",
    "URL (http:// or https://)": "URL (http:// ou https://)",
    "URL": "URL",
    "Value": "Valeur",
    "Webhook requests that failed": "Requêtes de webhook en échec",
    "Webhooks": "Webhooks",
    "create and cancel deliveries; reads too": "créer et annuler des livraisons ; lire aussi",
    "given up": "abandonnée",
    "not set": "non défini",
    "read deliveries, list lockers": "lire les livraisons, lister les consignes",
    "revoked on {at}": "révoqué le {at}",
    "removed on {at}": "supprimé le {at}",
    "set (from the environment variable {name})": "défini (par la variable d'environnement {name})",
    "set (from the file {path})": "défini (par le fichier {path})",
    "set ({source})": "défini ({source})",
    "webhook {id}": "webhook {id}",
    "Token {name} created": "Jeton {name} créé",
    "Token {name} revoked.": "Jeton {name} révoqué.",
    "Webhook {id} registered": "Webhook {id} enregistré",
    "Webhook {id} removed.": "Webhook {id} supprimé.",
    "The event is sent again at the next round (within seconds).": (
        "L'événement est renvoyé au prochain passage (en quelques secondes)."
    ),
    "read": "lecture",
    "deliveries": "livraisons",
}
