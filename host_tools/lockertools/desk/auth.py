"""Desk accounts, roles, sessions and the login throttle, on the fleet database.

Roles are ordered: desk < manager < admin; a page needs a role and every higher one may see it.
Passwords are argon2id hashes (argon2-cffi's defaults). A session is a random 256-bit value in the
cookie; the database keeps its SHA-256 (`desk_sessions.id_hash`), the CSRF token every form of the
session carries, and when it was last used: a session idle longer than the time-out is over.

Failed logins are counted per account name and per client address (a count whose last failure is
older than `FAILURE_MEMORY_S` starts again). From `FREE_FAILURES` on, each
further failure doubles the wait before the next attempt under that name or from that address
(`THROTTLE_BASE_S`, capped at `THROTTLE_MAX_S`): a guesser is slowed to a crawl and a stranger
cannot lock a colleague out for longer than the cap. A success clears the account's count and the
address's. Every function takes `now` (seconds since the epoch): the tests drive the clock.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from lockertools.service import db
from lockertools.service.schema import DESK_ROLES

ROLES = DESK_ROLES
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
FREE_FAILURES = 3
THROTTLE_BASE_S = 2.0
THROTTLE_MAX_S = 900.0
FAILURE_MEMORY_S = 86400.0  # failures older than this are forgotten: the count starts again
MIN_PASSWORD = 10
TOUCH_S = 60.0  # a session's last use is written at most this often (the idle time-out counts in minutes)
MAX_NAME = 64


class AuthError(Exception):
    """A request about accounts that breaks a rule; the text is for people."""


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    role: str
    language: str | None
    disabled: bool

    def has(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True)
class Session:
    account: Account
    csrf: str
    id_hash: str


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    return str(_hasher().hash(password))


def check_password(stored: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False


# A login under an unknown name still costs one argon2 verification, so timing does not tell which
# names exist.
_DUMMY_HASH: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password(secrets.token_hex(16)))
    return _DUMMY_HASH[0]


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"a password has at least {MIN_PASSWORD} characters")


def _check_name(name: str) -> None:
    if (
        not name
        or len(name) > MAX_NAME
        or name != name.strip()
        or any(c.isspace() or not c.isprintable() for c in name)
    ):
        raise AuthError(f"an account name is 1-{MAX_NAME} printable characters without spaces")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AuthError(f"a role is one of {', '.join(ROLES)}, not {role!r}")


def _account(row: db.Row) -> Account:
    return Account(int(row["id"]), str(row["name"]), str(row["role"]), row["language"], row["disabled_at"] is not None)


# --- accounts ---------------------------------------------------------------------------------------


def add_account(conn: db.Connection, name: str, role: str, password: str, now: float) -> Account:
    _check_name(name)
    _check_role(role)
    check_new_password(password)
    hashed = hash_password(password)
    with db.transaction(conn):
        if conn.execute("SELECT 1 FROM desk_accounts WHERE name = ?", (name,)).fetchone():
            raise AuthError(f"an account {name!r} exists already")
        conn.execute(
            "INSERT INTO desk_accounts(name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
            (name, role, hashed, now),
        )
    return find_account(conn, name)


def find_account(conn: db.Connection, name_or_id: str | int) -> Account:
    column = "id" if isinstance(name_or_id, int) else "name"
    row = conn.execute(f"SELECT * FROM desk_accounts WHERE {column} = ?", (name_or_id,)).fetchone()
    if row is None:
        raise AuthError(f"no account {name_or_id!r}")
    return _account(row)


def accounts(conn: db.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, name, role, language, created_at, disabled_at FROM desk_accounts ORDER BY name"
    ).fetchall()
    return [dict(zip(r.keys(), r, strict=True)) for r in rows]


def set_disabled(conn: db.Connection, account_id: int, disabled: bool, now: float) -> Account:
    """Disable (ending its sessions) or enable an account."""
    with db.transaction(conn):
        found = conn.execute(
            "UPDATE desk_accounts SET disabled_at = ? WHERE id = ?", (now if disabled else None, account_id)
        ).rowcount
        if not found:
            raise AuthError(f"no account {account_id}")
        if disabled:
            conn.execute("DELETE FROM desk_sessions WHERE account_id = ?", (account_id,))
    return find_account(conn, account_id)


def reset_password(conn: db.Connection, account_id: int, password: str) -> Account:
    """A new password; the account's sessions end (whoever held them logs in again)."""
    check_new_password(password)
    hashed = hash_password(password)
    with db.transaction(conn):
        if not conn.execute("UPDATE desk_accounts SET password_hash = ? WHERE id = ?", (hashed, account_id)).rowcount:
            raise AuthError(f"no account {account_id}")
        conn.execute("DELETE FROM desk_sessions WHERE account_id = ?", (account_id,))
    return find_account(conn, account_id)


def set_role(conn: db.Connection, account_id: int, role: str) -> Account:
    _check_role(role)
    with db.transaction(conn):
        if not conn.execute("UPDATE desk_accounts SET role = ? WHERE id = ?", (role, account_id)).rowcount:
            raise AuthError(f"no account {account_id}")
    return find_account(conn, account_id)


def set_language(conn: db.Connection, account_id: int, language: str | None) -> None:
    with db.transaction(conn):
        conn.execute("UPDATE desk_accounts SET language = ? WHERE id = ?", (language, account_id))


# --- the login throttle ------------------------------------------------------------------------------


def throttle_keys(name: str, address: str) -> tuple[str, str]:
    return f"account:{name}", f"address:{address}"


def _delay(failures: int) -> float:
    if failures < FREE_FAILURES:
        return 0.0
    return float(min(THROTTLE_MAX_S, THROTTLE_BASE_S * 2 ** (failures - FREE_FAILURES)))


def wait_before_login(conn: db.Connection, name: str, address: str, now: float) -> float:
    """Seconds until a login under `name` from `address` may be tried (0: now)."""
    wait = 0.0
    for key in throttle_keys(name, address):
        row = conn.execute("SELECT failures, last_at FROM desk_login_failures WHERE key = ?", (key,)).fetchone()
        if row is not None and now - float(row["last_at"]) < FAILURE_MEMORY_S:
            wait = max(wait, float(row["last_at"]) + _delay(int(row["failures"])) - now)
    return max(0.0, wait)


def _record_failure(conn: db.Connection, key: str, now: float) -> None:
    row = conn.execute("SELECT failures, last_at FROM desk_login_failures WHERE key = ?", (key,)).fetchone()
    if row is None:
        conn.execute("INSERT INTO desk_login_failures(key, failures, last_at) VALUES (?, 1, ?)", (key, now))
    elif now - float(row["last_at"]) >= FAILURE_MEMORY_S:
        conn.execute("UPDATE desk_login_failures SET failures = 1, last_at = ? WHERE key = ?", (now, key))
    else:
        conn.execute("UPDATE desk_login_failures SET failures = failures + 1, last_at = ? WHERE key = ?", (now, key))


@dataclass(frozen=True)
class LoginResult:
    account: Account | None  # None: refused
    wait_s: float = 0.0  # refused without checking: try again after this long
    reason: str = ""  # "throttled", "wrong", "disabled"


def login(conn: db.Connection, name: str, password: str, address: str, now: float) -> LoginResult:
    """Check a name and password, within the throttle; counts a failure or clears the counts."""
    wait = wait_before_login(conn, name, address, now)
    if wait > 0:
        return LoginResult(None, wait, "throttled")
    row = conn.execute("SELECT * FROM desk_accounts WHERE name = ?", (name,)).fetchone()
    ok = check_password(row["password_hash"] if row is not None else _dummy_hash(), password)
    if row is not None and ok and row["disabled_at"] is None:
        with db.transaction(conn):
            conn.execute("DELETE FROM desk_login_failures WHERE key IN (?, ?)", throttle_keys(name, address))
            # housekeeping, on the rare path: counts long forgotten
            conn.execute("DELETE FROM desk_login_failures WHERE last_at < ?", (now - FAILURE_MEMORY_S,))
        return LoginResult(_account(row))
    with db.transaction(conn):
        for key in throttle_keys(name, address):
            _record_failure(conn, key, now)
    return LoginResult(None, 0.0, "disabled" if ok else "wrong")


# --- sessions -----------------------------------------------------------------------------------------


def _hash_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(conn: db.Connection, account: Account, address: str, now: float) -> str:
    """A new session for `account`; returns the cookie's value (never stored)."""
    session_id = secrets.token_urlsafe(32)
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO desk_sessions(id_hash, account_id, csrf, address, created_at, last_seen)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (_hash_id(session_id), account.id, secrets.token_urlsafe(32), address, now, now),
        )
    return session_id


def load_session(conn: db.Connection, session_id: str, now: float, idle_s: float) -> Session | None:
    """The live session the cookie names, its last use moved to `now` (to the minute); None when there is none, it
    sat idle past the time-out (then it is removed) or its account is disabled."""
    id_hash = _hash_id(session_id)
    row = conn.execute(
        "SELECT s.csrf, s.last_seen, a.* FROM desk_sessions s JOIN desk_accounts a ON a.id = s.account_id"
        " WHERE s.id_hash = ?",
        (id_hash,),
    ).fetchone()
    if row is None:
        return None
    if now - float(row["last_seen"]) > idle_s or row["disabled_at"] is not None:
        close_session(conn, session_id)
        return None
    if now - float(row["last_seen"]) >= TOUCH_S:  # not a write per page view
        with db.transaction(conn):
            conn.execute("UPDATE desk_sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash))
    return Session(_account(row), str(row["csrf"]), id_hash)


def session_alive(conn: db.Connection, session_id: str, now: float, idle_s: float) -> bool:
    """Whether the session still holds, without counting this as its use (a live stream does not keep
    an unattended session open)."""
    row = conn.execute(
        "SELECT s.last_seen, a.disabled_at FROM desk_sessions s JOIN desk_accounts a ON a.id = s.account_id"
        " WHERE s.id_hash = ?",
        (_hash_id(session_id),),
    ).fetchone()
    return row is not None and row["disabled_at"] is None and now - float(row["last_seen"]) <= idle_s


def close_session(conn: db.Connection, session_id: str) -> None:
    with db.transaction(conn):
        conn.execute("DELETE FROM desk_sessions WHERE id_hash = ?", (_hash_id(session_id),))


def drop_idle_sessions(conn: db.Connection, now: float, idle_s: float) -> int:
    with db.transaction(conn):
        return conn.execute("DELETE FROM desk_sessions WHERE last_seen < ?", (now - idle_s,)).rowcount


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
