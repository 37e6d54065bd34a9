"""Conflicting edits of a problem: which remain open, and both of their values.

Two phones of one reporter may edit the same field from the same version;
the later edit wins and is flagged (``sync.mutations.update_problem_fields``).
The overwritten value lives on in that ``edited`` event. A conflict stays open
until the office settles it with the ``resolve_conflict`` action (restoring
the overwritten value or keeping the current one); ``problems.conflict`` is
cleared when none is left.
"""

from __future__ import annotations

import json

from server import authz, masking
from server.i18n import gettext as _

# The reported fields a phone may edit (sync.mutations.EDITABLE_PROBLEM_FIELDS),
# in the order the detail page shows them.
FIELDS = (
    "description", "place", "area_id", "category_id", "urgency", "resident_name",
    "resident_phone", "suggested_unit_id", "lat", "lng",
)
RESTORE, KEEP = "restore", "keep"
CHOICES = (RESTORE, KEEP)


def _data(event: dict) -> dict:
    data = event["data"]
    return json.loads(data) if isinstance(data, str) else data


def open_conflicts(events: list[dict]) -> dict[str, dict]:
    """{field: conflict} for each field whose latest conflicting edit is not settled.

    ``events`` are the problem's events in order (``problems.get_problem``'s, or
    rows of ``problem_events``). Each conflict names the edit that won
    (``current_*``, its event id in ``event_id``) and the value it overwrote
    with who wrote that value and when (``other_*``).
    """
    written: dict[str, tuple] = {}  # field -> (actor_id, actor_name, at) of its last write
    found: dict[str, dict] = {}
    for event in events:
        kind, data = event["kind"], _data(event)
        who = (event["actor_id"], event.get("actor_name"), event["at"])
        if kind == "reported":
            written = dict.fromkeys(FIELDS, who)
        elif kind == "edited":
            for field, change in data.get("changes", {}).items():
                if field in data.get("conflicts", ()):
                    before = written.get(field, (None, None, None))
                    found[field] = {
                        "field": field, "event_id": event["id"],
                        "current": change["new"], "current_by": who[1], "current_at": who[2],
                        "other": change["old"], "other_by": before[1], "other_at": before[2],
                    }
                written[field] = who
        elif kind == "resolve_conflict":
            field = data.get("field")
            found.pop(field, None)
            if data.get("choice") == RESTORE:
                written[field] = who
    return found


def load_open(db, problem_id: str) -> dict[str, dict]:
    """The open conflicts of a problem, read from its events."""
    events = list(db.query(
        "SELECT id, kind, actor_id, NULL AS actor_name, at, data FROM problem_events"
        " WHERE problem_id = ? AND kind IN ('reported', 'edited', 'resolve_conflict')"
        " ORDER BY at, rowid",
        [problem_id],
    ))
    return open_conflicts(events)


def shown_value(db, user: authz.User, problem: dict, field: str, value) -> str:
    """A field's value as the detail page shows it to this user: names for ids, and a
    resident's phone masked for those who may not see it (``server.masking``)."""
    if value is None or value == "":
        return ""
    if field in masking.PHONE_FIELDS:
        return masking.resident_phone(user, problem, value)
    if field == "urgency":
        return _(f"urgency.{value}")
    table = {"area_id": "areas", "category_id": "categories",
             "suggested_unit_id": "units"}.get(field)
    if table:
        row = db.execute(f"SELECT name FROM {table} WHERE id = ?", [value]).fetchone()
        return row[0] if row else str(value)
    return str(value)


def for_page(db, user: authz.User, problem: dict) -> list[dict]:
    """The open conflicts of a problem as its detail page shows them."""
    if not problem.get("conflict"):
        return []
    found = open_conflicts(problem["events"])
    return [
        {**found[field], "current": shown_value(db, user, problem, field, problem[field]),
         "other": shown_value(db, user, problem, field, found[field]["other"])}
        for field in FIELDS if field in found
    ]


def shown_changes(db, user: authz.User, problem: dict, event: dict) -> list[dict]:
    """What an edit (or a restoring resolve_conflict) changed, as the timeline shows it:
    each field's former and new value through ``shown_value`` (masked where needed)."""
    changes = (event.get("data") or {}).get("changes") or {}
    return [
        {"field": field, "old": shown_value(db, user, problem, field, changes[field].get("old")),
         "new": shown_value(db, user, problem, field, changes[field].get("new"))}
        for field in FIELDS if isinstance(changes.get(field), dict)
    ]
