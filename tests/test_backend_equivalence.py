"""One ledger, two backends: the same demo ledger seeded into SQLite and PostgreSQL gives
the same tables, roll-up, statistics, ledger pages and search results
(docs/postgresql.md 5.4)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import hashlib
import json
import random
import re

import pytest

from server import auth
from server.db import immediate, open_database
from server.demo import seed_demo
from server.ledger import clock as ledger_clock
from server.ledger import metrics, queries
from server.ledger.search import search_condition
from server.views.ledger_pages import _stats_data, _stats_side_tables
from tests.test_schema_parity import POSTGRES_ONLY_COLUMNS, SQLITE_ONLY_TABLES

pytestmark = pytest.mark.postgres

NOW = dt.datetime(2026, 3, 1, 2, 10, tzinfo=dt.UTC)
PROBLEMS = 3000
# Columns holding the moment the seeder ran, not the seeded clock, or a random salt.
WALL_CLOCK = {
    "users": {"password_hash"},
    "settings": set(),
}
# Rows of other tables that hold no seeded data: the store's own epoch.
LEFT_OUT_ROWS = {"settings": "key = 'epoch'"}


# The ledger page's time budgets: a count or read not made in time is shown as unknown,
# which depends on the machine's load, not on the backend.
BUDGETS = ("COUNT_BUDGET_S", "ORDERED_BUDGET_S", "NARROW_COUNT_BUDGET_S", "INTERSECT_BUDGET_S")


@pytest.fixture(scope="module")
def frozen_clock():
    """The seeded clock, and time enough for every count of the ledger pages."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ledger_clock, "utcnow", lambda: NOW)
        for budget in BUDGETS:
            patch.setattr(queries, budget, 60.0)
        yield


@pytest.fixture(scope="module")
def ledgers(tmp_path_factory, pg_databases, frozen_clock):
    """(SQLite, PostgreSQL): the same demo ledger in each."""
    lite = open_database(tmp_path_factory.mktemp("equivalence") / "demo.db")
    pg = open_database(pg_databases.url_of(pg_databases.create(template=pg_databases.empty)))
    for db in (lite, pg):
        seed_demo(db, seed=11, problems=PROBLEMS, now=NOW)
    yield lite, pg
    lite.close()
    pg.close()


# Normalising ----------------------------------------------------------------------


def plain(value):
    """A value as JSON can hold it alike from both drivers: ints for integral numbers,
    floats rounded, dates and bytes as text, JSON-valued text parsed."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (decimal.Decimal, float)):
        return int(value) if value == int(value) else round(float(value), 9)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def as_json(value) -> str:
    return json.dumps(plain(value), ensure_ascii=False, sort_keys=True, default=str)


def assert_same(lite_value, pg_value, what: str = ""):
    left, right = json.loads(as_json(lite_value)), json.loads(as_json(pg_value))
    assert left == right, what


# Tables ----------------------------------------------------------------------------


def data_tables(lite) -> list[str]:
    names = [row[0] for row in lite.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return [name for name in names if not SQLITE_ONLY_TABLES.fullmatch(name)]


def table_rows(db, table: str) -> list[str]:
    where = LEFT_OUT_ROWS.get(table)
    cursor = db.execute(f"SELECT * FROM {table}" + (f" WHERE NOT ({where})" if where else ""))
    columns = [column[0] for column in cursor.description]
    skipped = WALL_CLOCK.get(table, set()) | {
        column for only_in, column in POSTGRES_ONLY_COLUMNS if only_in == table}
    return sorted(
        as_json({name: value for name, value in zip(columns, row, strict=True)
                 if name not in skipped})
        for row in cursor.fetchall()
    )


def test_seeding_writes_the_same_tables(ledgers):
    lite, pg = ledgers
    tables = data_tables(lite)
    assert "problems" in tables
    assert lite.execute("SELECT count(*) FROM problems").fetchone()[0] >= PROBLEMS
    differing = {}
    for table in tables:
        lite_rows, pg_rows = table_rows(lite, table), table_rows(pg, table)
        checksum = [hashlib.sha256("\n".join(rows).encode()).hexdigest()
                    for rows in (lite_rows, pg_rows)]
        if len(lite_rows) != len(pg_rows) or checksum[0] != checksum[1]:
            only_lite = sorted(set(lite_rows) - set(pg_rows))[:2]
            only_pg = sorted(set(pg_rows) - set(lite_rows))[:2]
            differing[table] = (len(lite_rows), len(pg_rows), only_lite, only_pg)
    assert differing == {}


def test_the_rollup_is_the_same_row_for_row(ledgers):
    lite, pg = ledgers
    assert_same(table_rows(lite, "stats_rollup"), table_rows(pg, "stats_rollup"))


# Metrics ---------------------------------------------------------------------------

# One user of each role, and district-scoped ones (the demo's usernames).
METRIC_USERS = ("admin", "office", "office_dc", "leader", "leader_dc", "field", "field3",
                "handler_zjj", "handler_dc")
# NOW is Sunday 2026-03-01, local time: each length starting on a Monday and off one.
PERIODS = {
    "week": (metrics.Period(dt.date(2026, 2, 16), dt.date(2026, 2, 22)),
             metrics.Period(dt.date(2026, 2, 18), dt.date(2026, 2, 24))),
    "month": (metrics.Period(dt.date(2026, 2, 2), dt.date(2026, 3, 1)),
              metrics.Period(dt.date(2026, 1, 1), dt.date(2026, 1, 31))),
    "quarter": (metrics.Period(dt.date(2025, 12, 1), dt.date(2026, 2, 28)),
                metrics.Period(dt.date(2025, 10, 1), dt.date(2025, 12, 31))),
    "year": (metrics.Period(dt.date(2025, 3, 3), dt.date(2026, 3, 1)),
             metrics.Period(dt.date(2025, 1, 1), dt.date(2025, 12, 31))),
}


def user_named(db, username: str):
    user_id = db.execute("SELECT id FROM users WHERE username = ?", [username]).fetchone()[0]
    return auth.load_user(db, user_id)


def stats_page(db, username: str, period: metrics.Period) -> dict:
    """The statistics page's numbers: compute, helper units, ranking, assessment, reasons,
    and the previous period's totals."""
    user = user_named(db, username)
    cfg = metrics.settings(db)
    today = ledger_clock.local_today()
    parts = [row for part in (metrics.UNIT_AND_CATEGORY, metrics.AREA_AND_WEEK)
             for row in metrics.rollup_part(db, user, period, part, today)]
    data = _stats_data(db, user, period, "completion", 5, cfg, parts, today)
    data.update(_stats_side_tables(db, user, period))
    data["totals_alone"] = metrics.totals(db, user, period, cfg)
    return data


@pytest.mark.parametrize("username", METRIC_USERS)
@pytest.mark.parametrize("length", PERIODS)
def test_the_statistics_are_the_same(ledgers, username, length):
    lite, pg = ledgers
    for period in PERIODS[length]:
        lite_page, pg_page = stats_page(lite, username, period), stats_page(pg, username, period)
        assert lite_page["totals"]["closed"] + lite_page["totals"]["replied"] >= 0
        for part in lite_page:
            assert_same(lite_page[part], pg_page[part], f"{part} of {period}")


# The ledger's pages ------------------------------------------------------------------

# One user of each role, and a district-scoped office user.
LEDGER_USERS = ("admin", "office", "office_dc", "leader", "field", "handler_zjj")
SORTED_PAGES = [
    {"sort": sort, "dir": direction}
    for sort in queries.SORTS for direction in ("asc", "desc")
]
FILTERED_PAGES = [
    {"status": "closed"},
    {"status": "handling", "sort": "deadline"},
    {"overdue": "yes"},
    {"overdue": "no", "sort": "ledger_no", "dir": "asc"},
    {"urgency": "urgent", "sort": "status"},
    {"source": "hotline", "page": "2"},
    {"supervision": "flagged"},
    {"area": "370102", "sort": "found_at", "dir": "asc"},
    {"accepted_from": "2025-12-01", "accepted_to": "2026-01-31", "sort": "deadline"},
    {"found_from": "2026-02-01", "closed_to": "2026-02-28"},
    {"category": "3", "unit": "2"},
    {"page": "3"},
]


def ledger_page(db, username: str, params: dict) -> dict:
    found = queries.ledger(db, user_named(db, username), queries.parse(params))
    return {"ids": [row["id"] for row in found["rows"]], "counts": found["counts"],
            "total": found["total"], "pages": found["pages"]}


@pytest.mark.parametrize("username", LEDGER_USERS)
def test_the_ledger_pages_are_the_same(ledgers, username):
    lite, pg = ledgers
    for params in SORTED_PAGES + FILTERED_PAGES:
        assert_same(ledger_page(lite, username, params), ledger_page(pg, username, params),
                    str(params))


# Search -----------------------------------------------------------------------------

# Problems added to both ledgers whose text stresses the tokenizer and the query rule.
ADVERSARIAL = (
    "3号楼漏水", "漏水3号楼ABC", "屋顶漏", "漏", "漏水漏水漏水", "供水管网改造工程",
    "一二三四五六", "㐀㐁㐂 extension A", "𠀀𠀁 extension B 𠀂", "ＡＢＣ１２３ 全角",
    "Café crème", "CAFE creme", "café-au-lait", "Ünïcödé", "straße STRASSE",
    "路灯,不亮;水压-不足", "ZF-2026-000012 已登记", "zf-2026-12 重复", "O'Brien 家门口",
    "\"引号\" 测试", "a_b c-d e.f", "２号楼 漏水", "漏 水", "x", "X 单字母",
)


@pytest.fixture(scope="module")
def searchable(ledgers):
    """The ledgers with the adversarial problems added to each alike."""
    lite, pg = ledgers
    template = next(lite.query(
        "SELECT * FROM problems WHERE status = 'submitted' ORDER BY id LIMIT 1"))
    for db in (lite, pg):
        with immediate(db):
            for n, text in enumerate(ADVERSARIAL):
                db["problems"].insert({
                    **template,
                    "id": f"00000000-0000-4000-9000-{n:012d}",
                    "description": text,
                    "place": ADVERSARIAL[-1 - n] if n % 3 == 0 else template["place"],
                    "resident_name": "Zoë ＺＨＡＮＧ" if n % 4 == 0 else template["resident_name"],
                })
    return lite, pg


CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
ASCII_WORD = re.compile(r"[A-Za-z0-9]+")


def search_queries(lite) -> list[str]:
    """Queries built from the data: the CJK substrings of 1-4 characters of 200 sampled
    descriptions, the ASCII words, ledger numbers whole and in part, single characters,
    the adversarial texts and pieces of them, and queries that find nothing."""
    descriptions = [row[0] for row in lite.execute(
        "SELECT description FROM problems ORDER BY id")]
    sample = random.Random(3).sample(descriptions, 200)
    found: set[str] = set()
    for text in sample:
        for run in CJK_RUN.findall(text):
            for length in range(1, 5):
                found.update(run[i:i + length] for i in range(len(run) - length + 1))
    for text in descriptions + list(ADVERSARIAL):
        found.update(ASCII_WORD.findall(text))
    numbers = [row[0] for row in lite.execute(
        "SELECT ledger_no FROM problems WHERE ledger_no IS NOT NULL ORDER BY ledger_no LIMIT 40")]
    for number in numbers:
        found.update({number, number.lower(), number[3:], number[-6:], number[-3:],
                      number.replace("-0", "-", 1)})
    found.update(ADVERSARIAL)
    for text in ADVERSARIAL:
        found.update(text.split())
        found.update(text[i:i + 2] for i in range(len(text) - 1))
    found.update(["a", "Z", "3", "%", "_", "\\", "-", "\"", "'", "漏", "水", "ＡＢＣ", "abc",
                  "cafe", "CAFÉ", "creme", "strasse", "ß", "１２３", "123", "Zoe", "zhang",
                  "\"漏水\"", "漏水 -路灯", "3号楼 漏水", "不存在的词", "qqqqzzzz", "漏水 qqqq"])
    return sorted(text for text in found if text.strip())


def matched_ids(db, text: str) -> list[str]:
    condition = search_condition(db, text)
    return [row[0] for row in db.execute(
        f"SELECT p.id FROM problems p WHERE {condition.sql} ORDER BY p.id", condition.params)]


def test_search_finds_the_same_problems(searchable):
    lite, pg = searchable
    texts = search_queries(lite)
    assert len(texts) > 1000
    differing, finding = {}, 0
    for text in texts:
        lite_ids, pg_ids = matched_ids(lite, text), matched_ids(pg, text)
        finding += bool(lite_ids)
        if lite_ids != pg_ids:
            differing[text] = (len(lite_ids), len(pg_ids))
    assert differing == {}
    assert finding > len(texts) * 0.8


@pytest.mark.parametrize("username", LEDGER_USERS)
def test_searching_the_ledger_gives_the_same_pages(searchable, username):
    lite, pg = searchable
    texts = search_queries(lite)[::25] + list(ADVERSARIAL)
    differing = []
    for text in texts:
        for params in ({"q": text}, {"q": text, "sort": "ledger_no", "dir": "asc"}):
            if as_json(ledger_page(lite, username, params)) != as_json(
                    ledger_page(pg, username, params)):
                differing.append(params)
    assert differing == []
