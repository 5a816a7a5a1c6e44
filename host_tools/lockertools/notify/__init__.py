"""Telling residents: templates (templates.py), channels (channels.py: e-mail, SMS; letter.py: the
printed letter), and the outbox that plans and sends messages (outbox.py). docs/notifications.md.

What the staff desk uses: messages_of_delivery, failed_messages, letters_to_print, delivery_reach,
letter_pdf (one letter or a batch, as PDF bytes) and mark_letters_printed.
"""

from __future__ import annotations

from lockertools.notify.outbox import (
    MessageView,
    Outbox,
    OutboxError,
    delivery_reach,
    failed_messages,
    letter_pdf,
    letters_to_print,
    locker_place,
    mark_letters_printed,
    messages_of_delivery,
    purge_contacts,
    reach,
    set_locker_place,
)
from lockertools.notify.templates import TemplateError, Templates

__all__ = [
    "MessageView",
    "Outbox",
    "OutboxError",
    "TemplateError",
    "Templates",
    "delivery_reach",
    "failed_messages",
    "letter_pdf",
    "letters_to_print",
    "locker_place",
    "mark_letters_printed",
    "messages_of_delivery",
    "purge_contacts",
    "reach",
    "set_locker_place",
]
