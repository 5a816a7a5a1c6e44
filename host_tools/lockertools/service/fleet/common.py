"""The fleet's shared vocabulary: code kinds and sizes, windows, and FleetError."""

from __future__ import annotations

# The kind byte of a code (docs/protocol.md, "Code rows"): bits 0-3 the kind, bits 4-5 the size
# wanted (0 any, 1 S, 2 M, 3 L), bit 6 a low door wanted.
KINDS = {"pickup": 0, "staff": 1, "return": 2, "delivery": 3}
KIND_NAMES = {v: k for k, v in KINDS.items()}
KIND_PICKUP, KIND_STAFF, KIND_RETURN, KIND_DELIVERY = 0, 1, 2, 3
KIND_MASK = 0x0F
DOOR_FREE = (KIND_STAFF, KIND_RETURN, KIND_DELIVERY)  # tag over "*", door byte 0xFF on the locker
ANY_DOOR = "*"
SIZES = {"any": 0, "S": 1, "M": 2, "L": 3}
SIZE_NAMES = {v: k for k, v in SIZES.items()}
LOW_BIT = 0x40
ITEMS = ("parcel", "document", "permit", "waste bags", "borrowed material")
LANGUAGES = ("nl", "fr", "en")  # what residents are told in; the first is the default
CODE_DIGITS = 8
PICKUP_DAYS = 5.0  # the default pickup window
# A prepared delivery's row expires LOAD_DAYS + its pickup window after it is prepared: staff have
# LOAD_DAYS to bring it, and a locker the host cannot reach after the load still gives the resident
# the whole window. On `loaded` the host moves the expiry to the load time + the window (docs/protocol.md,
# "Deliveries, returns and staff on the host"). The fleet setting `delivery_load_days` overrides it.
LOAD_DAYS = 7.0
LOAD_DAYS_SETTING = "delivery_load_days"
MAX_WINDOW_S = 366 * 86400  # a pickup window found longer (or not positive): PICKUP_DAYS instead
U32_MAX = (1 << 32) - 1
REMINDER_S = 86400  # a reminder this long before a pickup window ends


def kind_byte(kind: int, size: str | None = None, low: bool = False) -> int:
    if size is not None and size not in SIZES:
        raise FleetError(f"size is one of {', '.join(SIZES)}")
    return kind | (SIZES[size or "any"] << 4) | (LOW_BIT if low else 0)


def describe_kind(byte: int) -> str:
    """'delivery', 'delivery M low', ... for people."""
    words = [KIND_NAMES.get(byte & KIND_MASK, str(byte & KIND_MASK))]
    if (byte >> 4) & 3:
        words.append(SIZE_NAMES[(byte >> 4) & 3])
    if byte & LOW_BIT:
        words.append("low")
    return " ".join(words)


class FleetError(Exception):
    """A request that names something unknown or breaks a rule; the text is for people."""
