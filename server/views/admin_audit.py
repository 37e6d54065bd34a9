"""The 操作日志 page: the administration's audit trail (``server/audit.py``), newest first,
filtered by who made the change and which kind of record (and which record) it was about."""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request

from server import audit
from server.accounts import role_names
from server.areas import LEVELS
from server.i18n import gettext as _
from server.ledger import reports
from server.views.admin import RESOURCES
from server.web import page, page_number, render, store, user

PERMISSION = "admin.manage"
_RESOURCES = {resource.name: resource for resource in RESOURCES}
MAX_ACTOR = 32  # the longest username


def _filters(request: Request) -> tuple[audit.Filters, dict[str, str], dict[str, str]]:
    """The page's filters from its query, as typed, and a message per bad one."""
    params = request.query_params
    typed = {name: params.get(name, "").strip() for name in ("actor", "entity", "entity_id")}
    errors = {}
    if len(typed["actor"]) > MAX_ACTOR:
        errors["actor"] = _("validation.too_long", label=_("audit.actor"), max=MAX_ACTOR)
    if typed["entity"] and typed["entity"] not in audit.ENTITIES:
        errors["entity"] = _("audit.bad_entity")
    raw_id = typed["entity_id"]
    if raw_id and not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 12):
        errors["entity_id"] = _("audit.bad_entity_id")
    if errors:
        return audit.Filters(), typed, errors
    return audit.Filters(typed["actor"], typed["entity"], int(raw_id) if raw_id else None), \
        typed, errors


def _label(entity: str, name: str) -> str:
    if name == "password":
        return _("audit.field.password")
    if entity == "settings":  # the assessment's weights (server/ledger/assessment.py)
        return _("reports.weights.audit_field", rate=reports.label_of("rate", name))
    resource = _RESOURCES.get(entity)
    field = resource.schema(creating=False).by_name.get(name) if resource else None
    return field.label_text() if field else _(f"audit.field.{name}")


def _text(entity: str, name: str, value) -> str:
    if value is None or value == "":
        return ""
    if name == "password":
        return _("audit.password_changed")
    if name == "active":
        return _("common.active") if value else _("common.inactive")
    if name == "roles":
        return role_names(value)
    if entity == "areas" and name == "level" and str(value) in LEVELS:
        return _(LEVELS[str(value)])
    if entity == "import" and name == "kind":
        return _(f"import.kinds.{value}")
    if entity == "reasons" and name == "list":
        return _(f"reasons.list.{value}")
    if entity == "reasons" and name == "needs_text":
        return _("common.yes") if value else _("common.no")
    if name == "revoke_mode":
        return _(f"audit.revoke_mode.{value}")
    return audit.value_text(value)


def _change(entity: str, name: str, old: dict, new: dict) -> str | None:
    label, after = _label(entity, name), _text(entity, name, new.get(name))
    if name not in old:  # a new record, a password set: no former value to show
        return _("audit.value", field=label, value=after) if after else None
    before = _text(entity, name, old.get(name))
    return _("audit.change", field=label, old=before or _("audit.no_value"),
             new=after or _("audit.no_value"))


def _shown(entry: dict) -> dict:
    """An entry with each changed value as one line of the page (a new record's empty
    fields left out)."""
    old, new = entry["old"], entry["new"]
    names = list(dict.fromkeys([*new, *old]))
    lines = [_change(entry["entity"], name, old, new) for name in names]
    return {**entry, "changes": [line for line in lines if line]}


def _read(db, actor, filters: audit.Filters, page_no: int, typed_actor: str):
    known = not typed_actor or audit.known_actor(db, typed_actor)
    return audit.entries(db, actor, filters, page_no), known


async def audit_page(request: Request):
    filters, typed, errors = _filters(request)
    listing = audit.Listing([], 0, 1)  # nothing is listed under a filter that cannot apply
    if not errors:
        found, known = await store(request).read(_read, user(request), filters,
                                                 page_number(request), typed["actor"])
        if known:
            listing = found
        else:
            errors["actor"] = _("audit.unknown_actor", value=typed["actor"])
    query = urllib.parse.urlencode({key: value for key, value in typed.items() if value})
    return render(request, "admin/audit.html", {
        "title": _("audit.title"),
        "listing": listing,
        "entries": [_shown(entry) for entry in listing.rows],
        "typed": typed,
        "errors": errors,
        "entities": audit.ENTITIES,
        "base_query": "" if errors else query,
    }, status=400 if errors else 200)


def routes():
    return [page("/admin/audit", audit_page, PERMISSION)]
