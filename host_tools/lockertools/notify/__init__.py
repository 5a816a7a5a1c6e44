"""Telling residents: templates (templates.py), channels (channels.py: e-mail, SMS; letter.py: the
printed letter), the outbox that plans and sends messages (outbox.py), and what needs neither
templates nor PDF (held.py: a locker's place, the held code's release, contact retention).
docs/notifications.md.

What the staff desk uses: messages_of_delivery, hook_messages_of_delivery, failed_messages,
failed_hook_messages, failed_count, retry_now, letters_to_print, letters_count, delivery_reach,
letter_pdf (one letter or a batch, as PDF bytes) and mark_letters_printed. The names are imported on
first use, so `lockertools.notify.held` needs neither Jinja2 nor fpdf2 (the service extra's).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lockertools.notify.held import locker_place, purge_contacts, set_locker_place
    from lockertools.notify.outbox import (
        MessageView,
        Outbox,
        OutboxError,
        delivery_reach,
        failed_count,
        failed_hook_messages,
        failed_messages,
        hook_messages_of_delivery,
        letter_pdf,
        letters_count,
        letters_to_print,
        mark_letters_printed,
        messages_of_delivery,
        reach,
        retry_now,
    )
    from lockertools.notify.templates import TemplateError, Templates

_WHERE = {
    "locker_place": "held",
    "purge_contacts": "held",
    "set_locker_place": "held",
    "MessageView": "outbox",
    "Outbox": "outbox",
    "OutboxError": "outbox",
    "delivery_reach": "outbox",
    "failed_count": "outbox",
    "failed_hook_messages": "outbox",
    "failed_messages": "outbox",
    "hook_messages_of_delivery": "outbox",
    "letters_count": "outbox",
    "retry_now": "outbox",
    "letter_pdf": "outbox",
    "letters_to_print": "outbox",
    "mark_letters_printed": "outbox",
    "messages_of_delivery": "outbox",
    "reach": "outbox",
    "TemplateError": "templates",
    "Templates": "templates",
}
__all__ = [
    "MessageView",
    "Outbox",
    "OutboxError",
    "TemplateError",
    "Templates",
    "delivery_reach",
    "failed_count",
    "failed_hook_messages",
    "failed_messages",
    "hook_messages_of_delivery",
    "letter_pdf",
    "letters_count",
    "letters_to_print",
    "locker_place",
    "mark_letters_printed",
    "messages_of_delivery",
    "purge_contacts",
    "reach",
    "retry_now",
    "set_locker_place",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lockertools.notify' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lockertools.notify.{module}"), name)
