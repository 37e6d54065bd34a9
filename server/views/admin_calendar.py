"""The 工作日历 page: which years the calendar knows, and entering a year's arrangement.

Entering is two steps: the rows (a file or typed) are checked and shown as a
preview, with the deadlines they would change; the apply button sends the
checked rows back, and they are checked again and applied in one write
transaction. Nothing is saved before that, and nothing if any row is bad.
"""

from __future__ import annotations

import urllib.parse

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from server import calendar_entry, importer
from server.calendar_entry import CalendarRejected
from server.errors import NotFound
from server.i18n import gettext as _
from server.ledger.clock import local_today
from server.web import page, redirect, render, store, user

PERMISSION = "admin.manage"
MAX_SHOWN = 200
TYPED_SOURCE = "typed"


def _overview(db) -> dict:
    today = local_today()
    return {
        "package_years": calendar_entry.package_years(today.year + 2),
        "entered": calendar_entry.entered_years(db),
        "statuses": [(year, calendar_entry.year_known(db, year))
                     for year in (today.year, today.year + 1)],
        "default_year": today.year + 1,
    }


async def _page(request: Request, *, year=None, text="", problems=(), preview=None,
                changes=(), replaces=False, source="", status=200) -> Response:
    data = await store(request).read(_overview)
    problems = list(problems)
    changes = list(changes)
    moved = [change for change in changes if change.moved]
    return render(request, "admin/calendar.html", {
        **data,
        "title": _("calendar.title"),
        "year": year or data["default_year"],
        "text": text,
        "problems": problems[:MAX_SHOWN],
        "hidden_problems": max(0, len(problems) - MAX_SHOWN),
        "preview": preview,
        "moved": moved[:MAX_SHOWN],
        "moved_count": len(moved),
        "flag_only": len(changes) - len(moved),
        "replaces": replaces,
        "source": source,
    }, status=status)


def _year_field(form) -> int:
    return calendar_entry.check_year(str(form.get("year") or "").strip())


async def _checked(request: Request):
    """(the checked rows, where they came from), or the form again with every bad row."""
    form = await request.form()
    text = str(form.get("rows") or "")
    upload = form.get("file")
    try:
        year = _year_field(form)
        if isinstance(upload, UploadFile) and upload.filename:
            content = await upload.read(importer.MAX_BYTES + 1)
            entered = await run_in_threadpool(
                calendar_entry.parse_file, upload.filename, content, year
            )
            source = upload.filename
        else:
            entered = calendar_entry.parse_text(text, year)
            source = str(form.get("source") or TYPED_SOURCE)
    except CalendarRejected as rejected:
        return None, await _page(request, year=str(form.get("year") or ""), text=text,
                                 problems=rejected.problems, status=400)
    return (entered, source), None


def _preview_data(db, entered):
    replaces = db.execute("SELECT 1 FROM calendar_days WHERE day LIKE ? LIMIT 1",
                          [f"{entered.year}-%"]).fetchone() is not None
    return calendar_entry.preview(db, entered), replaces


async def calendar_page(request: Request):
    return await _page(request)


async def calendar_preview(request: Request):
    checked, refused = await _checked(request)
    if refused:
        return refused
    entered, source = checked
    changes, replaces = await store(request).read(_preview_data, entered)
    return await _page(request, year=entered.year, text=entered.as_text(), preview=entered,
                       changes=changes, replaces=replaces, source=source)


async def calendar_apply(request: Request):
    checked, refused = await _checked(request)
    if refused:
        return refused
    entered, source = checked
    applied = await store(request).write(
        calendar_entry.apply_year, entered, user(request).id, source
    )
    return redirect(f"/admin/calendar/{applied.year}?recomputed={len(applied.moved)}")


def _path_year(request: Request) -> int:
    raw = request.path_params["year"]
    if not (raw.isascii() and raw.isdigit() and len(raw) == 4):
        raise NotFound(raw)
    year = int(raw)
    if not calendar_entry.MIN_YEAR <= year <= calendar_entry.MAX_YEAR:
        raise NotFound(raw)
    return year


def _year_data(db, year: int) -> dict:
    source, entries = calendar_entry.year_entries(db, year)
    record = next((row for row in calendar_entry.entered_years(db) if row["year"] == year), None)
    return {"source": source, "entries": entries, "record": record}


async def calendar_year(request: Request):
    year = _path_year(request)
    data = await store(request).read(_year_data, year)
    recomputed = request.query_params.get("recomputed", "")
    applied = None
    if recomputed.isdigit() and data["record"]:
        applied = _("calendar.applied", year=year, holidays=data["record"]["holidays"],
                    workdays=data["record"]["workdays"], count=int(recomputed))
    return render(request, "admin/calendar_year.html",
                  {**data, "year": year, "applied": applied,
                   "title": _("calendar.year_title", year=year)})


async def calendar_export(request: Request):
    year = _path_year(request)
    content = await store(request).read(calendar_entry.export_csv, year)
    filename = urllib.parse.quote(_("calendar.filename", year=year))
    return Response(content, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition":
            f"attachment; filename=\"calendar-{year}.csv\"; filename*=UTF-8''{filename}"
    })


def routes():
    return [
        page("/admin/calendar", calendar_page, PERMISSION),
        page("/admin/calendar/preview", calendar_preview, PERMISSION, methods=["POST"]),
        page("/admin/calendar/apply", calendar_apply, PERMISSION, methods=["POST"]),
        # Before "/admin/calendar/{year}", which would take "2027.csv" for a year.
        page("/admin/calendar/{year}.csv", calendar_export, PERMISSION),
        page("/admin/calendar/{year}", calendar_year, PERMISSION),
    ]
