"""The rules on extensions, returns (退单) and 重办 that the office and leaders decide.

Extensions: at most ``extension_max_count`` approved per problem. The office decides
a request first; one of more working days than ``extension_leader_days``, or any after
the first approved one, then waits for a leader (``extension_request`` carries
``awaiting_leader``), who approves or refuses it. ``original_deadline`` is never moved
by an extension.

退单: a unit's ``return`` waits for the office's decision. Justified
(``accept_return``): the problem leaves the unit (no lead unit, back to ``accepted``)
and the next dispatch starts new response and deadline clocks: to another unit, or to
the same one when the return was about something else (its helper units, say).
Not justified (``refuse_return``): back to the same unit, to sign again, on its
original deadline and response clock, and counted against it (``unjustified_returns``).

重办: a callback "solved but 不满意" leaves the problem in callback with
``redo_pending``; the office sends it back to the unit (``redo``, counted in
``redo_count``) or closes it with an explanation (``close_explained``).

The actions are rows of workflow.ACTIONS; this module holds their rules and what
each one changes.
"""

from __future__ import annotations

import datetime as dt
import json

from server.i18n import gettext as _
from server.ledger import clock
from server.ledger.states import TransitionError
from server.settings import settings
from server.workdays import WorkCalendar

ACTIONS = ("approve_extension", "refuse_extension", "approve_extension_leader",
           "refuse_extension_leader", "accept_return", "refuse_return", "redo")
# Other actions whose use these rules limit.
GUARDED = ("request_extension", "callback", "close_unreachable", "dispatch")


def extension_request(problem: dict) -> dict | None:
    raw = problem.get("extension_request")
    return json.loads(raw) if raw else None


def awaiting_leader(problem: dict) -> bool:
    request = extension_request(problem)
    return bool(request and request.get("awaiting_leader"))


def needs_leader(db, problem: dict, extra_days: int) -> bool:
    """Whether an extension needs a leader's approval after the office's: longer than
    ``extension_leader_days``, or not the problem's first approved one."""
    return (extra_days > int(settings(db)["extension_leader_days"])
            or (problem.get("extension_count") or 0) >= 1)


def after_justified_return(problem: dict) -> bool:
    """Whether the problem waits to be dispatched again after a justified return: back in
    ``accepted`` with a first dispatch behind it (only ``accept_return`` leads there)."""
    return problem["status"] == "accepted" and problem.get("dispatched_at") is not None


def check_allowed(db, name: str, problem: dict, user) -> None:
    """The rules of these actions (and of GUARDED ones) beyond their states and roles."""
    request = extension_request(problem)
    if name == "request_extension":
        if request:
            raise TransitionError(_("workflow.extension_pending"))
        maximum = int(settings(db)["extension_max_count"])
        if (problem.get("extension_count") or 0) >= maximum:
            raise TransitionError(_("rules.extension_max", n=maximum))
    elif name in ("approve_extension", "refuse_extension"):
        if not request:
            raise TransitionError(_("workflow.no_extension_request"))
        if request.get("awaiting_leader"):
            raise TransitionError(_("rules.extension_with_leader"))
    elif name in ("approve_extension_leader", "refuse_extension_leader"):
        if not (request and request.get("awaiting_leader")):
            raise TransitionError(_("rules.no_extension_for_leader"))
    elif name == "redo" and not problem.get("redo_pending"):
        raise TransitionError(_("rules.no_redo_decision"))
    elif name in ("callback", "close_unreachable") and problem.get("redo_pending"):
        raise TransitionError(_("rules.redo_decision_pending"))


# What each action changes --------------------------------------------------------


def _extend(db, problem: dict, extra_days: int) -> tuple[dict, dict]:
    """The columns and event data of an extension that takes effect: ``extra_days`` working
    days added to the deadline in force (deadlines.deadline_from_events replays it)."""
    base = dt.date.fromisoformat(problem["deadline"])
    deadline, provisional = WorkCalendar.load(db).deadline(base, extra_days)
    provisional = provisional or bool(problem.get("deadline_provisional"))
    return (
        {"deadline": deadline.isoformat(), "extension_request": None,
         "deadline_provisional": int(provisional),
         "extension_count": (problem.get("extension_count") or 0) + 1},
        {"old_deadline": problem["deadline"], "deadline": deadline.isoformat(),
         "extra_days": extra_days, "provisional": provisional},
    )


def approve_extension(db, user, problem, data, note):
    request = extension_request(problem)
    days = int(request["extra_days"])
    if needs_leader(db, problem, days):
        # The office agrees; a leader decides. No "extra_days" in the event: the deadline
        # does not move yet.
        waiting = {**request, "awaiting_leader": True, "office_approved_by": user.id,
                   "office_approved_at": clock.now_iso()}
        return ({"extension_request": json.dumps(waiting, ensure_ascii=False)},
                {"awaiting_leader": True, "requested_days": days}, None)
    changes, event = _extend(db, problem, days)
    return changes, event, None


def refuse_extension(db, user, problem, data, note):
    return {"extension_request": None}, {"deadline": problem["deadline"]}, None


def approve_extension_leader(db, user, problem, data, note):
    changes, event = _extend(db, problem, int(extension_request(problem)["extra_days"]))
    return changes, event, None


def refuse_extension_leader(db, user, problem, data, note):
    return {"extension_request": None}, {"deadline": problem["deadline"]}, None


def accept_return(db, user, problem, data, note):
    # Not held against the unit: the problem leaves it. Its deadline stays on the row
    # until the next dispatch starts the new unit's clocks.
    return ({"lead_unit_id": None, "unit_dispatched_at": None,
             "signed_at": None, "responded_in_time": None, "extension_request": None},
            {"unit_id": problem["lead_unit_id"], "justified": True}, None)


def refuse_return(db, user, problem, data, note):
    # Back to the same unit, to sign again; its deadline and response clock run on.
    return ({"unjustified_returns": (problem.get("unjustified_returns") or 0) + 1},
            {"unit_id": problem["lead_unit_id"], "justified": False}, None)


def redo(db, user, problem, data, note):
    count = (problem.get("redo_count") or 0) + 1
    # Reported solved on the spot and never dispatched: no unit holds it, so the office
    # dispatches it (as after a "not solved" callback).
    to_status = "accepted" if problem["lead_unit_id"] is None else None
    return {"redo_count": count, "redo_pending": 0}, {"redo": count}, to_status


APPLY = {
    "approve_extension": approve_extension,
    "refuse_extension": refuse_extension,
    "approve_extension_leader": approve_extension_leader,
    "refuse_extension_leader": refuse_extension_leader,
    "accept_return": accept_return,
    "refuse_return": refuse_return,
    "redo": redo,
}
