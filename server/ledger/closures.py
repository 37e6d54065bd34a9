"""The end of the loop: callback attempts and answers, the closures without a valid callback
(无法回访, 无回访对象, 解释说明办结), and the 回头看 that may find a relapse.

The actions are rows of workflow.ACTIONS; this module holds their rules and what
each one changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from server.i18n import gettext as _
from server.ledger import clock
from server.ledger.deadlines import return_visit_days, time_limit_days
from server.ledger.states import CALLBACK_METHODS, CALLBACK_RESULTS, SATISFACTION, TransitionError
from server.settings import settings
from server.validation import ValidationError, parse_flag
from server.workdays import WorkCalendar

ACTIONS = ("callback", "close_unreachable", "close_no_contact", "close_explained",
           "return_visit")


def check_allowed(db, name: str, problem: dict) -> None:
    """The rules of this module's actions beyond their states and roles."""
    if name == "return_visit" and problem.get("return_visit_result"):
        raise TransitionError(_("workflow.return_visit_done"))
    if name == "return_visit" and problem.get("closure_kind") == "explained":
        raise TransitionError(_("closures.no_return_visit_when_explained"))
    # Nobody to call: no callback is owed, the office closes it as 无回访对象.
    if name == "callback" and not has_contact(problem):
        raise TransitionError(_("closures.nobody_to_call"))
    if name == "close_no_contact" and has_contact(problem):
        raise TransitionError(_("closures.has_contact"))
    if name == "close_unreachable":
        if not has_contact(problem):
            raise TransitionError(_("closures.nobody_to_call"))
        progress = unreachable_progress(db, problem)
        if not progress.met:
            raise TransitionError(_("closures.unreachable_too_soon", **progress.words()))


def has_contact(problem: dict) -> bool:
    """Whether there is a resident to call back: a phone was given (anonymous reports and
    reports without a contact have none)."""
    return bool((problem.get("resident_phone") or "").strip())


@dataclass(frozen=True)
class UnreachableProgress:
    """Failed callback attempts since the problem last came to callback, against the rule
    for closing it as 无法回访 (settings ``unreachable_attempts``, ``unreachable_min_days``)."""

    attempts: int
    days: int  # distinct local days among the attempts
    needed_attempts: int
    needed_days: int

    @property
    def attempts_missing(self) -> int:
        return max(0, self.needed_attempts - self.attempts)

    @property
    def days_missing(self) -> int:
        return max(0, self.needed_days - self.days)

    @property
    def met(self) -> bool:
        return not self.attempts_missing and not self.days_missing

    def words(self) -> dict:
        """The numbers the messages about it name."""
        return {"attempts": self.attempts, "days": self.days,
                "needed_attempts": self.needed_attempts, "needed_days": self.needed_days,
                "more_attempts": self.attempts_missing, "more_days": self.days_missing}


def unreachable_progress(db, problem: dict) -> UnreachableProgress:
    # The round starts at the latest event that moved the problem into callback (a verify,
    # or a report solved on the spot): an attempt followed by such an event belongs to an
    # earlier round and does not count.
    cfg = settings(db)
    attempts, days = db.execute(
        f"SELECT count(*), count(DISTINCT {db.dialect.local_day('e.at')}) FROM problem_events e"
        " WHERE e.problem_id = ?1 AND e.kind = 'callback'"
        f" AND {db.dialect.json_is_false('e.data', 'reached')}"
        " AND NOT EXISTS (SELECT 1 FROM problem_events later WHERE later.problem_id = ?1"
        " AND later.to_status = 'callback' AND (later.at, later.rowid) > (e.at, e.rowid))",
        [problem["id"]],
    ).fetchone()
    return UnreachableProgress(attempts, days, int(cfg["unreachable_attempts"]),
                               int(cfg["unreachable_min_days"]))


def callback_attempts(events: list[dict]) -> list[dict]:
    """The callback attempts of a problem's events (as problems.get_problem reads them)."""
    return [event for event in events if event["kind"] == "callback"]


def closing(db, problem: dict, kind: str | None, reason: str = "",
             return_visit: bool = True) -> tuple[dict, dict]:
    """The columns every closing sets, and the event data it adds: closed on time when the
    local closing day is on or before the deadline in force; a 回头看 due after the
    category's days, the result of an earlier one (before a relapse) cleared."""
    today = clock.local_today()
    on_time = problem["deadline"] is None or today <= dt.date.fromisoformat(problem["deadline"])
    due = today + dt.timedelta(days=return_visit_days(db, problem)) if return_visit else None
    changes = {
        "closed_at": clock.now_iso(),
        "closed_on_time": int(on_time),
        "closure_kind": kind,
        "closure_reason": reason or None,
        "return_visit_due": due.isoformat() if due else None,
        "return_visit_result": None,
        "extension_request": None,
        "redo_pending": 0,
    }
    return changes, {"on_time": on_time}


def callback(db, user, problem, data, note):
    if data["method"] not in CALLBACK_METHODS:
        raise ValidationError({"method": _("workflow.bad_value")})
    if data["result"] not in CALLBACK_RESULTS:
        raise ValidationError({"result": _("workflow.bad_value")})
    attempt = {"method": data["method"], "result": data["result"]}
    if data["result"] != "reached":
        # A failed attempt is recorded; the call is due again (or, after enough of them,
        # the office may close the problem as 无法回访).
        return {"callback_reached": 0}, {**attempt, "reached": False}, None
    solved = parse_flag(data.get("solved"))
    satisfaction = data.get("satisfaction")
    if solved is None:
        raise ValidationError(
            {"solved": _("validation.required", label=_("workflow.field.solved"))}
        )
    if satisfaction not in SATISFACTION:
        raise ValidationError(
            {"satisfaction": _("validation.required", label=_("workflow.field.satisfaction"))}
        )
    event = {**attempt, "reached": True, "solved": solved, "satisfaction": satisfaction}
    changes = {"callback_reached": 1, "callback_solved": int(solved), "satisfaction": satisfaction}
    if not solved:
        if not note:
            raise ValidationError(
                {"note": _("validation.required", label=_("workflow.field.note"))}
            )
        if problem["lead_unit_id"] is None:
            # Reported solved on the spot and never dispatched: no unit holds it, so it goes
            # back to the office, to be dispatched.
            return {**changes, "closed_on_time": None}, event, "accepted"
        return changes, event, "handling"
    if satisfaction == "unsatisfied":
        # Solved but 不满意: not closed; the office decides 重办 or a closure with an
        # explanation (server/ledger/rules.py).
        return {**changes, "redo_pending": 1}, {**event, "redo_pending": True}, None
    closed, closed_event = closing(db, problem, None)
    return {**changes, **closed}, {**event, **closed_event}, "closed"


def close_unreachable(db, user, problem, data, note):
    progress = unreachable_progress(db, problem)
    changes, event = closing(db, problem, "unreachable", note)
    return changes, {**event, "attempts": progress.attempts, "days": progress.days}, None


def close_no_contact(db, user, problem, data, note):
    changes, event = closing(db, problem, "no_contact", note)
    return changes, event, None


def close_explained(db, user, problem, data, note):
    # Nothing was fixed that a 回头看 could check.
    changes, event = closing(db, problem, "explained", note, return_visit=False)
    return changes, event, None


def return_visit(db, user, problem, data, note):
    held = parse_flag(data.get("held"))
    if held is None:
        raise ValidationError({"held": _("workflow.bad_value")})
    if held:
        return {"return_visit_result": "held"}, {"held": True}, None
    if not note:
        raise ValidationError({"note": _("validation.required", label=_("workflow.field.note"))})
    # A relapse (反弹) reopens the problem, flagged. Its earlier callback answers leave the
    # row (they stay in the callback events): the resident's "solved" no longer counts. So
    # does the resident's own rating on the tracking page (server/ledger/tracking.py; it
    # stays in its events): they rate the next reply afresh.
    changes = {
        "return_visit_result": "relapsed",
        "relapsed": 1,
        "closed_at": None,
        "closed_on_time": None,
        "closure_kind": None,
        "closure_reason": None,
        "signed_at": None,
        "responded_in_time": None,
        "callback_reached": None,
        "callback_solved": None,
        "satisfaction": None,
        "resident_rating": None,
        "resident_comment": "",
        "resident_rated_at": None,
        "resident_rating_changed_at": None,
    }
    event = {"held": False}
    if problem["lead_unit_id"] is None:
        # Never dispatched (solved on the spot): the office dispatches it, which starts the
        # deadline.
        return changes, event, "accepted"
    # The same unit, on a fresh deadline: the category's limit from the reopening day (the
    # original deadline stays the first one, as deadline_from_events replays it).
    days = time_limit_days(db, problem)
    deadline, provisional = WorkCalendar.load(db).deadline(clock.local_today(), days)
    # Its response clock starts again too: the unit is handed the problem anew.
    changes.update(deadline=deadline.isoformat(), deadline_provisional=int(provisional),
                   extension_request=None, unit_dispatched_at=clock.now_iso())
    event.update(time_limit_days=days, deadline=deadline.isoformat(), provisional=provisional)
    return changes, event, "dispatched"


APPLY = {
    "callback": callback,
    "close_unreachable": close_unreachable,
    "close_no_contact": close_no_contact,
    "close_explained": close_explained,
    "return_visit": return_visit,
}
