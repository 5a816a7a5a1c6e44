"""The protocol's machine-readable contract (protocol/schemas/*.json), for tests and the service.

Every message either end sends can be checked against its schema: `check_wire()` opens a signed
message with the locker's key (the firmware's own protocol module) and validates the payload.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource

from lockertools import SCHEMA_DIR

KINDS = ("status", "doors", "event", "reply", "command")
# The last level of a topic -> the schema of what travels on it.
_TOPIC_KINDS = {"status": "status", "doors": "doors", "events": "event", "reply": "reply", "cmd": "command"}


class ContractError(ValueError):
    """A message that breaks the contract; the text names the field."""


@cache
def _validators() -> dict[str, Draft202012Validator]:
    resources = []
    for path in SCHEMA_DIR.glob("*.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry: Registry[Any] = Registry().with_resources(resources)
    out = {}
    for kind in KINDS:
        schema = json.loads((SCHEMA_DIR / f"{kind}.json").read_text())
        Draft202012Validator.check_schema(schema)
        out[kind] = Draft202012Validator(schema, registry=registry)
    return out


def kind_of_topic(topic: str) -> str:
    """`lockers/<lid>/events` -> "event"; ContractError for a topic outside the tree."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "lockers" or parts[2] not in _TOPIC_KINDS:
        raise ContractError(f"topic {topic!r} is not lockers/<lid>/(status|doors|events|reply|cmd)")
    return _TOPIC_KINDS[parts[2]]


def _closest(error: Any) -> list[Any]:
    """For a message that fits none of a oneOf's branches (the status: online, or the last will),
    the errors of the branch it came closest to, so the text names the field ("'time_known' was
    unexpected") rather than "not valid under any of the given schemas"."""
    if not error.context:
        return [error]
    branches: dict[Any, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    nearest = min(branches.values(), key=len)
    return [e for sub in nearest for e in _closest(sub)]


def check(kind: str, message: Any) -> None:
    """Raise ContractError listing every violation of the schema for `kind`."""
    errors = [e for top in _validators()[kind].iter_errors(message) for e in _closest(top)]
    errors.sort(key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors[:5]]
        raise ContractError(f"{kind} breaks the contract: " + "; ".join(lines))


def check_wire(topic: str, wire: bytes, key: bytes) -> dict[str, Any]:
    """Check a message as it travelled: signature (locker key), topic, schema, lid matching the topic."""
    from locker import protocol  # type: ignore[import-not-found]
    from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

    kind = kind_of_topic(topic)
    try:
        payload = protocol.open_signed(HmacKey(key), wire)
    except protocol.Refused as exc:
        raise ContractError(f"{topic}: {exc.reason}") from exc
    message = json.loads(payload)
    check(kind, message)
    if message.get("lid") != topic.split("/")[1]:
        raise ContractError(f"{topic}: lid {message.get('lid')!r} does not match the topic")
    return dict(message)
