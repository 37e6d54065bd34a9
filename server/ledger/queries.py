"""The ledger's query: filters, sort, pages and per-state counts; the search itself is
``search.py``, problems that may be the same one ``similar.py``.

Every filter is a GET parameter, so a filtered ledger can be bookmarked and
shared; ``parse`` reads them and drops (with a notice) any value it cannot
use, so a bad parameter never fails the page. Every query adds the user's
``authz.problem_scope``.

Scale (a million problems; figures in docs/performance.md). Every filter has
an index that leads with it. Counts per state stop at ``COUNT_CAP`` ("10000+")
and each gets COUNT_BUDGET_S: a broad search intersected with other filters
cannot be counted that fast, and shows "…" rather than holding the page up.
When many problems match, the page is read through the sort order's index
(LIMIT/OFFSET, at most MAX_PAGE pages, or UNCOUNTED_MAX_PAGE when uncounted),
which finds 50 rows after a few hundred; see ``list_rows``. SQLite has no
statistics here, so ``choose_drive`` picks the index that drives a page from
the sizes of the filters' own indexes (a narrow date range, a rare value, the
rows two filters have in common, a small area, a search's matches read as a
list). A broad word searched inside an area is intersected with that area's
search keys (``area_keys``, migration m008). Few matches are read once, for
the counts and to pick the page (``reads_once``).
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field, fields

from server import authz
from server.areas import add_area_paths
from server.db.dialect import Dialect
from server.i18n import gettext as _
from server.ledger.clock import local_today
from server.ledger.problems import STATUSES
from server.ledger.search import AREA_DRIVE_MAX, SEARCH_DRIVE_MAX, Search, search_condition
from server.ledger.states import FINISHED_STATES, SUPERVISION_LEVELS
from server.timeutil import LOCAL_TZ, to_iso

PAGE_SIZE = 50
COUNT_CAP = 10_000
MAX_DRIVE = 200_000  # the most matches a page reads first (when the ordered read fails)
COUNT_BUDGET_S = 0.025  # for the counts of one page, together
ORDERED_BUDGET_S = 0.15  # for a page read in sort order, before reading the matches first
UNCOUNTED_MAX_PAGE = 20  # pages offered when the matches are too many to count
MAX_PAGE = COUNT_CAP // PAGE_SIZE
SOURCES = ("visit", "field", "hotline")
URGENCIES = ("normal", "urgent", "critical")
# Sort orders, and the index that reads problems in that order.
SORTS = {
    "found_at": ("p.found_at",),
    "deadline": ("p.deadline",),
    "ledger_no": ("p.ledger_no",),
    "status": ("p.status", "p.found_at"),
}
SORT_INDEXES = {
    "found_at": "idx_problems_found",
    "deadline": "idx_problems_deadline_only",
    "ledger_no": "sqlite_autoindex_problems_2",  # UNIQUE (ledger_no) of m001
    "status": "idx_problems_status_found",
}
DATE_FILTERS = ("found", "accepted", "closed")
MAX_QUERY = 100
# Indexes that hold one filter's problems in order of discovery (the default sort):
# (column, found_at). Reading a page through the narrowest of them skips the other problems.
FOUND_ORDER_INDEXES = {
    "status": ("status", "idx_problems_status_found"),
    "category": ("category_id", "idx_problems_category_found"),
    "unit": ("lead_unit_id", "idx_problems_unit_found"),
    "supervision": ("supervision", "idx_problems_supervision_found"),
    "urgency": ("urgency", "idx_problems_urgency_found"),
    "source": ("source", "idx_problems_source_found"),
    "reporter": ("reporter_id", "idx_problems_reporter"),
}
# The index that leads with each date filter's column.
DATE_INDEXES = {
    "found": "idx_problems_found",
    "accepted": "idx_problems_stats_features",  # migration m009
    "closed": "idx_problems_closed",
}
NARROW_MAX = 10_000  # a filter matching at most this many problems drives every query
NARROW_COUNT_BUDGET_S = 0.1  # for the counts of a narrow filter, in one query
FOUND_ORDER_INDEX_NAMES = {index for _column, index in FOUND_ORDER_INDEXES.values()}
AREA_INDEX = "idx_problems_area_status"  # (area_id, status)
INTERSECT_MAX = 120_000  # two equality filters this small are intersected by rowid
INTERSECT_BUDGET_S = 0.08
ID_INDEX = "sqlite_autoindex_problems_1"  # PRIMARY KEY (id) of m001
BY_ROWID = "rowid"  # drive_index when the page reads a list of rowids (Filter.rowids)



INTERNAL_FIELDS = ("ignored", "refused", "broad_search", "narrow_search", "drive_index", "narrow",
                   "presorted", "rowids", "searches")


@dataclass
class Filter:
    status: str | None = None
    category: int | None = None
    area: str | None = None  # an area code
    unit: int | None = None
    source: str | None = None
    urgency: str | None = None
    overdue: str | None = None  # "yes" / "no"
    supervision: str | None = None
    reporter: int | None = None
    found_from: dt.date | None = None
    found_to: dt.date | None = None
    accepted_from: dt.date | None = None
    accepted_to: dt.date | None = None
    closed_from: dt.date | None = None
    closed_to: dt.date | None = None
    q: str = ""
    sort: str = "found_at"
    dir: str = "desc"
    page: int = 1
    ignored: list[str] = field(default_factory=list)  # parameters dropped as invalid
    refused: list[str] = field(default_factory=list)  # dates outside DATE_RANGE: a 400
    broad_search: bool = False  # set by conditions(): the search matches many problems
    narrow_search: bool = False  # set by conditions(): the matches were looked up as a list
    # Set by choose_drive(): the index to read problems through, and whether the filter it
    # serves matches at most NARROW_MAX problems.
    drive_index: str | None = None
    narrow: bool = False
    presorted: bool = False  # the drive index gives the page's order
    rowids: list[int] | None = None  # the problems two filters have in common, when few
    searches: dict = field(default_factory=dict)  # search_condition() results, per drive_max

    def query_string(self, **changes) -> str:
        """The URL query for this filter, with ``changes`` applied (None drops a key)."""
        values = {}
        for f in fields(self):
            if f.name in INTERNAL_FIELDS:
                continue
            value = changes.get(f.name, getattr(self, f.name))
            default = f.default
            if value is None or value == "" or value == default:
                continue
            values[f.name] = value.isoformat() if isinstance(value, dt.date) else value
        return urllib.parse.urlencode(values)

    def drive_clause(self, dialect: Dialect) -> str:
        """How the queries read ``problems p``: through drive_index, by rowid, or as planned."""
        if self.drive_index is None:
            return ""
        if self.drive_index == BY_ROWID:
            return f" {dialect.not_indexed}"
        return f" {dialect.index_hint(self.drive_index)}"

    @property
    def active(self) -> bool:
        return bool(self.query_string(sort="found_at", dir="desc", page=1))


def _int(value: str) -> int | None:
    if value.isascii() and value.isdigit() and len(value) < 10:
        return int(value)
    return None


# The dates a filter may name. A bound becomes the UTC timestamp of its local day's start
# (and of the next day's, for an end), which Python cannot write for 0001-01-01 nor
# 9999-12-31; no problem is found outside these years.
DATE_RANGE = (dt.date(1900, 1, 1), dt.date(2999, 12, 31))


def _date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return None


def _choice(options):
    return lambda value: value if value in options else None


_PARSERS = {
    "status": _choice(STATUSES),
    "category": _int,
    "area": lambda value: value if value.isascii() and value.isalnum() and len(value) < 30
    else None,
    "unit": _int,
    "source": _choice(SOURCES),
    "urgency": _choice(URGENCIES),
    "overdue": _choice(("yes", "no")),
    "supervision": _choice(SUPERVISION_LEVELS),
    "reporter": _int,
    **{f"{name}_{end}": _date for name in DATE_FILTERS for end in ("from", "to")},
    "sort": _choice(SORTS),
    "dir": _choice(("asc", "desc")),
    "page": lambda value: min(n, MAX_PAGE) if (n := _int(value)) else None,
}


def parse(params) -> Filter:
    """A ``Filter`` from GET parameters; values that cannot be used are listed in ``ignored``,
    dates outside DATE_RANGE in ``refused`` (the page answers 400, an export is refused)."""
    result = Filter()
    for name, parser in _PARSERS.items():
        raw = (params.get(name) or "").strip()
        if not raw:
            continue
        value = parser(raw)
        if value is None:
            result.ignored.append(name)
        elif isinstance(value, dt.date) and not DATE_RANGE[0] <= value <= DATE_RANGE[1]:
            result.refused.append(name)
        else:
            setattr(result, name, value)
    result.q = " ".join((params.get("q") or "").split())[:MAX_QUERY]
    return result


def search_areas(db, user: authz.User, f: Filter) -> list[list[str]]:
    """Subtree bounds every row of the page lies in: the area filter's, and the user's own
    area when that is the whole of the user's scope."""
    areas = []
    bounds = area_bounds(db, f.area) if f.area else None
    if bounds is not None:
        areas.append(bounds)
    if authz.scope_is_area(user) and user.area_depth > 1:
        areas.append(authz.subtree_bounds(user))
    # The deeper path first: the narrower area, if one holds the other.
    return sorted(areas, key=lambda bounds: -bounds[0].count("/"))


def search(db, user: authz.User, f: Filter, drive_max: int) -> Search:
    """``search_condition`` for this page's search, found once per page and drive_max."""
    if drive_max not in f.searches:
        f.searches[drive_max] = search_condition(db, f.q, drive_max, search_areas(db, user, f))
    return f.searches[drive_max]


# Conditions -----------------------------------------------------------------------


def area_bounds(db, code: str) -> list[str] | None:
    """The range of paths of the subtree of the area ``code`` (see authz.subtree_bounds);
    None if unknown."""
    row = db.execute("SELECT path FROM areas WHERE code = ?", [code]).fetchone()
    return None if row is None else [row[0], row[0][:-1] + "0"]


def area_condition(db, code: str) -> tuple[str, list] | None:
    """The condition for problems in the subtree of the area ``code``; None if unknown."""
    bounds = area_bounds(db, code)
    if bounds is None:
        return None
    return "p.area_id IN (SELECT id FROM areas WHERE path >= ? AND path < ?)", bounds


def local_day_start(day: dt.date) -> str:
    """The stored (UTC) timestamp of midnight at the start of a local day."""
    return to_iso(dt.datetime.combine(day, dt.time(), LOCAL_TZ))


def conditions(db, user: authz.User, f: Filter, with_status: bool = True,
               drive_search: bool = False) -> tuple[str, list]:
    """The WHERE clause (on ``problems p``) for this user and filter.

    The scope is marked as likely true: without statistics SQLite takes
    ``area_id IN (subquery)`` for a narrow condition, and for a city office
    reads a million problems through it rather than use a filter's index.
    """
    scope, params = authz.problem_scope(user, "p")
    where = [db.dialect.likely(scope)]
    params = list(params)

    def add(sql: str, *values) -> None:
        where.append(sql)
        params.extend(values)

    if with_status and f.status:
        add("p.status = ?", f.status)
    for name, column in (("category", "category_id"), ("unit", "lead_unit_id"),
                         ("source", "source"), ("urgency", "urgency"),
                         ("supervision", "supervision"), ("reporter", "reporter_id")):
        value = getattr(f, name)
        if value is not None:
            add(f"p.{column} = ?", value)
    if f.area:
        area = area_condition(db, f.area)
        if area is None:
            f.ignored.append("area")
            f.area = None
        else:
            add(area[0], *area[1])
    finished = ", ".join(f"'{s}'" for s in FINISHED_STATES)
    if f.overdue == "yes":
        add(f"(p.status NOT IN ({finished}) AND p.deadline < ?)", local_today().isoformat())
    elif f.overdue == "no":
        add(f"(p.status IN ({finished}) OR p.deadline IS NULL OR p.deadline >= ?)",
            local_today().isoformat())
    for name in DATE_FILTERS:
        start, end = getattr(f, f"{name}_from"), getattr(f, f"{name}_to")
        if start:
            add(f"p.{name}_at >= ?", local_day_start(start))
        if end:
            add(f"p.{name}_at < ?", local_day_start(end + dt.timedelta(days=1)))
    if f.rowids is not None:  # the problems some of the filters above have in common
        add(*db.dialect.in_list("p.rowid", f.rowids))
    if f.q:
        sql, values, broad, _listed = search(
            db, user, f, MAX_DRIVE if drive_search else SEARCH_DRIVE_MAX)
        f.broad_search = f.broad_search or broad
        f.narrow_search = f.narrow_search or (not broad and not drive_search)
        add(sql, *values)
    return " AND ".join(where), params


def order_by(f: Filter, unindexed: bool = False) -> str:
    """NULL sorts first, as SQLite sorts it by default (PostgreSQL sorts it last).

    ``unindexed``: the same order in a spelling no index gives (every sort column is
    text), so that PostgreSQL reads the matches first and sorts them.
    """
    direction = "DESC NULLS LAST" if f.dir == "desc" else "ASC NULLS FIRST"
    columns = [f"{column} || ''" for column in SORTS[f.sort]] if unindexed else SORTS[f.sort]
    rowid = "p.rowid + 0" if unindexed else "p.rowid"
    return ", ".join(f"{column} {direction}" for column in (*columns, rowid))


# Reading ---------------------------------------------------------------------------

LIST_COLUMNS = (
    "p.id, p.ledger_no, p.status, p.urgency, p.description, p.place, p.found_at, p.deadline,"
    " p.deadline_provisional, p.supervision, p.source, p.area_id, a.name AS area_name,"
    " c.name AS category_name, un.name AS unit_name"
)
# LEFT JOINs keep problems the outer loop of every plan (an inner join lets SQLite
# start from areas and read every problem of every area in scope).
JOINS = (
    " LEFT JOIN areas a ON a.id = p.area_id"
    " LEFT JOIN categories c ON c.id = p.category_id"
    " LEFT JOIN units un ON un.id = p.lead_unit_id"
)


def as_listed(db, rows: list[dict]) -> list[dict]:
    """Rows of LIST_COLUMNS as lists show them: overdue marked, area paths named."""
    return add_area_paths(db, mark_overdue(rows))


def mark_overdue(rows: list[dict]) -> list[dict]:
    today = local_today().isoformat()
    for row in rows:
        row["overdue"] = bool(
            row["status"] not in FINISHED_STATES and row["deadline"] and row["deadline"] < today
        )
    return rows


def _capped_count(db, index: str, condition: str, params: list, cap: int) -> int:
    """How many index entries meet ``condition``, counting no further than ``cap`` + 1."""
    return db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM problems p {db.dialect.index_hint(index)}"
        f" WHERE {condition} LIMIT ?) AS found", [*params, cap + 1],
    ).fetchone()[0]


def drive_candidates(f: Filter) -> list[tuple[str, str, list]]:
    """(index, condition, parameters) for each filter that an index reads on its own."""
    candidates = []
    for name in DATE_FILTERS:
        start, end = getattr(f, f"{name}_from"), getattr(f, f"{name}_to")
        bounds = [(f"p.{name}_at >= ?", local_day_start(start))] if start else []
        if end:
            bounds.append((f"p.{name}_at < ?", local_day_start(end + dt.timedelta(days=1))))
        if bounds:
            candidates.append((DATE_INDEXES[name], " AND ".join(sql for sql, _v in bounds),
                               [value for _sql, value in bounds]))
    for name, (column, index) in FOUND_ORDER_INDEXES.items():
        if getattr(f, name) is not None:
            candidates.append((index, f"p.{column} = ?", [getattr(f, name)]))
    return candidates


def common_rowids(db, f: Filter) -> list[int] | None:
    """The problems the two smallest equality filters (but the state) have in common, up to
    NARROW_MAX + 1, when each has at most INTERSECT_MAX: read from their indexes alone.

    Two broad filters may almost never meet (a category and a unit: 105,004 and
    82,448 problems, 27 of both), and any single index then reads tens of
    thousands of problems.
    """
    equalities = [candidate for candidate in drive_candidates(f)
                  if candidate[0] in FOUND_ORDER_INDEX_NAMES
                  and candidate[0] != FOUND_ORDER_INDEXES["status"][1]]
    if len(equalities) < 2:
        return None
    sized = sorted((_capped_count(db, *candidate, INTERSECT_MAX), n, candidate)
                   for n, candidate in enumerate(equalities))
    if sized[1][0] > INTERSECT_MAX:
        return None
    (small, condition_small, params_small), (large, condition_large, params_large) = (
        sized[0][2], sized[1][2])
    return [row[0] for row in db.execute(
        f"SELECT p.rowid FROM problems p {db.dialect.index_hint(large)} WHERE {condition_large}"
        f" AND p.rowid IN (SELECT p.rowid FROM problems p {db.dialect.index_hint(small)}"
        f" WHERE {condition_small}) LIMIT ?",
        [*params_large, *params_small, NARROW_MAX + 1],
    )]


def choose_drive(db, user: authz.User, f: Filter) -> None:
    """Pick the index that every query of the page reads problems through (SQLite has no
    statistics, and prefers any equality to a date range however narrow).

    Each filter's own index is counted (on the index alone, up to a cap: a
    millisecond or a few). The smallest drives when it holds at most
    NARROW_MAX problems, unless a search's matches, read as a list, are fewer: those
    drive (through the id index) whenever they are listed; else the problems two
    equality filters have in common, when few (``common_rowids``); else an area
    with at most AREA_DRIVE_MAX problems (its index also holds the state, so most
    other problems are skipped without reading them); else, sorted by discovery,
    an equality filter's (column, found_at) index gives the page in order
    (``presorted``), skipping the problems that filter excludes.

    An engine that plans with statistics (``Dialect.plans_itself``) is left to plan,
    but for filters that may be correlated (``planned_drive``).
    """
    if db.dialect.plans_itself:
        planned_drive(db, user, f)
        return
    listed = search(db, user, f, SEARCH_DRIVE_MAX).listed if f.q else None
    sizes = [(_capped_count(db, index, condition, params, NARROW_MAX), index)
             for index, condition, params in drive_candidates(f)]
    if sizes and min(sizes)[0] <= min(NARROW_MAX, listed if listed is not None else NARROW_MAX):
        f.drive_index, f.narrow = min(sizes)[1], True
        return
    if listed is not None:
        f.drive_index, f.narrow = ID_INDEX, True
        return
    status_index = FOUND_ORDER_INDEXES["status"][1]
    rowids = db.bounded(INTERSECT_BUDGET_S, common_rowids, db, f)
    if rowids is not None and len(rowids) <= NARROW_MAX:
        f.rowids, f.drive_index, f.narrow = rowids, BY_ROWID, True
        return
    # In order, by an equality filter's index; a state's last: states are few and broad.
    ordered = sorted((index for _size, index in sizes
                      if index in FOUND_ORDER_INDEX_NAMES and f.sort == "found_at"),
                     key=lambda index: index == status_index)
    # An area alone gives a page in order quicker; and a filter outside the area's index
    # (but the state) with an index in order skips more problems than the area does.
    area = area_condition(db, f.area) if f.area else None
    narrowed_further = f.query_string(area=None, sort=None, dir=None, page=None) != ""
    if area is not None and narrowed_further and set(ordered) <= {status_index}:
        size = _capped_count(db, AREA_INDEX, *area, AREA_DRIVE_MAX)
        if size <= AREA_DRIVE_MAX:
            f.drive_index, f.narrow = AREA_INDEX, size <= NARROW_MAX
            return
    if ordered:
        f.drive_index, f.presorted = ordered[0], True


def planned_drive(db, user: authz.User, f: Filter) -> None:
    """For an engine that plans with statistics: a search's matches read as a list are
    read once (``reads_once``), as on SQLite; and with two or more filters, the problems
    of the narrowest, or those two equality filters have in common (``common_rowids``),
    are read as a list of rowids when at most NARROW_MAX.

    PostgreSQL multiplies the shares of filters as if they were independent. Accepted
    on the first of a month and closed by then (none: 20,451 guessed), or a category
    and a unit that almost never meet (27: 6,400 guessed), it reads 800,000 closed
    problems in order for a page that is empty. A list of rowids it sizes exactly.
    """
    if f.q and search(db, user, f, SEARCH_DRIVE_MAX).listed is not None:
        f.drive_index, f.narrow = BY_ROWID, True
        return
    candidates = drive_candidates(f)
    # A state's problems would leave the other states' counts out.
    stateless = [candidate for candidate in candidates
                 if candidate[0] != FOUND_ORDER_INDEXES["status"][1]]
    if len(candidates) < 2 or not stateless:
        return
    size, _n, (_index, condition, params) = min(
        (_capped_count(db, *candidate, NARROW_MAX), n, candidate)
        for n, candidate in enumerate(stateless))
    if size <= NARROW_MAX:
        rowids = [row[0] for row in db.execute(
            f"SELECT p.rowid FROM problems p WHERE {condition} LIMIT ?",
            [*params, NARROW_MAX + 1])]
    else:
        rowids = db.bounded(INTERSECT_BUDGET_S, common_rowids, db, f)
    if rowids is not None and len(rowids) <= NARROW_MAX:
        f.rowids, f.drive_index, f.narrow = rowids, BY_ROWID, True


def list_rows(db, user: authz.User, f: Filter, many: bool = False) -> list[dict]:
    """One page of the ledger.

    A narrow filter or a small area (``choose_drive``) drives the read and
    SQLite sorts its problems. Otherwise ``many``: a lot of problems match (more than
    COUNT_CAP, or too many to count quickly). Reading them through the sort
    order's index then finds a page after a few thousand rows, while the
    planner (which has no statistics) may prefer a filter's index and sort
    every match: with a million problems, seconds instead of milliseconds. If
    the other filters are so narrow that the ordered read finds no page within
    ORDERED_BUDGET_S, the matches are read first: a search's through the id index, or
    on an engine that plans itself, in an order no index gives (it had chosen the
    ordered read, misled: the 122,000 problems without a ledger number come first in
    its order, and none of them is closed).
    """
    def read(indexed: str, drive_search: bool = False, unindexed: bool = False) -> list[dict]:
        where, params = conditions(db, user, f, drive_search=drive_search)
        return list(db.query(
            f"SELECT {LIST_COLUMNS} FROM problems p{indexed} {JOINS} WHERE {where}"
            f" ORDER BY {order_by(f, unindexed)} LIMIT ? OFFSET ?",
            [*params, PAGE_SIZE, (f.page - 1) * PAGE_SIZE],
        ))

    if f.drive_index and not f.presorted:
        return as_listed(db, read(f.drive_clause(db.dialect)))
    rows = None
    if many:
        index = f.drive_index or SORT_INDEXES[f.sort]
        rows = db.bounded(ORDERED_BUDGET_S, read, f" {db.dialect.index_hint(index)}")
    if rows is None:
        # A broad search with narrow other filters: start from the matches after all,
        # through the id index (the planner may prefer a state's index: 800,000 closed).
        listed = f.q and search(db, user, f, MAX_DRIVE).listed is not None
        rows = read(f" {db.dialect.index_hint(ID_INDEX)}" if listed else "",
                    drive_search=bool(f.q), unindexed=db.dialect.plans_itself)
    return as_listed(db, rows)


def count(db, where: str, params: list) -> int:
    """The number of matching problems, counting no further than COUNT_CAP + 1."""
    return db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM problems p WHERE {where} LIMIT ?) AS found",
        [*params, COUNT_CAP + 1],
    ).fetchone()[0]


def counts_in_one_read(db, where: str, params: list, indexed: str) -> dict[str, int]:
    """Matching problems per state, for few matches: one read of them all."""
    found = dict(db.execute(
        f"SELECT p.status, count(*) FROM problems p{indexed} WHERE {where} GROUP BY p.status",
        params,
    ).fetchall())
    return {status: min(found.get(status, 0), COUNT_CAP + 1) for status in STATUSES}


def status_counts(db, user: authz.User, f: Filter) -> dict[str, int | None]:
    """Matching problems per state, all other filters applied.

    A count above the cap is cap + 1; counts not made within COUNT_BUDGET_S
    (all of them together), or for a search matching many problems, are None
    (a page whose few matches are read once, ``reads_once``, is counted exactly
    in ``ledger`` instead, a broad search among them included).
    Few matches (a narrow filter, or a search looked up as a list) are counted
    in one read within NARROW_COUNT_BUDGET_S; so are those of a small area that
    drives the page, within COUNT_BUDGET_S.
    """
    where, params = conditions(db, user, f, with_status=False)
    if f.broad_search:  # every count would read the whole set of matches: not in time
        return dict.fromkeys(STATUSES)
    # A narrow filter or a small area is counted in one read of its index; a narrow
    # state drives the list, not the counts of the other states.
    narrow = drives_every_state(f)
    if narrow or f.narrow_search:
        indexed = f.drive_clause(db.dialect) if narrow else ""
        budget = NARROW_COUNT_BUDGET_S if f.narrow or f.narrow_search else COUNT_BUDGET_S
        found = db.bounded(budget, counts_in_one_read, db, where, params, indexed)
        return found if found is not None else dict.fromkeys(STATUSES)
    deadline = time.monotonic() + COUNT_BUDGET_S
    return {
        status: db.bounded(deadline - time.monotonic(), count, db,
                        f"{where} AND p.status = ?", [*params, status])
        for status in STATUSES
    }


@dataclass
class Count:
    value: int | None  # None: not counted (too many to count quickly)
    capped: bool = False

    @classmethod
    def of(cls, n: int | None) -> Count:
        return cls(None) if n is None else cls(min(n, COUNT_CAP), n > COUNT_CAP)

    @property
    def many(self) -> bool:
        return self.value is None or self.capped

    def __str__(self) -> str:
        if self.value is None:
            return "…"
        return f"{COUNT_CAP}+" if self.capped else str(self.value)


def total(counts: dict[str, int | None], f: Filter) -> Count:
    values = [counts[f.status]] if f.status else list(counts.values())
    if None in values:
        return Count(None)
    return Count.of(sum(values))


def drives_every_state(f: Filter) -> bool:
    """Whether the drive index (``choose_drive``) reads the matches of every state, and
    the matches alone: not a state's index, and not one that gives the page in order."""
    return (f.drive_index is not None and not f.presorted
            and f.drive_index != FOUND_ORDER_INDEXES["status"][1])


def reads_once(f: Filter) -> bool:
    """Whether the page's matches are few enough to be read once for its counts and its
    rows: a narrow filter or a listed search drives them."""
    return f.narrow and drives_every_state(f)


def matches_in_one_read(db, user: authz.User, f: Filter) -> list[tuple]:
    """(rowid, state, sort values...) of every problem matching the filter but its state."""
    where, params = conditions(db, user, f, with_status=False)
    return db.execute(
        f"SELECT p.rowid, p.status, {', '.join(SORTS[f.sort])}"
        f" FROM problems p{f.drive_clause(db.dialect)} WHERE {where}", params,
    ).fetchall()


def _sqlite_order(value) -> tuple:
    """A sort key that orders values as SQLite does: NULL, numbers, text, blobs."""
    if value is None:
        return (0,)
    if isinstance(value, int | float):
        return (1, value)
    return (2, value) if isinstance(value, str) else (3, value)


def page_of_matches(db, user: authz.User, f: Filter, matches: list[tuple]) -> list[dict]:
    """The page's rows from ``matches_in_one_read``: sorted here as ``order_by`` sorts
    (text compares by code point, as SQLite's BINARY collation compares UTF-8), and only
    the page's problems read in full. That is a second statement: the user's scope is
    checked again, so a problem moved out of it in between is not shown."""
    wanted = [match for match in matches if f.status is None or match[1] == f.status]
    wanted.sort(key=lambda match: (*map(_sqlite_order, match[2:]), match[0]),
                reverse=f.dir == "desc")
    start = (f.page - 1) * PAGE_SIZE
    rowids = [match[0] for match in wanted[start:start + PAGE_SIZE]]
    scope, params = authz.problem_scope(user, "p")
    listed, rowid_list = db.dialect.in_list("p.rowid", rowids)
    return as_listed(db, list(db.query(
        f"SELECT {LIST_COLUMNS} FROM problems p {db.dialect.not_indexed} {JOINS}"
        f" WHERE {listed} AND {scope} ORDER BY {order_by(f)}",
        [rowid_list, *params],
    )))


def ledger(db, user: authz.User, f: Filter) -> dict:
    """Everything the ledger page shows for this filter.

    Few matches (``reads_once``) are read once, for the counts per state and to
    pick the page; otherwise the counts and the page are separate reads.
    """
    choose_drive(db, user, f)
    once = reads_once(f)
    matches = None
    if once:
        matches = db.bounded(NARROW_COUNT_BUDGET_S, matches_in_one_read, db, user, f)
    if matches is not None:
        found_states = Counter(match[1] for match in matches)
        counts = {status: min(found_states[status], COUNT_CAP + 1) for status in STATUSES}
    elif once:  # not read in time: counting them again would not be either
        counts = dict.fromkeys(STATUSES)
    else:
        counts = status_counts(db, user, f)
    found = total(counts, f)
    if found.value is not None:
        pages = MAX_PAGE if found.capped else max(1, min(MAX_PAGE, -(-found.value // PAGE_SIZE)))
        f.page = min(f.page, pages)
    if found.value is None:
        f.page = min(f.page, UNCOUNTED_MAX_PAGE)
    if matches is not None:
        rows = page_of_matches(db, user, f, matches)
    else:
        rows = list_rows(db, user, f, many=found.many)
    if found.value is None:  # unknown: offer the next page while pages are full
        pages = f.page + 1 if len(rows) == PAGE_SIZE and f.page < UNCOUNTED_MAX_PAGE else f.page
    return {
        "rows": rows,
        "counts": {status: Count.of(n) for status, n in counts.items()},
        "total": found,
        "pages": pages,
    }


def filter_options(db, user: authz.User) -> dict:
    """The choices the filter form offers."""
    scope, params = authz.area_subtree(user, "u.area_id")
    return {
        "categories": list(db.query("SELECT id, name FROM categories ORDER BY code")),
        "units": list(db.query("SELECT id, name FROM units WHERE active = 1 ORDER BY name")),
        "areas": list(db.query(
            "SELECT code, name, level FROM areas WHERE path >= ? AND path < ? AND level <= 4"
            " ORDER BY path", authz.subtree_bounds(user),
        )),
        "reporters": list(db.query(
            "SELECT u.id, u.display_name FROM users u"
            f" WHERE (',' || u.roles || ',') LIKE '%,field,%' AND {scope} ORDER BY u.display_name",
            params,
        )),
    }


def ignored_notice(f: Filter) -> str | None:
    if not f.ignored:
        return None
    names = "、".join(_(f"ledger.param.{name}") for name in dict.fromkeys(f.ignored))
    return _("ledger.ignored", names=names)


def refused_notice(f: Filter) -> str | None:
    if not f.refused:
        return None
    names = "、".join(_(f"ledger.param.{name}") for name in f.refused)
    return _("ledger.date_out_of_range", names=names, start=DATE_RANGE[0].isoformat(),
             end=DATE_RANGE[1].isoformat())
