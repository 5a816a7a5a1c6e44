"""The API's aiohttp application: `create_api_app(database)` (docs/api.md).

A sub-application: the staff desk mounts it (`desk.add_subapp("/api/v1/", create_api_app(...))`) and
`lockerctl api serve` runs it alone under the same prefix. Every answer is JSON; every error an RFC
9457 problem (application/problem+json), a validation error naming each field. No answer holds a
resident's pickup code or contact: the town's system gets the delivery number, the state, the door
and the deadline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from lockertools.api import lockers, openapi, tokens
from lockertools.api.outbox import iso_time
from lockertools.service import db, fleet_db

IDEMPOTENCY_TTL_S = 86400.0
_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces
_PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class ApiOptions:
    idempotency_ttl_s: float = IDEMPOTENCY_TTL_S  # how long an Idempotency-Key and its answer are kept
    max_body_bytes: int = 16 * 1024


class Problem(Exception):
    """An error answer (RFC 9457)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        kind: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.errors = status, title, detail, errors
        self.type = openapi.PROBLEM_TYPE + kind if kind else "about:blank"
        self.headers = headers or {}

    def response(self) -> web.Response:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if self.errors:
            body["errors"] = self.errors
        return web.Response(status=self.status, text=json.dumps(body), content_type=_PROBLEM, headers=self.headers)


class Invalid(Problem):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        detail = "; ".join(f"{e['field']}: {e['detail']}" for e in errors)
        super().__init__(422, "The request has invalid fields", detail, "validation", errors)


class ApiState:
    """The app's database connection: its own (opened at startup, closed at cleanup) or the host
    application's (`connection=`: used in the same event loop, left open)."""

    def __init__(self, database: str | Path | None, connection: db.Connection | None, options: ApiOptions) -> None:
        if (database is None) == (connection is None):
            raise ValueError("give the database or a connection")
        self.database = database
        self._conn = connection
        self._own = connection is None
        self.options = options
        self.document = json.dumps(openapi.document())

    @property
    def conn(self) -> db.Connection:
        assert self._conn is not None, "the API app has not started"
        return self._conn

    async def open(self, _app: web.Application) -> None:
        if self._own:
            assert self.database is not None
            self._conn = db.connect(self.database)

    async def close(self, _app: web.Application) -> None:
        if self._own and self._conn is not None:
            self._conn.close()
            self._conn = None


STATE = web.AppKey("lockertools.api", ApiState)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_api_app(
    database: str | Path | None = None,
    *,
    connection: db.Connection | None = None,
    options: ApiOptions | None = None,
) -> web.Application:
    """The API as an aiohttp application, to mount at /api/v1/. `database`: the fleet database (a URL
    or a SQLite path), opened when the app starts; or `connection`: one the caller keeps (used on the
    app's event loop only). `options`: the Idempotency-Key's lifetime, the largest body."""
    state = ApiState(database, connection, options or ApiOptions())
    app = web.Application(middlewares=[_problems])
    app[STATE] = state
    app.on_startup.append(state.open)
    app.on_cleanup.append(state.close)
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_post("/deliveries", _create_delivery)
    app.router.add_get("/deliveries/{number}", _read_delivery)
    app.router.add_post("/deliveries/{number}/cancel", _cancel_delivery)
    app.router.add_get("/lockers", _list_lockers)
    return app


@web.middleware
async def _problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return Problem(exc.status, exc.reason, headers=headers).response()


def _state(request: web.Request) -> ApiState:
    return request.config_dict[STATE]


def _authorize(request: web.Request, scope: str) -> tokens.ApiToken:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="lockers"'}
    if scheme.lower() != "bearer" or not presented.strip():
        raise Problem(401, "Unauthorized", "send an API token: Authorization: Bearer lkr_...", "unauthorized",
                      headers=challenge)  # fmt: skip
    token = tokens.authenticate(_state(request).conn, presented.strip())
    if token is None:
        raise Problem(401, "Unauthorized", "the token is not a live API token", "unauthorized", headers=challenge)
    if not token.allows(scope):
        raise Problem(403, "Forbidden", f"the token's scopes ({', '.join(token.scopes)}) do not include {scope!r}",
                      "forbidden")  # fmt: skip
    return token


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers)


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(text=_state(request).document, content_type="application/json")


# --- deliveries --------------------------------------------------------------------------------------

_DELIVERY_SQL = (
    "SELECT c.id, c.locker_id, c.door, c.kind, c.state, c.expires, c.item, c.created_at, c.loaded_at, c.used_at,"
    " x.case_ref, x.language FROM codes c LEFT JOIN delivery_details x ON x.code_id = c.id"
    " WHERE c.id = ? AND (c.kind & 15) = ?"
)
_STATES = {"used": "picked_up", "expired": "expired", "taken_back": "taken_back", "revoked": "cancelled"}


def delivery_json(conn: db.Connection, number: int) -> dict[str, Any] | None:
    """A delivery as the API answers it (the Delivery schema), or None: no delivery `number`."""
    row = conn.execute(_DELIVERY_SQL, (number, fleet_db.KIND_DELIVERY)).fetchone()
    if row is None:
        return None
    loaded = row["door"] != fleet_db.ANY_DOOR
    state = _STATES.get(row["state"], "loaded" if loaded else "prepared")
    size = (int(row["kind"]) >> 4) & 3
    return {
        "number": int(row["id"]),
        "locker": row["locker_id"],
        "state": state,
        "door": row["door"] if loaded else None,
        "case_number": row["case_ref"],
        "item": row["item"],
        "size": fleet_db.SIZE_NAMES[size] if size else None,
        "low": bool(int(row["kind"]) & fleet_db.LOW_BIT),
        "language": row["language"] or fleet_db.LANGUAGES[0],
        "deadline": iso_time(int(row["expires"])),
        "created_at": iso_time(float(row["created_at"])),
        "loaded_at": None if row["loaded_at"] is None else iso_time(float(row["loaded_at"])),
        "picked_up_at": None if row["state"] != "used" or row["used_at"] is None else iso_time(float(row["used_at"])),
    }


def _number(request: web.Request) -> int:
    text = request.match_info["number"]
    if not text.isdigit() or len(text) > 10:
        raise Problem(404, "Not Found", f"no delivery {text}", "not-found")
    return int(text)


async def _read_delivery(request: web.Request) -> web.Response:
    _authorize(request, "read")
    number = _number(request)
    found = delivery_json(_state(request).conn, number)
    if found is None:
        raise Problem(404, "Not Found", f"no delivery {number}", "not-found")
    return _json_response(found)


async def _cancel_delivery(request: web.Request) -> web.Response:
    _authorize(request, "deliveries")
    conn = _state(request).conn
    number = _number(request)
    found = delivery_json(conn, number)
    if found is None:
        raise Problem(404, "Not Found", f"no delivery {number}", "not-found")
    if found["state"] != "cancelled":
        if found["state"] != "prepared":
            raise Problem(409, "Conflict", f"delivery {number} is {found['state'].replace('_', ' ')}: it cannot be"
                          " cancelled (a loaded item is taken back by staff)", "conflict")  # fmt: skip
        try:
            fleet_db.cancel_delivery(conn, number)
        except fleet_db.FleetError as exc:
            raise Problem(409, "Conflict", str(exc), "conflict") from None
        found = delivery_json(conn, number)
    return _json_response(found)


async def _body(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise Problem(415, "Unsupported Media Type", "send the body as application/json", "unsupported-media-type")
    limit = _state(request).options.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Problem(413, "Content Too Large", f"the body is at most {limit} bytes", "too-large")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise Problem(413, "Content Too Large", f"the body is at most {limit} bytes", "too-large")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "Bad Request", "the body is not JSON", "not-json") from None


@dataclass(frozen=True)
class DeliveryRequest:
    locker: str
    resident: fleet_db.Resident
    item: str
    size: str | None
    low: bool
    pickup_days: float


_FIELDS = ("locker", "case_number", "resident", "item", "size", "low", "pickup_days")
_RESIDENT_FIELDS = ("name", "email", "phone", "language")


def _text(doc: dict[str, Any], name: str, field: str, errors: list[dict[str, str]]) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        errors.append({"field": field, "detail": "a string or null"})
        return None
    return value


def parse_delivery(body: Any) -> DeliveryRequest:
    """The request body of POST /deliveries, checked; Invalid names every field that is wrong."""
    errors: list[dict[str, str]] = []
    if not isinstance(body, dict):
        raise Invalid([{"field": "(body)", "detail": "a JSON object"}])
    errors.extend({"field": k, "detail": "unknown field"} for k in body if k not in _FIELDS)
    locker = body.get("locker")
    if not isinstance(locker, str) or not locker:
        errors.append({"field": "locker", "detail": "required: the locker's id"})
    resident_doc = body.get("resident", {})
    if resident_doc is None:
        resident_doc = {}
    if not isinstance(resident_doc, dict):
        errors.append({"field": "resident", "detail": "an object"})
        resident_doc = {}
    errors.extend(
        {"field": f"resident.{k}", "detail": "unknown field"} for k in resident_doc if k not in _RESIDENT_FIELDS
    )
    fields = {
        "name": _text(resident_doc, "name", "resident.name", errors),
        "email": _text(resident_doc, "email", "resident.email", errors),
        "phone": _text(resident_doc, "phone", "resident.phone", errors),
        "case_ref": _text(body, "case_number", "case_number", errors),
    }
    language = resident_doc.get("language", fleet_db.LANGUAGES[0])
    if language not in fleet_db.LANGUAGES:
        errors.append({"field": "resident.language", "detail": f"one of {', '.join(fleet_db.LANGUAGES)}"})
        language = fleet_db.LANGUAGES[0]
    names = {"name": "resident.name", "email": "resident.email", "phone": "resident.phone", "case_ref": "case_number"}
    checked: dict[str, str | None] = {}
    for key, value in fields.items():
        try:  # fleet_db's own rules, one field at a time, so the error names its field
            one_field: dict[str, Any] = {key: value}
            one = dataclasses.replace(fleet_db.Resident(), **one_field).checked()
            checked[key] = getattr(one, key)
        except fleet_db.FleetError as exc:
            errors.append({"field": names[key], "detail": str(exc).split(": ", 1)[-1]})
    item = body.get("item", "parcel")
    if item not in fleet_db.ITEMS:
        errors.append({"field": "item", "detail": f"one of: {', '.join(fleet_db.ITEMS)}"})
    size = body.get("size")
    if size is not None and size not in openapi.SIZES:
        errors.append({"field": "size", "detail": "S, M, L or null (any)"})
    low = body.get("low", False)
    if not isinstance(low, bool):
        errors.append({"field": "low", "detail": "true or false"})
    days = body.get("pickup_days", fleet_db.PICKUP_DAYS)
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 366:
        errors.append({"field": "pickup_days", "detail": "a number of days, above 0 and at most 366"})
    if errors:
        raise Invalid(errors)
    resident = fleet_db.Resident(checked["name"], checked["email"], checked["phone"], language, checked["case_ref"])
    return DeliveryRequest(str(locker), resident, str(item), size, low, float(days))


def _request_hash(request: web.Request, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()


async def _create_delivery(request: web.Request) -> web.Response:
    token = _authorize(request, "deliveries")
    state = _state(request)
    conn = state.conn
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _KEY.fullmatch(key):
        detail = "1-255 printable ASCII characters, no spaces"
        errors = [{"field": "Idempotency-Key", "detail": detail}]
        raise Problem(400, "Bad Request", f"Idempotency-Key: {detail}", "bad-idempotency-key", errors)
    body = await _body(request)
    wanted = parse_delivery(body)
    if key is not None:
        replay = _claim_key(conn, token, key, _request_hash(request, body), state.options)
        if replay is not None:
            return replay
    try:
        try:
            issued = fleet_db.prepare_delivery(
                conn, wanted.locker, size=wanted.size, low=wanted.low, days=wanted.pickup_days, item=wanted.item,
                resident=wanted.resident, source="api", created_by=token.name,
            )  # fmt: skip
        except fleet_db.FleetError as exc:
            field = "locker" if str(exc).startswith("unknown locker") else "(body)"
            raise Invalid([{"field": field, "detail": str(exc)}]) from None
    except BaseException:
        if key is not None:
            with db.transaction(conn):
                conn.execute("DELETE FROM api_idempotency WHERE token_id = ? AND key = ?", (token.id, key))
        raise
    answer = delivery_json(conn, issued.number)
    if key is not None:
        with db.transaction(conn):
            conn.execute(
                "UPDATE api_idempotency SET status = 201, response_json = ? WHERE token_id = ? AND key = ?",
                (json.dumps(answer), token.id, key),
            )
    return _json_response(answer, 201, {"Location": f"{_prefix(request)}/deliveries/{issued.number}"})


def _prefix(request: web.Request) -> str:
    """Where the app is mounted (/api/v1), from the route that matched."""
    path = request.path
    return path[: path.rfind("/deliveries")] if "/deliveries" in path else ""


def _claim_key(
    conn: db.Connection, token: tokens.ApiToken, key: str, digest: str, options: ApiOptions
) -> web.Response | None:
    """Claim an Idempotency-Key for this request; or the answer to give instead (the first answer
    again, 422 for another body, 409 while the first is still running)."""
    now = time.time()
    try:
        with db.transaction(conn):
            conn.execute("DELETE FROM api_idempotency WHERE created_at < ?", (now - options.idempotency_ttl_s,))
            row = conn.execute(
                "SELECT request_sha256, status, response_json FROM api_idempotency WHERE token_id = ? AND key = ?",
                (token.id, key),
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO api_idempotency(token_id, key, request_sha256, created_at) VALUES (?, ?, ?, ?)",
                    (token.id, key, digest, now),
                )
                return None
    except db.IntegrityError:
        row = None  # another process claimed it between our look and our insert
    if row is not None and row["request_sha256"] != digest:
        errors = [{"field": "Idempotency-Key", "detail": "used with another request body"}]
        detail = "this Idempotency-Key was used with another request body"
        raise Problem(422, "Idempotency-Key reused", detail, "idempotency-key-reused", errors)
    if row is None or row["status"] is None:
        raise Problem(409, "Conflict", "a request with this Idempotency-Key is still being answered: retry",
                      "idempotency-key-in-use")  # fmt: skip
    return _json_response(json.loads(row["response_json"]), int(row["status"]), {"Idempotent-Replayed": "true"})


# --- lockers -------------------------------------------------------------------------------------------


async def _list_lockers(request: web.Request) -> web.Response:
    _authorize(request, "read")
    out = [
        {
            "id": a.id,
            "online": a.online,
            "last_seen": None if a.last_seen is None else iso_time(a.last_seen),
            "doors": a.doors,
            "free": a.free,
            "free_low": a.free_low,
            "free_unsized": a.free_unsized,
        }
        for a in lockers.locker_availability(_state(request).conn)
    ]
    return _json_response({"lockers": out})
