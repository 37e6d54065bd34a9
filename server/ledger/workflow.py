"""The problem state machine: one table of allowed transitions, and how each action is applied.

Every action appends one event (who, when, what, why, and whether the problem
was overdue at that moment) and updates the problem's current columns in the
same transaction. The status is always the ``to_status`` of the latest event
that has one, so the history and the current state cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field

import sqlite_utils

from server import authz
from server.authz import FIELD, HANDLER, LEADER, OFFICE
from server.i18n import gettext as _
from server.ledger import supervision
from server.settings import settings
from server.timeutil import LOCAL_TZ, local_date, now_iso, parse_iso, utcnow
from server.validation import Field, Schema, ValidationError
from server.workdays import WorkCalendar
from sync.ids import uuid7
from sync.schemas import NOTE_MAX_LENGTH

OPEN_STATES = ("submitted", "accepted", "dispatched", "handling", "returned", "replied", "callback")
FINISHED_STATES = ("closed", "rejected", "merged")
ALL_STATES = OPEN_STATES + FINISHED_STATES
OUTCOMES = ("solved", "partial", "explained", "untrue")
SATISFACTION = ("satisfied", "basically", "unsatisfied")
# A callback attempt: how the office tried, and what came of it. Only "reached" goes on to
# the resident's answers; the others are failed attempts (see unreachable_progress).
CALLBACK_METHODS = ("phone", "visit", "sms")
CALLBACK_RESULTS = ("reached", "no_answer", "refused", "invalid_number")
# How a closed problem was closed when no callback judged it (problems.closure_kind).
CLOSURE_KINDS = ("unreachable", "no_contact", "explained")
SUPERVISION_LEVELS = ("none", "reminded", "supervised", "flagged")
LEDGER_PREFIX = "ZF"
# An action's note is kept whole or refused with a message, never cut: the phone's limit.
NOTE = Schema(Field("note", "workflow.field.note", max_length=NOTE_MAX_LENGTH, multiline=True))
_LEDGER_NO = re.compile(r"^([A-Za-z]{2})-(\d{4})-(\d{1,6})$")


class TransitionError(Exception):
    """The action is not allowed for this problem in its state (409), or for this user (403)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.message = message
        self.status = status


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
        Action(
            "reject",
            ("submitted",),
            "rejected",
            frozenset({OFFICE}),
            fields=("note",),
            required=("note",),
        ),
        Action(
            "merge",
            ("submitted", "accepted"),
            "merged",
            frozenset({OFFICE}),
            fields=("original_id", "note"),
            required=("original_id",),
        ),
        Action(
            "dispatch",
            ("accepted", "returned"),
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
            fields=("note",),
            required=("note",),
        ),
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
            fields=("extra_days", "note"),
            required=("extra_days", "note"),
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
        Action(
            "reply",
            ("handling",),
            "replied",
            frozenset({HANDLER}),
            unit_only=True,
            fields=("outcome", "note"),
            required=("outcome", "note"),
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
            fields=("note",),
            required=("note",),
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


def local_today() -> dt.date:
    return utcnow().astimezone(LOCAL_TZ).date()


def is_overdue(problem: dict, today: dt.date | None = None) -> bool:
    if problem["status"] in FINISHED_STATES or not problem["deadline"]:
        return False
    return (today or local_today()) > dt.date.fromisoformat(problem["deadline"])


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
    if action.name in ("approve_extension", "refuse_extension") and not problem.get(
        "extension_request"
    ):
        raise TransitionError(_("workflow.no_extension_request"))
    if action.name == "request_extension" and problem.get("extension_request"):
        raise TransitionError(_("workflow.extension_pending"))
    if action.name in supervision.ACTIONS:
        supervision.check_allowed(db, action.name, problem, user)
    if action.name == "resolve_conflict" and not problem.get("conflict"):
        raise TransitionError(_("workflow.no_conflict"))
    if action.name == "return_visit" and problem.get("return_visit_result"):
        raise TransitionError(_("workflow.return_visit_done"))
    if action.name == "return_visit" and problem.get("closure_kind") == "explained":
        raise TransitionError(_("closures.no_return_visit_when_explained"))
    # Nobody to call: no callback is owed, the office closes it as 无回访对象.
    if action.name == "callback" and not has_contact(problem):
        raise TransitionError(_("closures.nobody_to_call"))
    if action.name == "close_no_contact" and has_contact(problem):
        raise TransitionError(_("closures.has_contact"))
    if action.name == "close_unreachable":
        if not has_contact(problem):
            raise TransitionError(_("closures.nobody_to_call"))
        progress = unreachable_progress(db, problem)
        if not progress.met:
            raise TransitionError(_("closures.unreachable_too_soon", **progress.words()))
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
            "at": now_iso(),
            "from_status": problem["status"],
            "to_status": to_status,
            "note": note or "",
            "data": json.dumps(data, ensure_ascii=False, sort_keys=True),
        }
    )
    return event_id


def normal_ledger_no(text: str) -> str | None:
    """A ledger number as stored (``ZF-2026-000523``) from one typed with any case,
    spaces or fewer digits (`` zf-2026-523``); None if the text is not one."""
    number = _LEDGER_NO.match("".join(text.split()))
    if number is None:
        return None
    prefix, year, serial = number.groups()
    return f"{prefix.upper()}-{year}-{int(serial):06d}"


# Each numbered series: its prefix, its counter column in ledger_counters, its digits.
NUMBER_SERIES = {
    "ledger": (LEDGER_PREFIX, "last_no", 6),
    "supervision": ("DB", "supervision_last_no", 4),
}


def next_number(db: sqlite_utils.Database, series: str, year: int) -> str:
    """The next number of the series and year, without gaps: the counter moves in the
    caller's transaction, so a refused action leaves no hole."""
    prefix, column, digits = NUMBER_SERIES[series]
    db.execute(
        "INSERT INTO ledger_counters (year, last_no) VALUES (?, 0) ON CONFLICT(year) DO NOTHING",
        [year],
    )
    db.execute(f"UPDATE ledger_counters SET {column} = {column} + 1 WHERE year = ?", [year])
    number = db.execute(f"SELECT {column} FROM ledger_counters WHERE year = ?", [year]).fetchone()
    return f"{prefix}-{year}-{number[0]:0{digits}d}"


def next_ledger_no(db: sqlite_utils.Database, year: int) -> str:
    """The next ledger number of the year (``ZF-2026-000523``)."""
    return next_number(db, "ledger", year)


def _unit_exists(db, unit_id) -> bool:
    return (
        unit_id is not None
        and db.execute("SELECT 1 FROM units WHERE id = ? AND active", [unit_id]).fetchone()
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
    note = data.pop("note", "")
    changes, event_data, to_status = APPLY[action.name](db, user, problem, data, note)
    to_status = to_status or action.to_state
    event_data["overdue"] = is_overdue(problem)
    if to_status and to_status != problem["status"]:
        changes["status"] = to_status
    changes["updated_at"] = now_iso()
    event_id = _event(db, problem, action.name, user, to_status or None, note, event_data)
    db["problems"].update(problem["id"], changes)
    problem.update(changes)
    problem["last_event_id"] = event_id
    return problem


# What each action changes --------------------------------------------------------


def _accept(db, user, problem, data, note):
    changes = {
        "accepted_at": now_iso(),
        "ledger_no": problem["ledger_no"] or next_ledger_no(db, local_today().year),
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


def _reject(db, user, problem, data, note):
    return {"closed_at": now_iso()}, {}, None


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
        {"merged_into": original["id"], "closed_at": now_iso()},
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
    changes = {"lead_unit_id": unit_id, "helper_unit_ids": json.dumps(helper_ids)}
    event_data = {"lead_unit_id": unit_id, "helper_unit_ids": helper_ids}
    if problem["dispatched_at"] is None:
        # The clock starts at the first dispatch; a ticket bounced back and
        # re-assigned keeps its deadline.
        days = data.get("time_limit_days")
        if days is None:
            days = _time_limit_days(db, problem)
        days = _int(data | {"time_limit_days": days}, "time_limit_days")
        if not 1 <= days <= 365:
            raise ValidationError({"time_limit_days": _("workflow.bad_days")})
        deadline, provisional = WorkCalendar.load(db).deadline(local_today(), days)
        changes.update(
            dispatched_at=now_iso(),
            deadline=deadline.isoformat(),
            original_deadline=deadline.isoformat(),
            deadline_provisional=int(provisional),
        )
        event_data.update(time_limit_days=days, deadline=deadline.isoformat(),
                          provisional=provisional)
    return changes, event_data, None


def _int(data: dict, name: str) -> int:
    try:
        return int(data[name])
    except (TypeError, ValueError, KeyError):
        raise ValidationError({name: _("workflow.bad_value")}) from None


def responded_in_time(db, dispatched_at: str | None, signed_at: str, contacted: bool) -> bool:
    """The response clock (响应率): signed, with the resident contacted, by the end of the
    ``response_limit_days``-th working day after the local day of the first dispatch.

    Frozen on the problem when it is signed (``responded_in_time``), like the
    closing's ``closed_on_time``: a later change of the setting or the calendar
    does not rewrite history.
    """
    if not contacted or dispatched_at is None:
        return False
    days = int(settings(db)["response_limit_days"])
    last = WorkCalendar.load(db).add_working_days_or_weekdays(local_date(dispatched_at), days)
    return local_date(signed_at) <= last


def _sign(db, user, problem, data, note):
    contacted = _flag(data.get("contacted")) or False
    signed_at = problem["signed_at"] or now_iso()
    responded = responded_in_time(db, problem["dispatched_at"], signed_at, contacted)
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
    if problem["deadline"] and local_today() > dt.date.fromisoformat(problem["deadline"]):
        raise TransitionError(_("workflow.extension_too_late"))
    request = {"extra_days": days, "reason": note, "at": now_iso()}
    return {"extension_request": json.dumps(request, ensure_ascii=False)}, request, None


def _approve_extension(db, user, problem, data, note):
    request = json.loads(problem["extension_request"])
    base = dt.date.fromisoformat(problem["deadline"])
    deadline, provisional = WorkCalendar.load(db).deadline(base, request["extra_days"])
    provisional = provisional or bool(problem.get("deadline_provisional"))
    return (
        {"deadline": deadline.isoformat(), "extension_request": None,
         "deadline_provisional": int(provisional)},
        {
            "old_deadline": problem["deadline"],
            "deadline": deadline.isoformat(),
            "extra_days": request["extra_days"],
            "provisional": provisional,
        },
        None,
    )


def _refuse_extension(db, user, problem, data, note):
    return {"extension_request": None}, {"deadline": problem["deadline"]}, None


def _reply(db, user, problem, data, note):
    if data["outcome"] not in OUTCOMES:
        raise ValidationError({"outcome": _("workflow.bad_value")})
    return (
        {"outcome": data["outcome"], "replied_at": now_iso(), "extension_request": None},
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


def _flag(value) -> bool | None:
    if value in (True, "1", "true", "yes", "on", 1):
        return True
    if value in (False, "0", "false", "no", "off", 0):
        return False
    return None


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
        "SELECT count(*), count(DISTINCT date(e.at, '+8 hours')) FROM problem_events e"
        " WHERE e.problem_id = ?1 AND e.kind = 'callback'"
        " AND json_extract(e.data, '$.reached') = 0"
        " AND NOT EXISTS (SELECT 1 FROM problem_events later WHERE later.problem_id = ?1"
        " AND later.to_status = 'callback' AND (later.at, later.rowid) > (e.at, e.rowid))",
        [problem["id"]],
    ).fetchone()
    return UnreachableProgress(attempts, days, int(cfg["unreachable_attempts"]),
                               int(cfg["unreachable_min_days"]))


def callback_attempts(events: list[dict]) -> list[dict]:
    """The callback attempts of a problem's events (as problems.get_problem reads them)."""
    return [event for event in events if event["kind"] == "callback"]


def _closing(db, problem: dict, kind: str | None, reason: str = "",
             return_visit: bool = True) -> tuple[dict, dict]:
    """The columns every closing sets, and the event data it adds: closed on time when the
    local closing day is on or before the deadline in force; a 回头看 due after the
    category's days, the result of an earlier one (before a relapse) cleared."""
    today = local_today()
    on_time = problem["deadline"] is None or today <= dt.date.fromisoformat(problem["deadline"])
    due = today + dt.timedelta(days=_return_visit_days(db, problem)) if return_visit else None
    changes = {
        "closed_at": now_iso(),
        "closed_on_time": int(on_time),
        "closure_kind": kind,
        "closure_reason": reason or None,
        "return_visit_due": due.isoformat() if due else None,
        "return_visit_result": None,
        "extension_request": None,
    }
    return changes, {"on_time": on_time}


def _callback(db, user, problem, data, note):
    if data["method"] not in CALLBACK_METHODS:
        raise ValidationError({"method": _("workflow.bad_value")})
    if data["result"] not in CALLBACK_RESULTS:
        raise ValidationError({"result": _("workflow.bad_value")})
    attempt = {"method": data["method"], "result": data["result"]}
    if data["result"] != "reached":
        # A failed attempt is recorded; the call is due again (or, after enough of them,
        # the office may close the problem as 无法回访).
        return {"callback_reached": 0}, {**attempt, "reached": False}, None
    solved = _flag(data.get("solved"))
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
    closing, closing_event = _closing(db, problem, None)
    return {**changes, **closing}, {**event, **closing_event}, "closed"


def _close_unreachable(db, user, problem, data, note):
    progress = unreachable_progress(db, problem)
    changes, event = _closing(db, problem, "unreachable", note)
    return changes, {**event, "attempts": progress.attempts, "days": progress.days}, None


def _close_no_contact(db, user, problem, data, note):
    changes, event = _closing(db, problem, "no_contact", note)
    return changes, event, None


def _close_explained(db, user, problem, data, note):
    # Nothing was fixed that a 回头看 could check.
    changes, event = _closing(db, problem, "explained", note, return_visit=False)
    return changes, event, None


def _return_visit_days(db, problem) -> int:
    row = db.execute(
        "SELECT return_visit_days FROM categories WHERE id = ?", [problem["category_id"]]
    ).fetchone()
    return row[0] if row else 30


def _time_limit_days(db, problem) -> int:
    """The category's time limit in working days (10 without a category)."""
    row = db.execute(
        "SELECT time_limit_days FROM categories WHERE id = ?", [problem["category_id"]]
    ).fetchone()
    return row[0] if row else 10


def _return_visit(db, user, problem, data, note):
    held = _flag(data.get("held"))
    if held is None:
        raise ValidationError({"held": _("workflow.bad_value")})
    if held:
        return {"return_visit_result": "held"}, {"held": True}, None
    if not note:
        raise ValidationError({"note": _("validation.required", label=_("workflow.field.note"))})
    # A relapse (反弹) reopens the problem, flagged. Its earlier callback answers leave the
    # row (they stay in the callback events): the resident's "solved" no longer counts.
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
    }
    event = {"held": False}
    if problem["lead_unit_id"] is None:
        # Never dispatched (solved on the spot): the office dispatches it, which starts the
        # deadline.
        return changes, event, "accepted"
    # The same unit, on a fresh deadline: the category's limit from the reopening day (the
    # original deadline stays the first one, as deadline_from_events replays it).
    days = _time_limit_days(db, problem)
    deadline, provisional = WorkCalendar.load(db).deadline(local_today(), days)
    changes.update(deadline=deadline.isoformat(), deadline_provisional=int(provisional),
                   extension_request=None)
    event.update(time_limit_days=days, deadline=deadline.isoformat(), provisional=provisional)
    return changes, event, "dispatched"


def _supervision(level: str):
    def apply_level(db, user, problem, data, note):
        return supervision_level(problem, level, note), {"level": level}, None

    return apply_level


def supervision_level(problem: dict, level: str, note: str = "") -> dict:
    """The problem's columns when supervision reaches ``level``: problems.supervision is the
    highest level the problem ever reached (never lowered), supervision_note the latest word."""
    current = SUPERVISION_LEVELS.index(problem["supervision"] or "none")
    changes = {"supervision": SUPERVISION_LEVELS[max(current, SUPERVISION_LEVELS.index(level))]}
    if note:
        changes["supervision_note"] = note
    return changes


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
    "reject": _reject,
    "merge": _merge,
    "dispatch": _dispatch,
    "sign": _sign,
    "return": _return,
    "progress": _progress,
    "request_extension": _request_extension,
    "approve_extension": _approve_extension,
    "refuse_extension": _refuse_extension,
    "reply": _reply,
    "verify": _verify,
    "send_back": _send_back,
    "callback": _callback,
    "close_unreachable": _close_unreachable,
    "close_no_contact": _close_no_contact,
    "close_explained": _close_explained,
    "return_visit": _return_visit,
    "remind": _supervision("reminded"),
    **supervision.APPLY,
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


def return_visit_due(problem: dict, today: dt.date | None = None) -> bool:
    return (
        problem["status"] == "closed"
        and not problem.get("return_visit_result")
        and problem.get("return_visit_due") is not None
        and (today or local_today()) >= dt.date.fromisoformat(problem["return_visit_due"])
    )


def parse_stamp(text: str | None) -> dt.datetime | None:
    return parse_iso(text) if text else None


# Deadlines from the history ------------------------------------------------------


@dataclass(frozen=True)
class DeadlineReplay:
    deadline: dt.date
    provisional: bool
    original: dt.date  # the first deadline, as this calendar counts it
    original_was_provisional: bool  # as recorded when the first deadline was set


def deadline_from_events(calendar: WorkCalendar, events) -> DeadlineReplay | None:
    """A problem's deadline computed again from its history ``(kind, at, data)``, in order.

    The convention every action follows: an event whose data has
    ``time_limit_days`` starts a new deadline, counted from the event's local
    day; an ``approve_extension`` event's ``extra_days`` adds working days to
    the deadline then in force. None if no event started a deadline.
    """
    replay = None
    for kind, at, data in events:
        if data.get("time_limit_days") is not None:
            deadline, provisional = calendar.deadline(local_date(at), int(data["time_limit_days"]))
            if replay is None:
                replay = DeadlineReplay(deadline, provisional, deadline,
                                        bool(data.get("provisional")))
            else:
                replay = DeadlineReplay(deadline, provisional, replay.original,
                                        replay.original_was_provisional)
        elif kind == "approve_extension" and replay is not None and data.get("extra_days"):
            deadline, provisional = calendar.deadline(replay.deadline, int(data["extra_days"]))
            replay = DeadlineReplay(deadline, provisional or replay.provisional,
                                    replay.original, replay.original_was_provisional)
    return replay
