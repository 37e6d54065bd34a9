"""Form drafts: what was typed into a form whose session had expired, kept across the sign-in.

A page POST that arrives without a valid session (``web.guard``) answers the
sign-in page instead of an error. That page carries what was typed as hidden
fields (never the CSRF token or a password) with the path it was posted to,
the page to return to and the user whose session it was. After a successful
sign-in by that same user (``views.auth.login``) the draft is handed to the
return page through the table ``form_drafts`` under a random key in the URL
(the table, not memory, because the return page may be served by another
process); the page takes it once (``take``), for that user only, and
shows the form open with the text in it: a problem's page the form of the
action it was typed for, an administration form page (which posts to itself)
its fields. A draft whose session had vanished
altogether belongs to whoever signs in from that sign-in page.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import urllib.parse
from dataclasses import dataclass

from server.auth import token_hash

PREFIX = "draft."  # hidden fields of the sign-in page that carry the typed values
NOT_CARRIED = frozenset({
    "csrf_token", "password", "password_confirm", "new_password", "current_password",
    "new_password_repeat",
})
MAX_VALUE = 10_000
PROBLEM_ACTION = re.compile(r"^/problems/([^/]+)/actions/([a-z_]+)$")


def typed_fields(form) -> list[tuple[str, str]]:
    """The text fields of a posted form worth keeping, in order (a field may repeat)."""
    return [
        (name, value) for name, value in form.multi_items()
        if name not in NOT_CARRIED and isinstance(value, str) and len(value) <= MAX_VALUE
    ]


def return_path(posted_path: str, referer: str | None) -> str:
    """The page to come back to after signing in: the problem a form acted on, else the
    page the form was on (the caller keeps it only if it is a local path: web.safe_next)."""
    action = PROBLEM_ACTION.match(posted_path)
    if action:
        return f"/problems/{action.group(1)}"
    path = urllib.parse.urlsplit(referer or "")
    return urllib.parse.urlunsplit(("", "", path.path, path.query, "")) or "/"


def with_key(url: str, key: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}draft={urllib.parse.quote(key)}"


# A draft lives from a sign-in to the page it returns to: seconds, usually.
LIFETIME = dt.timedelta(minutes=15)
MAX_PER_OWNER = 1000


@dataclass(frozen=True)
class Draft:
    owner_id: int
    path: str  # where the form was posted
    fields: tuple[tuple[str, str], ...]
    stored_at: str

    def problem_action(self, problem_id: str) -> str | None:
        """The action this draft was typed for, if it was one on this problem."""
        match = PROBLEM_ACTION.match(self.path)
        return match.group(2) if match and match.group(1) == problem_id else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(moment: dt.datetime) -> str:
    # Microseconds, always written: the newest drafts are the ones a cap keeps.
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def put(db, owner_id: int, path: str, fields: list[tuple[str, str]]) -> str:
    """Keep a draft for its owner; the key for the return page's URL (only its hash is
    stored). Expired drafts go, and the owner's oldest beyond the cap."""
    key = secrets.token_urlsafe(18)
    now = _now()
    db.execute("DELETE FROM form_drafts WHERE stored_at < ?", [_stamp(now - LIFETIME)])
    db.execute(
        "DELETE FROM form_drafts WHERE owner_id = ? AND stored_at <= ("
        " SELECT stored_at FROM form_drafts WHERE owner_id = ?"
        " ORDER BY stored_at DESC LIMIT 1 OFFSET ?)",
        [owner_id, owner_id, MAX_PER_OWNER - 1],
    )
    db.execute(
        "INSERT INTO form_drafts (key_hash, owner_id, path, fields, stored_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [token_hash(key), owner_id, path,
         json.dumps([list(item) for item in fields], ensure_ascii=False), _stamp(now)],
    )
    return key


def take(db, key: str | None, user_id: int) -> Draft | None:
    """The draft, once, and only for its owner (anyone else's look discards it)."""
    if not key:
        return None
    row = db.execute(
        "DELETE FROM form_drafts WHERE key_hash = ?"
        " RETURNING owner_id, path, fields, stored_at",
        [token_hash(key)],
    ).fetchone()
    if row is None or row[0] != user_id or row[3] < _stamp(_now() - LIFETIME):
        return None
    return Draft(row[0], row[1], tuple(tuple(item) for item in json.loads(row[2])), row[3])


async def take_requested(request, user_id: int) -> Draft | None:
    """The draft whose key the page's address carries (``?draft=``), once."""
    key = request.query_params.get("draft")
    if not key:
        return None
    return await request.app.state.store.write(take, key, user_id)
