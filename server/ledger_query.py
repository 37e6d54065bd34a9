"""The ledger's query: filters, full-text search, sort, pages and per-state counts.

Every filter is a GET parameter, so a filtered ledger can be bookmarked and
shared; ``parse`` reads them and drops (with a notice) any value it cannot
use, so a bad parameter never fails the page. Every query adds the user's
``authz.problem_scope``.

Search. FTS5's trigram tokenizer cannot find two-character words such as 漏水,
and SQLite has no Chinese word segmenter, so migration ``m004_search`` indexes
*bigrams*: triggers (plain SQL, so every connection writing problems keeps the
index right) write into the contentless FTS5 table ``problems_fts`` the
description, place, resident name and ledger number with each CJK character
replaced by the pair it starts (or by itself at the end of a run), and other
characters kept, so ASCII words and numbers stay words::

    3号楼漏水  ->  3 号楼 楼漏 漏水 水

A query is split the same way: a CJK run of two or more characters becomes
the phrase of its bigrams (so 物业不作为 must appear as written), a single CJK
character the prefix query ``"漏"*`` (every occurrence starts a bigram or ends
a run), other words exact tokens; all parts must match. A full ledger number
(ZF-2026-000123) is looked up on its unique index, and a one-character query
that is not Chinese falls back to LIKE.

Scale (a million problems; figures in docs/performance.md). Every filter has
an index that leads with it. Counts per state stop at ``COUNT_CAP`` ("10000+")
and each gets COUNT_BUDGET_S: a broad search intersected with other filters
cannot be counted that fast, and shows "…" rather than holding the page up.
When many problems match, the page is read through the sort order's index
(LIMIT/OFFSET, at most MAX_PAGE pages, or UNCOUNTED_MAX_PAGE when uncounted),
which finds 50 rows after a few hundred; see ``list_rows``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field, fields

from server import authz
from server.i18n import gettext as _
from server.problems import STATUSES
from server.timeutil import LOCAL_TZ, parse_iso, to_iso
from server.workflow import FINISHED_STATES, SUPERVISION_LEVELS, local_today

PAGE_SIZE = 50
COUNT_CAP = 10_000
SEARCH_DRIVE_MAX = 5_000
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

_CJK_OR_OTHER = re.compile(r"([\u3400-\u9fff]+)|([^\s\u3400-\u9fff]+)")
_WORD = re.compile(r"[^\W_]+")
_LEDGER_NO = re.compile(r"^([A-Za-z]{2})-(\d{4})-(\d{1,6})$")


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
    broad_search: bool = False  # set by conditions(): the search matches many problems

    def query_string(self, **changes) -> str:
        """The URL query for this filter, with ``changes`` applied (None drops a key)."""
        values = {}
        for f in fields(self):
            if f.name in ("ignored", "broad_search"):
                continue
            value = changes.get(f.name, getattr(self, f.name))
            default = f.default
            if value is None or value == "" or value == default:
                continue
            values[f.name] = value.isoformat() if isinstance(value, dt.date) else value
        return urllib.parse.urlencode(values)

    @property
    def active(self) -> bool:
        return bool(self.query_string(sort="found_at", dir="desc", page=1))


def _int(value: str) -> int | None:
    if value.isascii() and value.isdigit() and len(value) < 10:
        return int(value)
    return None


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
    """A ``Filter`` from GET parameters; values that cannot be used are listed in ``ignored``."""
    result = Filter()
    for name, parser in _PARSERS.items():
        raw = (params.get(name) or "").strip()
        if not raw:
            continue
        value = parser(raw)
        if value is None:
            result.ignored.append(name)
        else:
            setattr(result, name, value)
    result.q = " ".join((params.get("q") or "").split())[:MAX_QUERY]
    return result


# Search -----------------------------------------------------------------------------


def _quote(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def fts_query(text: str) -> str | None:
    """The FTS5 query for a search text (see the module docstring), or None if it has no words."""
    terms = []
    for cjk, other in _CJK_OR_OTHER.findall(text):
        if cjk and len(cjk) == 1:
            terms.append(_quote(cjk) + "*")
        elif cjk:
            terms.append(_quote(" ".join(cjk[i:i + 2] for i in range(len(cjk) - 1))))
        else:
            terms.extend(_quote(word) for word in _WORD.findall(other))
    return " ".join(terms) or None


def search_condition(db, text: str, drive_max: int | None = None) -> tuple[str, list, bool]:
    """The SQL condition for a search, its parameters, and whether it matches many problems.

    A search matching at most SEARCH_DRIVE_MAX problems is read from the index
    first; a broader one is checked row by row (the problem's key against the
    set of matching keys), so that a page in sort order stops after a few
    hundred rows instead of fetching every match.
    """
    number = _LEDGER_NO.match(text)
    if number:
        prefix, year, serial = number.groups()
        return "p.ledger_no = ?", [f"{prefix.upper()}-{year}-{int(serial):06d}"], False
    if len(text) == 1 and not re.match(r"[\u3400-\u9fff]", text):
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return (
            "(p.description LIKE ? ESCAPE '\\' OR p.place LIKE ? ESCAPE '\\'"
            " OR p.resident_name LIKE ? ESCAPE '\\' OR p.ledger_no LIKE ? ESCAPE '\\')",
            [like] * 4,
            True,
        )
    query = fts_query(text)
    if query is None:
        return "0", [], False
    matching = "SELECT rowid FROM problems_fts WHERE problems_fts MATCH ?"
    drive_max = SEARCH_DRIVE_MAX if drive_max is None else drive_max
    keys = [row[0] for row in db.execute(f"{matching} LIMIT ?", [query, drive_max + 1])]
    if len(keys) <= drive_max:
        # Few matches: found once here, then every query of the page reads them as a list.
        return (
            "p.id IN (SELECT k.problem_id FROM problem_search_keys k"
            " WHERE k.key IN (SELECT value FROM json_each(?)))",
            [json.dumps(keys)],
            False,
        )
    return (
        f"(SELECT k.key FROM problem_search_keys k WHERE k.problem_id = p.id) IN ({matching})",
        [query],
        True,
    )


# Conditions -----------------------------------------------------------------------


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
    where = [f"likelihood({scope}, 0.5)"]
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
        row = db.execute("SELECT path FROM areas WHERE code = ?", [f.area]).fetchone()
        if row is None:
            f.ignored.append("area")
            f.area = None
        else:
            add("p.area_id IN (SELECT id FROM areas WHERE path >= ? AND path < ?)",
                row[0], row[0][:-1] + "0")
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
    if f.q:
        sql, values, broad = search_condition(db, f.q, MAX_DRIVE if drive_search else None)
        f.broad_search = f.broad_search or broad
        add(sql, *values)
    return " AND ".join(where), params


def order_by(f: Filter) -> str:
    direction = "DESC" if f.dir == "desc" else "ASC"
    return ", ".join(f"{column} {direction}" for column in (*SORTS[f.sort], "p.rowid"))


# Reading ---------------------------------------------------------------------------

LIST_COLUMNS = (
    "p.id, p.ledger_no, p.status, p.urgency, p.description, p.place, p.found_at, p.deadline,"
    " p.supervision, p.source, a.name AS area_name, c.name AS category_name,"
    " un.name AS unit_name"
)
# LEFT JOINs keep problems the outer loop of every plan (an inner join lets SQLite
# start from areas and read every problem of every area in scope).
JOINS = (
    " LEFT JOIN areas a ON a.id = p.area_id"
    " LEFT JOIN categories c ON c.id = p.category_id"
    " LEFT JOIN units un ON un.id = p.lead_unit_id"
)


def mark_overdue(rows: list[dict]) -> list[dict]:
    today = local_today().isoformat()
    for row in rows:
        row["overdue"] = bool(
            row["status"] not in FINISHED_STATES and row["deadline"] and row["deadline"] < today
        )
    return rows


def bounded(db, seconds: float, fn, *args):
    """``fn(*args)``, or None if its queries run longer than ``seconds``."""
    if seconds <= 0:
        return None
    deadline = time.monotonic() + seconds
    db.conn.set_progress_handler(lambda: time.monotonic() > deadline, 2000)
    try:
        return fn(*args)
    except sqlite3.OperationalError as error:
        if "interrupted" not in str(error):
            raise
        return None
    finally:
        db.conn.set_progress_handler(None, 0)


def list_rows(db, user: authz.User, f: Filter, many: bool = False) -> list[dict]:
    """One page of the ledger.

    ``many``: a lot of problems match (more than COUNT_CAP, or too many to
    count quickly). Reading them through the sort order's index then finds a
    page after a few thousand rows, while the planner (which has no statistics)
    may prefer a filter's index and sort every match: with a million problems,
    seconds instead of milliseconds. If the other filters are so narrow that
    the ordered read finds no page within ORDERED_BUDGET_S, the planner chooses
    (and a search reads its matches first).
    """
    def read(indexed: str, drive_search: bool = False) -> list[dict]:
        where, params = conditions(db, user, f, drive_search=drive_search)
        return list(db.query(
            f"SELECT {LIST_COLUMNS} FROM problems p{indexed} {JOINS} WHERE {where}"
            f" ORDER BY {order_by(f)} LIMIT ? OFFSET ?",
            [*params, PAGE_SIZE, (f.page - 1) * PAGE_SIZE],
        ))

    rows = None
    if many:
        rows = bounded(db, ORDERED_BUDGET_S, read, f" INDEXED BY {SORT_INDEXES[f.sort]}")
    if rows is None:
        # A broad search with narrow other filters: start from the matches after all.
        rows = read("", drive_search=bool(f.q))
    return mark_overdue(rows)


def count(db, where: str, params: list) -> int:
    """The number of matching problems, counting no further than COUNT_CAP + 1."""
    return db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM problems p WHERE {where} LIMIT ?)",
        [*params, COUNT_CAP + 1],
    ).fetchone()[0]


def status_counts(db, user: authz.User, f: Filter) -> dict[str, int | None]:
    """Matching problems per state, all other filters applied.

    A count above the cap is cap + 1; counts not made within COUNT_BUDGET_S
    (all of them together), or for a search matching many problems, are None.
    """
    where, params = conditions(db, user, f, with_status=False)
    if f.broad_search:  # every count would read the whole set of matches: not in time
        return dict.fromkeys(STATUSES)
    deadline = time.monotonic() + COUNT_BUDGET_S
    return {
        status: bounded(db, deadline - time.monotonic(), count, db,
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


def ledger(db, user: authz.User, f: Filter) -> dict:
    """Everything the ledger page shows for this filter."""
    counts = status_counts(db, user, f)
    found = total(counts, f)
    if found.value is not None:
        pages = MAX_PAGE if found.capped else max(1, min(MAX_PAGE, -(-found.value // PAGE_SIZE)))
        f.page = min(f.page, pages)
    if found.value is None:
        f.page = min(f.page, UNCOUNTED_MAX_PAGE)
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
        "units": list(db.query("SELECT id, name FROM units WHERE active ORDER BY name")),
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


# My work --------------------------------------------------------------------------

WORK_LIMIT = 50
OPEN = "p.status NOT IN ('closed', 'rejected', 'merged')"
TODAY = "date('now', '+8 hours')"


def work_queues(db, user: authz.User, soon: dt.date) -> list[dict]:
    """The user's work lists: (key, condition, order, link to the same list in the ledger).

    ``soon`` is the last day of "due within three working days".
    """
    queues = []
    if authz.OFFICE in user.roles:
        queues += [
            ("intake", "p.status = 'submitted'", "p.found_at", "status=submitted"),
            ("verify", "p.status = 'replied'", "p.found_at", "status=replied"),
            ("callback", "p.status = 'callback'", "p.found_at", "status=callback"),
            ("return_visit", "p.status = 'closed' AND p.return_visit_due <= "
             f"{TODAY} AND p.return_visit_result IS NULL", "p.return_visit_due", None),
            ("extension", "p.extension_request IS NOT NULL AND p.status IN "
             "('dispatched', 'handling')", "p.deadline", None),
        ]
    if authz.HANDLER in user.roles and user.unit_id is not None:
        unit = f"p.lead_unit_id = {int(user.unit_id)}"
        queues += [
            ("to_sign", f"{unit} AND p.status = 'dispatched'", "p.deadline",
             f"status=dispatched&unit={user.unit_id}"),
            ("in_hand", f"{unit} AND p.status = 'handling'", "p.deadline",
             f"status=handling&unit={user.unit_id}"),
            ("due_soon", f"{unit} AND p.status IN ('dispatched', 'handling') AND p.deadline"
             f" BETWEEN {TODAY} AND '{soon.isoformat()}'", "p.deadline", None),
        ]
    if authz.LEADER in user.roles:
        queues += [
            ("overdue", f"{OPEN} AND p.deadline < {TODAY}", "p.deadline", "overdue=yes"),
            ("flagged", f"{OPEN} AND p.supervision = 'flagged'", "p.deadline",
             "supervision=flagged"),
        ]
    scope, params = authz.problem_scope(user, "p")
    result = []
    for key, condition, order, link in queues:
        where = f"{scope} AND {condition}"
        rows = db.query(
            f"SELECT {LIST_COLUMNS} FROM problems p {JOINS} WHERE {where}"
            f" ORDER BY {order}, p.rowid LIMIT ?",
            [*params, WORK_LIMIT],
        )
        n = count(db, where, params)
        result.append({
            "key": key, "rows": mark_overdue(list(rows)), "link": link,
            "count": Count.of(n),
        })
    return result


# Similar problems -------------------------------------------------------------------

NEARBY_METRES = 300
SIMILAR_LIMIT = 10
TEXT_WINDOW_DAYS = 90
TEXT_THRESHOLD = 0.3


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    earth = 6_371_000
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * earth * math.asin(math.sqrt(a))


def bigrams(text: str) -> set[str]:
    grams = set()
    for run in re.findall(r"[\u3400-\u9fff]+|[^\W_]+", text.lower()):
        grams.update(run[i:i + 2] for i in range(max(1, len(run) - 1)))
    return grams


def similar(db, user: authz.User, problem: dict) -> list[dict]:
    """Problems that may be the same one: same category within NEARBY_METRES, or similar text.

    Text: problems of the same village or community found within
    TEXT_WINDOW_DAYS, whose description shares at least TEXT_THRESHOLD of its
    bigrams (Jaccard). Rejected and merged problems are left out.
    """
    scope, params = authz.problem_scope(user, "p")
    base = (
        f"SELECT {LIST_COLUMNS}, p.lat, p.lng FROM problems p {JOINS}"
        f" WHERE p.id != ? AND p.status NOT IN ('rejected', 'merged') AND {scope}"
    )
    found: dict[str, dict] = {}
    lat, lng = problem.get("lat"), problem.get("lng")
    if lat is not None and lng is not None and problem.get("category_id") is not None:
        dlat = NEARBY_METRES / 111_320
        dlng = dlat / max(0.01, math.cos(math.radians(lat)))
        for row in db.query(
            f"{base} AND p.category_id = ? AND p.lat BETWEEN ? AND ? AND p.lng BETWEEN ? AND ?"
            " LIMIT 200",
            [problem["id"], *params, problem["category_id"], lat - dlat, lat + dlat,
             lng - dlng, lng + dlng],
        ):
            distance = haversine_m(lat, lng, row["lat"], row["lng"])
            if distance <= NEARBY_METRES:
                found[row["id"]] = {**row, "distance": round(distance), "similarity": None}
    village = db.execute(
        "SELECT path FROM areas WHERE id = ?", [problem["area_id"]]
    ).fetchone()[0]
    village = "/" + "/".join(village.strip("/").split("/")[:4]) + "/"  # level 4 or above
    found_at = parse_iso(problem["found_at"])
    window = dt.timedelta(days=TEXT_WINDOW_DAYS)
    mine = bigrams(problem["description"])
    for row in db.query(
        f"{base} AND p.area_id IN (SELECT id FROM areas WHERE path >= ? AND path < ?)"
        " AND p.found_at >= ? AND p.found_at < ? LIMIT 2000",
        [problem["id"], *params, village, village[:-1] + "0", to_iso(found_at - window),
         to_iso(found_at + window)],
    ):
        theirs = bigrams(row["description"])
        score = len(mine & theirs) / len(mine | theirs) if mine | theirs else 0
        if score >= TEXT_THRESHOLD:
            entry = found.setdefault(row["id"], {**row, "distance": None})
            entry["similarity"] = round(score * 100)
    return sorted(
        found.values(),
        key=lambda row: (row["distance"] is None, row["distance"] or 0,
                         -(row["similarity"] or 0)),
    )[:SIMILAR_LIMIT]
