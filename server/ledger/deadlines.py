"""Deadlines and clocks: the response clock, the category's limits, the 回头看 due date,
and a problem's deadline computed again from its history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from server.ledger.clock import local_today
from server.ledger.states import FINISHED_STATES
from server.settings import settings
from server.timeutil import local_date
from server.workdays import WorkCalendar


def is_overdue(problem: dict, today: dt.date | None = None) -> bool:
    """Past its deadline and not finished (closed, rejected or merged)."""
    if problem["status"] in FINISHED_STATES or not problem["deadline"]:
        return False
    return (today or local_today()) > dt.date.fromisoformat(problem["deadline"])


def responded_in_time(db, dispatched_at: str | None, signed_at: str, contacted: bool) -> bool:
    """The response clock (响应率): signed, with the resident contacted, by the end of the
    ``response_limit_days``-th working day after the local day of ``dispatched_at``: the
    current lead unit's dispatch (``problems.unit_dispatched_at``), so each unit that is
    handed the problem gets its own clock.

    Frozen on the problem when it is signed (``responded_in_time``), like the
    closing's ``closed_on_time``: a later change of the setting or the calendar
    does not rewrite history.
    """
    if not contacted or dispatched_at is None:
        return False
    days = int(settings(db)["response_limit_days"])
    last = WorkCalendar.load(db).add_working_days_or_weekdays(local_date(dispatched_at), days)
    return local_date(signed_at) <= last


def time_limit_days(db, problem) -> int:
    """The category's time limit in working days (10 without a category)."""
    row = db.execute(
        "SELECT time_limit_days FROM categories WHERE id = ?", [problem["category_id"]]
    ).fetchone()
    return row[0] if row else 10


def return_visit_days(db, problem) -> int:
    row = db.execute(
        "SELECT return_visit_days FROM categories WHERE id = ?", [problem["category_id"]]
    ).fetchone()
    return row[0] if row else 30


def return_visit_due(problem: dict, today: dt.date | None = None) -> bool:
    return (
        problem["status"] == "closed"
        and not problem.get("return_visit_result")
        and problem.get("return_visit_due") is not None
        and (today or local_today()) >= dt.date.fromisoformat(problem["return_visit_due"])
    )


EXTENSION_EVENTS = ("approve_extension", "approve_extension_leader")


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
    day (and, with ``restarts``, a new original deadline too: the dispatch after a
    justified return); an extension that takes effect (``approve_extension`` or
    ``approve_extension_leader`` with ``extra_days``) adds working days to the deadline
    then in force. None if no event started a deadline.
    """
    replay = None
    for kind, at, data in events:
        if data.get("time_limit_days") is not None:
            deadline, provisional = calendar.deadline(local_date(at), int(data["time_limit_days"]))
            if replay is None or data.get("restarts"):
                replay = DeadlineReplay(deadline, provisional, deadline,
                                        bool(data.get("provisional")))
            else:
                replay = DeadlineReplay(deadline, provisional, replay.original,
                                        replay.original_was_provisional)
        elif kind in EXTENSION_EVENTS and replay is not None and data.get("extra_days"):
            deadline, provisional = calendar.deadline(replay.deadline, int(data["extra_days"]))
            replay = DeadlineReplay(deadline, provisional or replay.provisional,
                                    replay.original, replay.original_was_provisional)
    return replay
