"""Administration pages: one generic set of list/create/edit views per managed resource,
plus the device list."""

from __future__ import annotations

from starlette.requests import Request

from server import audit, auth, authz, device_health, drafts
from server.accounts import RESOURCE as USERS
from server.areas import RESOURCE as AREAS
from server.categories import RESOURCE as CATEGORIES
from server.errors import NotFound
from server.i18n import gettext as _
from server.resource import Resource
from server.units import RESOURCE as UNITS
from server.validation import ValidationError
from server.views import field_app
from server.web import page, page_number, redirect, render, store, user

RESOURCES: tuple[Resource, ...] = (USERS, UNITS, AREAS, CATEGORIES)


def _record_id(request: Request) -> int:
    raw = request.path_params["record_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise NotFound(raw)
    return int(raw)


def _form_page(request, resource, *, creating, values, errors=None, status=200, options=None):
    title_key = f"admin.{'new' if creating else 'edit'}_{resource.name}"
    return render(
        request,
        "admin/form.html",
        {
            "resource": resource,
            "schema": resource.schema(creating),
            "title": _(title_key),
            "values": values,
            "errors": errors or {},
            "options": options or {},
            "creating": creating,
        },
        status=status,
    )


def _typed_values(schema, pairs) -> dict:
    """A form's values as typed, from its (name, value) pairs; never a password."""
    values = {}
    for key in schema.by_name:
        if key == "password":
            continue
        found = [value for name, value in pairs if name == key]
        values[key] = found if key == "roles" else (found[-1] if found else None)
    return values


async def _draft_values(request: Request, schema) -> dict | None:
    """What was typed into this form before a session expired (server/drafts.py), once."""
    draft = await drafts.take_requested(request, user(request).id)
    if draft is None or draft.path != request.url.path:
        return None
    return _typed_values(schema, draft.fields)


def resource_views(resource: Resource):
    async def list_view(request: Request):
        query = request.query_params.get("q", "").strip()[:50]
        listing = await store(request).read(
            resource.list, user(request), query, page_number(request)
        )
        return render(
            request,
            "admin/list.html",
            {
                "resource": resource,
                "listing": listing,
                "query": query,
                "title": _(f"admin.{resource.name}"),
            },
        )

    async def new_form(request: Request):
        options = await store(request).read(resource.options, user(request))
        values = await _draft_values(request, resource.schema(True)) or {"active": True}
        return _form_page(request, resource, creating=True, values=values, options=options)

    async def edit_form(request: Request):
        record_id = _record_id(request)
        values = await store(request).read(resource.form_values, user(request), record_id)
        values = await _draft_values(request, resource.schema(False)) or values
        options = await store(request).read(resource.options, user(request))
        return _form_page(request, resource, creating=False, values=values, options=options)

    async def save(request: Request):
        creating = "record_id" not in request.path_params
        record_id = None if creating else _record_id(request)
        actor = user(request)
        if record_id is not None:
            await store(request).read(resource.get, actor, record_id)  # 404 if out of scope
        form = await request.form()
        try:
            data = resource.prepare(resource.clean(form, creating))
            if creating:
                record_id = await store(request).write(resource.create, actor, data)
            else:
                await store(request).write(resource.update, actor, record_id, data)
        except ValidationError as error:
            options = await store(request).read(resource.options, actor)
            values = _typed_values(resource.schema(creating), form.multi_items())
            return _form_page(
                request,
                resource,
                creating=creating,
                values=values,
                errors=error.errors,
                status=400,
                options=options,
            )
        return redirect(f"/admin/{resource.name}?saved={record_id}")

    return list_view, new_form, edit_form, save


def resource_routes(resource: Resource):
    list_view, new_form, edit_form, save = resource_views(resource)
    base = f"/admin/{resource.name}"
    perm = "admin.manage"
    return [
        page(base, list_view, perm, name=f"{resource.name}_list"),
        page(f"{base}/new", new_form, perm),
        page(f"{base}/new", save, perm, methods=["POST"]),
        page(base + "/{record_id}", edit_form, perm),
        page(base + "/{record_id}", save, perm, methods=["POST"]),
    ]


# Devices ------------------------------------------------------------------


DEVICE_COLUMNS = ("d.id, d.name, d.created_at, d.last_seen_at, d.revoked_at, d.revoke_mode,"
                  " d.health, d.health_at, u.username, u.display_name")
DEVICES_PAGE = 50


def _devices_at_risk(db, actor: authz.User, version: str) -> list[dict]:
    """The phones in scope, not revoked, whose last report puts records at risk, worst
    first. Read whole: a deployment has one phone per official, thousands at most."""
    clause, params = authz.admin_scope(actor, "u")
    rows = device_health.with_risks(list(db.query(
        f"SELECT {DEVICE_COLUMNS} FROM devices d JOIN users u ON u.id = d.user_id"
        f" WHERE {clause} AND d.revoked_at IS NULL AND d.health IS NOT NULL", params)), version)
    return sorted((row for row in rows if row["risks"]),
                  key=lambda row: (-len(row["risks"]), row["display_name"]))


def _devices(db, actor: authz.User, page_no: int, only_at_risk: bool, version: str):
    at_risk = _devices_at_risk(db, actor, version)
    start = (page_no - 1) * DEVICES_PAGE
    if only_at_risk:
        return at_risk[start:start + DEVICES_PAGE], len(at_risk), len(at_risk)
    clause, params = authz.admin_scope(actor, "u")
    total = db.execute(
        f"SELECT count(*) FROM devices d JOIN users u ON u.id = d.user_id WHERE {clause}", params
    ).fetchone()[0]
    rows = list(
        db.query(
            f"SELECT {DEVICE_COLUMNS} FROM devices d JOIN users u ON u.id = d.user_id"
            f" WHERE {clause} ORDER BY d.revoked_at IS NOT NULL, d.last_seen_at DESC"
            " LIMIT ? OFFSET ?",
            [*params, DEVICES_PAGE, start],
        )
    )
    return device_health.with_risks(rows, version), total, len(at_risk)


def _revoke_in_scope(db, actor: authz.User, device_id: int, mode: str) -> None:
    clause, params = authz.admin_scope(actor, "u")
    row = db.execute(
        f"SELECT d.id FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = ? AND {clause}",
        [device_id, *params],
    ).fetchone()
    if row is None:
        raise NotFound(device_id)
    before = audit.device_states(db, [device_id])
    auth.revoke_device(db, device_id, mode, actor.id)
    audit.record_revocations(db, actor.id, before)


async def devices(request: Request):
    page_no = page_number(request)
    only_at_risk = request.query_params.get("risk") == "1"
    rows, total, at_risk = await store(request).read(
        _devices, user(request), page_no, only_at_risk, field_app.version())
    return render(
        request,
        "admin/devices.html",
        {"devices": rows, "total": total, "page": page_no, "at_risk": at_risk,
         "only_at_risk": only_at_risk, "pages": max(1, -(-total // DEVICES_PAGE))},
    )


async def revoke_device(request: Request):
    form = await request.form()
    mode = form.get("mode")
    if mode not in ("stop", "wipe"):
        return render(
            request, "error.html", {"status": 400, "message": _("errors.http_400")}, status=400
        )
    await store(request).write(_revoke_in_scope, user(request), _record_id(request), mode)
    return redirect("/admin/devices")


def routes():
    result = []
    for resource in RESOURCES:
        result.extend(resource_routes(resource))
    result += [
        page("/admin/devices", devices, "admin.manage"),
        page("/admin/devices/{record_id}/revoke", revoke_device, "admin.manage", methods=["POST"]),
    ]
    return result
