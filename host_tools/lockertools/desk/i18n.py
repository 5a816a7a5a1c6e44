"""The desk's texts in Dutch (the default), French and English.

A template writes `{{ _("Lockers") }}`: the English text is the key, and NL and FR give its
translation (English is the key itself). tests/desk/test_desk_i18n.py fails on a text a template
or a page uses that either language lacks. Texts with values use `{name}` fields:
`_("Try again in {s} seconds", s=12)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lockertools.desk import i18n_pages

LANGUAGES = ("nl", "fr", "en")
LANGUAGE_NAMES = {"nl": "Nederlands", "fr": "Français", "en": "English"}

NL: dict[str, str] = {
    "Staff desk": "Balie",
    "Lockers": "Kluizen",
    "Accounts": "Accounts",
    "Audit trail": "Logboek",
    "Log in": "Aanmelden",
    "Log out": "Afmelden",
    "Name": "Naam",
    "Password": "Wachtwoord",
    "Language": "Taal",
    "Skip to the content": "Naar de inhoud",
    "Main navigation": "Hoofdmenu",
    "Logged in as {name} ({role})": "Aangemeld als {name} ({role})",
    "Wrong name or password.": "Verkeerde naam of wachtwoord.",
    "Too many failed attempts: try again in {s} seconds.": (
        "Te veel mislukte pogingen: probeer opnieuw over {s} seconden."
    ),
    "Your session has ended: log in again.": "Uw sessie is afgelopen: meld u opnieuw aan.",
    "The form has expired: please try again.": "Het formulier is verlopen: probeer het opnieuw.",
    "You may not see this page.": "U mag deze pagina niet zien.",
    "Not found.": "Niet gevonden.",
    "Forbidden": "Geen toegang",
    "Page not found": "Pagina niet gevonden",
    "desk": "balie",
    "manager": "beheerder",
    "admin": "administrator",
    # lockers
    "Locker": "Kluis",
    "Online": "Online",
    "Codes in sync": "Codes gelijk",
    "Free doors": "Vrije deuren",
    "Full": "Vol",
    "Out of service": "Buiten dienst",
    "In alarm": "Alarm",
    "Last contact": "Laatste contact",
    "yes": "ja",
    "no": "nee",
    "safe mode": "veilige modus",
    "never": "nooit",
    "No lockers registered.": "Geen kluizen geregistreerd.",
    "Lockers overview": "Overzicht van de kluizen",
    "Wall of locker {id}": "Wand van kluis {id}",
    "Door": "Deur",
    "Size": "Maat",
    "State": "Toestand",
    "Inside": "Inhoud",
    "Delivery": "Levering",
    "Case number": "Dossiernummer",
    "Since": "Sinds",
    "Pickup deadline": "Ophalen tot",
    "Alarm": "Alarm",
    "empty": "leeg",
    "unknown": "onbekend",
    "open": "open",
    "closed": "dicht",
    "unlocking": "ontgrendeld",
    "locked": "vergrendeld",
    "jammed": "geblokkeerd",
    "forced": "opengebroken",
    "door left open": "deur open gelaten",
    "Door states update by themselves.": "De toestand van de deuren wordt vanzelf bijgewerkt.",
    "Live updates stopped: reload the page.": "Live bijwerken gestopt: laad de pagina opnieuw.",
    "{n} free": "{n} vrij",
    "any size": "elke maat",
    "Back to the lockers": "Terug naar de kluizen",
    # accounts
    "Add an account": "Account toevoegen",
    "Role": "Rol",
    "Status": "Status",
    "active": "actief",
    "disabled": "uitgeschakeld",
    "Add": "Toevoegen",
    "Disable": "Uitschakelen",
    "Enable": "Inschakelen",
    "New password": "Nieuw wachtwoord",
    "Reset the password": "Wachtwoord opnieuw instellen",
    "Change the role": "Rol wijzigen",
    "Actions": "Acties",
    "Account {name} added.": "Account {name} toegevoegd.",
    "Account {name} changed.": "Account {name} gewijzigd.",
    "at least {n} characters": "minstens {n} tekens",
    # audit
    "When": "Wanneer",
    "Who": "Wie",
    "Address": "Adres",
    "Action": "Handeling",
    "Target": "Onderwerp",
    "Details": "Details",
    "Older": "Ouder",
    "Nothing recorded yet.": "Nog niets vastgelegd.",
}

FR: dict[str, str] = {
    "Staff desk": "Guichet",
    "Lockers": "Consignes",
    "Accounts": "Comptes",
    "Audit trail": "Journal",
    "Log in": "Se connecter",
    "Log out": "Se déconnecter",
    "Name": "Nom",
    "Password": "Mot de passe",
    "Language": "Langue",
    "Skip to the content": "Aller au contenu",
    "Main navigation": "Menu principal",
    "Logged in as {name} ({role})": "Connecté en tant que {name} ({role})",
    "Wrong name or password.": "Nom ou mot de passe incorrect.",
    "Too many failed attempts: try again in {s} seconds.": "Trop d'échecs : réessayez dans {s} secondes.",
    "Your session has ended: log in again.": "Votre session a pris fin : reconnectez-vous.",
    "The form has expired: please try again.": "Le formulaire a expiré : veuillez réessayer.",
    "You may not see this page.": "Vous n'avez pas accès à cette page.",
    "Not found.": "Introuvable.",
    "Forbidden": "Accès refusé",
    "Page not found": "Page introuvable",
    "desk": "guichet",
    "manager": "responsable",
    "admin": "administrateur",
    "Locker": "Consigne",
    "Online": "En ligne",
    "Codes in sync": "Codes à jour",
    "Free doors": "Portes libres",
    "Full": "Pleines",
    "Out of service": "Hors service",
    "In alarm": "En alarme",
    "Last contact": "Dernier contact",
    "yes": "oui",
    "no": "non",
    "safe mode": "mode sûr",
    "never": "jamais",
    "No lockers registered.": "Aucune consigne enregistrée.",
    "Lockers overview": "Vue d'ensemble des consignes",
    "Wall of locker {id}": "Façade de la consigne {id}",
    "Door": "Porte",
    "Size": "Taille",
    "State": "État",
    "Inside": "Contenu",
    "Delivery": "Livraison",
    "Case number": "Numéro de dossier",
    "Since": "Depuis",
    "Pickup deadline": "À retirer avant",
    "Alarm": "Alarme",
    "empty": "vide",
    "unknown": "inconnu",
    "open": "ouverte",
    "closed": "fermée",
    "unlocking": "déverrouillée",
    "locked": "verrouillée",
    "jammed": "bloquée",
    "forced": "forcée",
    "door left open": "porte restée ouverte",
    "Door states update by themselves.": "L'état des portes se met à jour tout seul.",
    "Live updates stopped: reload the page.": "Mise à jour en direct interrompue : rechargez la page.",
    "{n} free": "{n} libres",
    "any size": "toute taille",
    "Back to the lockers": "Retour aux consignes",
    "Add an account": "Ajouter un compte",
    "Role": "Rôle",
    "Status": "Statut",
    "active": "actif",
    "disabled": "désactivé",
    "Add": "Ajouter",
    "Disable": "Désactiver",
    "Enable": "Activer",
    "New password": "Nouveau mot de passe",
    "Reset the password": "Réinitialiser le mot de passe",
    "Change the role": "Changer le rôle",
    "Actions": "Actions",
    "Account {name} added.": "Compte {name} ajouté.",
    "Account {name} changed.": "Compte {name} modifié.",
    "at least {n} characters": "au moins {n} caractères",
    "When": "Quand",
    "Who": "Qui",
    "Address": "Adresse",
    "Action": "Action",
    "Target": "Objet",
    "Details": "Détails",
    "Older": "Plus anciens",
    "Nothing recorded yet.": "Rien d'enregistré pour l'instant.",
}

# the deliveries, codes, staff, doors and reports pages keep their texts in a module of their own
NL.update(i18n_pages.NL)
FR.update(i18n_pages.FR)

CATALOGUES: dict[str, dict[str, str]] = {"nl": NL, "fr": FR, "en": {}}


def translator(language: str) -> Callable[..., str]:
    """`_(text, **fields)` for one language; a text missing from it is shown in English."""
    catalogue = CATALOGUES.get(language, NL)

    def translate(text: str, **fields: Any) -> str:
        out = catalogue.get(text, text)
        return out.format(**fields) if fields else out

    return translate


def pick_language(wanted: str | None, default: str) -> str:
    return wanted if wanted in LANGUAGES else default
