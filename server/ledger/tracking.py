"""The resident's tracking link (回执): a page without login, and the resident's own rating.

A problem with a resident gets a random token of 128 bits, made on the phone when the
problem is recorded (offline) or by the office when it re-issues the link. Only its
SHA-256 (hex) reaches the server, in ``problems.tracking_hash``; the token itself is
never stored. ``/t/<token>`` shows what the resident may read of their problem
(``resident_view``): ledger number, status in plain words, deadline, the units that handle
it, the reply; never a staff member's name, nor the resident's own name, phone or address.

Rules, each in one place here:

* a token is 22 characters of URL-safe base64 (16 random bytes); anything else, an unknown
  hash or a revoked link is the same plain 404 (``find``);
* the resident rates once the problem has a reply (``REPLIED_STATES``), 满意/基本满意/不满意
  with an optional comment, and may change the rating for ``CHANGE_DAYS`` days from the
  first rating, never after (``rating_refusal``);
* requests are counted per client address and per link (``count_request``): beyond
  ``ADDRESS_LIMIT`` or ``TOKEN_LIMIT`` in ``WINDOW`` the page answers 429;
* the office (``authz`` permission ``tracking.manage``) revokes a link (``revoke``) or
  issues a new one (``reissue``), each an event of the problem; a rating is one too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets

from server import authz
from server.i18n import gettext as _
from server.ledger import clock, problems, workflow
from server.ledger.states import SATISFACTION, TransitionError
from server.timeutil import local_date, parse_iso, to_iso
from server.validation import Field, Schema
from sync.schemas import NOTE_MAX_LENGTH

TOKEN_BYTES = 16
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{22}")
HASH_PATTERN = re.compile(r"[0-9a-f]{64}")
# The rating may be changed for this many days after the first one.
CHANGE_DAYS = 7
# A rating needs the unit's reply; the resident reads it on the page.
REPLIED_STATES = ("replied", "callback", "closed")
RATINGS = SATISFACTION  # satisfied 满意, basically 基本满意, unsatisfied 不满意
COMMENT_MAX_LENGTH = 500
# Rate limit: requests (page views and ratings, valid links or not) per window. Guessing a
# 128-bit token is hopeless anyway; the limits stop floods. Per address it is generous, as
# many residents' phones share one address behind a mobile carrier's NAT.
WINDOW = dt.timedelta(minutes=10)
ADDRESS_LIMIT = 120
TOKEN_LIMIT = 30

RATING = Schema(
    Field("rating", "tracking.field.rating", kind="choice", required=True,
          choices={name: f"satisfaction.{name}" for name in RATINGS}),
    Field("comment", "tracking.field.comment", max_length=COMMENT_MAX_LENGTH, multiline=True),
)
assert COMMENT_MAX_LENGTH <= NOTE_MAX_LENGTH  # kept as an event's note


class TrackingError(Exception):
    """A request the page refuses: ``status`` and a message for the resident."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class RateLimited(TrackingError):
    def __init__(self, minutes: int):
        super().__init__(429, _("tracking.rate_limited", minutes=minutes), minutes=minutes)


def new_token() -> str:
    """16 random bytes as URL-safe base64 without padding: 22 characters."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def well_formed(token: str) -> bool:
    return TOKEN_PATTERN.fullmatch(token) is not None


def find(db, token: str) -> dict | None:
    """The problem this token opens; None when malformed, unknown or revoked (all alike)."""
    if not well_formed(token):
        return None
    row = db.execute("SELECT id FROM problems WHERE tracking_hash = ?",
                     [hash_token(token)]).fetchone()
    return db["problems"].get(row[0]) if row else None


def tracking_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/t/{token}"


# Rate limit ------------------------------------------------------------------------


def count_request(db, address: str, token: str) -> None:
    """Count one request of the page, per client address and per link (a malformed token
    counts for the address only); raise ``RateLimited`` (not counted) when either is used up.
    Call in a write transaction."""
    now = clock.utcnow()
    since = to_iso(now - WINDOW)
    db.execute("DELETE FROM tracking_hits WHERE at <= ?", [since])
    keys = [(f"address:{address}", ADDRESS_LIMIT)]
    if well_formed(token):
        keys.append((f"token:{hash_token(token)}", TOKEN_LIMIT))
    minutes = max(_minutes_until_below(db, key, limit, since, now) for key, limit in keys)
    if minutes:
        raise RateLimited(minutes)
    db["tracking_hits"].insert_all([{"key": key, "at": to_iso(now)} for key, _limit in keys])


def _minutes_until_below(db, key: str, limit: int, since: str, now: dt.datetime) -> int:
    row = db.execute("SELECT at FROM tracking_hits WHERE key = ? AND at > ?"
                     " ORDER BY at DESC LIMIT 1 OFFSET ?", [key, since, limit - 1]).fetchone()
    if row is None:
        return 0
    seconds = (parse_iso(row[0]) + WINDOW - now).total_seconds()
    return max(1, -int(-seconds // 60))


# What the resident reads -------------------------------------------------------------


def reply_text(db, problem: dict) -> str:
    """The unit's latest reply (or, solved on the spot, what the official did), once the
    problem is in a replied state; '' otherwise."""
    if problem["status"] not in REPLIED_STATES:
        return ""
    row = db.execute(
        "SELECT note FROM problem_events WHERE problem_id = ?"
        " AND kind IN ('reply', 'solved_on_spot') ORDER BY at DESC, rowid DESC LIMIT 1",
        [problem["id"]],
    ).fetchone()
    return row[0] if row and row[0] else ""


def change_until(problem: dict) -> dt.datetime | None:
    """Until when the rating may be changed: CHANGE_DAYS after the first rating."""
    if not problem.get("resident_rated_at"):
        return None
    return parse_iso(problem["resident_rated_at"]) + dt.timedelta(days=CHANGE_DAYS)


def rating_refusal(db, problem: dict) -> TrackingError | None:
    """Why the resident may not rate (or change the rating) now; None if they may."""
    if not reply_text(db, problem):
        return TrackingError(409, _("tracking.not_replied"))
    until = change_until(problem)
    if until is not None and clock.utcnow() >= until:
        return TrackingError(403, _("tracking.change_closed", days=CHANGE_DAYS))
    return None


def _unit_names(db, problem: dict) -> tuple[str, list[str]]:
    ids = [problem["lead_unit_id"], *json.loads(problem.get("helper_unit_ids") or "[]")]
    names = dict(db.execute(
        f"SELECT id, name FROM units WHERE id IN ({', '.join('?' * len(ids))})", ids
    ).fetchall()) if any(ids) else {}
    lead = names.get(problem["lead_unit_id"], "")
    return lead, [names[i] for i in ids[1:] if i in names]


def status_words(status: str) -> str:
    """The status in the resident's words (a rejected or merged problem says so plainly)."""
    return _(f"tracking.status.{status}")


def resident_view(db, problem: dict) -> dict:
    """Everything the resident's page shows: no staff names, no personal data."""
    lead, helpers = _unit_names(db, problem)
    category = db.execute("SELECT name FROM categories WHERE id = ?",
                          [problem["category_id"]]).fetchone()
    reply = reply_text(db, problem)
    until = change_until(problem)
    refusal = rating_refusal(db, problem)
    return {
        "ledger_no": problem["ledger_no"] or "",
        "status": problem["status"],
        "status_words": status_words(problem["status"]),
        "category": category[0] if category else "",
        "found_on": local_date(problem["found_at"]).isoformat(),
        "deadline": problem["deadline"],
        "deadline_provisional": bool(problem["deadline_provisional"]),
        "lead_unit": lead,
        "helper_units": helpers,
        "reply": reply,
        "replied_on": (local_date(problem["replied_at"]).isoformat()
                       if reply and problem.get("replied_at") else ""),
        "rating": problem["resident_rating"],
        "comment": problem["resident_comment"] or "",
        "rated_on": (local_date(problem["resident_rated_at"]).isoformat()
                     if problem["resident_rated_at"] else ""),
        "change_until": (local_date(to_iso(until)).isoformat() if until else ""),
        "may_rate": refusal is None,
        "refusal": refusal.message if refusal and reply else "",
    }


# Writes --------------------------------------------------------------------------------


def rate(db, token: str, form) -> dict:
    """Record the resident's rating (or its change) from the posted ``form``; the problem
    as it now stands. Raises ``TrackingError`` (404 unknown link, 409 no reply yet, 403
    after the change window) or ``ValidationError``; nothing is written then. Call in a
    write transaction."""
    problem = find(db, token)
    if problem is None:
        raise TrackingError(404, _("tracking.not_found"))
    refusal = rating_refusal(db, problem)
    if refusal is not None:
        raise refusal
    data = RATING.clean(form)
    now = clock.now_iso()
    first = problem["resident_rated_at"] is None
    changes = {"resident_rating": data["rating"], "resident_comment": data["comment"] or "",
               "resident_rated_at": now if first else problem["resident_rated_at"],
               "resident_rating_changed_at": None if first else now}
    db["problems"].update(problem["id"], changes)
    workflow.append_event(db, problem, "resident_rating", None, None, data["comment"],
                          {"rating": data["rating"], "changed": not first,
                           **({} if first else {"previous": problem["resident_rating"]})})
    return {**problem, **changes}


def _office_problem(db, user: authz.User, problem_id: str) -> dict:
    """The problem, within the user's scope (``problems.get_problem`` answers 404 outside)."""
    authz.check(user, "tracking.manage")
    return problems.get_problem_row(db, user, problem_id)


def reissue(db, user: authz.User, problem_id: str) -> str:
    """A new link for the problem (the old one, if any, stops working): the token, to be
    shown once on the receipt. Call in a write transaction."""
    problem = _office_problem(db, user, problem_id)
    token = new_token()
    db["problems"].update(problem_id, {"tracking_hash": hash_token(token)})
    workflow.append_event(db, problem, "tracking_issued", user.id, None, "",
                          {"replaced": problem["tracking_hash"] is not None})
    return token


def revoke(db, user: authz.User, problem_id: str) -> None:
    """The problem's link stops working (a plain 404). Call in a write transaction."""
    problem = _office_problem(db, user, problem_id)
    if problem["tracking_hash"] is None:
        raise TransitionError(_("tracking.no_link"))
    db["problems"].update(problem_id, {"tracking_hash": None})
    workflow.append_event(db, problem, "tracking_revoked", user.id, None, "", {})


def office_view(problem: dict) -> dict:
    """The link and the resident's rating as the problem's page shows them to the office."""
    until = change_until(problem)
    return {
        "has_link": problem.get("tracking_hash") is not None,
        "rating": problem.get("resident_rating"),
        "comment": problem.get("resident_comment") or "",
        "rated_at": problem.get("resident_rated_at"),
        "changed_at": problem.get("resident_rating_changed_at"),
        "change_until": to_iso(until) if until else None,
    }
