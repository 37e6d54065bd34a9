"""Reports handed up (周报 / 月报 / 季报): issued once for a period and a scope, frozen.

A report stores, as JSON (table ``reports``, migration m020), everything it shows, as it
stood when issued: the whole output of ``metrics.compute`` (``freeze``, generically, so a
figure added to metrics is frozen too), the assessment (考核) with the weights it used,
and the lists an office hands up (overdue problems, flagged problems, the categories with
most problems). Reading a report never recomputes it; ``compare`` walks the frozen
figures beside today's computation for the same period and scope and gives the
difference of each, a figure missing on one side shown as missing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping

from server import authz
from server.i18n import catalog
from server.i18n import gettext as _
from server.ledger import assessment, clock, metrics, numbering
from server.ledger.queries import local_day_start
from server.paging import PAGE_SIZE, Listing
from server.timeutil import now_iso
from server.validation import ValidationError

KINDS = ("week", "month", "quarter")
LIST_LIMIT = 50  # rows of each list a report keeps (the total is kept too)
TOP_CATEGORIES = 10
RECENT_PERIODS = 12  # complete periods offered on the issue form, per kind


# Periods -------------------------------------------------------------------------------


def period_of(kind: str, start: dt.date) -> metrics.Period:
    """The week (from a Monday), month or quarter (from its first day) starting ``start``."""
    if kind == "week":
        return metrics.Period(start, start + dt.timedelta(days=6))
    months = 1 if kind == "month" else 3
    year, month = divmod(start.month - 1 + months, 12)
    return metrics.Period(start, dt.date(start.year + year, month + 1, 1) - dt.timedelta(days=1))


def starts(kind: str, day: dt.date) -> dt.date:
    """The first day of the period of ``kind`` that holds ``day``."""
    if kind == "week":
        return metrics.monday(day)
    if kind == "month":
        return day.replace(day=1)
    return dt.date(day.year, (day.month - 1) // 3 * 3 + 1, 1)


def recent(kind: str, today: dt.date, count: int = RECENT_PERIODS) -> list[metrics.Period]:
    """The last ``count`` periods of ``kind`` that have ended before ``today``, latest first."""
    periods, start = [], starts(kind, today)
    for _index in range(count):
        start = starts(kind, start - dt.timedelta(days=1))
        periods.append(period_of(kind, start))
    return periods


def period_label(kind: str, period: metrics.Period) -> str:
    start = period.start
    if kind == "week":
        iso_year, week, _day = start.isocalendar()
        return _("reports.period.week", year=iso_year, week=week, start=f"{start:%m-%d}",
                 end=f"{period.end:%m-%d}")
    if kind == "month":
        return _("reports.period.month", year=start.year, month=start.month)
    return _("reports.period.quarter", year=start.year, quarter=(start.month - 1) // 3 + 1)


# Scope ---------------------------------------------------------------------------------


def scope_user(db, area_id: int) -> authz.User:
    """The user whose problem scope is the area's subtree alone, as an office there would
    see it: the statistics of a report are those of the area's own statistics page."""
    row = db.execute("SELECT id, path, name FROM areas WHERE id = ?", [area_id]).fetchone()
    return authz.User(id=0, username="", display_name="", roles=frozenset({authz.OFFICE}),
                      area_id=row[0], area_path=row[1], unit_id=None, area_name=row[2])


def in_scope(db, actor: authz.User, area_id) -> bool:
    if not isinstance(area_id, int):
        return False
    row = db.execute("SELECT path FROM areas WHERE id = ?", [area_id]).fetchone()
    return row is not None and row[0].startswith(actor.area_path) and bool(
        actor.roles & {authz.OFFICE, authz.LEADER})


def scope_choices(db, actor: authz.User) -> list[tuple[int, str]]:
    """The areas a report may be issued for: the user's own and those below it down to the
    towns (or one level down when the user is below the towns)."""
    deepest = max(3, actor.area_depth + 1)
    return [(row[0], "\u3000" * (row[2] - actor.area_depth) + row[1]) for row in db.execute(
        "SELECT id, name, level FROM areas WHERE path >= ? AND path < ? AND level <= ?"
        " ORDER BY path", [*authz.subtree_bounds(actor), deepest])]


# Freezing ------------------------------------------------------------------------------


def freeze(value):
    """``value`` as plain JSON data, whatever it holds: dataclasses as their fields (a
    ``metrics.Rate`` also with its value), mappings with text keys, dates as ISO text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        plain = {field.name: freeze(getattr(value, field.name))
                 for field in dataclasses.fields(value)}
        if isinstance(value, metrics.Rate):
            plain["value"] = value.value
        return plain
    if isinstance(value, Mapping):
        return {("" if key is None else str(key)): freeze(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [freeze(item) for item in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def thaw_rate(frozen: dict | None) -> metrics.Rate | None:
    if not isinstance(frozen, dict) or "n" not in frozen:
        return None
    return metrics.Rate(frozen.get("numerator") or 0, frozen["n"])


# Issuing -------------------------------------------------------------------------------


def parse(db, actor: authz.User, form) -> tuple[str, metrics.Period, int]:
    """(kind, period, area id) from the issue form; ValidationError naming each problem."""
    errors = {}
    kind = str(form.get("kind") or "").strip()
    if kind not in KINDS:
        errors["kind"] = _("reports.bad_kind")
    raw_start = str(form.get("period") or "").strip()
    period = None
    try:
        start = dt.date.fromisoformat(raw_start)
    except ValueError:
        errors["period"] = _("reports.bad_period")
    else:
        if kind in KINDS:
            if starts(kind, start) != start:
                errors["period"] = _("reports.bad_period_start")
            else:
                period = period_of(kind, start)
                if period.end >= clock.local_today():
                    errors["period"] = _("reports.not_ended", end=period.end.isoformat())
    raw_area = str(form.get("area") or "").strip()
    area_id = int(raw_area) if raw_area.isascii() and raw_area.isdigit() else None
    if not in_scope(db, actor, area_id):
        errors["area"] = _("reports.bad_area")
    if errors:
        raise ValidationError(errors)
    return kind, period, area_id


def contents(db, area_id: int, period: metrics.Period) -> dict:
    """Everything a report shows, computed now, as plain JSON data."""
    scope = scope_user(db, area_id)
    result = metrics.compute(db, scope, period)
    weights = assessment.weights(db)
    min_sample = int(result["settings"]["stats_min_sample"])
    assessed = assessment.assess(result["units"], weights, min_sample)
    categories = sorted(result["categories"],
                        key=lambda row: (-row.counts["accepted"], row.label))[:TOP_CATEGORIES]
    return {
        "metrics": freeze(result),
        # The figures the statistics page computes beside compute(), frozen the same way.
        "helper_units": freeze(metrics.helper_units(db, scope, period)),
        "reason_counts": freeze(metrics.reason_counts(db, scope, period)),
        "assessment": freeze(assessed),
        "top_categories": freeze(categories),
        "overdue": overdue_list(db, scope, period),
        "flagged": flagged_list(db, scope),
        "scope_name": scope.area_name,
    }


def prepare(db, actor: authz.User, form) -> dict:
    """A report from the form, computed (on a reader: the write only stores it)."""
    kind, period, area_id = parse(db, actor, form)
    return {"kind": kind, "period_start": period.start.isoformat(),
            "period_end": period.end.isoformat(), "area_id": area_id,
            "data": json.dumps(contents(db, area_id, period), ensure_ascii=False)}


def record(db, actor: authz.User, prepared: dict) -> int:
    """Store a prepared report with its number, in the caller's write transaction; its id."""
    number = numbering.next_number(db, "report", clock.local_today().year)
    return db["reports"].insert({**prepared, "number": number, "issued_by": actor.id,
                                 "issued_at": now_iso()}).last_pk


def issue(db, actor: authz.User, form) -> int:
    """Issue a report from the form in the caller's write transaction; its id."""
    return record(db, actor, prepare(db, actor, form))


def overdue_list(db, scope: authz.User, period: metrics.Period) -> dict:
    """Problems of the period's cohort still open past their deadline, the longest first."""
    where, params = authz.problem_scope(scope, "p")
    sql = (
        " FROM problems p LEFT JOIN units u ON u.id = p.lead_unit_id"
        " WHERE p.accepted_at >= ? AND p.accepted_at < ?"
        " AND p.status NOT IN ('rejected', 'merged', 'closed')"
        f" AND p.deadline IS NOT NULL AND p.deadline < ? AND {where}"
    )
    values = [local_day_start(period.start),
              local_day_start(period.end + dt.timedelta(days=1)),
              clock.local_today().isoformat(), *params]
    rows = [dict(row) for row in db.query(
        "SELECT p.ledger_no, substr(p.description, 1, 60) AS description, p.status,"
        f" p.deadline, u.name AS unit{sql} ORDER BY p.deadline, p.ledger_no LIMIT ?",
        [*values, LIST_LIMIT])]
    total = db.execute(f"SELECT count(*){sql}", values).fetchone()[0]
    return {"rows": rows, "total": total}


def flagged_list(db, scope: authz.User) -> dict:
    """The open 挂牌督办 of the scope's problems at issue, the oldest first."""
    where, params = authz.problem_scope(scope, "p")
    sql = (
        " FROM supervision_orders o JOIN problems p ON p.id = o.problem_id"
        " LEFT JOIN units u ON u.id = o.unit_id"
        f" WHERE o.kind = 'flag' AND o.closed_at IS NULL AND {where}"
    )
    rows = [dict(row) for row in db.query(
        "SELECT o.number, p.ledger_no, substr(p.description, 1, 60) AS description,"
        " o.requirement, substr(o.issued_at, 1, 10) AS issued_on, u.name AS unit"
        f"{sql} ORDER BY o.issued_at LIMIT ?", [*params, LIST_LIMIT])]
    total = db.execute(f"SELECT count(*){sql}", params).fetchone()[0]
    return {"rows": rows, "total": total}


# Reading -------------------------------------------------------------------------------

_COLUMNS = ("r.id, r.number, r.kind, r.period_start, r.period_end, r.area_id, r.issued_at,"
            " a.name AS area_name, us.display_name AS issued_by_name")
_FROM = (" FROM reports r JOIN areas a ON a.id = r.area_id"
         " LEFT JOIN users us ON us.id = r.issued_by")


def _scope(actor: authz.User) -> tuple[str, list]:
    if not actor.roles & {authz.OFFICE, authz.LEADER}:
        return "1 = 0", []
    return authz.area_subtree(actor, "r.area_id")


def listing(db, actor: authz.User, page: int) -> Listing:
    """The reports of areas in the user's subtree, the newest first."""
    where, params = _scope(actor)
    rows = [_described(dict(row)) for row in db.query(
        f"SELECT {_COLUMNS}{_FROM} WHERE {where} ORDER BY r.issued_at DESC, r.id DESC"
        " LIMIT ? OFFSET ?", [*params, PAGE_SIZE, (page - 1) * PAGE_SIZE])]
    total = db.execute(f"SELECT count(*) FROM reports r WHERE {where}", params).fetchone()[0]
    return Listing(rows, total, page)


def load(db, actor: authz.User, report_id: int) -> dict | None:
    """The report with its frozen data, or None when it is not there or not in scope."""
    where, params = _scope(actor)
    row = next(db.query(f"SELECT {_COLUMNS}, r.data{_FROM} WHERE r.id = ? AND {where}",
                        [report_id, *params]), None)
    if row is None:
        return None
    report = _described(dict(row))
    report["data"] = json.loads(report["data"])
    return report


def _described(report: dict) -> dict:
    report["period"] = metrics.Period(dt.date.fromisoformat(report["period_start"]),
                                      dt.date.fromisoformat(report["period_end"]))
    report["period_label"] = period_label(report["kind"], report["period"])
    return report


# Comparing with today ------------------------------------------------------------------


@dataclasses.dataclass
class Difference:
    name: str
    label: str
    issued: metrics.Rate | int | None  # None: not in the report
    today: metrics.Rate | int | None  # None: not computed today

    @property
    def is_rate(self) -> bool:
        return isinstance(self.issued, metrics.Rate) or isinstance(self.today, metrics.Rate)

    @property
    def change(self) -> float | None:
        """Today less issued: percentage points for a rate, a count for a count; None when
        either side is missing (or a rate has no sample)."""
        if self.issued is None or self.today is None:
            return None
        if self.is_rate:
            if self.issued.value is None or self.today.value is None:
                return None
            return (self.today.value - self.issued.value) * 100
        return self.today - self.issued

    @property
    def differs(self) -> bool:
        if self.issued is None or self.today is None:
            return True
        if self.is_rate:
            return (self.issued.value, self.issued.n) != (self.today.value, self.today.n)
        return self.issued != self.today


LABEL_KEYS = {"rate": "stats.rate.{}", "count": "reports.count.{}",
              "helper_rate": "joint.stats.rate.{}"}


def label_of(kind: str, name: str) -> str:
    """A figure's label from the catalog (``stats.rate.*``, ``reports.count.*``,
    ``joint.stats.rate.*``), or its code when the catalog has none (a figure added later)."""
    key = LABEL_KEYS[kind].format(name)
    return _(key) if key in catalog() else name


def weights_text(weights: dict) -> str:
    """办结率 30、按期办结率 30、满意率 40"""
    return "、".join(f"{label_of('rate', name)} {weight}" for name, weight in weights.items())


def compare(frozen: dict, today: dict) -> list[Difference]:
    """Each rate, then each count, of the frozen ``metrics`` beside today's
    ``metrics.compute`` result frozen the same way; in the report's order, then those
    only today has."""
    differences = []
    issued_rates, today_rates = frozen.get("rates") or {}, today.get("rates") or {}
    for name in dict.fromkeys([*issued_rates, *today_rates]):
        differences.append(Difference(name, label_of("rate", name),
                                      thaw_rate(issued_rates.get(name)),
                                      thaw_rate(today_rates.get(name))))
    issued_counts, today_counts = frozen.get("totals") or {}, today.get("totals") or {}
    for name in dict.fromkeys([*issued_counts, *today_counts]):
        differences.append(Difference(name, label_of("count", name),
                                      issued_counts.get(name), today_counts.get(name)))
    return differences


def today_figures(db, report: dict) -> dict:
    """Today's computation for the report's period and scope, frozen as a report is."""
    return freeze(metrics.compute(db, scope_user(db, report["area_id"]), report["period"]))
