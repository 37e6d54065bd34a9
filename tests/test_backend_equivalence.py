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
from collections import Counter

import pytest

from server import auth
from server.db import immediate, open_database
from server.demo import seed_demo
from server.ledger import clock as ledger_clock
from server.ledger import metrics, queries
from server.ledger.search import search_condition
from server.views.ledger_pages import _stats_data
from tests.test_schema_parity import POSTGRES_ONLY_COLUMNS, SQLITE_ONLY_TABLES

pytestmark = pytest.mark.postgres

NOW = dt.datetime(2026, 3, 1, 2, 10, tzinfo=dt.UTC)
PROBLEMS = 300
# Columns holding the moment the seeder ran, not the seeded clock, or a random salt.
WALL_CLOCK = {
    "users": {"password_hash"},
    "settings": set(),
}
# Rows of other tables that hold no seeded data: the store's own epoch.
LEFT_OUT_ROWS = {"settings": "key = 'epoch'"}


@pytest.fixture(scope="module")
def frozen_clock():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ledger_clock, "utcnow", lambda: NOW)
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
    data = _stats_data(db, user, period, "completion", 5, cfg)
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
