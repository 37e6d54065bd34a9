"""The office's visit pages: the list (with the 走访报告 download), one visit with its
走访小结, and the report itself."""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request
from starlette.responses import Response

from server import authz, visit_report, visit_summary, visits
from server.errors import error_page
from server.ledger import clock, problems, queries
from server.timeutil import now_iso
from server.web import page_number, render, store, user


def _report_form(db, actor: authz.User) -> dict:
    today = clock.local_today()
    return {
        "from": today.replace(day=1).isoformat(),
        "to": today.isoformat(),
        "areas": queries.filter_options(db, actor)["areas"],
    }


async def visit_list(request: Request):
    page_no = page_number(request)
    actor = user(request)
    rows, total = await store(request).read(visits.list_visits, actor, page_no)
    counted = total.value or 0
    report = None
    if "visits.report" in actor.permissions:
        report = await store(request).read(_report_form, actor)
    return render(
        request,
        "visits/list.html",
        {
            "visits": rows,
            "total": total,
            "page": page_no,
            "pages": max(1, min(-(-counted // problems.PAGE_SIZE), queries.MAX_PAGE)),
            "report": report,
        },
    )


async def visit_detail(request: Request):
    visit = await store(request).read(
        visits.get_visit, user(request), request.path_params["visit_id"]
    )
    summary = visit_summary.text(visit_summary.facts_of(visit))
    return render(request, "visits/detail.html", {"visit": visit, "summary": summary})


async def visit_report_docx(request: Request):
    actor = user(request)

    def build(db):
        report = visit_report.parse_request(db, actor, request.query_params)
        return report, visit_report.document(visit_report.gather(db, actor, report), actor,
                                             now_iso())

    try:
        report, body = await store(request).read(build)
    except visit_report.ReportRequestError as error:
        return error_page(request, 400, " ".join(error.errors.values()))
    name = urllib.parse.quote(visit_report.filename(report).replace("visit-report", "走访报告"))
    return Response(body, media_type=visit_report.CONTENT_TYPE, headers={
        "Content-Disposition": f"attachment; filename={visit_report.filename(report)};"
        f" filename*=UTF-8''{name}",
        "Cache-Control": "no-store",
    })



