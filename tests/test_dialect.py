"""server/db/dialect.py: each member's spelling on both engines, and what it computes.

The SQLite spellings run on a migrated SQLite database; the PostgreSQL spellings that
need none of the schema's ``fl_*`` functions run on the throw-away cluster (marked
``postgres``); those that do run, as SQLite's do, on the database of the backend chosen.
The queries on the cluster use ``%s``, psycopg's placeholder: the backend's own ``?``
translation is tested with the backend.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from server.db.dialect import POSTGRESQL, SQLITE

# (member, arguments, SQLite spelling, PostgreSQL spelling): docs/postgresql.md, section 2.
SPELLINGS = [
    ("index_hint", ("idx_x",), "INDEXED BY idx_x", ""),
    ("not_indexed", None, "NOT INDEXED", ""),
    ("likely", ("a = 1",), "likelihood(a = 1, 0.5)", "a = 1"),
    ("unindexed", ("a = 1",), "+(a = 1)", "(a = 1)"),
    ("no_limit", None, "LIMIT -1", ""),
    ("local_day", ("p.at",), "date(p.at, '+8 hours')", "fl_local_day(p.at)"),
    ("julianday", ("p.at",), "julianday(p.at)", "fl_julianday(p.at)"),
    ("flag", ("a = 1",), "ifnull((a = 1), 0)", "coalesce((a = 1)::int, 0)"),
    ("as_int", ("a = 1",), "a = 1", "(a = 1)::int"),
    ("same", ("a", "b"), "a IS b", "a IS NOT DISTINCT FROM b"),
    ("int_sum", ("r.n",), "sum(r.n)", "sum(r.n)::bigint"),
    ("json_text", ("e.data", "k"), "json_extract(e.data, '$.k')", "((e.data)::jsonb ->> 'k')"),
    ("json_is_false", ("e.data", "k"), "json_extract(e.data, '$.k') = 0",
     "((e.data)::jsonb -> 'k') IN ('false', '0')"),
    ("json_set", ("f", "k", "3"), "json_set(f, '$.k', 3)",
     "jsonb_set((f)::jsonb, '{k}', to_jsonb(3))::text"),
    ("json_rows", ("a", "b"), "json_group_array(json_array(a, b))",
     "coalesce(json_agg(json_build_array(a, b))::text, '[]')"),
    ("byte_at", ("?1", "p.n", "?2"), "(instr(?2, substr(?1, p.n + 1, 1)) - 1)",
     "(CASE WHEN p.n < length(?1) THEN get_byte(?1, (p.n)::int) ELSE 0 END)"),
    ("like", ("p.x",), "p.x LIKE ? ESCAPE '\\'",
     "fl_ascii_fold(p.x) LIKE fl_ascii_fold(?) ESCAPE '\\'"),
    ("latest_version_sql", None, "SELECT seq FROM sqlite_sequence WHERE name = 'changes'",
     "SELECT coalesce(max(version), 0) FROM changes"),
    ("next_version_sql", None, "(SELECT seq FROM sqlite_sequence WHERE name = 'changes') + 1",
     "(SELECT coalesce(max(version), 0) + 1 FROM changes)"),
]


def spelt(dialect, member: str, args: tuple | None) -> str:
    value = getattr(dialect, member)
    return value if args is None else value(*args)


@pytest.mark.parametrize("member, args, sqlite, postgresql", SPELLINGS,
                         ids=[row[0] for row in SPELLINGS])
def test_each_member_is_spelt_for_each_engine(member, args, sqlite, postgresql):
    assert spelt(SQLITE, member, args) == sqlite
    assert spelt(POSTGRESQL, member, args) == postgresql


def test_only_postgresql_plans_itself():
    assert (SQLITE.name, SQLITE.plans_itself) == ("sqlite", False)
    assert (POSTGRESQL.name, POSTGRESQL.plans_itself) == ("postgresql", True)


def test_in_list_gives_the_condition_and_its_one_parameter():
    assert SQLITE.in_list("p.id", (1, 2)) == (
        "p.id IN (SELECT value FROM json_each(?))", "[1, 2]")
    assert POSTGRESQL.in_list("p.id", (1, 2)) == ("p.id = ANY(?)", [1, 2])


def test_the_database_carries_its_backends_dialect(db, backend):
    assert db.dialect is {"sqlite": SQLITE, "postgresql": POSTGRESQL}[backend]


# Either backend: the spellings that use the schema's functions --------------------------


def one(db, sql: str, params=()):
    return db.execute(sql, params).fetchone()


def test_local_day_and_julianday(db):
    dialect = db.dialect
    assert one(db, f"SELECT {dialect.local_day('?')}", ["2026-03-01T16:30:00+00:00"]) == (
        "2026-03-02",)
    assert one(db, f"SELECT {dialect.local_day('?')}", ["2026-03-01T15:59:59+00:00"]) == (
        "2026-03-01",)
    assert one(db, f"SELECT {dialect.julianday('?')}", ["2000-01-03"]) == (2451546.5,)


def test_like_folds_ascii_case_only(db):
    def matches(text: str, pattern: str) -> bool:
        return bool(one(db, f"SELECT {db.dialect.like('?')}", [text, pattern])[0])

    assert matches("Water Pipe", "%water%")
    assert matches("50% off", "%0\\%%") and not matches("500 off", "%0\\%%")
    assert not matches("ÄRGER", "%ärger%")  # case folding is ASCII only


def test_change_log_head(db):
    top = one(db, "SELECT max(version) FROM changes")[0]
    assert top > 0
    assert one(db, db.dialect.latest_version_sql) == (top,)
    assert one(db, f"SELECT {db.dialect.next_version_sql}") == (top + 1,)


# SQLite: the spellings run ---------------------------------------------------------------


@pytest.mark.sqlite_only
def test_sqlite_planner_steering_runs_and_steers(db):
    hint, plain = SQLITE.index_hint("idx_problems_found"), SQLITE.not_indexed
    total = one(db, "SELECT count(*) FROM problems")[0]
    assert total > 0
    plan = " ".join(row[3] for row in db.execute(
        f"EXPLAIN QUERY PLAN SELECT p.id FROM problems p {hint} WHERE p.found_at > ''"))
    assert "idx_problems_found" in plan, plan
    plan = " ".join(row[3] for row in db.execute(
        f"EXPLAIN QUERY PLAN SELECT p.id FROM problems p {plain} WHERE p.ledger_no = 'x'"))
    assert plan == "SCAN p", plan
    assert one(db, f"SELECT count(*) FROM problems p WHERE {SQLITE.likely('p.id <> ?')}",
               [""])[0] == total
    assert one(db, f"SELECT count(*) FROM problems p WHERE {SQLITE.unindexed('p.id <> ?')}",
               [""])[0] == total
    assert one(db, f"SELECT count(*) FROM (SELECT 1 FROM problems {SQLITE.no_limit})")[0] == total


@pytest.mark.sqlite_only
def test_sqlite_values(db):
    assert one(db, f"SELECT {SQLITE.flag('NULL')}, {SQLITE.flag('2 > 1')},"
                   f" {SQLITE.flag('1 > 2')}, {SQLITE.as_int('2 > 1')}") == (0, 1, 0, 1)
    assert one(db, f"SELECT {SQLITE.same('NULL', 'NULL')}, {SQLITE.same('1', '1')},"
                   f" {SQLITE.same('1', 'NULL')}") == (1, 1, 0)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("values, found", [([1, 3], [1, 3]), ([], []), (["2"], [])])
def test_sqlite_in_list(db, values, found):
    condition, param = SQLITE.in_list("x", values)
    rows = db.execute(f"WITH t(x) AS (VALUES (1), (2), (3)) SELECT x FROM t WHERE {condition}"
                      " ORDER BY x", [param]).fetchall()
    assert [row[0] for row in rows] == found


@pytest.mark.sqlite_only
def test_sqlite_json(db):
    data = json.dumps({"k": "v", "n": 2, "reached": False})
    assert one(db, f"SELECT {SQLITE.json_text('?', 'k')}, {SQLITE.json_text('?1', 'n')},"
                   f" {SQLITE.json_text('?1', 'none')}", [data]) == ("v", 2, None)
    assert one(db, f"SELECT {SQLITE.json_is_false('?', 'reached')}", [data]) == (1,)
    assert one(db, f"SELECT {SQLITE.json_is_false('?', 'reached')}", ['{"reached": true}']) == (
        0,)
    assert json.loads(one(db, f"SELECT {SQLITE.json_set(SQLITE.json_set('?', 'a', '5'), 'b', '?')}",
                          ['{"z": 1}', 7])[0]) == {"z": 1, "a": 5, "b": 7}
    rows = SQLITE.json_rows("a", "b")
    assert json.loads(one(db, f"WITH t(a, b) AS (VALUES (1, 'x'), (2, 'y')) SELECT {rows} FROM t")[
        0]) == [[1, "x"], [2, "y"]]
    assert one(db, f"WITH t(a, b) AS (VALUES (1, 'x')) SELECT {rows} FROM t WHERE a > 1") == (
        "[]",)


@pytest.mark.sqlite_only
def test_sqlite_byte_at(db):
    blob, table = bytes([5, 0, 255]), bytes(range(256))
    read = SQLITE.byte_at("?1", "?3", "?2")
    assert [one(db, f"SELECT {read}", [blob, table, n])[0] for n in range(4)] == [5, 0, 255, 0]


# PostgreSQL: the spellings that need no fl_* function run on the cluster ---------------


@pytest.fixture
def pg(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        yield conn


def pg_sql(sql: str) -> str:
    """``?`` as psycopg's placeholder (the spellings here hold no other ``?`` or ``%``)."""
    return sql.replace("?", "%s")


def pg_one(conn, sql: str, params=()):
    return conn.execute(pg_sql(sql), params).fetchone()


@pytest.mark.postgres
def test_postgresql_planner_steering_is_empty(pg):
    hint, plain, limit = (POSTGRESQL.index_hint("idx_x"), POSTGRESQL.not_indexed,
                          POSTGRESQL.no_limit)
    sql = (f"WITH t(x) AS (VALUES (1), (2), (3)) SELECT count(*) FROM (SELECT x FROM t {hint}"
           f" {plain} WHERE {POSTGRESQL.likely('x > ?')} AND {POSTGRESQL.unindexed('x < ?')}"
           f" {limit}) s")
    assert pg_one(pg, sql, [1, 3]) == (1,)


@pytest.mark.postgres
def test_postgresql_flag_and_same(pg):
    assert pg_one(pg, f"SELECT {POSTGRESQL.flag('NULL::boolean')}, {POSTGRESQL.flag('2 > 1')},"
                      f" {POSTGRESQL.flag('1 > 2')}, {POSTGRESQL.flag('2')},"
                      f" {POSTGRESQL.as_int('2 > 1')}") == (0, 1, 0, 2, 1)
    assert pg_one(pg, f"SELECT {POSTGRESQL.int_sum('n')} FROM (VALUES (2::bigint), (3)) AS t(n)"
                  ) == (5,)
    assert pg_one(pg, f"SELECT {POSTGRESQL.same('NULL::int', 'NULL::int')},"
                      f" {POSTGRESQL.same('1', '1')}, {POSTGRESQL.same('1', 'NULL::int')}") == (
        True, True, False)


@pytest.mark.postgres
@pytest.mark.parametrize("values, found", [([1, 3], [1, 3]), ([], [])])
def test_postgresql_in_list(pg, values, found):
    condition, param = POSTGRESQL.in_list("x", values)
    rows = pg.execute(pg_sql(f"WITH t(x) AS (VALUES (1::bigint), (2), (3)) SELECT x FROM t"
                             f" WHERE {condition} ORDER BY x"), [param]).fetchall()
    assert [row[0] for row in rows] == found
    condition, param = POSTGRESQL.in_list("k", ["b", "c"])
    assert pg_one(pg, f"WITH t(k) AS (VALUES ('a'), ('b')) SELECT count(*) FROM t"
                      f" WHERE {condition}", [param]) == (1,)


@pytest.mark.postgres
def test_postgresql_json(pg):
    data = json.dumps({"k": "v", "n": 2, "reached": False})
    assert pg_one(pg, f"SELECT {POSTGRESQL.json_text('?', 'k')}, {POSTGRESQL.json_text('?', 'n')},"
                      f" {POSTGRESQL.json_text('?', 'none')}", [data] * 3) == ("v", "2", None)
    assert pg_one(pg, f"SELECT {POSTGRESQL.json_is_false('?', 'reached')}", [data]) == (True,)
    assert pg_one(pg, f"SELECT {POSTGRESQL.json_is_false('?', 'reached')}",
                  ['{"reached": true}']) == (False,)
    nested = POSTGRESQL.json_set(POSTGRESQL.json_set("?::text", "a", "5"), "b", "?::bigint")
    text = pg_one(pg, f"SELECT {nested}", ['{"z": 1}', 7])[0]
    assert isinstance(text, str) and json.loads(text) == {"z": 1, "a": 5, "b": 7}
    rows = POSTGRESQL.json_rows("a", "b")
    text = pg_one(pg, f"WITH t(a, b) AS (VALUES (1, 'x'), (2, 'y'))"
                      f" SELECT {rows} FROM (SELECT * FROM t ORDER BY a) t")[0]
    assert isinstance(text, str) and json.loads(text) == [[1, "x"], [2, "y"]]
    assert pg_one(pg, f"WITH t(a, b) AS (VALUES (1, 'x')) SELECT {rows} FROM t WHERE a > 1") == (
        "[]",)


@pytest.mark.postgres
def test_postgresql_byte_at(pg):
    blob = bytes([5, 0, 255])
    read = POSTGRESQL.byte_at("?::bytea", "?::bigint", "unused")
    assert [pg_one(pg, f"SELECT {read}", [n, blob, blob, n])[0] for n in range(4)] == [
        5, 0, 255, 0]
