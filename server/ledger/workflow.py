"""The problem state machine: one table of allowed transitions, and how each action is applied.

Every action appends one event (who, when, what, why, and whether the problem
was overdue at that moment) and updates the problem's current columns in the
same transaction. The status is always the ``to_status`` of the latest event
that has one, so the history and the current state cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import sqlite_utils

from server import authz
from server.authz import FIELD, HANDLER, LEADER, OFFICE
from server.i18n import gettext as _
from server.ledger import clock, closures, event_photos, joint, reasons, rules, supervision
from server.ledger.deadlines import is_overdue, responded_in_time, time_limit_days
from server.ledger.numbering import next_ledger_no, normal_ledger_no
from server.ledger.states import (
    ALL_STATES,
    OPEN_STATES,
    OUTCOMES,
    TransitionError,
)
from server.validation import Field, Schema, ValidationError, parse_flag
from server.workdays import WorkCalendar
from sync.ids import uuid7
from sync.schemas import NOTE_MAX_LENGTH

# An action's note is kept whole or refused with a message, never cut: the phone's limit.
NOTE = Schema(Field("note", "workflow.field.note", max_length=NOTE_MAX_LENGTH, multiline=True))


@dataclass(frozen=True)
class Action:
    name: str
    from_states: tuple[str, ...]
    to_state: str | None  # None: the status does not change
    roles: frozenset[str]
    unit_only: bool = False  # only the lead unit's handlers
    fields: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


HANDLING = ("dispatched", "handling")

# The one table of allowed transitions.
ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            "accept",
            ("submitted",),
            "accepted",
            frozenset({OFFICE}),
            fields=("category_id", "urgency", "note"),
        ),
        # The office asks the reporter for more (a photo, the exact place): the question waits
        # on the reporter's phone until they add a note to the problem (sync's problem.note).
        Action("ask_reporter", ("submitted", "accepted"), None, frozenset({OFFICE}),
               fields=("note",), required=("note",),
               extra={"labels": {"note": "ask_reporter.question"}}),
        Action(
            "reject",
            ("submitted",),
            "rejected",
            frozenset({OFFICE}),
            fields=("reason_code", "note"),
            required=("note",),
            extra={"reasons": "reject"},
        ),
        Action(
            "merge",
            ("submitted", "accepted"),
            "merged",
            frozenset({OFFICE}),
            fields=("original_id", "note"),
            required=("original_id",),
        ),
        # From "returned" only through the office's decision on the return (accept_return).
        Action(
            "dispatch",
            ("accepted",),
            "dispatched",
            frozenset({OFFICE}),
            fields=("lead_unit_id", "helper_unit_ids", "time_limit_days", "note"),
            required=("lead_unit_id",),
        ),
        Action(
            "sign",
            ("dispatched",),
            "handling",
            frozenset({HANDLER}),
            unit_only=True,
            fields=("contacted", "note"),
        ),
        Action(
            "return",
            HANDLING,
            "returned",
            frozenset({HANDLER}),
            unit_only=True,
            fields=("reason_code", "note"),
            required=("note",),
            extra={"reasons": "return"},
        ),
        # The office's decision on a return (server/ledger/rules.py): justified, the problem
        # leaves the unit for a new dispatch; not justified, back to the same unit.
        Action("accept_return", ("returned",), "accepted", frozenset({OFFICE}),
               fields=("note",)),
        Action("refuse_return", ("returned",), "dispatched", frozenset({OFFICE}),
               fields=("note",), required=("note",)),
        Action(
            "progress",
            ("handling",),
            None,
            frozenset({HANDLER}),
            unit_only=True,
            fields=("note",),
            required=("note",),
        ),
        Action(
            "request_extension",
            HANDLING,
            None,
            frozenset({HANDLER}),
            unit_only=True,
            fields=("extra_days", "reason_code", "note"),
            required=("extra_days", "note"),
            extra={"reasons": "extension"},
        ),
        Action("approve_extension", HANDLING, None, frozenset({OFFICE}), fields=("note",)),
        Action(
            "refuse_extension",
            HANDLING,
            None,
            frozenset({OFFICE}),
            fields=("note",),
            required=("note",),
        ),
        # An extension the office approved that needs a leader (server/ledger/rules.py).
        Action("approve_extension_leader", HANDLING, None, frozenset({LEADER}),
               fields=("note",)),
        Action("refuse_extension_leader", HANDLING, None, frozenset({LEADER}),
               fields=("note",), required=("note",)),
        Action(
            "reply",
            ("handling",),
            "replied",
            frozenset({HANDLER}),
            unit_only=True,
            fields=("outcome", "note", "photos"),
            required=("outcome", "note"),
            extra={"labels": {"photos": "joint.field.photos"}},
        ),
        Action("verify", ("replied",), "callback", frozenset({OFFICE}), fields=("note",)),
        Action(
            "send_back",
            ("replied",),
            "handling",
            frozenset({OFFICE}),
            fields=("note",),
            required=("note",),
        ),
        Action(
            "callback",
            ("callback",),
            None,
            frozenset({OFFICE}),
            fields=("method", "result", "solved", "satisfaction", "note"),
            required=("method", "result"),
        ),
        # "Solved but 不满意": the office sends it back to the unit (重办) or closes it with
        # an explanation (close_explained).
        Action("redo", ("callback",), "handling", frozenset({OFFICE}), fields=("note",),
               required=("note",)),
        # Closures without a valid callback (closure_kind): counted apart in the statistics.
        Action("close_unreachable", ("callback",), "closed", frozenset({OFFICE}),
               fields=("note",)),
        Action("close_no_contact", ("callback",), "closed", frozenset({OFFICE}),
               fields=("note",)),
        Action(
            "close_explained",
            ("accepted", "dispatched", "handling", "returned", "replied", "callback"),
            "closed",
            frozenset({OFFICE}),
            fields=("reason_code", "note"),
            required=("note",),
            extra={"reasons": "explained"},
        ),
        Action(
            "return_visit",
            ("closed",),
            None,
            frozenset({OFFICE, FIELD}),
            fields=("held", "note"),
            required=("held",),
        ),
        # Supervision (server/ledger/supervision.py): a light reminder; a 督办单 the lead unit
        # answers and the office closes (销号) or escalates; a leader's 挂牌 with its 批示,
        # lifted (摘牌) once the problem is closed; a leader's 批示 on any problem.
        Action("remind", OPEN_STATES, None, frozenset({OFFICE}), fields=("note",)),
        Action("supervise", OPEN_STATES, None, frozenset({OFFICE}),
               fields=("note", "answer_by"), required=("note", "answer_by"),
               extra={"labels": {"note": "supervision.field.requirement"}}),
        Action("answer_supervision", ALL_STATES, None, frozenset({HANDLER}), unit_only=True,
               fields=("order_id", "note"), required=("order_id", "note"),
               extra={"labels": {"note": "supervision.field.answer"}}),
        Action("close_supervision", ALL_STATES, None, frozenset({OFFICE}),
               fields=("order_id", "note"), required=("order_id",)),
        Action("escalate_supervision", OPEN_STATES, None, frozenset({OFFICE}),
               fields=("order_id", "note"), required=("order_id", "note")),
        Action("flag", OPEN_STATES, None, frozenset({LEADER}), fields=("note",),
               required=("note",), extra={"labels": {"note": "supervision.field.instruction"}}),
        Action("unflag", ("closed",), None, frozenset({LEADER}),
               fields=("order_id", "note"), required=("order_id",)),
        Action("instruct", ALL_STATES, None, frozenset({LEADER}), fields=("note",),
               required=("note",), extra={"labels": {"note": "supervision.field.instruction"}}),
        # Joint handling (server/ledger/joint.py): a helper unit's handlers sign their part,
        # post progress and answer (协办意见); the office may let the lead reply without waiting.
        Action("sign_part", joint.WORKING_STATES, None, frozenset({HANDLER}),
               fields=("note",)),
        Action("progress_part", joint.WORKING_STATES, None, frozenset({HANDLER}),
               fields=("note",), required=("note",)),
        Action("answer_part", joint.WORKING_STATES, None, frozenset({HANDLER}),
               fields=("note", "photos"), required=("note",),
               extra={"labels": {"note": "joint.field.opinion", "photos": "joint.field.photos"}}),
        Action("let_lead_reply", HANDLING, None, frozenset({OFFICE}), fields=("note",),
               required=("note",)),
        # Settles a conflicting edit (see server/ledger/conflicts.py): restore the
        # overwritten value or keep the current one.
        Action(
            "resolve_conflict",
            ALL_STATES,
            None,
            frozenset({OFFICE}),
            fields=("field", "choice", "note"),
            required=("field", "choice"),
        ),
    )
}


def allowed_actions(db, problem: dict, user: authz.User) -> list[str]:
    """The actions this user may take on this problem now (for showing buttons)."""
    names = []
    for action in ACTIONS.values():
        try:
            _check_allowed(db, action, problem, user)
        except TransitionError:
            continue
        names.append(action.name)
    return names


def _check_allowed(db, action: Action, problem: dict, user: authz.User) -> None:
    if problem["status"] not in action.from_states:
        raise TransitionError(
            _(
                "workflow.wrong_state",
                action=_(f"action.{action.name}"),
                status=_(f"status.{problem['status']}"),
            )
        )
    if not action.roles & user.roles:
        raise TransitionError(_("workflow.wrong_role"), 403)
    if action.unit_only and (
        authz.HANDLER not in user.roles or problem["lead_unit_id"] != user.unit_id
    ):
        raise TransitionError(_("workflow.not_your_unit"), 403)
    if action.name in rules.ACTIONS or action.name in rules.GUARDED:
        rules.check_allowed(db, action.name, problem, user)
    if action.name in supervision.ACTIONS:
        supervision.check_allowed(db, action.name, problem, user)
    if action.name == "resolve_conflict" and not problem.get("conflict"):
        raise TransitionError(_("workflow.no_conflict"))
    if action.name in closures.ACTIONS:
        closures.check_allowed(db, action.name, problem)
    if action.name in joint.ACTIONS:
        joint.check_allowed(db, action.name, problem, user)
    # The verifier is never the one who replied (a user may hold both roles).
    if action.name in ("verify", "send_back") and _replier(db, problem) == user.id:
        raise TransitionError(_("workflow.verifier_is_handler"), 403)


def _trimmed(value):
    # A note of only spaces says nothing: it must not satisfy a required note.
    return value.strip() if isinstance(value, str) else value


def field_label(action: Action, name: str) -> str:
    """The catalog key of a field's label on this action's form."""
    return action.extra.get("labels", {}).get(name, f"workflow.field.{name}")


def _required(data: dict, name: str, label: str | None = None) -> None:
    value = data.get(name)
    if value is None or value == "" or value == []:
        label = label or f"workflow.field.{name}"
        raise ValidationError({name: _("validation.required", label=_(label))})


def _event(db, problem: dict, action: str, actor: authz.User, to_status, note, data) -> str:
    return append_event(db, problem, action, actor.id, to_status, note, data)


def append_event(db, problem: dict, kind: str, actor_id: int | None, to_status, note,
                 data: dict) -> str:
    """Append one event to a problem's history; ``actor_id`` None for the system."""
    event_id = uuid7()
    db["problem_events"].insert(
        {
            "id": event_id,
            "problem_id": problem["id"],
            "kind": kind,
            "actor_id": actor_id,
            "at": clock.now_iso(),
            "from_status": problem["status"],
            "to_status": to_status,
            "note": note or "",
            "data": json.dumps(data, ensure_ascii=False, sort_keys=True),
        }
    )
    return event_id


def _unit_exists(db, unit_id) -> bool:
    return (
        unit_id is not None
        and db.execute("SELECT 1 FROM units WHERE id = ? AND active = 1", [unit_id]).fetchone()
        is not None
    )


def load(db: sqlite_utils.Database, user: authz.User, problem_id: str) -> dict:
    from server.ledger.problems import get_problem_row

    return get_problem_row(db, user, problem_id)


def apply(
    db: sqlite_utils.Database, user: authz.User, problem_id: str, action_name: str, data: dict
) -> dict:
    """Apply an action inside the caller's write transaction; returns the updated problem.

    Raises ``TransitionError`` (not allowed now, for this user) or
    ``ValidationError`` (missing or bad input). Nothing is written before every
    check has passed.
    """
    action = ACTIONS.get(action_name)
    if action is None:
        raise TransitionError(_("workflow.unknown_action"))
    problem = load(db, user, problem_id)
    _check_allowed(db, action, problem, user)
    data = {key: _trimmed(data.get(key)) for key in action.fields}
    data = {key: value for key, value in data.items() if value not in (None, "")}
    for name in action.required:
        _required(data, name, field_label(action, name))
    if "note" in data:
        data["note"] = NOTE.clean(data)["note"]
    # The reason chosen from the list the action takes (server/ledger/reasons.py).
    reason = reasons.check(db, action.extra["reasons"], data) if "reasons" in action.extra \
        else None
    note = data.pop("note", "")
    photos = event_photos.of_action(data.pop("photos", None))
    changes, event_data, to_status = APPLY[action.name](db, user, problem, data, note)
    if reason:
        event_data["reason_code"] = reason.code
        changes[reason.column] = reason.code
    to_status = to_status or action.to_state
    event_data["overdue"] = is_overdue(problem)
    if photos:
        event_data["photos"] = photos
    if to_status and to_status != problem["status"]:
        changes["status"] = to_status
    changes["updated_at"] = clock.now_iso()
    event_id = _event(db, problem, action.name, user, to_status or None, note, event_data)
    event_photos.link(db, event_id, photos)
    if action.name == "answer_part":
        joint.record_answer_event(db, event_id, event_data)
    db["problems"].update(problem["id"], changes)
    problem.update(changes)
    problem["last_event_id"] = event_id
    return problem


# What each action changes --------------------------------------------------------


def _accept(db, user, problem, data, note):
    changes = {
        "accepted_at": clock.now_iso(),
        "ledger_no": problem["ledger_no"] or next_ledger_no(db, clock.local_today().year),
    }
    if data.get("category_id") is not None:
        if not db.execute(
            "SELECT 1 FROM categories WHERE id = ?", [data["category_id"]]
        ).fetchone():
            raise ValidationError({"category_id": _("workflow.unknown_category")})
        changes["category_id"] = data["category_id"]
    if data.get("urgency"):
        if data["urgency"] not in ("normal", "urgent", "critical"):
            raise ValidationError({"urgency": _("workflow.bad_value")})
        changes["urgency"] = data["urgency"]
    return changes, {"ledger_no": changes["ledger_no"]}, None


def _ask_reporter(db, user, problem, data, note):
    if problem.get("source") == "hotline":
        # Typed in by the office from a call: there is no official in the field to ask.
        raise TransitionError(_("ask_reporter.hotline"))
    return {"info_request": note}, {"reporter_id": problem["reporter_id"]}, None


def _reject(db, user, problem, data, note):
    return {"closed_at": clock.now_iso()}, {}, None


def _merge_original(db, user, problem: dict, typed: str) -> dict:
    """The problem a duplicate is merged into, named by its ledger number or its id."""
    from server.errors import NotFound
    from server.ledger.problems import get_problem_row

    number = normal_ledger_no(typed)
    if number is not None:
        row = db.execute("SELECT id FROM problems WHERE ledger_no = ?", [number]).fetchone()
        missing = _("office.merge.no_such_number", number=number)
    else:
        row = (typed,)
        missing = _("office.merge.no_such_problem", text=typed)
    try:
        original = get_problem_row(db, user, row[0]) if row else None
    except NotFound:
        original = None
    if original is None:
        raise ValidationError({"original_id": missing})
    if original["id"] == problem["id"]:
        raise ValidationError({"original_id": _("workflow.merge_self")})
    if original["status"] in ("rejected", "merged"):
        raise ValidationError({"original_id": _("workflow.merge_unknown")})
    return original


def _merge(db, user, problem, data, note):
    original = _merge_original(db, user, problem, str(data["original_id"]))
    # The original records the link too, so each side shows the other.
    _event(db, original, "merged_in", user, None, note, {"duplicate_id": problem["id"]})
    return (
        {"merged_into": original["id"], "closed_at": clock.now_iso()},
        {"original_id": original["id"], "original_no": original["ledger_no"]},
        None,
    )


def _dispatch(db, user, problem, data, note):
    unit_id = _int(data, "lead_unit_id")
    if not _unit_exists(db, unit_id):
        raise ValidationError({"lead_unit_id": _("workflow.unknown_unit")})
    helpers = data.get("helper_unit_ids") or []
    if isinstance(helpers, str):
        helpers = [helpers]
    helper_ids = sorted({int(h) for h in helpers if str(h).isdigit()} - {unit_id})
    if any(not _unit_exists(db, helper) for helper in helper_ids):
        raise ValidationError({"helper_unit_ids": _("workflow.unknown_unit")})
    restarts = rules.after_justified_return(problem)
    changes = {"lead_unit_id": unit_id, "helper_unit_ids": json.dumps(helper_ids),
               "unit_dispatched_at": clock.now_iso()}
    event_data = {"lead_unit_id": unit_id, "helper_unit_ids": helper_ids}
    if problem["dispatched_at"] is None or restarts:
        # The clocks start at the first dispatch, and again at the dispatch after a
        # justified return (the new unit's own deadline, also its original one).
        days = data.get("time_limit_days")
        if days is None:
            days = time_limit_days(db, problem)
        days = _int(data | {"time_limit_days": days}, "time_limit_days")
        if not 1 <= days <= 365:
            raise ValidationError({"time_limit_days": _("workflow.bad_days")})
        deadline, provisional = WorkCalendar.load(db).deadline(clock.local_today(), days)
        changes.update(
            dispatched_at=problem["dispatched_at"] or clock.now_iso(),
            deadline=deadline.isoformat(),
            original_deadline=deadline.isoformat(),
            deadline_provisional=int(provisional),
        )
        event_data.update(time_limit_days=days, deadline=deadline.isoformat(),
                          provisional=provisional)
        if restarts:
            event_data["restarts"] = True
    event_data.update(joint.dispatch_parts(db, user, problem, helper_ids))
    return changes, event_data, None


def _int(data: dict, name: str) -> int:
    try:
        return int(data[name])
    except (TypeError, ValueError, KeyError):
        raise ValidationError({name: _("workflow.bad_value")}) from None


def _sign(db, user, problem, data, note):
    contacted = parse_flag(data.get("contacted")) or False
    signed_at = problem["signed_at"] or clock.now_iso()
    # The response clock runs from the current unit's dispatch.
    responded = responded_in_time(db, problem["unit_dispatched_at"] or problem["dispatched_at"],
                                  signed_at, contacted)
    return (
        {"signed_at": signed_at, "resident_contacted": int(contacted),
         "responded_in_time": int(responded)},
        {"contacted": contacted},
        None,
    )


def _return(db, user, problem, data, note):
    return ({"signed_at": None, "responded_in_time": None},
            {"unit_id": problem["lead_unit_id"]}, None)


def _progress(db, user, problem, data, note):
    return {}, {}, None


def _request_extension(db, user, problem, data, note):
    days = _int(data, "extra_days")
    if not 1 <= days <= 60:
        raise ValidationError({"extra_days": _("workflow.bad_days")})
    if problem["deadline"] and clock.local_today() > dt.date.fromisoformat(problem["deadline"]):
        raise TransitionError(_("workflow.extension_too_late"))
    request = {"extra_days": days, "reason": note, "at": clock.now_iso()}
    return {"extension_request": json.dumps(request, ensure_ascii=False)}, request, None


def _reply(db, user, problem, data, note):
    if data["outcome"] not in OUTCOMES:
        raise ValidationError({"outcome": _("workflow.bad_value")})
    joint.check_reply(db, problem)
    return (
        {"outcome": data["outcome"], "replied_at": clock.now_iso(), "extension_request": None},
        {"outcome": data["outcome"]},
        None,
    )


def _replier(db, problem) -> int | None:
    row = db.execute(
        "SELECT actor_id FROM problem_events WHERE problem_id = ? AND kind = 'reply'"
        " ORDER BY at DESC, rowid DESC LIMIT 1",
        [problem["id"]],
    ).fetchone()
    return row[0] if row else None


def _verify(db, user, problem, data, note):
    return {}, {"outcome": problem["outcome"]}, None


def _send_back(db, user, problem, data, note):
    return {"redo_count": problem["redo_count"] + 1}, {"redo": problem["redo_count"] + 1}, None


def _supervision(level: str):
    def apply_level(db, user, problem, data, note):
        return supervision.supervision_level(problem, level, note), {"level": level}, None

    return apply_level


def _resolve_conflict(db, user, problem, data, note):
    from server.ledger import conflicts
    from sync.mutations import update_problem_fields

    field = data["field"]
    if data["choice"] not in conflicts.CHOICES:
        raise ValidationError({"choice": _("workflow.bad_value")})
    pending = conflicts.load_open(db, problem["id"])
    if field not in pending:
        raise ValidationError({"field": _("office.conflict.none_for_field")})
    event = {"field": field, "choice": data["choice"], "edit_id": pending[field]["event_id"]}
    if data["choice"] == conflicts.RESTORE:
        # The same write as a phone's edit: field_versions and the change log move,
        # so phones pull the restored value.
        changes, _conflicting = update_problem_fields(
            db, problem, {field: pending[field]["other"]}, None)
        problem.update({name: change["new"] for name, change in changes.items()})
        event["changes"] = changes
    return {"conflict": int(len(pending) > 1)}, event, None


APPLY = {
    "accept": _accept,
    "ask_reporter": _ask_reporter,
    "reject": _reject,
    "merge": _merge,
    "dispatch": _dispatch,
    "sign": _sign,
    "return": _return,
    "progress": _progress,
    "request_extension": _request_extension,
    "reply": _reply,
    "verify": _verify,
    "send_back": _send_back,
    **closures.APPLY,
    **rules.APPLY,
    "remind": _supervision("reminded"),
    **supervision.APPLY,
    **joint.APPLY,
    "resolve_conflict": _resolve_conflict,
}
assert set(APPLY) == set(ACTIONS)


def derive_status(events: list[dict]) -> str:
    """The status a problem's history implies: the last event that set one."""
    status = "submitted"
    for event in events:
        if event["to_status"]:
            status = event["to_status"]
    return status


