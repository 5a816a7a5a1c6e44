"""The API's OpenAPI 3.1 document, served at /api/v1/openapi.json (docs/api.md is the prose).

Its schemas are JSON Schema 2020-12 (OpenAPI 3.1's dialect), closed (additionalProperties false), so
tests validate every answer against them with jsonschema.
"""

from __future__ import annotations

import copy
from typing import Any

from lockertools.api.outbox import EVENT_STATES, EVENTS
from lockertools.service.fleet.common import ITEMS, LANGUAGES

STATES = ("prepared", "loaded", "picked_up", "expired", "taken_back", "cancelled")
SIZES = ("S", "M", "L")
PROBLEM_TYPE = "https://parcel-locker.invalid/api/problems/"
VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _json(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}
    if headers:
        out["headers"] = headers
    return out


_NULLABLE_TEXT = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "description": "RFC 9457 problem details",
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "errors": {
                "description": "validation errors, one per field",
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "detail": {"type": "string"}},
                    "required": ["field", "detail"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["type", "title", "status"],
        "additionalProperties": False,
    },
    "Resident": {
        "description": "whom the delivery is for: all optional but the language (default nl)",
        "type": "object",
        "properties": {
            "name": {"type": ["string", "null"], "maxLength": 200},
            "email": {"type": ["string", "null"], "maxLength": 254},
            "phone": {"type": ["string", "null"], "maxLength": 32, "description": "8 to 15 digits, optionally +"},
            "language": {"enum": list(LANGUAGES)},
        },
        "additionalProperties": False,
    },
    "NewDelivery": {
        "type": "object",
        "properties": {
            "locker": {"type": "string", "description": "the locker's id"},
            "case_number": {"type": ["string", "null"], "maxLength": 64, "description": "the town's case number"},
            "resident": _ref("Resident"),
            "item": {"enum": list(ITEMS), "default": "parcel"},
            "size": {"enum": [*SIZES, None], "default": None, "description": "the smallest door it fits; null: any"},
            "low": {"type": "boolean", "default": False, "description": "a door reachable from a wheelchair"},
            "pickup_days": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 366,
                "default": 5,
                "description": "the resident's pickup window, counted from the load",
            },
        },
        "required": ["locker"],
        "additionalProperties": False,
    },  # fmt: skip
    "Delivery": {
        "description": "a delivery as the town's systems see it: never the resident's pickup code",
        "type": "object",
        "properties": {
            "number": {"type": "integer", "minimum": 100000, "maximum": 999999, "description": "the delivery number"},
            "locker": {"type": "string"},
            "state": {"enum": list(STATES)},
            "door": {**_NULLABLE_TEXT, "description": "the door it was loaded into; null before"},
            "case_number": _NULLABLE_TEXT,
            "item": {"type": ["string", "null"]},
            "size": {"enum": [*SIZES, None]},
            "low": {"type": "boolean"},
            "language": {"enum": list(LANGUAGES)},
            "deadline": {
                **_TIME,
                "description": "prepared: the loading allowance plus the pickup window;"
                " loaded: the end of the pickup window",
            },
            "created_at": _TIME,
            "loaded_at": _NULLABLE_TIME,
            "picked_up_at": _NULLABLE_TIME,
        },
        "required": [
            "number",
            "locker",
            "state",
            "door",
            "case_number",
            "item",
            "size",
            "low",
            "language",
            "deadline",
            "created_at",
            "loaded_at",
            "picked_up_at",
        ],
        "additionalProperties": False,
    },  # fmt: skip
    "FreeDoors": {
        "type": "object",
        "properties": {size: {"type": "integer", "minimum": 0} for size in SIZES},
        "required": list(SIZES),
        "additionalProperties": False,
    },
    "Locker": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "online": {"type": "boolean"},
            "last_seen": _NULLABLE_TIME,
            "doors": {"type": "integer", "minimum": 0},
            "free": {**_ref("FreeDoors"), "description": "free doors of each size"},
            "free_low": {**_ref("FreeDoors"), "description": "the low ones among them"},
            "free_unsized": {"type": "integer", "minimum": 0, "description": "free doors of unrecorded size"},
        },
        "required": ["id", "online", "last_seen", "doors", "free", "free_low", "free_unsized"],
        "additionalProperties": False,
    },
    "LockerList": {
        "type": "object",
        "properties": {"lockers": {"type": "array", "items": _ref("Locker")}},
        "required": ["lockers"],
        "additionalProperties": False,
    },
    "WebhookEvent": {
        "description": "the body of a webhook request",
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "the event's id: the same on every retry"},
            "event": {"enum": list(EVENTS)},
            "delivery": {"type": "integer"},
            "case_number": _NULLABLE_TEXT,
            "state": {"enum": sorted(set(EVENT_STATES.values()))},
            "time": _TIME,
            "locker": {"type": "string"},
            "door": _NULLABLE_TEXT,
        },
        "required": ["id", "event", "delivery", "case_number", "state", "time", "locker", "door"],
        "additionalProperties": False,
    },
}

_NUMBER = {
    "name": "number",
    "in": "path",
    "required": True,
    "schema": {"type": "integer"},
    "description": "the delivery number",
}
_UNAUTHORIZED = {"$ref": "#/components/responses/Unauthorized"}
_FORBIDDEN = {"$ref": "#/components/responses/Forbidden"}
_DELIVERY_SCOPE = [{"token": ["deliveries"]}]
_READ_SCOPE = [{"token": ["read"]}]


def document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change theirs)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Parcel lockers: the town's API",
            "version": VERSION,
            "description": "Deliveries for the town's systems, the lockers' free doors, and webhooks on every"
            " state change of a delivery (docs/api.md).",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"token": []}],
        "paths": {
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "the OpenAPI document", "content": {"application/json": {}}}},
                }
            },
            "/deliveries": {
                "post": {
                    "summary": "Prepare a delivery (staff load it at the locker)",
                    "security": _DELIVERY_SCOPE,
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                            "description": "a retried request with the same key (and body) creates one"
                            " delivery and gets the first answer again, for 24 h",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("NewDelivery")}},
                    },
                    "responses": {
                        "201": _json(
                            "prepared",
                            "Delivery",
                            {"Location": {"schema": {"type": "string"}, "description": "the delivery's URL"}},
                        ),
                        "400": _problem("not JSON, or a bad Idempotency-Key"),
                        "401": _UNAUTHORIZED,
                        "403": _FORBIDDEN,
                        "409": _problem("a request with this Idempotency-Key is still being answered"),
                        "413": _problem("the body is too large"),
                        "415": _problem("the body is not application/json"),
                        "422": _problem(
                            "a field is wrong (each named in `errors`), or the Idempotency-Key"
                            " was used with another body"
                        ),
                    },
                }  # fmt: skip
            },
            "/deliveries/{number}": {
                "get": {
                    "summary": "Read a delivery",
                    "security": _READ_SCOPE,
                    "parameters": [_NUMBER],
                    "responses": {
                        "200": _json("the delivery", "Delivery"),
                        "401": _UNAUTHORIZED,
                        "403": _FORBIDDEN,
                        "404": _problem("no such delivery"),
                    },
                }
            },
            "/deliveries/{number}/cancel": {
                "post": {
                    "summary": "Cancel a delivery not loaded yet (cancelling a cancelled one answers it again)",
                    "security": _DELIVERY_SCOPE,
                    "parameters": [_NUMBER],
                    "responses": {
                        "200": _json("cancelled", "Delivery"),
                        "401": _UNAUTHORIZED,
                        "403": _FORBIDDEN,
                        "404": _problem("no such delivery"),
                        "409": _problem("loaded, picked up or done with: staff take a loaded item back"),
                    },
                }
            },
            "/lockers": {
                "get": {
                    "summary": "The lockers with their free doors per size",
                    "security": _READ_SCOPE,
                    "responses": {
                        "200": _json("every locker", "LockerList"),
                        "401": _UNAUTHORIZED,
                        "403": _FORBIDDEN,
                    },
                }
            },
        },
        "webhooks": {
            "deliveryEvent": {
                "post": {
                    "summary": "A delivery's state changed",
                    "description": "Signed: `Locker-Signature: t=<unix time>,v1=<hex>`, the HMAC-SHA256 of"
                    " `<t>.<body>` under the webhook's secret. Any 2xx takes it; otherwise it is retried"
                    " with a growing delay.",
                    "requestBody": {"content": {"application/json": {"schema": _ref("WebhookEvent")}}},
                    "responses": {"200": {"description": "taken (any 2xx)"}},
                }
            }
        },
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token (`lockerctl api token create`): `Authorization: Bearer lkr_...`."
                    " Scopes: read; deliveries (create, cancel, and read)",
                }
            },
            "responses": {
                "Unauthorized": _problem("no token, or not a live one"),
                "Forbidden": _problem("the token lacks the scope"),
            },
            "schemas": copy.deepcopy(_SCHEMAS),
        },
    }
