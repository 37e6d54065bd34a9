"""Form drafts: what was typed into a form whose session had expired, kept across the sign-in.

A page POST that arrives without a valid session (``web.guard``) answers the
sign-in page instead of an error. That page carries what was typed as hidden
fields (never the CSRF token or a password) with the path it was posted to,
the page to return to and the user whose session it was. After a successful
sign-in by that same user (``views.auth.login``) the draft is handed to the
return page through this process's ``DraftStore`` under a random key in the
URL; the page takes it once (``DraftStore.take``), for that user only, and
shows the form open with the text in it: a problem's page the form of the
action it was typed for, an administration form page (which posts to itself)
its fields. A draft whose session had vanished
altogether belongs to whoever signs in from that sign-in page.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Draft:
    owner_id: int
    path: str  # where the form was posted
    fields: tuple[tuple[str, str], ...]
    stored_at: float

    def problem_action(self, problem_id: str) -> str | None:
        """The action this draft was typed for, if it was one on this problem."""
        match = PROBLEM_ACTION.match(self.path)
        return match.group(2) if match and match.group(1) == problem_id else None


class DraftStore:
    """Drafts between a sign-in and the page it returns to: seconds, kept in memory."""

    LIFETIME_S = 15 * 60
    MAX_DRAFTS = 1000

    def __init__(self):
        self._drafts: dict[str, Draft] = {}
        self._lock = threading.Lock()

    def put(self, owner_id: int, path: str, fields: list[tuple[str, str]]) -> str:
        key = secrets.token_urlsafe(18)
        now = time.monotonic()
        with self._lock:
            for old in [k for k, d in self._drafts.items()
                        if now - d.stored_at > self.LIFETIME_S]:
                del self._drafts[old]
            while len(self._drafts) >= self.MAX_DRAFTS:
                del self._drafts[next(iter(self._drafts))]
            self._drafts[key] = Draft(owner_id, path, tuple(fields), now)
        return key

    def take(self, key: str | None, user_id: int) -> Draft | None:
        """The draft, once, and only for its owner (anyone else's look discards it)."""
        if not key:
            return None
        with self._lock:
            draft = self._drafts.pop(key, None)
        if draft is None or draft.owner_id != user_id:
            return None
        if time.monotonic() - draft.stored_at > self.LIFETIME_S:
            return None
        return draft
