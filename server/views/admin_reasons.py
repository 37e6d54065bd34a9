"""The 原因选项 page: the four lists of reasons (server/ledger/reasons.py), kept by any
administrator (the lists are city-wide, like the categories and the calendar).

Every change is one small form posting to ``/admin/reasons`` (add an option) or
``/admin/reasons/{record_id}`` (rename, move, deactivate or reactivate, mark as needing a
note); a refused change shows the page again with the message beside its form, status 400,
nothing saved.
"""

from __future__ import annotations

from starlette.requests import Request

from server.i18n import gettext as _
from server.ledger import reasons
from server.validation import ValidationError
from server.views.admin import _record_id
from server.web import page, redirect, render, store, user

PERMISSION = "admin.manage"

# What a post to an option does: (the reasons function, its argument).
CHANGES = {
    "up": (reasons.move, -1),
    "down": (reasons.move, 1),
    "deactivate": (reasons.set_active, False),
    "reactivate": (reasons.set_active, True),
    "needs_text": (reasons.set_needs_text, True),
    "no_needs_text": (reasons.set_needs_text, False),
}


async def _page(request: Request, *, failed=None, values=None, errors=None, status=200):
    lists = await store(request).read(reasons.all_lists)
    return render(request, "admin/reasons.html", {
        "title": _("reasons.title"),
        "lists": lists,
        "failed": failed,  # ("add", list) or ("option", id): the form the errors belong to
        "values": values or {},
        "errors": errors or {},
        "saved": request.query_params.get("saved") == "1",
    }, status=status)


async def reasons_page(request: Request):
    return await _page(request)


def _flag(value) -> bool:
    return str(value or "") in ("1", "on", "true")


async def add_option(request: Request):
    form = await request.form()
    list_name = str(form.get("list") or "")
    label = form.get("label")
    if list_name not in reasons.LISTS:
        return await _page(request, errors={"form": _("reasons.no_such_list")}, status=400)
    try:
        await store(request).write(reasons.add, user(request).id, list_name, label,
                                   _flag(form.get("needs_text")))
    except ValidationError as error:
        return await _page(request, failed=("add", list_name),
                           values={"label": label or "", "needs_text": _flag(
                               form.get("needs_text"))},
                           errors=error.errors, status=400)
    return redirect(f"/admin/reasons?saved=1#list-{list_name}")


async def change_option(request: Request):
    option_id = _record_id(request)
    form = await request.form()
    op = str(form.get("op") or "")
    try:
        if op == "rename":
            await store(request).write(reasons.rename, user(request).id, option_id,
                                       form.get("label"))
        elif op in CHANGES:
            change, argument = CHANGES[op]
            await store(request).write(change, user(request).id, option_id, argument)
        else:
            return await _page(request, errors={"form": _("reasons.bad_request")}, status=400)
    except ValidationError as error:
        return await _page(request, failed=("option", option_id),
                           values={"label": form.get("label") or ""}, errors=error.errors,
                           status=400)
    return redirect(f"/admin/reasons?saved=1#option-{option_id}")


def routes():
    return [
        page("/admin/reasons", reasons_page, PERMISSION, name="admin_reasons"),
        page("/admin/reasons", add_option, PERMISSION, methods=["POST"]),
        page("/admin/reasons/{record_id}", change_option, PERMISSION, methods=["POST"]),
    ]
