"""Authentication: passwords, sign-in throttling, web sessions and device tokens.

Secrets given to browsers and phones are random 256-bit tokens; the database
keeps only their SHA-256, so a copy of the database cannot be used to sign in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server import authz
from server.timeutil import now_iso, parse_iso, to_iso, utcnow

SESSION_LIFETIME = dt.timedelta(hours=12)
MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
LOCKOUT = dt.timedelta(minutes=15)
# New device tokens one web session may obtain for its user (see
# register_device_from_session), within the sign-in failure window.
MAX_SESSION_DEVICES = 5

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that a wrong username
# costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AuthError(Exception):
    """Base class for sign-in and token failures; ``code`` is stable for clients."""

    code = "auth_failed"


class BadCredentials(AuthError):
    code = "bad_credentials"


class LockedOut(AuthError):
    code = "locked_out"

    def __init__(self, minutes: int):
        super().__init__(minutes)
        self.minutes = minutes


class InvalidToken(AuthError):
    code = "invalid_token"


class DeviceRevoked(AuthError):
    code = "device_revoked"


class DeviceWiped(AuthError):
    code = "device_wiped"


class AccountDisabled(AuthError):
    code = "account_disabled"


class TooManyDevices(AuthError):
    code = "too_many_devices"


def set_hasher(hasher: PasswordHasher) -> None:
    """Swap the password hasher (tests use cheaper parameters)."""
    global _hasher, _DUMMY_HASH
    _hasher = hasher
    _DUMMY_HASH = hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Sign-in throttling -------------------------------------------------------


def _throttle_key(username: str) -> str:
    return username.strip().casefold()


def _locked_minutes(db: sqlite_utils.Database, key: str) -> int | None:
    row = db.execute("SELECT locked_until FROM login_failures WHERE key = ?", [key]).fetchone()
    if row and row[0]:
        remaining = (parse_iso(row[0]) - utcnow()).total_seconds()
        if remaining > 0:
            return int(remaining // 60) + 1
    return None


def record_login_result(db: sqlite_utils.Database, username: str, ok: bool) -> int | None:
    """Count a failed sign-in (or clear the count); return the lockout minutes if now locked."""
    key = _throttle_key(username)
    if ok:
        db.execute("DELETE FROM login_failures WHERE key = ?", [key])
        return None
    now = utcnow()
    row = db.execute(
        "SELECT failures, first_failure_at FROM login_failures WHERE key = ?", [key]
    ).fetchone()
    if row is None or now - parse_iso(row[1]) > FAILURE_WINDOW:
        failures, first = 1, now
    else:
        failures, first = row[0] + 1, parse_iso(row[1])
    locked_until = to_iso(now + LOCKOUT) if failures >= MAX_FAILURES else None
    db.execute(
        "INSERT OR REPLACE INTO login_failures (key, failures, first_failure_at, locked_until)"
        " VALUES (?, ?, ?, ?)",
        [key, 0 if locked_until else failures, to_iso(first), locked_until],
    )
    return _locked_minutes(db, key)


@dataclass(frozen=True)
class LoginCandidate:
    username: str
    locked_minutes: int | None
    user_id: int | None
    password_hash: str
    active: bool


def find_login(db: sqlite_utils.Database, username: str) -> LoginCandidate:
    row = db.execute(
        "SELECT id, password_hash, active FROM users WHERE username = ?", [username.strip()]
    ).fetchone()
    return LoginCandidate(
        username=username,
        locked_minutes=_locked_minutes(db, _throttle_key(username)),
        user_id=row[0] if row else None,
        password_hash=row[1] if row else _DUMMY_HASH,
        active=bool(row[2]) if row else False,
    )


def password_matches(candidate: LoginCandidate, password: str) -> bool:
    # Unknown usernames are verified against a dummy hash, so they cost the
    # same time as a wrong password.
    matches = verify_password(candidate.password_hash, password)
    return matches and candidate.user_id is not None and candidate.active


async def sign_in(store, username: str, password: str) -> int:
    """Check a username and password; return the user id or raise an ``AuthError``.

    Unknown users, wrong passwords and disabled accounts all raise the same
    ``BadCredentials``, so the answer does not tell which usernames exist.
    Failures are counted per username, whether it exists or not; the slow
    password check runs outside the write transaction.
    """
    from starlette.concurrency import run_in_threadpool

    candidate = await store.read(find_login, username)
    if candidate.locked_minutes:
        raise LockedOut(candidate.locked_minutes)
    ok = await run_in_threadpool(password_matches, candidate, password)
    locked = await store.write(record_login_result, username, ok)
    if ok:
        return candidate.user_id
    if locked:
        raise LockedOut(locked)
    raise BadCredentials()


# Web sessions -------------------------------------------------------------


def start_session(db: sqlite_utils.Database, user_id: int) -> str:
    token = new_token()
    now = utcnow()
    db["web_sessions"].insert(
        {
            "token_hash": token_hash(token),
            "user_id": user_id,
            "created_at": to_iso(now),
            "expires_at": to_iso(now + SESSION_LIFETIME),
        }
    )
    db.execute("DELETE FROM web_sessions WHERE expires_at < ?", [to_iso(now)])
    return token


def end_session(db: sqlite_utils.Database, token: str) -> None:
    db.execute("DELETE FROM web_sessions WHERE token_hash = ?", [token_hash(token)])


def session_user_id(db: sqlite_utils.Database, token: str) -> int | None:
    row = db.execute(
        "SELECT user_id FROM web_sessions WHERE token_hash = ? AND expires_at > ?",
        [token_hash(token), now_iso()],
    ).fetchone()
    return row[0] if row else None


def session_owner(db: sqlite_utils.Database, token: str) -> int | None:
    """The user a session belongs or belonged to, expired or not (a draft typed in it
    is kept for that user alone: server/drafts.py)."""
    row = db.execute(
        "SELECT user_id FROM web_sessions WHERE token_hash = ?", [token_hash(token)]
    ).fetchone()
    return row[0] if row else None


def session_started_at(db: sqlite_utils.Database, token: str) -> str | None:
    row = db.execute(
        "SELECT created_at FROM web_sessions WHERE token_hash = ? AND expires_at > ?",
        [token_hash(token), now_iso()],
    ).fetchone()
    return row[0] if row else None


# Device tokens ------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    id: int
    user_id: int
    name: str
    last_seen_at: str | None


def register_device(db: sqlite_utils.Database, user_id: int, name: str) -> tuple[int, str]:
    token = new_token()
    device_id = db["devices"].insert(
        {
            "user_id": user_id,
            "name": name,
            "token_hash": token_hash(token),
            "created_at": now_iso(),
            "last_seen_at": now_iso(),
        }
    ).last_pk
    return device_id, token


def register_device_from_session(
    db: sqlite_utils.Database, user_id: int, name: str
) -> tuple[int, str]:
    """``register_device`` for a web session, which needs no password: at most
    ``MAX_SESSION_DEVICES`` new devices of the user (however signed in) within
    ``FAILURE_WINDOW``, so a stolen session cookie cannot mint tokens without end.
    Counted and registered in one write transaction."""
    since = to_iso(utcnow() - FAILURE_WINDOW)
    recent = db.execute(
        "SELECT COUNT(*) FROM devices WHERE user_id = ? AND created_at > ?", [user_id, since]
    ).fetchone()[0]
    if recent >= MAX_SESSION_DEVICES:
        raise TooManyDevices()
    return register_device(db, user_id, name)


def device_for_token(db: sqlite_utils.Database, token: str) -> Device:
    """The device a bearer token belongs to; raises an ``AuthError`` saying why not."""
    row = db.execute(
        "SELECT d.id, d.user_id, d.name, d.revoked_at, d.revoke_mode, u.active, d.last_seen_at"
        " FROM devices d JOIN users u ON u.id = d.user_id WHERE d.token_hash = ?",
        [token_hash(token)],
    ).fetchone()
    if row is None:
        raise InvalidToken()
    device_id, user_id, name, revoked_at, revoke_mode, active, last_seen_at = row
    if revoked_at:
        raise DeviceWiped() if revoke_mode == "wipe" else DeviceRevoked()
    if not active:
        raise AccountDisabled()
    return Device(device_id, user_id, name, last_seen_at)


def touch_device(db: sqlite_utils.Database, device_id: int) -> None:
    db.execute("UPDATE devices SET last_seen_at = ? WHERE id = ?", [now_iso(), device_id])


def revoke_device(db: sqlite_utils.Database, device_id: int, mode: str, by_user_id: int) -> None:
    if mode not in ("stop", "wipe"):
        raise ValueError(f"unknown revoke mode {mode!r}")
    db.execute(
        # A wipe, once ordered, is never downgraded to a plain stop.
        "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?),"
        " revoke_mode = CASE WHEN revoke_mode = 'wipe' THEN 'wipe' ELSE ? END,"
        " revoked_by = COALESCE(revoked_by, ?) WHERE id = ?",
        [now_iso(), mode, by_user_id, device_id],
    )


# Loading the signed-in user -----------------------------------------------


def load_user(db: sqlite_utils.Database, user_id: int) -> authz.User | None:
    row = db.execute(
        "SELECT u.id, u.username, u.display_name, u.roles, u.area_id, a.path, u.unit_id,"
        " a.name, COALESCE(un.name, ''), u.active"
        " FROM users u JOIN areas a ON a.id = u.area_id"
        " LEFT JOIN units un ON un.id = u.unit_id WHERE u.id = ?",
        [user_id],
    ).fetchone()
    if row is None or not row[9]:
        return None
    roles = authz.parse_roles(row[3])
    return authz.User(
        id=row[0],
        username=row[1],
        display_name=row[2],
        roles=roles,
        area_id=row[4],
        area_path=row[5],
        unit_id=row[6],
        area_name=row[7],
        unit_name=row[8],
        permissions=frozenset(p for p, allowed in authz.PERMISSIONS.items() if allowed & roles),
    )
