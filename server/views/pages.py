"""The signed-in pages: home, problems and visits."""

from __future__ import annotations

from starlette.requests import Request

from server import authz, calendar_entry, drafts, masking, visits
from server.i18n import gettext as _
from server.ledger import (
    clock,
    closures,
    conflicts,
    deadlines,
    joint,
    problems,
    queries,
    reasons,
    rules,
    states,
    supervision,
    tracking,
    workflow,
)
from server.views.ledger_pages import similar_context
from server.web import render, store, user


def _admin_counts(db, actor: authz.User) -> dict:
    clause, params = authz.admin_scope(actor, "users")
    users_count = db.execute(f"SELECT count(*) FROM users WHERE {clause}", params).fetchone()[0]
    devices_count = db.execute(
        f"SELECT count(*) FROM devices d JOIN users ON users.id = d.user_id"
        f" WHERE d.revoked_at IS NULL AND {clause}",
        params,
    ).fetchone()[0]
    return {"users": users_count, "devices": devices_count}


HOME_RECENT = 10
HOME_VISITS = 5


def _home_data(db, actor: authz.User) -> dict:
    data: dict = {}
    if actor.can("problems.view"):
        # The ledger's bounded counts ("10000+", or "…" when out of time) and its
        # read in order of discovery: a home page as fast as the ledger's at any size.
        everything = queries.Filter()
        data["counts"] = {status: queries.Count.of(n) for status, n
                          in queries.status_counts(db, actor, everything).items()}
        data["recent"] = queries.list_rows(db, actor, everything, many=True)[:HOME_RECENT]
    if actor.can("visits.view"):
        data["visits"] = visits.latest_visits(db, actor, HOME_VISITS)
    if actor.can("admin.manage"):
        data["admin"] = _admin_counts(db, actor)
        data["calendar_missing"] = calendar_entry.missing_year(db, clock.local_today())
    return data


async def home(request: Request):
    data = await store(request).read(_home_data, user(request))
    return render(request, "home.html", data)


def _default_unit_id(db, problem: dict) -> int | None:
    """The unit a dispatch form offers first: the reporter's suggestion, else the category's."""
    if problem["suggested_unit_id"] is not None:
        return problem["suggested_unit_id"]
    row = db.execute(
        "SELECT default_unit_id FROM categories WHERE id = ?", [problem["category_id"]]
    ).fetchone()
    return row[0] if row else None


def _reason_context(db) -> dict:
    """The active options of each action's list of reasons (server/ledger/reasons.py)."""
    lists = {name: action.extra["reasons"] for name, action in workflow.ACTIONS.items()
             if "reasons" in action.extra}
    return {"reason_lists": lists,
            "reason_options": {name: reasons.options(db, list_name, active_only=True)
                               for name, list_name in lists.items()},
            # The timeline's labels, by (event kind, code): deactivated options included.
            "reason_labels": {(reasons.KINDS[list_name], code): label for (list_name, code), label
                              in reasons.labels(db).items()}}


def _action_context(db, actor: authz.User, problem: dict) -> dict:
    return {
        "actions": workflow.allowed_actions(db, problem, actor),
        "fields": {name: action.fields for name, action in workflow.ACTIONS.items()},
        "required": {name: action.required for name, action in workflow.ACTIONS.items()},
        "labels": {name: {f: workflow.field_label(action, f) for f in action.fields}
                   for name, action in workflow.ACTIONS.items()},
        "order_actions": supervision.ORDER_ACTIONS,
        **_reason_context(db),
        "default_unit_id": _default_unit_id(db, problem),
        "categories": list(db.query(
            "SELECT id, name FROM categories WHERE active = 1 ORDER BY code")),
        "units": list(db.query("SELECT id, name FROM units WHERE active = 1 ORDER BY name")),
    }


def _resident_contact(actor: authz.User, problem: dict) -> dict:
    """The resident's name and phone as this user may see them: unmasked (a ``tel:`` link on
    the page) for those who must call the resident, masked for everyone else."""
    shown = authz.may_see_resident_phone(actor, problem)
    return {"name": problem["resident_name"] or "", "phone": masking.resident_phone(actor, problem),
            "callable": shown and closures.has_contact(problem)}


def _problem_page_data(db, actor: authz.User, problem_id: str) -> dict:
    problem = problems.get_problem(db, actor, problem_id)
    context = _action_context(db, actor, problem)
    contact = _resident_contact(actor, problem)
    problem["resident_phone"] = contact["phone"]  # the page never holds more than it shows
    unreachable = None
    if problem["status"] == "callback" and closures.has_contact(problem):
        unreachable = closures.unreachable_progress(db, problem)
    open_conflicts = conflicts.for_page(db, actor, problem)
    problem["events"] = masking.events(actor, problem, problem["events"])
    for event in problem["events"]:
        event["changes_shown"] = conflicts.shown_changes(db, actor, problem, event)
    return {"problem": problem, **context, "contact": contact,
            "attempts": closures.callback_attempts(problem["events"]),
            "unreachable": unreachable, "conflicts": open_conflicts,
            "orders": supervision.open_orders(db, problem["id"]),
            "parts": joint.parts_for_page(db, problem["id"]),
            "reply_waits_for": joint.reply_waits_for(db, problem["id"]),
            "extension": rules.extension_request(problem),
            "instructions": [e for e in problem["events"] if e["kind"] == "instruct"],
            "tracking": tracking.office_view(problem),
            **similar_context(db, actor, problem, context["actions"])}


async def problem_page(request: Request, *, action=None, values=None, errors=None,
                       message=None, notice=None, status=200):
    data = await store(request).read(
        _problem_page_data, user(request), request.path_params["problem_id"]
    )
    done = request.query_params.get("done")
    return render(request, "problems/detail.html", {
        **data,
        "failed_action": action,
        "values": values or {},
        "errors": errors or {},
        "message": message,
        "done": _("workflow.done", action=_(f"action.{done}")) if done in workflow.ACTIONS
        else notice,
        "outcomes": states.OUTCOMES,
        "satisfaction": states.SATISFACTION,
        "callback_methods": states.CALLBACK_METHODS,
        "callback_results": states.CALLBACK_RESULTS,
        "overdue": deadlines.is_overdue(data["problem"]),
        "conflict_fields": conflicts.FIELDS,
    }, status=status)


async def problem_detail(request: Request):
    problem_id = request.path_params["problem_id"]
    draft = await drafts.take_requested(request, user(request).id)
    action = draft.problem_action(problem_id) if draft else None
    if action in workflow.ACTIONS:
        # Back from signing in again: the form open, with what was typed before.
        return await problem_page(request, action=action, values=form_values(draft.fields),
                                  notice=_("office.draft.restored"))
    return await problem_page(request)


def form_values(items) -> dict:
    """An action form's values from its posted (name, value) pairs."""
    # Photos are files, never text: a typed value of theirs is no photo.
    values = {name: value for name, value in items if isinstance(value, str)
              and name not in ("csrf_token", "helper_unit_ids")
              and not name.startswith("photos")}
    values["helper_unit_ids"] = [value for name, value in items if name == "helper_unit_ids"]
    return values
