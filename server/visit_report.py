"""The 走访报告: an office's or a leader's Word document (python-docx) of the visits made in a
period within a scope: visits by official and place, the people met, the problems found and
where each stands now. Everything in it is read from the records; residents appear only
as counts by kind (a visit's summary masks their names, server.masking).
"""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from dataclasses import dataclass, field

from docx import Document
from docx.enum.section import WD_ORIENT
from docx.oxml.ns import qn
from docx.shared import Cm, Pt

from server import authz
from server.areas import path_names
from server.i18n import gettext as _
from server.ledger.queries import local_day_start
from server.timeutil import local
from server.visit_summary import PERSON_KINDS, clip, place_of
from server.visits import CHECKLIST

MAX_DAYS = 366
MAX_VISITS = 2_000  # listed one by one; the counts cover every visit of the period
MAX_PROBLEMS = 2_000
CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


class ReportRequestError(Exception):
    """A report asked for with a bad period or an area outside the user's scope (400)."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


@dataclass(frozen=True)
class ReportRequest:
    start: dt.date
    end: dt.date
    area_code: str | None
    area_name: str
    area_bounds: list[str]


@dataclass
class ReportData:
    request: ReportRequest
    visits: list[dict] = field(default_factory=list)
    visit_count: int = 0
    officials: int = 0
    people: Counter = field(default_factory=Counter)
    problems: list[dict] = field(default_factory=list)
    problem_count: int = 0
    solved_on_spot: int = 0
    closed: int = 0


def _date(params, name: str, errors: dict) -> dt.date | None:
    value = (params.get(name) or "").strip()
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        errors[name] = _("visit_report.bad_date", label=_(f"visit_report.{name}"))
        return None
    if not dt.date(1900, 1, 1) <= day <= dt.date(2999, 12, 31):
        errors[name] = _("visit_report.bad_date", label=_(f"visit_report.{name}"))
        return None
    return day


def parse_request(db, user: authz.User, params) -> ReportRequest:
    """The period (``from``, ``to``: local days, both included) and the area (``area``: a
    code within the user's area; the user's own area when absent). Raises
    ``ReportRequestError`` with a message per bad field."""
    errors: dict[str, str] = {}
    start, end = _date(params, "from", errors), _date(params, "to", errors)
    if start and end and start > end:
        errors["to"] = _("visit_report.end_before_start")
    elif start and end and (end - start).days + 1 > MAX_DAYS:
        errors["to"] = _("visit_report.too_long", days=MAX_DAYS)
    code = (params.get("area") or "").strip() or None
    own = authz.subtree_bounds(user)
    if code is None:
        row = db.execute("SELECT name, path FROM areas WHERE id = ?", [user.area_id]).fetchone()
    else:
        row = db.execute("SELECT name, path FROM areas WHERE code = ?", [code]).fetchone()
        if row is None or not own[0] <= row[1] < own[1]:
            errors["area"] = _("visit_report.area_out_of_scope")
    if errors:
        raise ReportRequestError(errors)
    return ReportRequest(start, end, code, row[0], [row[1], row[1][:-1] + "0"])


def gather(db, user: authz.User, request: ReportRequest) -> ReportData:
    scope, scope_params = authz.record_scope(user, "v")
    where = (f"{scope} AND v.started_at >= ? AND v.started_at < ?"
             " AND v.area_id IN (SELECT id FROM areas WHERE path >= ? AND path < ?)")
    params = [*scope_params, local_day_start(request.start),
              local_day_start(request.end + dt.timedelta(days=1)), *request.area_bounds]
    data = ReportData(request)
    data.visit_count, data.officials = db.execute(
        f"SELECT count(*), count(DISTINCT v.author_id) FROM visits v WHERE {where}", params
    ).fetchone()
    data.people = Counter(dict(db.execute(
        f"SELECT d.person_kind, count(*) FROM diary_entries d JOIN visits v ON v.id = d.visit_id"
        f" WHERE {where} GROUP BY d.person_kind", params).fetchall()))
    paths = path_names(db)
    data.visits = list(db.query(
        "SELECT v.id, v.method, v.place, v.area_id, v.started_at, v.ended_at, v.checklist,"
        " u.display_name AS author_name,"
        " (SELECT count(*) FROM diary_entries d WHERE d.visit_id = v.id) AS people,"
        " (SELECT count(*) FROM problems p WHERE p.visit_id = v.id) AS problems"
        f" FROM visits v JOIN users u ON u.id = v.author_id WHERE {where}"
        " ORDER BY u.display_name, v.started_at LIMIT ?", [*params, MAX_VISITS]))
    for visit in data.visits:
        visit["place"] = place_of(paths.get(visit["area_id"], ("", ""))[0], visit["place"])
        visit["checked"] = sum(item in visit["checklist"] for item in CHECKLIST)
    problem_scope, problem_params = authz.problem_scope(user, "p")
    found = (f"p.visit_id IN (SELECT v.id FROM visits v WHERE {where}) AND {problem_scope}")
    found_params = [*params, *problem_params]
    data.problem_count, data.solved_on_spot, data.closed = db.execute(
        "SELECT count(*), coalesce(sum(p.solved_on_spot), 0),"
        " count(*) FILTER (WHERE p.status = 'closed')"
        f" FROM problems p WHERE {found}", found_params).fetchone()
    data.problems = list(db.query(
        "SELECT p.ledger_no, p.description, p.status, p.area_id, p.deadline, p.solved_on_spot,"
        " u.display_name AS reporter_name, n.name AS unit_name FROM problems p"
        " LEFT JOIN users u ON u.id = p.reporter_id LEFT JOIN units n ON n.id = p.lead_unit_id"
        f" WHERE {found} ORDER BY p.found_at LIMIT ?", [*found_params, MAX_PROBLEMS]))
    for problem in data.problems:
        problem["place"] = paths.get(problem["area_id"], ("", ""))[0]
    return data


def _table(document, headings: list[str], rows: list[list[str]], widths: list[float]):
    table = document.add_table(rows=1, cols=len(headings))
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, headings, strict=True):
        cell.text = text
        for run in cell.paragraphs[0].runs:
            run.bold = True
    for values in rows:
        cells = table.add_row().cells
        for cell, text in zip(cells, values, strict=True):
            cell.text = text
    for row in table.rows:
        for cell, width in zip(row.cells, widths, strict=True):
            cell.width = Cm(width)
    return table


def document(data: ReportData, user: authz.User, now: str) -> bytes:
    """The report as a .docx file (A4 landscape, 宋体-compatible East Asian font)."""
    request = data.request
    doc = Document()
    section = doc.sections[0]
    section.orientation = WD_ORIENT.LANDSCAPE
    section.page_width, section.page_height = Cm(29.7), Cm(21.0)
    for margin in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, margin, Cm(1.8))
    style = doc.styles["Normal"]
    style.font.size = Pt(10.5)
    style.font.name = "SimSun"
    style.element.rPr.rFonts.set(qn("w:eastAsia"), "SimSun")
    doc.add_heading(_("visit_report.title"), level=0)
    doc.add_paragraph(_("visit_report.heading", area=request.area_name,
                        start=request.start.isoformat(), end=request.end.isoformat(),
                        who=user.display_name, at=local(now)))
    sep = _("visit_summary.separator")
    people = sep.join(_("visit_summary.kind_count", kind=_(f"diary.kind_{kind}"),
                        count=data.people[kind]) for kind in PERSON_KINDS if data.people[kind])
    doc.add_heading(_("visit_report.overview"), level=1)
    doc.add_paragraph(_("visit_report.overview_text", visits=data.visit_count,
                        officials=data.officials, people=sum(data.people.values()),
                        kinds=people or _("visit_report.none"), problems=data.problem_count,
                        solved=data.solved_on_spot, closed=data.closed))
    doc.add_heading(_("visit_report.visits"), level=1)
    if data.visit_count > len(data.visits):
        doc.add_paragraph(_("visit_report.capped", shown=len(data.visits), total=data.visit_count))
    _table(doc, [_(f"visit_report.col_{name}") for name in
                 ("official", "time", "place", "method", "checklist", "people", "problems")],
           [[visit["author_name"], local(visit["started_at"]), visit["place"],
             _(f"visit.method_{visit['method']}"),
             f"{visit['checked']}/{len(CHECKLIST)}", str(visit["people"]), str(visit["problems"])]
            for visit in data.visits],
           [3.2, 3.2, 7.5, 3.0, 2.2, 2.0, 2.0])
    doc.add_heading(_("visit_report.problems"), level=1)
    if data.problem_count > len(data.problems):
        doc.add_paragraph(_("visit_report.capped", shown=len(data.problems),
                            total=data.problem_count))
    _table(doc, [_(f"visit_report.col_{name}") for name in
                 ("ledger_no", "place", "description", "reporter", "unit", "status")],
           [[problem["ledger_no"] or "", problem["place"], clip(problem["description"], 60),
             problem["reporter_name"] or "", problem["unit_name"] or "",
             _(f"status.{problem['status']}")
             + (f"{sep}{_('visit_summary.solved_on_spot')}" if problem["solved_on_spot"] else "")]
            for problem in data.problems],
           [3.4, 5.0, 8.0, 2.6, 3.2, 2.8])
    doc.add_paragraph(_("visit_report.privacy"))
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def filename(request: ReportRequest) -> str:
    return f"visit-report-{request.start.isoformat()}-{request.end.isoformat()}.docx"

