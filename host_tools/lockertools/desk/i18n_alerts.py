"""Dutch and French texts of the manager's staff alert contacts (pages/alert_contacts.py and its
templates) and of a code's kind as the desk shows it (pages/deliveries.py, kind_text); i18n.py
merges them into its catalogues."""

from __future__ import annotations

NL: dict[str, str] = {
    # staff alert contacts
    "Staff alerts": "Personeelsmeldingen",
    "Staff alerts of locker {id}": "Personeelsmeldingen van kluis {id}",
    "A locker's incidents are alerted to its contacts or, without any, to the defaults ([alerts]).": (
        "De incidenten van een kluis worden gemeld aan haar contactpersonen of, zonder, aan de"
        " standaardwaarden ([alerts])."
    ),
    "Defaults": "Standaardwaarden",
    "nobody: no alerts are sent": "niemand: er worden geen meldingen verstuurd",
    "Alerts go to": "Meldingen gaan naar",
    "the defaults": "de standaardwaarden",
    "Back to the staff alerts": "Terug naar de personeelsmeldingen",
    "Contacts of this locker": "Contactpersonen van deze kluis",
    "Address or number": "Adres of nummer",
    "With contacts of its own, this locker's alerts do not go to the defaults.": (
        "Met eigen contactpersonen gaan de meldingen van deze kluis niet naar de standaardwaarden."
    ),
    "None: this locker's alerts go to the defaults of the configuration ([alerts]).": (
        "Geen: de meldingen van deze kluis gaan naar de standaardwaarden van de configuratie ([alerts])."
    ),
    "E-mail alerts wait until [email] host and sender are configured.": (
        "Meldingen per e-mail wachten tot [email] host en sender ingesteld zijn."
    ),
    "SMS alerts wait until [sms] url is configured.": "Meldingen per sms wachten tot [sms] url ingesteld is.",
    "Add a contact": "Een contactpersoon toevoegen",
    "E-mail address or phone number": "E-mailadres of telefoonnummer",
    "{address} not added: {reason}": "{address} niet toegevoegd: {reason}",
    "{address} not removed: {reason}": "{address} niet verwijderd: {reason}",
    "Alerts of locker {id} also go to {address}.": "Meldingen van kluis {id} gaan nu ook naar {address}.",
    "Alerts of locker {id} no longer go to {address}.": "Meldingen van kluis {id} gaan niet meer naar {address}.",
    "Locker {id} has no contacts of its own: its alerts go to the defaults.": (
        "Kluis {id} heeft geen eigen contactpersonen meer: haar meldingen gaan naar de standaardwaarden."
    ),
    # a code's kind (the size letters S, M, L stay as they are)
    "pickup": "ophaling",
    "staff": "personeel",
    "return": "terugbrengen",
    "delivery": "levering",
    "low": "lage deur",
}

FR: dict[str, str] = {
    # staff alert contacts
    "Staff alerts": "Alertes du personnel",
    "Staff alerts of locker {id}": "Alertes du personnel de la consigne {id}",
    "A locker's incidents are alerted to its contacts or, without any, to the defaults ([alerts]).": (
        "Les incidents d'une consigne sont signalés à ses contacts ou, sans contacts, aux valeurs par"
        " défaut ([alerts])."
    ),
    "Defaults": "Valeurs par défaut",
    "nobody: no alerts are sent": "personne : aucune alerte n'est envoyée",
    "Alerts go to": "Les alertes vont à",
    "the defaults": "les valeurs par défaut",
    "Back to the staff alerts": "Retour aux alertes du personnel",
    "Contacts of this locker": "Contacts de cette consigne",
    "Address or number": "Adresse ou numéro",
    "With contacts of its own, this locker's alerts do not go to the defaults.": (
        "Avec des contacts propres, les alertes de cette consigne ne vont pas aux valeurs par défaut."
    ),
    "None: this locker's alerts go to the defaults of the configuration ([alerts]).": (
        "Aucun : les alertes de cette consigne vont aux valeurs par défaut de la configuration ([alerts])."
    ),
    "E-mail alerts wait until [email] host and sender are configured.": (
        "Les alertes par e-mail attendent que [email] host et sender soient configurés."
    ),
    "SMS alerts wait until [sms] url is configured.": "Les alertes par SMS attendent que [sms] url soit configuré.",
    "Add a contact": "Ajouter un contact",
    "E-mail address or phone number": "Adresse e-mail ou numéro de téléphone",
    "{address} not added: {reason}": "{address} non ajouté : {reason}",
    "{address} not removed: {reason}": "{address} non retiré : {reason}",
    "Alerts of locker {id} also go to {address}.": "Les alertes de la consigne {id} vont aussi à {address}.",
    "Alerts of locker {id} no longer go to {address}.": "Les alertes de la consigne {id} ne vont plus à {address}.",
    "Locker {id} has no contacts of its own: its alerts go to the defaults.": (
        "La consigne {id} n'a plus de contacts propres : ses alertes vont aux valeurs par défaut."
    ),
    # a code's kind (the size letters S, M, L stay as they are)
    "pickup": "retrait",
    "staff": "personnel",
    "return": "retour",
    "delivery": "livraison",
    "low": "porte basse",
}
