"""Reports handed up (/reports), one report as an A4 page and as XLSX, and the assessment's
weights (/admin/assessment). The rules are server/ledger/reports.py and assessment.py."""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request
from starlette.responses import Response

from server.errors import NotFound
from server.i18n import gettext as _
from server.ledger import assessment, clock, metrics, reports, xlsx
from server.validation import ValidationError
from server.web import page, page_number, redirect, render, store, user

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# The list and the issue form -----------------------------------------------------------


def _list_data(db, actor, page_no: int) -> dict:
    today = clock.local_today()
    return {
        "listing": reports.listing(db, actor, page_no),
        "scopes": reports.scope_choices(db, actor),
        "periods": {kind: [(period.start.isoformat(), reports.period_label(kind, period))
                           for period in reports.recent(kind, today)]
                    for kind in reports.KINDS},
    }


async def _list_page(request: Request, typed: dict | None = None, errors=None,
                     status: int = 200) -> Response:
    actor = user(request)
    data = await store(request).read(_list_data, actor, page_number(request))
    return render(request, "reports/list.html", {
        **data, "kinds": reports.KINDS, "typed": typed or {"area": str(actor.area_id)},
        "errors": errors or {}, "can_issue": actor.can("reports.issue"),
    }, status=status)


async def report_list(request: Request):
    return await _list_page(request)


async def report_issue(request: Request):
    form = await request.form()
    typed = {name: str(form.get(name) or "") for name in ("kind", "period", "area")}
    try:
        prepared = await store(request).read(reports.prepare, user(request), form)
        report_id = await store(request).write(reports.record, user(request), prepared)
    except ValidationError as error:
        return await _list_page(request, typed, error.errors, status=400)
    return redirect(f"/reports/{report_id}")


# One report -----------------------------------------------------------------------------


def _report_id(request: Request) -> int:
    raw = request.path_params["report_id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) < 12):
        raise NotFound(raw)
    return int(raw)


def _report_data(db, actor, report_id: int) -> dict:
    report = reports.load(db, actor, report_id)
    if report is None:
        raise NotFound(str(report_id))
    frozen = report["data"]["metrics"]
    differences = reports.compare(frozen, reports.today_figures(db, report))
    return {"report": report, "data": report["data"], "differences": differences}


def _view(data: dict) -> dict:
    """What the page and the workbook show, read from the frozen data."""
    frozen = data["data"]
    rates = {name: reports.thaw_rate(value)
             for name, value in (frozen["metrics"].get("rates") or {}).items()}
    ranking = frozen["assessment"]
    return {
        **data,
        "rates": rates,
        "rate_label": lambda name: reports.label_of("rate", name),
        "helper_label": lambda name: reports.label_of("helper_rate", name),
        "ranking": ranking,
        "thaw": reports.thaw_rate,
        "changed": [row for row in data["differences"] if row.differs],
        "weights_text": reports.weights_text(ranking["weights"]),
    }


async def report_page(request: Request):
    data = await store(request).read(_report_data, user(request), _report_id(request))
    return render(request, "reports/report.html", _view(data))


def _percent(rate) -> str:
    return "—" if rate is None else rate.percent()


def _workbook(data: dict) -> bytes:
    view = _view(data)
    report, frozen = view["report"], view["data"]
    names = list(view["rates"])
    ranking = view["ranking"]
    weights = reports.weights_text(ranking["weights"])
    rank_rows = [
        [item["rank"] or _("stats.too_few"), item["row"]["label"],
         None if item["score"] is None else round(item["score"], 2),
         *(_percent(reports.thaw_rate(item["row"]["rates"].get(name)))
           for name in ranking["weights"])]
        for item in [*ranking["ranked"], *ranking["too_few"]]
    ]
    blocks = [
        (_("reports.figures"), [_("stats.metric"), _("stats.value"), _("stats.n")],
         [[view["rate_label"](name), _percent(rate), rate.n if rate else None]
          for name, rate in view["rates"].items()]),
        (_("reports.ranking_title", weights=weights, n=ranking["min_sample"]),
         [_("stats.rank"), _("problem.lead_unit"), _("reports.score"),
          *(view["rate_label"](name) for name in ranking["weights"])], rank_rows),
        (_("reports.overdue_title", total=frozen["overdue"]["total"]),
         [_("reports.col.ledger_no"), _("reports.col.description"), _("reports.col.unit"),
          _("reports.col.deadline")],
         [[row["ledger_no"], row["description"], row["unit"], row["deadline"]]
          for row in frozen["overdue"]["rows"]]),
        (_("reports.flagged_title", total=frozen["flagged"]["total"]),
         [_("reports.col.number"), _("reports.col.ledger_no"), _("reports.col.description"),
          _("reports.col.unit"), _("reports.col.requirement"), _("reports.col.issued_on")],
         [[row["number"], row["ledger_no"], row["description"], row["unit"],
           row["requirement"], row["issued_on"]] for row in frozen["flagged"]["rows"]]),
        (_("reports.categories_title"),
         [_("problem.category"), _("stats.count.accepted"), *map(view["rate_label"], names)],
         [[row["label"], row["counts"].get("accepted", 0),
           *(_percent(reports.thaw_rate(row["rates"].get(name))) for name in names)]
          for row in frozen["top_categories"]]),
        (_("reports.changed_title"),
         [_("stats.metric"), _("reports.issued"), _("reports.today"), _("reports.change")],
         [[row.label, _figure(row.issued), _figure(row.today), _change(row)]
          for row in view["changed"]]),
    ]
    heading = [
        _("reports.heading", scope=report["area_name"], period=report["period_label"]),
        _("reports.issued_line", number=report["number"], by=report["issued_by_name"] or "",
          at=report["issued_at"][:10]),
    ]
    return xlsx.document(_("reports.sheet"), heading, blocks,
                         [16, 30, 14, 12, 24, 12, 12, 12, 12, 12])


def _figure(value) -> str:
    if value is None:
        return _("reports.missing")
    if isinstance(value, metrics.Rate):
        return f"{value.percent()} (n={value.n})"
    return str(value)


def _change(row: reports.Difference) -> str:
    change = row.change
    if change is None:
        return "—"
    return f"{change:+.2f} pp" if row.is_rate else f"{change:+d}"


async def report_xlsx(request: Request):
    data = await store(request).read(_report_data, user(request), _report_id(request))
    content = _workbook(data)
    name = urllib.parse.quote(f"{data['report']['number']}.xlsx")
    return Response(content, media_type=XLSX_TYPE, headers={
        "Content-Disposition": f"attachment; filename=report.xlsx; filename*=UTF-8''{name}",
    })


# The assessment's weights (admin) -------------------------------------------------------


def _weights_data(db) -> dict:
    return {"weights": assessment.weights(db)}


async def _weights_page(request: Request, typed=None, errors=None, saved=False,
                        status: int = 200) -> Response:
    data = await store(request).read(_weights_data)
    current = {name: str(data["weights"].get(name, 0)) for name in assessment.assessable()}
    return render(request, "reports/weights.html", {
        "names": assessment.assessable(), "typed": typed or current, "errors": errors or {},
        "saved": saved, "defaults_text": reports.weights_text(assessment.DEFAULT_WEIGHTS),
        "rate_label": lambda name: reports.label_of("rate", name),
    }, status=status)


async def weights_form(request: Request):
    return await _weights_page(request, saved=request.query_params.get("saved") == "1")


async def weights_save(request: Request):
    form = await request.form()
    typed = {name: str(form.get(name) or "") for name in assessment.assessable()}
    try:
        await store(request).write(assessment.save, user(request).id, form)
    except ValidationError as error:
        return await _weights_page(request, typed, error.errors, status=400)
    return redirect("/admin/assessment?saved=1")


def routes():
    return [
        page("/reports", report_list, "reports.view", name="reports"),
        page("/reports", report_issue, "reports.issue", methods=["POST"]),
        # Before "/reports/{report_id}", which would take "3.xlsx" for an id.
        page("/reports/{report_id}.xlsx", report_xlsx, "reports.view"),
        page("/reports/{report_id}", report_page, "reports.view"),
        page("/admin/assessment", weights_form, "admin.manage"),
        page("/admin/assessment", weights_save, "admin.manage", methods=["POST"]),
    ]
