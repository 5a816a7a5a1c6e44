"""API tokens, one per integration (the town's e-loket, its appointment system, ...): created and
revoked by an admin, shown once, stored as their SHA-256 only, each with its scopes.

Scopes: `read` (read deliveries, list lockers) and `deliveries` (create and cancel deliveries; reads
too). A token is `lkr_` and 43 characters of base64url (256 random bits): a fast hash is enough, as
nobody can guess one to test against it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from lockertools.service import db
from lockertools.service.fleet.common import FleetError

SCOPES = ("read", "deliveries")
PREFIX = "lkr_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
_LAST_USED_EVERY_S = 60.0  # last_used_at is a write: once a minute per token is enough to show it


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    scopes: tuple[str, ...]
    created_at: float
    created_by: str | None
    last_used_at: float | None
    revoked_at: float | None

    def allows(self, scope: str) -> bool:
        """`deliveries` includes `read`."""
        return scope in self.scopes or (scope == "read" and "deliveries" in self.scopes)


@dataclass(frozen=True)
class NewToken:
    """A token just created: `secret` is shown to the admin once and never stored."""

    token: ApiToken
    secret: str

    def __repr__(self) -> str:
        return f"NewToken(token={self.token!r})"


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token(row: db.Row) -> ApiToken:
    return ApiToken(
        int(row["id"]),
        str(row["name"]),
        tuple(str(row["scopes"]).split()),
        float(row["created_at"]),
        row["created_by"],
        row["last_used_at"],
        row["revoked_at"],
    )


def create_token(
    conn: db.Connection, name: str, scopes: list[str] | tuple[str, ...], created_by: str | None = None
) -> NewToken:
    """A new token for the integration `name` (unique among tokens, revoked ones too: the name is
    what the deliveries it creates record as created_by)."""
    if not _NAME.fullmatch(name):
        raise FleetError("token name: 1-64 characters of letters, digits, space, '.', '_' and '-'")
    wanted = tuple(dict.fromkeys(scopes))
    if not wanted or any(s not in SCOPES for s in wanted):
        raise FleetError(f"scopes: one or more of {', '.join(SCOPES)}")
    secret = PREFIX + secrets.token_urlsafe(32)
    with db.transaction(conn):
        if conn.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)).fetchone() is not None:
            raise FleetError(f"there is a token named {name!r} already (revoked tokens keep their names)")
        conn.execute(
            "INSERT INTO api_tokens(name, token_sha256, scopes, created_by, created_at) VALUES (?, ?, ?, ?, ?)",
            (name, token_hash(secret), " ".join(wanted), created_by, time.time()),
        )
        row = conn.execute("SELECT * FROM api_tokens WHERE name = ?", (name,)).fetchone()
    return NewToken(_token(row), secret)


def list_tokens(conn: db.Connection, include_revoked: bool = False) -> list[ApiToken]:
    sql = "SELECT * FROM api_tokens" + ("" if include_revoked else " WHERE revoked_at IS NULL")
    return [_token(r) for r in conn.execute(sql + " ORDER BY name")]


def revoke_token(conn: db.Connection, name: str) -> ApiToken:
    """Revoke the token named `name`: refused from its next request on."""
    with db.transaction(conn):
        row = conn.execute("SELECT * FROM api_tokens WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise FleetError(f"no token named {name!r}")
        if row["revoked_at"] is not None:
            raise FleetError(f"token {name!r} is revoked already")
        conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (time.time(), row["id"]))
        row = conn.execute("SELECT * FROM api_tokens WHERE id = ?", (row["id"],)).fetchone()
    return _token(row)


def authenticate(conn: db.Connection, presented: str, now: float | None = None) -> ApiToken | None:
    """The live token `presented` is, or None."""
    if not presented.startswith(PREFIX) or len(presented) > 128:
        return None
    digest = token_hash(presented)
    row = conn.execute("SELECT * FROM api_tokens WHERE token_sha256 = ?", (digest,)).fetchone()
    # The lookup is by hash: comparing again in constant time costs nothing and keeps timing flat.
    if row is None or not hmac.compare_digest(str(row["token_sha256"]), digest) or row["revoked_at"] is not None:
        return None
    now = time.time() if now is None else now
    if row["last_used_at"] is None or row["last_used_at"] < now - _LAST_USED_EVERY_S:
        with db.transaction(conn):
            conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, row["id"]))
    return _token(row)
