"""The office pages over the ledger: the ledger list, my work, diaries, statistics, export."""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.parse

from starlette.requests import Request
from starlette.responses import StreamingResponse

from server import authz
from server.errors import error_page
from server.i18n import catalog
from server.i18n import gettext as _
from server.ledger import (
    assessment,
    charts,
    clock,
    export,
    metrics,
    queries,
    reports,
    similar,
    states,
    supervision,
    work,
    xlsx,
)
from server.ledger.problems import STATUSES
from server.web import page_number, render, store, user
from server.workdays import WorkCalendar

# The ledger ---------------------------------------------------------------------------


def _options(db, actor: authz.User) -> dict[str, list[tuple]]:
    """The filter form's choices, (value, label) per select, in the order shown."""
    found = queries.filter_options(db, actor)

    def labelled(values, prefix):
        return [(value, _(f"{prefix}.{value}")) for value in values]

    return {
        "category": [(row["id"], row["name"]) for row in found["categories"]],
        "area": [(row["code"], "\u3000" * (row["level"] - 1) + row["name"])
                 for row in found["areas"]],
        "unit": [(row["id"], row["name"]) for row in found["units"]],
        "source": labelled(queries.SOURCES, "ledger.source"),
        "urgency": labelled(queries.URGENCIES, "urgency"),
        "overdue": [("yes", _("common.yes")), ("no", _("common.no"))],
        "supervision": labelled(states.SUPERVISION_LEVELS, "supervision"),
        "reporter": [(row["id"], row["display_name"]) for row in found["reporters"]],
    }


# The filters of the ledger's one row; the others wait behind 更多筛选.
PRIMARY_FILTERS = ("area", "category", "unit")


def more_filters_set(f: queries.Filter) -> int:
    """How many of the filters behind 更多筛选 are set (a date range, or a sort and its
    direction, counts once)."""
    keys = set(urllib.parse.parse_qs(f.query_string()))
    ranges = {f"{name}_{end}": name for name in queries.DATE_FILTERS
              for end in ("from", "to")}
    others = keys - {"q", "status", "page", *PRIMARY_FILTERS} - set(ranges)
    if "sort" in others:
        others.discard("dir")
    return len(others) + len({ranges[key] for key in keys & set(ranges)})


def _ledger_data(db, actor: authz.User, f: queries.Filter) -> dict:
    return {**queries.ledger(db, actor, f), "options": _options(db, actor)}


async def ledger_list(request: Request):
    f = queries.parse(request.query_params)
    data = await store(request).read(_ledger_data, user(request), f)
    notices = (queries.refused_notice(f), queries.ignored_notice(f))
    return render(request, "ledger/list.html", {
        **data,
        "f": f,
        "notice": "　".join(filter(None, notices)) or None,
        "statuses": STATUSES,
        "sorts": queries.SORTS,
        "date_filters": queries.DATE_FILTERS,
        "base_query": f.query_string(page=None),
        "cap": queries.COUNT_CAP,
        "primary_filters": PRIMARY_FILTERS,
        "more_set": more_filters_set(f),
    }, status=400 if f.refused else 200)


# Export ---------------------------------------------------------------------------------


def _attachment(extension: str) -> dict:
    name = urllib.parse.quote(f"{_('problem.title')}-{dt.date.today():%Y%m%d}.{extension}")
    return {
        "Content-Disposition": f"attachment; filename=ledger.{extension};"
        f" filename*=UTF-8''{name}",
        "Cache-Control": "no-store",
    }


async def export_csv(request: Request):
    f = queries.parse(request.query_params)
    if f.refused:
        return error_page(request, 400, queries.refused_notice(f))
    db = store(request).export_reader()
    actor = user(request)

    def chunks():
        try:
            yield from export.csv_chunks(export.records(db, actor, f))
        finally:
            db.close()

    return StreamingResponse(chunks(), media_type="text/csv; charset=utf-8",
                             headers=_attachment("csv"))


async def export_xlsx(request: Request):
    f = queries.parse(request.query_params)
    if f.refused:
        return error_page(request, 400, queries.refused_notice(f))
    db = store(request).export_reader()
    actor = user(request)

    def chunks():
        try:
            heading = export.heading(db, actor, f)  # before records() drops a bad filter
            yield from xlsx.chunks(export.records(db, actor, f), heading)
        finally:
            db.close()

    return StreamingResponse(
        chunks(),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers=_attachment("xlsx"),
    )


# My work ----------------------------------------------------------------------------------


def _due_soon_limit(db) -> dt.date:
    # Through a year the calendar does not know yet, Monday to Friday (never a refusal).
    return WorkCalendar.load(db).deadline(clock.local_today(), 3)[0]


def _work_data(db, actor: authz.User, only: str | None, page: int) -> dict:
    queues = work.work_queues(db, actor, _due_soon_limit(db), only, page)
    rows = [row for queue in queues for row in queue["rows"]]
    flags = supervision.open_flags(db, [row["id"] for row in rows])
    for row in rows:
        row["flag"] = flags.get(row["id"])
    to_answer = []
    if authz.HANDLER in actor.roles and only is None:
        to_answer = supervision.unit_queue(db, actor.unit_id)
    return {"queues": queues, "to_answer": to_answer}


async def my_work(request: Request):
    """All the user's work lists, or one of them (``?queue=``) paged to its end."""
    actor = user(request)
    only = request.query_params.get("queue") or None
    if only is not None and only not in work.work_queue_keys(actor):
        return error_page(request, 404)
    data = await store(request).read(_work_data, actor, only, page_number(request))
    return render(request, "ledger/work.html", {**data, "only": only})


# People's diaries -------------------------------------------------------------------------

DIARY_PAGE = 50


def _diary_data(db, actor: authz.User, q: str, page: int) -> dict:
    scope, params = authz.record_scope(actor, "d")
    where, values = scope, list(params)
    if q:
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        columns = ("d.content", "d.person_name", "d.address")
        where += " AND (" + " OR ".join(db.dialect.like(column) for column in columns) + ")"
        values += [like] * len(columns)
    rows = list(db.query(
        "SELECT d.id, d.visit_id, d.person_name, d.person_kind, d.address, d.content,"
        " d.recorded_at, a.name AS area_name, u.display_name AS author_name"
        " FROM diary_entries d JOIN users u ON u.id = d.author_id"
        f" LEFT JOIN areas a ON a.id = d.area_id WHERE {where}"
        " ORDER BY d.recorded_at DESC, d.rowid DESC LIMIT ? OFFSET ?",
        [*values, DIARY_PAGE, (page - 1) * DIARY_PAGE],
    ))
    total = db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM diary_entries d WHERE {where} LIMIT ?) AS found",
        [*values, queries.COUNT_CAP + 1],
    ).fetchone()[0]
    return {"rows": rows, "total": total}


async def diary_list(request: Request):
    q = " ".join(request.query_params.get("q", "").split())[:queries.MAX_QUERY]
    page = min(page_number(request), queries.MAX_PAGE)
    data = await store(request).read(_diary_data, user(request), q, page)
    total = data["total"]
    return render(request, "ledger/diary.html", {
        **data,
        "q": q,
        "page": page,
        "pages": max(1, min(queries.MAX_PAGE, -(-min(total, queries.COUNT_CAP)
                                                     // DIARY_PAGE))),
        "total_label": f"{queries.COUNT_CAP}+" if total > queries.COUNT_CAP
        else str(total),
        "base_query": urllib.parse.urlencode({"q": q}) if q else "",
    })


# Statistics ---------------------------------------------------------------------------------


def _stats_params(params, cfg: dict) -> tuple[metrics.Period, str, int, list[str]]:
    ignored = []
    period = metrics.Period.default()
    start, end = period.start, period.end
    for name in ("from", "to"):
        raw = params.get(name, "").strip()
        if not raw:
            continue
        value = queries._date(raw)
        if value is None:
            ignored.append(name)
        elif name == "from":
            start = value
        else:
            end = value
    if start > end or (end - start).days > metrics.MAX_PERIOD_DAYS:
        ignored += ["from", "to"]
        start, end = period.start, period.end
    rank_by = params.get("rank", "completion")
    if rank_by not in metrics.RATES:
        ignored.append("rank")
        rank_by = "completion"
    min_n = int(cfg["stats_min_sample"])
    raw = params.get("min_n", "").strip()
    if raw:
        value = queries._int(raw)
        if value is None or not 1 <= value <= 10_000:
            ignored.append("min_n")
        else:
            min_n = value
    return metrics.Period(start, end), rank_by, min_n, ignored


# The statistics page opens as a leader's dashboard: a card per rate (every rate of
# metrics.RATES, so a rate added there gets its card), the weekly trend and the units'
# assessment above the fold, the tables below.
TREND_RATES = ("completion", "on_time", "satisfaction")
DASHBOARD_UNITS = 8  # units of the assessment shown beside the trend
# The key rates, as cards above the fold of a 1366x768 screen (one row of eight); every
# rate, these included, is in the table below them.
DASHBOARD_RATES = ("completion", "on_time", "resolution", "satisfaction", "resident_satisfaction",
                   "response", "overdue", "redo")


def previous_period(period: metrics.Period) -> metrics.Period:
    """The period of the same length just before ``period``."""
    length = period.end - period.start + dt.timedelta(days=1)
    return metrics.Period(period.start - length, period.start - dt.timedelta(days=1))


def _stats_data(db, actor: authz.User, period: metrics.Period, rank_by: str, min_n: int,
                cfg: dict, rollup_rows: list[tuple], today: dt.date) -> dict:
    result = metrics.compute(db, actor, period, cfg, rollup_rows, today)
    ranked, unranked = metrics.rank(result["units"], rank_by, min_n)
    assessed = assessment.assess(result["units"], assessment.weights(db), min_n)
    return {**result, "period": period, "rank_by": rank_by, "min_n": min_n,
            "ranked": ranked, "unranked": unranked, "assessed": assessed}


def _stats_side_tables(db, actor: authz.User, period: metrics.Period) -> dict:
    return {"helper_units": metrics.helper_units(db, actor, period),
            "reason_counts": metrics.reason_counts(db, actor, period)}


async def _dashboard_data(request: Request) -> dict:
    """The period's figures, the previous period's totals, the helper units and the counts
    by reason, read on several readers at once (SQLite and psycopg work outside the GIL):
    the page waits for the longest, not for all one after the other. The period's whole
    weeks come from the roll-up in two parts, each on a reader of its own (a city's year
    is 160,000 rows of it: 230 ms in one query on SQLite, 115 ms for each part)."""
    db_store, actor = store(request), user(request)
    cfg = await db_store.read(metrics.settings)
    period, rank_by, min_n, ignored = _stats_params(request.query_params, cfg)
    previous, today = previous_period(period), clock.local_today()
    by_unit, by_area, before, side_tables = await asyncio.gather(
        db_store.read(metrics.rollup_part, actor, period, metrics.UNIT_AND_CATEGORY, today),
        db_store.read(metrics.rollup_part, actor, period, metrics.AREA_AND_WEEK, today),
        db_store.read(metrics.totals, actor, previous, cfg),
        db_store.read(_stats_side_tables, actor, period))
    data = await db_store.read(_stats_data, actor, period, rank_by, min_n, cfg,
                               by_unit + by_area, today)
    return {**data, **side_tables, "ignored": ignored, "previous": previous,
            "previous_rates": before["rates"]}


def _known(key: str) -> bool:
    return key in catalog()


def rate_card(name: str, now: metrics.Rate, before: metrics.Rate, raw: dict,
              cfg: dict) -> dict:
    """One card of the dashboard: the rate, its sample, the change against the previous
    period in percentage points (and whether it is for the better), its 口径 in words."""
    change = None
    if now.value is not None and before.value is not None:
        change = (now.value - before.value) * 100
    better = None
    if change:
        better = (change < 0) if metrics.RATES[name].lower_is_better else (change > 0)
    raw_key = f"stats.raw.{name}"
    return {
        "name": name,
        "label": reports.label_of("rate", name),
        "rate": now,
        "before": before,
        "change": change,
        "better": better,
        "definition": _(f"reports.define.{name}") if _known(f"reports.define.{name}") else "",
        "raw": _(raw_key, w=cfg["satisfaction_weight"], limit=cfg["response_limit_days"],
                 **raw) if _known(raw_key) else "",
    }


async def stats(request: Request):
    data = await _dashboard_data(request)
    weeks = data["weeks"]
    labels = [row.label for row in weeks]
    metric_label = _(f"stats.rate.{data['rank_by']}")
    raw_counts = {name: data["totals"].get(name, 0) for name in [*metrics.COUNTS, *data["totals"]]}
    trend_rates = [name for name in TREND_RATES if name in metrics.RATES]
    charts_svg = {
        "trend": charts.trend(labels, {
            reports.label_of("rate", name): [row.rates[name].value for row in weeks]
            for name in trend_rates
        }, _("stats.trend")),
        "volume": charts.columns(labels, {
            _("stats.count.accepted"): [row.counts["accepted"] for row in weeks],
            _("stats.count.closed"): [row.counts["closed"] for row in weeks],
        }, _("stats.volume")),
        "units": charts.bars(
            [(row.label, row.rates[data["rank_by"]].value, row.rates[data["rank_by"]].n)
             for row in data["ranked"]],
            metric_label,
        ),
    }
    notice = None
    if data["ignored"]:
        names = "、".join(_(f"stats.param.{name}") for name in dict.fromkeys(data["ignored"]))
        notice = _("ledger.ignored", names=names)
    cards = [rate_card(name, data["rates"][name], data["previous_rates"][name], raw_counts,
                       data["settings"]) for name in data["rates"]]
    return render(request, "ledger/stats.html", {
        **data, "charts": charts_svg, "rate_names": list(data["rates"]), "notice": notice,
        "helper_rate_names": list(metrics.HELPER_RATES),
        "raw_counts": raw_counts, "cards": cards, "trend_rates": trend_rates,
        "key_cards": [card for card in cards if card["name"] in DASHBOARD_RATES],
        "dashboard_units": DASHBOARD_UNITS,
        "weights_text": reports.weights_text(data["assessed"].weights),
        "rate_label": lambda name: reports.label_of("rate", name),
    })


# Problem detail: similar problems -------------------------------------------------------------


def similar_context(db, actor: authz.User, problem: dict, actions: list[str]) -> dict:
    """What templates/ledger/_similar.html needs; called by pages._problem_page_data."""
    return {
        "similar": similar.similar(db, actor, problem),
        "can_merge": "merge" in actions,
    }



# Supervision (督办) ---------------------------------------------------------------------------

SUPERVISION_PAGE = 50


def _supervision_data(db, actor: authz.User, page: int) -> dict:
    return supervision.leader_page(db, actor, page, SUPERVISION_PAGE)


async def supervision_list(request: Request):
    """Open orders and flags by unit, with their ages (a leader's and the office's page)."""
    page = page_number(request)
    data = await store(request).read(_supervision_data, user(request), page)
    return render(request, "ledger/supervision.html", {
        **data, "page": page, "pages": max(1, -(-data["total"] // SUPERVISION_PAGE)),
    })
