"""Every statistic of the ledger, in one place: what is counted, and how each rate is formed.

docs/metrics.md explains each definition exactly as coded here; change both together.

The population ("cohort") of every figure: the problems in the user's
``authz.problem_scope`` that were accepted (立案, ``accepted_at``) in the
period, Asia/Shanghai days ``start``..``end`` inclusive, and are not rejected
or merged (those count nowhere). Each problem is taken as it stands at the
cut-off, the moment the page is computed.

Each problem's ``features`` (small numbers computed in SQL, packed into one
integer) are counted per unit, category, child area, week and features
(``grouped_counts``: whole weeks from the roll-up of migrations m009/m011, the rest
from the problems); ``COUNTS`` says, from the features, whether a problem
counts toward each number; ``RATES`` divides the counts. A rate with a zero
denominator is None (shown as "—"), never 0%.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from server import authz
from server.db.dialect import SQLITE, Dialect
from server.ledger.clock import local_today
from server.ledger.queries import local_day_start
from server.settings import SETTINGS, settings  # noqa: F401 (metrics.settings)

MAX_PERIOD_DAYS = 3 * 366

# What is read from each problem of the cohort: features(), small numbers computed
# in SQL (NULL counts as 0), each given ``bits`` in one integer per row.
# A valid callback: the resident was reached and answered both questions.
VALID_CALLBACK = (
    "p.callback_reached = 1 AND p.callback_solved IS NOT NULL AND p.satisfaction IS NOT NULL"
)
SATISFACTION_CODES = {"satisfied": 1, "basically": 2, "unsatisfied": 3}
# How a problem was closed without a valid callback (problems.closure_kind); 0 otherwise.
CLOSURE_CODES = {"unreachable": 1, "no_contact": 2, "explained": 3}
NO_DEADLINE, DEADLINE_AHEAD, DEADLINE_PASSED = 0, 1, 2
UNIT_NONE, UNIT_ON_TIME, UNIT_LATE, UNIT_HOLDS = 0, 1, 2, 3

@functools.cache
def features(dialect: Dialect) -> dict[str, tuple[str, int]]:
    """Each feature's SQL in ``dialect``, and its bits. SQLite's spelling is the one the
    statistics index and the roll-up's triggers froze (see STORED_FEATURES)."""
    local_day = dialect.local_day
    return {
        "closed": ("p.status = 'closed'", 1),
        # Closed on or before the deadline in force: frozen by the workflow at closing
        # (closed_on_time); without it, the local closing day against the deadline.
        "on_time": (
            "p.status = 'closed' AND coalesce(p.closed_on_time, "
            + dialect.as_int(f"p.deadline IS NULL OR {local_day('p.closed_at')} <= p.deadline")
            + ") = 1",
            1,
        ),
        "replied": ("p.outcome IS NOT NULL", 1),
        "claimed_solved": ("p.outcome = 'solved'", 1),
        "valid_callback": (VALID_CALLBACK, 1),
        "resident_solved": ("p.callback_solved = 1", 1),
        "satisfaction": (
            "CASE p.satisfaction "
            + " ".join(f"WHEN '{name}' THEN {code}" for name, code in SATISFACTION_CODES.items())
            + " ELSE 0 END",
            2,
        ),
        # With a unit now (its dispatch starts the response clock; a justified return
        # takes the problem away from the unit that returned it).
        "dispatched": ("p.unit_dispatched_at IS NOT NULL", 1),
        # Signed, with the resident contacted, within the response time from the current
        # unit's dispatch: frozen at signing (server.ledger.deadlines.responded_in_time).
        "responded": (dialect.same("p.responded_in_time", "1"), 1),
        "closure": (
            "CASE p.closure_kind "
            + " ".join(f"WHEN '{name}' THEN {code}" for name, code in CLOSURE_CODES.items())
            + " ELSE 0 END",
            2,
        ),
        # Reopened by a 回头看 at least once (反弹).
        "relapsed": ("p.relapsed = 1", 1),
        # The resident's own rating on the tracking page (群众自评, server/ledger/tracking.py).
        "resident_rating": (
            "CASE p.resident_rating "
            + " ".join(f"WHEN '{name}' THEN {code}" for name, code in SATISFACTION_CODES.items())
            + " ELSE 0 END",
            2,
        ),
        # The lead unit's reply against the deadline in force: 1 replied on or before it,
        # 2 after it, 3 still in the unit's hands (no reply standing), 0 no unit or no
        # deadline, or closed without a reply.
        "unit_reply": (
            f"CASE WHEN p.lead_unit_id IS NULL OR p.deadline IS NULL THEN {UNIT_NONE}"
            f" WHEN p.status IN ('dispatched', 'handling') THEN {UNIT_HOLDS}"
            f" WHEN p.replied_at IS NULL THEN {UNIT_NONE}"
            f" WHEN {local_day('p.replied_at')} <= p.deadline THEN {UNIT_ON_TIME}"
            f" ELSE {UNIT_LATE} END",
            2,
        ),
        # Closed on or before the original deadline (the first one, before any extension).
        "on_time_original": (
            "p.status = 'closed' AND (coalesce(p.original_deadline, p.deadline) IS NULL"
            f" OR {local_day('p.closed_at')} <= coalesce(p.original_deadline, p.deadline))",
            1,
        ),
        # Sent back to the unit to be done again (重办) at least once.
        "redone": ("p.redo_count > 0", 1),
        # Returned by a unit at least once when the office found the return not justified.
        "unjustified_return": ("p.unjustified_returns > 0", 1),
        # cfg.today: the local (Asia/Shanghai) day at the cut-off.
        "deadline": (
            f"CASE WHEN p.deadline IS NULL THEN {NO_DEADLINE}"
            f" WHEN p.deadline < cfg.today THEN {DEADLINE_PASSED} ELSE {DEADLINE_AHEAD} END",
            2,
        ),
    }


# Each feature's bits, in packing order (the same in every dialect).
FEATURE_SIZES: dict[str, int] = {name: bits for name, (_sql, bits) in features(SQLITE).items()}


def _judged(f: dict) -> bool:
    """A sample of 解决率 and 满意率: a valid callback, and not closed in a way of its own
    (无法回访, 无回访对象, 解释说明办结: counted apart, beside the rates)."""
    return f["valid_callback"] and not (f["closed"] and f["closure"])


def _resolution_sample(f: dict) -> bool:
    """A sample of 解决率: judged, or relapsed (a relapse is not solved, answered or not),
    unless closed in a way of its own."""
    return _judged(f) or (f["relapsed"] and not (f["closed"] and f["closure"]))


def _unit_due(f: dict) -> bool:
    """A sample of 单位按期答复率: the unit replied, or holds the problem past its deadline."""
    return f["unit_reply"] in (UNIT_ON_TIME, UNIT_LATE) or (
        f["unit_reply"] == UNIT_HOLDS and f["deadline"] == DEADLINE_PASSED)


def _sat(f: dict, name: str) -> bool:
    return _judged(f) and f["satisfaction"] == SATISFACTION_CODES[name]


def _rated(name: str | None) -> Callable[[dict], bool]:
    """Rated by the resident on the tracking page (at all, or as ``name``)."""
    if name is None:
        return lambda f: f["resident_rating"] != 0
    return lambda f: f["resident_rating"] == SATISFACTION_CODES[name]


def _closed_as(kind: str) -> Callable[[dict], bool]:
    return lambda f: f["closed"] and f["closure"] == CLOSURE_CODES[kind]


# For one problem (its features ``f``), whether it counts toward each number.
COUNTS: dict[str, Callable[[dict], bool]] = {
    "accepted": lambda f: True,
    "closed": lambda f: f["closed"],
    "closed_on_time": lambda f: f["closed"] and f["on_time"],
    "closed_on_time_original": lambda f: f["closed"] and f["on_time_original"],
    "replied": lambda f: f["replied"],
    "claimed_solved": lambda f: f["claimed_solved"],
    "valid_callbacks": _judged,
    "resolution_sample": _resolution_sample,
    # A relapsed problem is never solved, whatever a later callback says.
    "solved": lambda f: _judged(f) and f["resident_solved"] and not f["relapsed"],
    "satisfied": lambda f: _sat(f, "satisfied"),
    "basically": lambda f: _sat(f, "basically"),
    "unsatisfied": lambda f: _sat(f, "unsatisfied"),
    "dispatched": lambda f: f["dispatched"],
    "responded": lambda f: f["responded"],
    "closed_unreachable": _closed_as("unreachable"),  # 无法回访办结
    "closed_no_contact": _closed_as("no_contact"),  # 无回访对象办结
    "closed_explained": _closed_as("explained"),  # 解释说明办结
    "relapsed": lambda f: f["relapsed"],  # 反弹
    # The resident's own rating (群众自评): every rated problem is a sample, whatever its
    # state or callback, since the resident judged it.
    "resident_rated": _rated(None),
    "resident_satisfied": _rated("satisfied"),
    "resident_basically": _rated("basically"),
    "resident_unsatisfied": _rated("unsatisfied"),
    "unit_due": _unit_due,
    "unit_on_time": lambda f: f["unit_reply"] == UNIT_ON_TIME,
    "redone": lambda f: f["redone"],  # 重办
    "unjustified_return": lambda f: f["unjustified_return"] and f["dispatched"],
    # Due: a deadline that has passed, or that was settled by closing.
    "due": lambda f: f["deadline"] != NO_DEADLINE
    and (f["closed"] or f["deadline"] == DEADLINE_PASSED),
    # Overdue: closed late, or open past the deadline.
    "overdue": lambda f: f["deadline"] != NO_DEADLINE
    and ((f["closed"] and not f["on_time"])
         or (not f["closed"] and f["deadline"] == DEADLINE_PASSED)),
}


FEATURE_BITS = sum(FEATURE_SIZES.values())
DIM_BITS = 20  # category ids below 2**20


def packed_features_sql(dialect: Dialect, count: int = len(FEATURE_SIZES)) -> str:
    """One integer per row holding every feature (or the first ``count``), each in its bits."""
    parts, shift = [], 0
    for sql, bits in list(features(dialect).values())[:count]:
        parts.append(f"({dialect.flag(sql)} << {shift})")
        shift += bits
    return " | ".join(parts)


# The features that depend on the problem row alone, not on today, the calendar or the
# settings: the first ones of features(). Their packed value is an expression of the index
# STATS_INDEX (migration m011, before it m009), which must spell it exactly as
# stored_features_sql() does (tests/test_metrics_fast.py checks that it does); else SQLite
# computes it for every row.
STORED_FEATURES = ("closed", "on_time", "replied", "claimed_solved", "valid_callback",
                   "resident_solved", "satisfaction", "dispatched", "responded", "closure",
                   "relapsed", "resident_rating", "unit_reply", "on_time_original", "redone",
                   "unjustified_return")
STATS_INDEX = "idx_problems_stats_features"
STATS_AREA_INDEX = "idx_problems_stats_area"  # the same, led by area_id (migration m009)


def stored_features_sql(dialect: Dialect) -> str:
    """The leading part of packed_features_sql() that STATS_INDEX stores."""
    assert tuple(FEATURE_SIZES)[:len(STORED_FEATURES)] == STORED_FEATURES
    return packed_features_sql(dialect, len(STORED_FEATURES))


def unpack(mask: int) -> dict[str, int]:
    features, shift = {}, 0
    for name, bits in FEATURE_SIZES.items():
        features[name] = (mask >> shift) & ((1 << bits) - 1)
        shift += bits
    return features


def counts_of(mask: int, n: int = 1) -> dict[str, int]:
    """The counts for ``n`` problems sharing the packed features ``mask``."""
    features = unpack(mask)
    return {name: n if test(features) else 0 for name, test in COUNTS.items()}


@functools.cache
def _one(mask: int) -> dict[str, int]:
    return counts_of(mask)


@dataclass(frozen=True)
class RateDef:
    numerator: tuple[str, ...]  # counts added up (the second weighted by w for 满意率)
    denominator: str
    weighted: bool = False
    lower_is_better: bool = False


RATES: dict[str, RateDef] = {
    "completion": RateDef(("closed",), "accepted"),  # 办结率
    # 全流程按期办结率: closed by the deadline in force (extensions included), and by the
    # original deadline
    "on_time": RateDef(("closed_on_time",), "closed"),
    "on_time_original": RateDef(("closed_on_time_original",), "closed"),
    # 单位按期答复率: the unit's reply by the deadline in force (the office's callback and an
    # unreachable resident are not the unit's time)
    "unit_on_time": RateDef(("unit_on_time",), "unit_due"),
    "resolution": RateDef(("solved",), "resolution_sample"),  # 解决率 (the resident's answer)
    "claimed": RateDef(("claimed_solved",), "replied"),  # the units' own "solved" share
    "satisfaction": RateDef(("satisfied", "basically"), "valid_callbacks", weighted=True),  # 满意率
    # 群众自评满意率: the residents' own ratings, unweighted (see docs/metrics.md).
    "resident_satisfaction": RateDef(("resident_satisfied", "resident_basically"),
                                     "resident_rated"),
    "response": RateDef(("responded",), "dispatched"),  # 响应率
    "overdue": RateDef(("overdue",), "due", lower_is_better=True),  # 超期率
    "redo": RateDef(("redone",), "replied", lower_is_better=True),  # 重办率
    # 不当退单率: returns the office found not justified
    "unjustified_return": RateDef(("unjustified_return",), "dispatched", lower_is_better=True),
}


@dataclass(frozen=True)
class Rate:
    numerator: float
    n: int  # the sample size: the denominator

    @property
    def value(self) -> float | None:
        return self.numerator / self.n if self.n else None

    def percent(self) -> str:
        return "—" if self.value is None else f"{self.value * 100:.2f}%"


def rate(counts: dict, name: str, weight: float) -> Rate:
    definition = RATES[name]
    parts = [counts.get(part, 0) for part in definition.numerator]
    numerator = parts[0] + weight * parts[1] if definition.weighted else sum(parts)
    return Rate(numerator, counts.get(definition.denominator, 0))


def rates(counts: dict, weight: float) -> dict[str, Rate]:
    return {name: rate(counts, name, weight) for name in RATES}


# Settings and periods --------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: dt.date
    end: dt.date  # inclusive

    @classmethod
    def default(cls, today: dt.date | None = None) -> Period:
        """The last eight weeks: from the Monday seven weeks before this week's, to today."""
        today = today or local_today()
        return cls(today - dt.timedelta(days=today.weekday() + 49), today)


# The query ------------------------------------------------------------------------


def child_codes(db, user: authz.User) -> tuple[bytes, dict[int, int]]:
    """One byte per area id, for the SQL to pick by position: 0 outside the user's subtree,
    1 the user's own area, 2 + i the i-th child area of the user's area (and its subtree;
    children after the 253rd share 255).

    Returns the bytes and {code: area id} (the user's own area under code 1).
    """
    rows = db.execute("SELECT id, path FROM areas").fetchall()
    own = user.area_path
    children = sorted({int(path[len(own):].split("/")[0]) for _id, path in rows
                       if path.startswith(own) and path != own})
    code_of = {child: min(2 + index, 255) for index, child in enumerate(children)}
    codes = bytearray(max((row[0] for row in rows), default=0) + 1)
    for area_id, path in rows:
        if path == own:
            codes[area_id] = 1
        elif path.startswith(own):
            codes[area_id] = code_of[int(path[len(own):].split("/")[0])]
    return bytes(codes), {1: user.area_id} | {code: child for child, code in code_of.items()}


def monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


# The query's constants (``cfg.*`` in features()) as bound parameters, numbered ahead of
# the plain ``?`` that follow: SQLite computes an expression of parameters once per
# statement, while a column of a one-row table (a CTE) is read again for every problem.
CONSTANTS = {
    "cfg.areas": "?1", "cfg.bytes": "?2", "cfg.week0": "?3",
    "cfg.today": "?4",
}
ROLLUP_MONDAY = dt.date(2000, 1, 3)  # roll-up weeks count from this Monday (migration m009)
ROLLUP_MAX_DEPTH = 2  # users at the city or a district read whole weeks from the roll-up
WEEK = dt.timedelta(weeks=1)


def bind_constants(sql: str) -> str:
    for name, value in CONSTANTS.items():
        sql = sql.replace(name, value)
    return sql


def week_sql(julian_day: str, monday: str) -> str:
    """SQL for the number of whole local weeks from the Julian day ``monday`` (a Monday's
    UTC midnight) to the Julian day ``julian_day``. Julian days hold whole milliseconds,
    so the arithmetic is done in those, exactly: a problem accepted at 23:59:59.999 on a
    local Sunday stays in that week (SQLite rounds a stamp's fractional seconds to the
    millisecond; stored times are whole seconds). Migration m009's roll-up spells it the
    same way, casting to INTEGER: SQLite's integers have 64 bits, PostgreSQL's INTEGER 32,
    too few for the milliseconds, hence BIGINT here."""
    return (f"((CAST(round(({julian_day} - {monday}) * 86400000) AS BIGINT) + 28800000)"
            " / 604800000)")


def week_number(day: dt.date) -> int:
    """The roll-up's number of the week of ``day``."""
    return (day - ROLLUP_MONDAY).days // 7


# What a row of grouped_counts() counts toward: every breakdown, or two of them.
ALL_DIMENSIONS, UNIT_AND_CATEGORY, AREA_AND_WEEK = 0, 1, 2


def whole_weeks(period: Period) -> tuple[dt.date, dt.date]:
    """The first Monday and the last Sunday of the whole weeks inside ``period`` (the
    first after the last when there are none)."""
    first_week = monday(period.start)
    whole_from = period.start if period.start == first_week else first_week + WEEK
    return whole_from, monday(period.end + dt.timedelta(days=1)) - dt.timedelta(days=1)


def rollup_part(db, user: authz.User, period: Period, part: int,
                today: dt.date | None = None) -> list[tuple]:
    """The rows of ``grouped_counts`` that the roll-up gives for ``period``'s whole weeks
    toward one ``part`` (UNIT_AND_CATEGORY or AREA_AND_WEEK), [] if it gives none: the
    statistics page reads the two parts on two readers at once, and hands them to
    ``compute`` (``rollup_rows``)."""
    whole_from, whole_to = whole_weeks(period)
    if not reads_rollup(user) or whole_from > whole_to:
        return []
    codes, _children = child_codes(db, user)
    return db.execute(*rollup_query(
        db.dialect, user, whole_from, whole_to, monday(period.start),
        today or local_today(), codes, part)).fetchall()


def grouped_counts(db, user: authz.User, period: Period, codes: bytes,
                   rollup_rows: list[tuple] | None = None,
                   today: dt.date | None = None) -> list[tuple]:
    """(which breakdowns, unit and category, child-area code and week number and packed
    features, problems) over the cohort, each group possibly in several rows; ``codes``
    from ``child_codes``.

    Whole weeks come from the roll-up when ``reads_rollup`` (the user's child areas are
    towns or above), the days at the ends of the period from the problems.
    ``rollup_rows``: the roll-up's rows read already (``rollup_part``, both parts, with
    the same ``today``).
    """
    first_week, today = monday(period.start), today or local_today()  # one for every part
    whole_from, whole_to = whole_weeks(period)
    if not reads_rollup(user) or whole_from > whole_to:
        return db.execute(
            *cohort_query(db.dialect, user, period, first_week, today, codes)).fetchall()
    rows = list(rollup_rows) if rollup_rows is not None else db.execute(
        *rollup_query(db.dialect, user, whole_from, whole_to, first_week, today, codes)).fetchall()
    for days in (Period(period.start, whole_from - dt.timedelta(days=1)),
                 Period(whole_to + dt.timedelta(days=1), period.end)):
        if days.start <= days.end:
            rows += db.execute(
                *cohort_query(db.dialect, user, days, first_week, today, codes)).fetchall()
    return rows


def reads_rollup(user: authz.User) -> bool:
    """Whether the user's statistics may read the roll-up: a scope that is an area subtree
    alone (office, leader), whose child areas are towns or above (the roll-up's areas)."""
    return authz.scope_is_area(user) and user.area_depth <= ROLLUP_MAX_DEPTH


def cohort_query(dialect: Dialect, user: authz.User, period: Period, first_week: dt.date,
                 today: dt.date, codes: bytes) -> tuple[str, list]:
    """The SQL of ``grouped_counts`` over the problems accepted in ``period``, and its
    parameters; weeks are counted from the Monday ``first_week``.

    Per-row lookups are positions in constants (``cfg``), not joins: the child
    area by area id (one byte each; ``instr`` in the 256 byte values reads a byte
    as a number); the week is counted in whole weeks from ``first_week``.
    Grouping by two integers keeps the sort that GROUP BY needs cheap. The
    problems are read from STATS_INDEX alone, which also holds the value of the
    row-only features and the Julian day of acceptance (migration m009), or, below the
    city, from STATS_AREA_INDEX, the same led by the area.
    """
    scope, scope_params = authz.problem_scope(user, "p")
    # Below the city, the problems of the user's areas accepted in the period are read
    # from STATS_AREA_INDEX, led by the area: a town's year is ~15,000 entries, not 900,000.
    by_area = authz.scope_is_area(user) and user.area_depth > 1
    index = STATS_AREA_INDEX if by_area else STATS_INDEX
    sql = bind_constants(
        f"SELECT {ALL_DIMENSIONS}, dims, place, count(*) FROM (SELECT"
        f" coalesce(p.lead_unit_id, 0) * {1 << DIM_BITS} + coalesce(p.category_id, 0) AS dims,"
        f" ({dialect.byte_at('cfg.areas', 'p.area_id', 'cfg.bytes')} * 256"
        f" + {week_sql(dialect.julianday('p.accepted_at'), dialect.julianday('cfg.week0'))})"
        f" * {1 << FEATURE_BITS} + ({packed_features_sql(dialect)}) AS place"
        f" FROM problems p {dialect.index_hint(index)}"
        " WHERE p.accepted_at >= ? AND p.accepted_at < ?"
        f" AND p.status NOT IN ('rejected', 'merged') AND {scope} {dialect.no_limit}"
        ") AS cohort GROUP BY dims, place"
    )
    params = [
        codes, bytes(range(256)), first_week.isoformat(), today.isoformat(),
        local_day_start(period.start),
        local_day_start(period.end + dt.timedelta(days=1)), *scope_params,
    ]
    return sql, params


def rollup_query(dialect: Dialect, user: authz.User, start: dt.date, end: dt.date,
                 first_week: dt.date, today: dt.date, codes: bytes,
                 part: int = ALL_DIMENSIONS) -> tuple[str, list]:
    """The SQL of ``grouped_counts`` over the whole weeks from the Monday ``start`` to the
    Sunday ``end``, read from the roll-up (migration m009), and its parameters; only the
    rows toward ``part`` (UNIT_AND_CATEGORY or AREA_AND_WEEK) unless ALL_DIMENSIONS.

    The roll-up holds each problem's row-only features packed as STORED_FEATURES;
    the deadline feature is worked out from the deadline kept for open problems
    ('0' for a closed one with a deadline: closed, it is due either way). The
    rows are counted twice, for the unit and category breakdowns (by unit,
    category and features) and for the area and week ones (by area, week and
    features): a year of the city is ~12,000 groups that way, ~110,000 by all
    four at once.

    Every parameter is used (PostgreSQL cannot type one it never sees): the day
    today takes the place of ``cfg.week0``, which whole weeks do not need.
    """
    stored_bits = sum(FEATURE_SIZES[name] for name in STORED_FEATURES)
    deadline = features(dialect)["deadline"][0].replace("p.deadline IS NULL", "r.deadline = ''")
    deadline = deadline.replace("p.", "r.").replace("cfg.today", "?3")
    packed = f"(r.features | (({deadline}) << {stored_bits}))"
    dims = f"r.unit_id * {1 << DIM_BITS} + r.category_id"
    place = (f"({dialect.byte_at('cfg.areas', 'r.area_id', 'cfg.bytes')} * 256"
             f" + r.week - ?4) * {1 << FEATURE_BITS} + {packed}")
    rows = (" FROM stats_rollup r"
            " WHERE r.level = ?9 AND r.week BETWEEN ?5 AND ?6 AND r.n > 0"
            " AND r.area_id IN (SELECT id FROM areas WHERE path >= ?7 AND path < ?8)")
    if part == UNIT_AND_CATEGORY:  # the area bytes and the first week used, as said above
        sql = (f"SELECT {UNIT_AND_CATEGORY}, {dims}, {packed}, {dialect.int_sum('r.n')}{rows}"
               " AND length(?1) + length(?2) + ?4 >= 0 GROUP BY 2, 3")
    elif part == AREA_AND_WEEK:
        sql = f"SELECT {AREA_AND_WEEK}, 0, {place}, {dialect.int_sum('r.n')}{rows} GROUP BY 3"
    else:
        sql = (f"WITH x AS MATERIALIZED (SELECT {dims} AS dims, {place} AS place, r.n AS n{rows})"
               f" SELECT {UNIT_AND_CATEGORY}, dims, place & {(1 << FEATURE_BITS) - 1},"
               f" {dialect.int_sum('n')} FROM x GROUP BY 2, 3"
               f" UNION ALL SELECT {AREA_AND_WEEK}, 0, place, {dialect.int_sum('n')}"
               " FROM x GROUP BY 3")
    sql = bind_constants(sql)
    params = [codes, bytes(range(256)), today.isoformat(),
              week_number(first_week), week_number(start), week_number(end),
              *authz.subtree_bounds(user),
              user.area_depth + 1]  # the level of the user's child areas
    return sql, params


@dataclass
class Breakdown:
    key: object
    label: str
    counts: Counter
    rates: dict[str, Rate]
    rank: int | None = None


def rank(rows: list[Breakdown], metric: str, min_sample: int) -> tuple[list, list]:
    """Rows with at least ``min_sample`` in the metric's denominator, ranked; and the rest."""
    definition = RATES[metric]
    ranked = [row for row in rows if row.rates[metric].n >= min_sample]
    rest = [row for row in rows if row.rates[metric].n < min_sample]
    ranked.sort(
        key=lambda row: (
            row.rates[metric].value if definition.lower_is_better else -row.rates[metric].value,
            -row.rates[metric].n,
            row.label,
        )
    )
    for position, row in enumerate(ranked, start=1):
        row.rank = position
    rest.sort(key=lambda row: (-row.rates[metric].n, row.label))
    return ranked, rest


DIMENSIONS = ("unit", "category", "area", "week")


def _add_up(problems_by_mask: dict[tuple, int]) -> dict[object, Counter]:
    """{key: counts} from {(key, packed features): problems}, keys in their first order."""
    result: dict[object, Counter] = {}
    for (key, mask), n in problems_by_mask.items():
        counts = result.get(key)
        if counts is None:
            counts = result[key] = Counter(dict.fromkeys(COUNTS, 0))
        for name, one in _one(mask).items():
            if one:
                counts[name] += n
    return result


def compute(db, user: authz.User, period: Period, cfg: dict | None = None,
            rollup_rows: list[tuple] | None = None, today: dt.date | None = None) -> dict:
    """Totals and breakdowns (by unit, category, child area, week) for the statistics page.

    The query's groups are first added up per (dimension key, packed features),
    a few hundred each, and only those are turned into counts. ``rollup_rows``: the
    roll-up's two parts read already (``rollup_part``) for the day ``today``.
    """
    cfg = cfg or settings(db)
    weight = float(cfg["satisfaction_weight"])
    codes, children = child_codes(db, user)
    first_monday = monday(period.start)
    # Per dimension, problems by (key << FEATURE_BITS | features): ints, not tuples, as a
    # year of the city is ~100,000 groups.
    fmask, dmask = (1 << FEATURE_BITS) - 1, (1 << DIM_BITS) - 1
    unit_of, category_of, area_of, week_of = (
        defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(int))
    for counted, dims, place, n in grouped_counts(db, user, period, codes, rollup_rows, today):
        mask = place & fmask
        if counted != AREA_AND_WEEK:
            unit_of[dims >> DIM_BITS << FEATURE_BITS | mask] += n
            category_of[(dims & dmask) << FEATURE_BITS | mask] += n
        if counted != UNIT_AND_CATEGORY:
            area_of[place >> (FEATURE_BITS + 8) << FEATURE_BITS | mask] += n
            week_of[place & ((256 << FEATURE_BITS) - 1)] += n

    def split(found: dict[int, int], key_of) -> dict[tuple, int]:
        return {(key_of(packed >> FEATURE_BITS), packed & fmask): n
                for packed, n in found.items()}

    by_mask = {"unit": split(unit_of, lambda unit: unit or None),
               "category": split(category_of, lambda category: category or None),
               "area": split(area_of, children.get), "week": split(week_of, lambda week: week)}
    groups = {dim: _add_up(by_mask[dim]) for dim in DIMENSIONS}
    groups["week"] = {(first_monday + dt.timedelta(weeks=week)).isoformat(): counts
                      for week, counts in groups["week"].items()}
    totals: Counter = Counter()
    for counts in groups["week"].values():
        totals.update(counts)
    labels = _labels(db, user)

    def breakdown(dim: str) -> list[Breakdown]:
        return [
            Breakdown(key, labels[dim].get(key, ""), counts, rates(counts, weight))
            for key, counts in groups[dim].items()
        ]

    weeks = sorted(breakdown("week"), key=lambda row: row.key)
    for row in weeks:
        row.label = row.key
    return {
        "totals": totals,
        "rates": rates(totals, weight),
        # In name order, like the categories and areas: the order of the query's groups
        # is the backend's own (and a frozen report keeps this list as it is).
        "units": sorted(breakdown("unit"), key=lambda row: row.label),
        "categories": sorted(breakdown("category"), key=lambda row: row.label),
        "areas": sorted(breakdown("area"), key=lambda row: row.label),
        "weeks": weeks,
        "settings": cfg,
    }


def totals(db, user: authz.User, period: Period, cfg: dict | None = None) -> dict:
    """The totals and rates of ``compute`` alone, without its breakdowns (the previous
    period on the statistics page). Whole weeks are added up from the roll-up by features
    alone (``rollup_totals_query``), the days at the ends read as ``compute`` reads them."""
    cfg = cfg or settings(db)
    first_week, today = monday(period.start), local_today()
    whole_from = period.start if period.start == first_week else first_week + WEEK
    whole_to = monday(period.end + dt.timedelta(days=1)) - dt.timedelta(days=1)
    codes, _children = child_codes(db, user)
    fmask = (1 << FEATURE_BITS) - 1
    by_mask: Counter = Counter()
    if not reads_rollup(user) or whole_from > whole_to:
        edges = [period]
    else:
        for mask, n in db.execute(
                *rollup_totals_query(db.dialect, user, whole_from, whole_to, today)):
            by_mask[mask] += n
        edges = [Period(period.start, whole_from - dt.timedelta(days=1)),
                 Period(whole_to + dt.timedelta(days=1), period.end)]
    for days in edges:
        if days.start <= days.end:
            for _counted, _dims, place, n in db.execute(
                    *cohort_query(db.dialect, user, days, first_week, today, codes)):
                by_mask[place & fmask] += n
    counts = _add_up({(None, mask): n for mask, n in by_mask.items()}).get(
        None, Counter(dict.fromkeys(COUNTS, 0)))
    return {"totals": counts, "rates": rates(counts, float(cfg["satisfaction_weight"]))}


def rollup_totals_query(dialect: Dialect, user: authz.User, start: dt.date, end: dt.date,
                        today: dt.date) -> tuple[str, list]:
    """The roll-up's problems of the whole weeks from the Monday ``start`` to the Sunday
    ``end`` in the user's subtree, counted by packed features alone (``rollup_query``'s
    features, without its units, areas and weeks)."""
    stored_bits = sum(FEATURE_SIZES[name] for name in STORED_FEATURES)
    deadline = features(dialect)["deadline"][0].replace("p.deadline IS NULL", "r.deadline = ''")
    deadline = deadline.replace("p.", "r.").replace("cfg.today", "?1")
    sql = (
        f"SELECT r.features | (({deadline}) << {stored_bits}), {dialect.int_sum('r.n')}"
        " FROM stats_rollup r"
        " WHERE r.level = ?4 AND r.week BETWEEN ?2 AND ?3 AND r.n > 0"
        " AND r.area_id IN (SELECT id FROM areas WHERE path >= ?5 AND path < ?6) GROUP BY 1"
    )
    return sql, [today.isoformat(), week_number(start), week_number(end),
                 user.area_depth + 1, *authz.subtree_bounds(user)]


def _labels(db, user: authz.User) -> dict[str, dict]:
    return {
        "unit": {row[0]: row[1] for row in db.execute("SELECT id, name FROM units")},
        "category": {row[0]: row[1] for row in db.execute("SELECT id, name FROM categories")},
        "area": {row[0]: row[1] for row in db.execute(
            "SELECT id, name FROM areas WHERE parent_id = ? OR id = ?", [user.area_id, user.area_id]
        )},
        "week": {},
    }


# Counting by reason (the lists of server/ledger/reasons.py) --------------------------------


@dataclass
class ReasonRow:
    code: str | None  # None: the event named no reason (before the lists, or none offered)
    label: str
    active: bool
    count: int
    share: Rate  # of the list's events in the period (n: all of them)


def reason_counts(db, user: authz.User, period: Period) -> dict[str, list[ReasonRow]]:
    """Per list, the events that chose a reason from it (``reasons.KINDS``: rejections,
    returns, extension requests, closures by explanation) at a moment of the period, on
    problems in the user's scope, by the code in their data: every active option (0 if
    unused), then any deactivated option or no reason that was chosen, each with its share.

    Unlike the cohort above, these are events, not problems: a problem returned twice in
    the period counts twice. A scope that is an area subtree reads the roll-up
    ``reason_rollup`` (m026: events by local day, area, kind and code); another scope
    (an office user who is also a handler) reads the events of its problems.
    """
    from server.ledger import reasons

    kinds = {kind: name for name, kind in reasons.KINDS.items()}
    found: dict[str, Counter] = {name: Counter() for name in reasons.LISTS}
    for kind, code, n in db.execute(*_reason_events_query(db.dialect, user, period, kinds)):
        found[kinds[kind]][code or None] += n
    result = {}
    for name, options in reasons.all_lists(db).items():
        counts = found[name]
        total = sum(counts.values())
        rows = [(option.code, option.label, option.active) for option in options
                if option.active or counts[option.code]]
        known = {option.code for option in options}
        rows += [(code, code, False) for code in counts if code is not None and code not in known]
        if counts[None]:
            rows.append((None, "", True))
        result[name] = [ReasonRow(code, label, active, counts[code], Rate(counts[code], total))
                        for code, label, active in rows]
    return result


def _reason_events_query(dialect: Dialect, user: authz.User, period: Period,
                         kinds: dict[str, str]) -> tuple[str, list]:
    """(kind, reason code or '' or NULL, events) of the period in the user's scope."""
    marks = ", ".join("?" * len(kinds))
    if authz.scope_is_area(user):
        area, area_params = authz.area_subtree(user, "r.area_id")
        return (f"SELECT r.kind, r.code, {dialect.int_sum('r.n')} FROM reason_rollup r"
                f" WHERE r.day >= ? AND r.day <= ? AND r.kind IN ({marks}) AND {area}"
                " GROUP BY 1, 2",
                [period.start.isoformat(), period.end.isoformat(), *kinds, *area_params])
    scope, scope_params = authz.problem_scope(user, "p")
    return (f"SELECT e.kind, {dialect.json_text('e.data', 'reason_code')}, count(*)"
            " FROM problem_events e JOIN problems p ON p.id = e.problem_id"
            f" WHERE e.kind IN ({marks}) AND e.at >= ? AND e.at < ?"
            f" AND {scope} GROUP BY 1, 2",
            [*kinds, local_day_start(period.start),
             local_day_start(period.end + dt.timedelta(days=1)), *scope_params])


# Helper units (协办), counted apart from the lead units -------------------------------------

# Per helper unit, its parts (joint_parts, m018) in the problems of the cohort: not removed
# by a re-dispatch, not backfilled onto a problem finished before parts existed (legacy).
HELPER_COUNTS = ("parts", "signed", "answered", "answered_on_time", "due")
HELPER_RATES: dict[str, RateDef] = {
    "signed": RateDef(("signed",), "parts"),  # 签收率
    "answered": RateDef(("answered",), "parts"),  # 答复率
    # 按期答复率: answered on or before the lead's deadline in force, among the parts that
    # are due (answered, or not answered while that deadline has passed).
    "answered_on_time": RateDef(("answered_on_time",), "due"),
}


def helper_units(db, user: authz.User, period: Period, today: dt.date | None = None,
                 ) -> list[Breakdown]:
    """The helper units' figures in the cohort (see HELPER_RATES), by unit name."""
    today = today or local_today()
    scope, params = authz.problem_scope(user, "p")
    answered_day = db.dialect.local_day("j.answered_at")
    rows = db.execute(
        "SELECT j.unit_id, u.name, count(*), count(*) FILTER (WHERE j.signed_at IS NOT NULL),"
        " count(*) FILTER (WHERE j.answered_at IS NOT NULL),"
        " count(*) FILTER (WHERE j.answered_at IS NOT NULL AND (p.deadline IS NULL"
        f"  OR {answered_day} <= p.deadline)),"
        " count(*) FILTER (WHERE j.answered_at IS NOT NULL OR p.deadline < ?)"
        # From the parts to their problems: a few percent of problems have parts, where
        # the cohort of a year is most of the ledger. SQLite keeps the order CROSS JOIN
        # writes (a problem per part, not a part per problem) and reads the parts in
        # table order (through an index, each part would cost a second lookup);
        # PostgreSQL plans freely.
        f" FROM joint_parts j {db.dialect.not_indexed} CROSS JOIN problems p"
        " JOIN units u ON u.id = j.unit_id"
        " WHERE p.id = j.problem_id AND j.state != 'removed' AND j.legacy = 0"
        " AND p.accepted_at >= ? AND p.accepted_at < ?"
        f" AND p.status NOT IN ('rejected', 'merged') AND {scope}"
        " GROUP BY j.unit_id, u.name ORDER BY u.name, j.unit_id",
        [today.isoformat(), local_day_start(period.start),
         local_day_start(period.end + dt.timedelta(days=1)), *params],
    ).fetchall()
    result = []
    for unit_id, name, *numbers in rows:
        counts = Counter(dict(zip(HELPER_COUNTS, numbers, strict=True)))
        result.append(Breakdown(unit_id, name, counts, {
            rate_name: Rate(sum(counts[part] for part in definition.numerator),
                            counts[definition.denominator])
            for rate_name, definition in HELPER_RATES.items()}))
    return result
