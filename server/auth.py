"""Authentication: passwords, sign-in throttling, web sessions and device tokens.

Secrets given to browsers and phones are random 256-bit tokens; the database
keeps only their SHA-256, so a copy of the database cannot be used to sign in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import hmac
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server import admission, authz
from server.timeutil import now_iso, parse_iso, to_iso, utcnow

T = TypeVar("T")

SESSION_LIFETIME = dt.timedelta(hours=12)
# Sign-in limits: see "Sign-in throttling" below.
FAILURE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES = 5
MAX_ACCOUNT_FAILURES = 20
# How often a sign-in waiting for its password check looks whether its client is still there.
GONE_POLL_SECONDS = 0.5
# Seconds a sign-in refused for a busy server is told to wait (Retry-After).
BUSY_RETRY_SECONDS = 2
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


class Busy(AuthError):
    """Too many password checks are running and waiting: try again in ``retry_after`` seconds."""

    code = "busy"

    def __init__(self, retry_after: int = BUSY_RETRY_SECONDS):
        super().__init__(retry_after)
        self.retry_after = retry_after


class ClientGone(AuthError):
    """The client hung up before its password was checked: nothing was checked."""

    code = "client_gone"


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
# The rule is in sign_in's docstring (and docs/deployment.md, Security notes).


def _throttle_key(username: str) -> str:
    return username.strip().casefold()


def _minutes_until_below(
    db: sqlite_utils.Database, where: str, params: list, limit: int, now: dt.datetime
) -> int:
    """Minutes until fewer than ``limit`` attempts matching ``where`` are in the window
    (0 when there already are)."""
    row = db.execute(
        f"SELECT at FROM login_attempts WHERE {where} AND at > ?"
        " ORDER BY at DESC LIMIT 1 OFFSET ?",
        [*params, to_iso(now - FAILURE_WINDOW), limit - 1],
    ).fetchone()
    if row is None:
        return 0
    seconds = (parse_iso(row[0]) + FAILURE_WINDOW - now).total_seconds()
    return max(1, -int(-seconds // 60))


def _locked_minutes(db: sqlite_utils.Database, account: str, address: str) -> int:
    now = utcnow()
    return max(
        _minutes_until_below(
            db, "account = ? AND address = ?", [account, address], MAX_FAILURES, now
        ),
        _minutes_until_below(db, "account = ?", [account], MAX_ACCOUNT_FAILURES, now),
    )


def reserve_attempt(db: sqlite_utils.Database, username: str, address: str) -> int:
    """Count a sign-in attempt before its password is checked; return its id, or raise
    ``LockedOut`` (nothing counted) when the account or this address's attempts on it
    are used up. Call in a write transaction."""
    db.execute(
        "DELETE FROM login_attempts WHERE at <= ?", [to_iso(utcnow() - FAILURE_WINDOW)]
    )
    account = _throttle_key(username)
    minutes = _locked_minutes(db, account, address)
    if minutes:
        raise LockedOut(minutes)
    return db["login_attempts"].insert(
        {"account": account, "address": address, "at": now_iso(), "state": "checking"}
    ).last_pk


def forget_attempt(db: sqlite_utils.Database, attempt_id: int) -> None:
    """Drop a reserved attempt whose password was never checked (its client hung up)."""
    db.execute("DELETE FROM login_attempts WHERE id = ?", [attempt_id])


def finish_attempt(db: sqlite_utils.Database, attempt_id: int, ok: bool) -> int:
    """Record how a reserved attempt went; return the lock minutes now in force (0: none)."""
    row = db.execute(
        "SELECT account, address FROM login_attempts WHERE id = ?", [attempt_id]
    ).fetchone()
    if row is None:  # older than the window: nothing left to count
        return 0
    account, address = row
    if ok:
        db.execute(
            "DELETE FROM login_attempts WHERE id = ?"
            " OR (account = ? AND address = ? AND state = 'failed')",
            [attempt_id, account, address],
        )
        return 0
    db.execute("UPDATE login_attempts SET state = 'failed' WHERE id = ?", [attempt_id])
    return _locked_minutes(db, account, address)


class PasswordChecks:
    """Runs password checks (argon2: slow, and 64 MiB of memory each) on ``workers``
    threads of their own, so that no more than that many run at once. At most
    ``queue`` more may wait; beyond that ``admission`` refuses at once with ``Busy``
    rather than letting a flood of sign-ins queue without end (``server/admission.py``).
    A check whose client has gone while it waited is not run (``run``'s ``gone``)."""

    def __init__(self, workers: int, queue: int):
        self.workers = max(1, workers)
        self.gate = admission.Gate("sign-in", self.workers + max(0, queue), BUSY_RETRY_SECONDS)
        self.capacity = self.gate.capacity
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    @contextlib.contextmanager
    def admission(self, client: object = None) -> Iterator[None]:
        try:
            with self.gate.admit(client):
                yield
        except admission.Full as full:
            raise Busy(full.retry_after) from None

    async def run(self, fn: Callable[..., T], *args: Any,
                  gone: Callable[[], Awaitable[bool]] | None = None) -> T:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.workers, thread_name_prefix="fieldledger-password"
                )
            pool = self._pool
        job = pool.submit(fn, *args)
        future = asyncio.wrap_future(job)
        if gone is None:
            return await future
        while True:
            done, _pending = await asyncio.wait({future}, timeout=GONE_POLL_SECONDS)
            if done:
                return future.result()
            if await gone():
                # Still queued: it never runs. Already running: its answer is not wanted.
                job.cancel()
                future.cancel()
                raise ClientGone()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class LoginCandidate:
    user_id: int | None
    password_hash: str
    active: bool


def find_login(db: sqlite_utils.Database, username: str) -> LoginCandidate:
    row = db.execute(
        "SELECT id, password_hash, active FROM users WHERE username = ?", [username.strip()]
    ).fetchone()
    return LoginCandidate(
        user_id=row[0] if row else None,
        password_hash=row[1] if row else _DUMMY_HASH,
        active=bool(row[2]) if row else False,
    )


def password_matches(candidate: LoginCandidate, password: str) -> bool:
    # Unknown usernames are verified against a dummy hash, so they cost the
    # same time as a wrong password.
    matches = verify_password(candidate.password_hash, password)
    return matches and candidate.user_id is not None and candidate.active


async def sign_in(
    store, checks: PasswordChecks, username: str, password: str, address: str,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> int:
    """Check a username and password from a source address; return the user id or
    raise an ``AuthError``.

    Unknown users, wrong passwords and disabled accounts all raise the same
    ``BadCredentials``, so the answer does not tell which usernames exist.

    The limits: within any ``FAILURE_WINDOW``,

    * one source address may have at most ``MAX_FAILURES`` attempts on one
      account that did not succeed (being checked or failed); then that address,
      and only it, is refused for that account until enough of them have left
      the window;
    * an account may have at most ``MAX_ACCOUNT_FAILURES`` such attempts from all
      addresses together; then it is refused from everywhere likewise. As one
      address contributes at most ``MAX_FAILURES``, locking an account for
      everyone takes at least ``MAX_ACCOUNT_FAILURES / MAX_FAILURES`` addresses.

    An attempt is counted when it is let through, in the write transaction that
    decides it (one writer thread, BEGIN IMMEDIATE), before its password is
    checked: however many arrive at once, no more than these are ever checked.
    Unknown usernames are counted like real ones. A success clears its own
    address's failures on that account (typos), not other addresses'.

    ``LockedOut`` over the limits, and ``Busy`` when too many checks are running
    and waiting: in both cases nothing is checked (and ``Busy`` counts nothing).
    The slow check runs outside the write transaction, on ``checks``.
    """
    with checks.admission(username.strip().casefold()):
        attempt = await store.write(reserve_attempt, username, address)
        candidate = await store.read(find_login, username)
        try:
            ok = await checks.run(password_matches, candidate, password, gone=gone)
        except ClientGone:
            # Not checked: the attempt leaves the window as if it was never made.
            await store.write(forget_attempt, attempt)
            raise
        locked = await store.write(finish_attempt, attempt, ok)
    if ok:
        return candidate.user_id
    if locked:
        raise LockedOut(locked)
    raise BadCredentials()


# Web sessions -------------------------------------------------------------

# A session's last use is written at most this often (a write per page view
# would serialise every reader behind the write lock).
SESSION_TOUCH_SECONDS = 60


@dataclass(frozen=True)
class Session:
    token: str
    user_id: int
    created_at: str
    last_seen_at: str


def start_session(db: sqlite_utils.Database, user_id: int) -> str:
    token = new_token()
    now = utcnow()
    db["web_sessions"].insert(
        {
            "token_hash": token_hash(token),
            "user_id": user_id,
            "created_at": to_iso(now),
            "last_seen_at": to_iso(now),
            "expires_at": to_iso(now + SESSION_LIFETIME),
        }
    )
    db.execute("DELETE FROM web_sessions WHERE expires_at < ?", [to_iso(now)])
    return token


def end_session(db: sqlite_utils.Database, token: str) -> None:
    db.execute("DELETE FROM web_sessions WHERE token_hash = ?", [token_hash(token)])


def end_other_sessions(db: sqlite_utils.Database, user_id: int, keep_token: str | None) -> None:
    """End every web session of the user but the one holding ``keep_token``."""
    db.execute(
        "DELETE FROM web_sessions WHERE user_id = ? AND token_hash != ?",
        [user_id, token_hash(keep_token) if keep_token else ""],
    )


def live_session(db: sqlite_utils.Database, token: str, idle_minutes: int) -> Session | None:
    """The session a cookie token opens: neither expired nor unused for ``idle_minutes``."""
    now = utcnow()
    row = db.execute(
        "SELECT user_id, created_at, last_seen_at FROM web_sessions"
        " WHERE token_hash = ? AND expires_at > ? AND last_seen_at > ?",
        [token_hash(token), to_iso(now), to_iso(now - dt.timedelta(minutes=idle_minutes))],
    ).fetchone()
    return Session(token, *row) if row else None


def session_needs_touch(session: Session) -> bool:
    age = (utcnow() - parse_iso(session.last_seen_at)).total_seconds()
    return age >= SESSION_TOUCH_SECONDS


def touch_session(db: sqlite_utils.Database, token: str) -> None:
    db.execute(
        "UPDATE web_sessions SET last_seen_at = ? WHERE token_hash = ?",
        [now_iso(), token_hash(token)],
    )


def session_owner(db: sqlite_utils.Database, token: str) -> int | None:
    """The user a session belongs or belonged to, expired or not (a draft typed in it
    is kept for that user alone: server/drafts.py)."""
    row = db.execute(
        "SELECT user_id FROM web_sessions WHERE token_hash = ?", [token_hash(token)]
    ).fetchone()
    return row[0] if row else None


def session_csrf_token(session_token: str) -> str:
    """The CSRF token of a web session: derived from its secret cookie token, so it
    is the same on every page of the session and of no use in any other session."""
    return hmac.new(session_token.encode(), b"fieldledger csrf", hashlib.sha256).hexdigest()


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


def sign_out_everywhere(db: sqlite_utils.Database, user_id: int, by_user_id: int | None) -> None:
    """End the user's web sessions and stop (never wipe) each of their devices, as a
    password reset must: whoever held them signs in again with the new password. A
    stopped phone keeps its unsynced records; they sync once its user signs in again
    on it (docs/sync-protocol.md, Devices)."""
    db.execute("DELETE FROM web_sessions WHERE user_id = ?", [user_id])
    devices = db.execute(
        "SELECT id FROM devices WHERE user_id = ? AND revoked_at IS NULL", [user_id]
    ).fetchall()
    for (device_id,) in devices:
        revoke_device(db, device_id, "stop", by_user_id)

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
