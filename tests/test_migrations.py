"""Migrations that change how data is kept: m005's search body."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.db import connect, immediate, open_database, search_indexed_at_end
from server.db.sqlite_history import migrate, migrations, search_body
from server.db.sqlite_history._shared import _search_body

# SQLite's schema history: PostgreSQL's has its own tests (test_schema_parity.py).
pytestmark = pytest.mark.sqlite_only

SAMPLES = [
    ("幸福社区3号楼顶层漏水，墙面渗水严重", "幸福小区3号楼", "张大爷", "ZF-2026-000123"),
    ("物业不作为", "", "", None),
    ("路灯不亮 street light broken", "Main St. 5", "Li Wei", None),
    ("漏", "水", "", ""),
    ("𠀀 emoji 😀 and 㐀䶵 一龥 at the edges", "\t", "", None),
    ("text before\0after a NUL", "x", "y", None),
    ("\0starts with a NUL", "", "", None),
]

CHARS = st.characters(
    codec="utf-8", categories=["L", "N", "P", "S", "Z", "Cc"], include_characters="\0 漏水物业"
)


def m004_body(conn: sqlite3.Connection, values: tuple) -> str | None:
    """The text m004's SQL rule gives for one problem's columns."""
    return conn.execute(
        f"SELECT {_search_body('p')} FROM (SELECT ? AS description, ? AS place,"
        " ? AS resident_name, ? AS ledger_no) p",
        values,
    ).fetchone()[0]


def test_search_body_is_m004s_rule_for_samples():
    conn = sqlite3.connect(":memory:")
    for values in SAMPLES:
        assert search_body(*values) == m004_body(conn, values), values


@settings(max_examples=300, deadline=None)
@given(st.tuples(st.text(CHARS, max_size=40), st.text(CHARS, max_size=10),
                 st.text(CHARS, max_size=5), st.none() | st.text(CHARS, max_size=14)))
def test_search_body_is_m004s_rule(values):
    assert search_body(*values) == m004_body(sqlite3.connect(":memory:"), values)


def test_search_triggers_call_the_function_on_every_connection(tmp_path):
    path = tmp_path / "a.db"
    db = open_database(path)
    triggers = dict(db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
        " AND name LIKE 'problems_search_%'").fetchall())
    assert sorted(triggers) == ["problems_search_area", "problems_search_delete",
                                "problems_search_insert", "problems_search_update"]
    assert all("fl_search_body(" in sql and "RECURSIVE" not in sql
               for name, sql in triggers.items() if name != "problems_search_area")
    other = connect(path)
    assert other.execute("SELECT fl_search_body('漏水', '', '', NULL)").fetchone()[0] == (
        " 漏水  水    ")


def add_city_and_reporter(db) -> None:
    """The rows a problem needs: an area (id 1) and a field official (id 1)."""
    db.execute("INSERT INTO areas (id, code, name, level, path) VALUES (1, 'c', '市', 1, '/1/')")
    db.execute("INSERT INTO users (id, username, display_name, roles, area_id, password_hash,"
               " created_at, updated_at) VALUES (1, 'f', 'F', 'field', 1, 'x', 'now', 'now')")


def matches(db, query: str) -> list[str]:
    return [row[0] for row in db.execute(
        "SELECT k.problem_id FROM problems_fts f JOIN problem_search_keys k ON k.key = f.rowid"
        " WHERE problems_fts MATCH ? ORDER BY 1", [query])]


def test_the_index_m004_built_stays_right_after_m005(tmp_path):
    db = connect(tmp_path / "a.db")
    migrations.apply(db, stop_before="m005_search_function")
    add_city_and_reporter(db)
    for problem_id, description in (("a", "3号楼漏水"), ("b", "物业不作为")):
        db.execute("INSERT INTO problems (id, reporter_id, area_id, description, status,"
                   " found_at, created_at, updated_at)"
                   " VALUES (?, 1, 1, ?, 'submitted', 'now', 'now', 'now')",
                   [problem_id, description])
    migrate(db)
    assert matches(db, '"漏水"') == ["a"] and matches(db, '"物业"') == ["b"]
    # Rows indexed by m004's rule are removed by m005's: the texts are the same.
    db.execute("UPDATE problems SET description = '楼道漏水' WHERE id = 'b'")
    db.execute("DELETE FROM problems WHERE id = 'a'")
    assert matches(db, '"漏水"') == ["b"] and matches(db, '"物业"') == []
    assert matches(db, '"楼道"') == ["b"] and matches(db, "3") == []
    db.execute("INSERT INTO problems_fts (problems_fts) VALUES ('integrity-check')")


def test_problems_written_in_a_deferral_are_indexed_once_at_its_end(tmp_path):
    db = open_database(tmp_path / "a.db")
    add_city_and_reporter(db)
    insert = ("INSERT INTO problems (id, reporter_id, area_id, description, status, found_at,"
              " created_at, updated_at) VALUES (?, 1, 1, ?, 'submitted', 'now', 'now', 'now')")
    db.execute(insert, ["old", "楼道灯坏了"])
    with immediate(db), search_indexed_at_end(db):
        db.execute(insert, ["a", "3号楼漏水"])
        db.execute(insert, ["b", "物业不作为"])
        db.execute("UPDATE problems SET description = '物业不管' WHERE id = 'b'")
        db.execute("UPDATE problems SET description = '楼道漏水' WHERE id = 'old'")
        db.execute(insert, ["gone", "水管破裂"])
        db.execute("DELETE FROM problems WHERE id = 'gone'")
        assert matches(db, '"漏水"') == ["old"]  # the new ones wait for the end
    assert matches(db, '"漏水"') == ["a", "old"]
    assert matches(db, '"物业 业不 不管"') == ["b"] and matches(db, '"作为"') == []
    assert matches(db, '"灯坏"') == [] and matches(db, '"水管"') == []
    assert db.execute("SELECT count(*) FROM problems_search_pending").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM problems_search_deferral").fetchone() == (0,)
    db.execute("INSERT INTO problems_fts (problems_fts) VALUES ('integrity-check')")


def test_a_deferral_that_raises_still_indexes_what_it_wrote(tmp_path):
    db = open_database(tmp_path / "a.db")
    add_city_and_reporter(db)
    with immediate(db), contextlib.suppress(RuntimeError), search_indexed_at_end(db):
        db.execute("INSERT INTO problems (id, reporter_id, area_id, description, status,"
                   " found_at, created_at, updated_at)"
                   " VALUES ('c', 1, 1, '路灯不亮', 'submitted', 'now', 'now', 'now')")
        raise RuntimeError("the caller goes on and commits")
    assert matches(db, '"路灯"') == ["c"]
    assert db.execute("SELECT count(*) FROM problems_search_deferral").fetchone() == (0,)


def test_m008_gives_every_search_key_its_problems_area(tmp_path):
    db = connect(tmp_path / "a.db")
    migrations.apply(db, stop_before="m008_search_areas")
    add_city_and_reporter(db)
    db.execute("INSERT INTO areas (id, code, name, level, parent_id, path)"
               " VALUES (2, 'd', '区', 2, 1, '/1/2/')")
    insert = ("INSERT INTO problems (id, reporter_id, area_id, description, status, found_at,"
              " created_at, updated_at) VALUES (?, 1, ?, '漏水', 'submitted', 'now', 'now', 'now')")
    db.execute(insert, ["a", 1])
    db.execute(insert, ["b", 2])
    migrate(db)
    db.execute(insert, ["c", 2])
    db.execute("UPDATE problems SET area_id = 1 WHERE id = 'b'")
    db.execute("INSERT OR REPLACE INTO problems (id, reporter_id, area_id, description, status,"
               " found_at, created_at, updated_at)"
               " VALUES ('a', 1, 2, '漏水', 'submitted', 'now', 'now', 'now')")
    assert db.execute("SELECT problem_id, area_id FROM problem_search_keys"
                      " ORDER BY problem_id").fetchall() == [("a", 2), ("b", 1), ("c", 2)]


def test_m009_works_out_past_responses_and_rolls_up_the_cohort(tmp_path):
    db = connect(tmp_path / "a.db")
    migrations.apply(db, stop_before="m009_stats_rollup")
    add_city_and_reporter(db)
    for area_id, level, path in ((2, 2, "/1/2/"), (3, 3, "/1/2/3/"), (4, 4, "/1/2/3/4/")):
        db.execute("INSERT INTO areas (id, code, name, level, parent_id, path)"
                   " VALUES (?, ?, 'x', ?, ?, ?)", [area_id, f"a{area_id}", level, area_id - 1,
                                                     path])
    insert = ("INSERT INTO problems (id, reporter_id, area_id, description, status, found_at,"
              " created_at, updated_at, accepted_at, dispatched_at, signed_at,"
              " resident_contacted) VALUES (?, 1, ?, 'x', ?, 'now', 'now', 'now', ?, ?, ?, ?)")
    # Wednesday 30 September 2026 (10:00 local); the National Day holiday follows.
    dispatched = "2026-09-30T02:00:00+00:00"
    for problem_id, area_id, status, signed_at, contacted in (
            ("in-time", 4, "handling", "2026-10-08T09:00:00+00:00", 1),
            ("late", 3, "handling", "2026-10-09T09:00:00+00:00", 1),
            ("not-contacted", 2, "handling", "2026-09-30T03:00:00+00:00", 0),
            ("unsigned", 4, "dispatched", None, None),
            ("rejected", 4, "rejected", None, None)):
        db.execute(insert, [problem_id, area_id, status, "2026-09-29T02:00:00+00:00",
                            dispatched, signed_at, contacted])
    migrate(db)
    assert dict(db.execute("SELECT id, responded_in_time FROM problems").fetchall()) == {
        "in-time": 1, "late": 0, "not-contacted": 0, "unsigned": None, "rejected": None}
    # The week of 28 September 2026, per district (level 2: all four in district 2) and per
    # town (level 3: town 3 for the village and the town itself; the problem in the
    # district itself under the district): the rejected problem counts nowhere.
    week = (dt.date(2026, 9, 28) - dt.date(2000, 1, 3)).days // 7
    assert db.execute("SELECT level, week, area_id, sum(n) FROM stats_rollup"
                      " GROUP BY 1, 2, 3 ORDER BY 1, 3").fetchall() == [
        (2, week, 2, 4), (3, week, 2, 1), (3, week, 3, 3)]
    db.execute("UPDATE problems SET status = 'rejected' WHERE id = 'late'")
    db.execute("DELETE FROM problems WHERE id = 'not-contacted'")
    assert db.execute("SELECT level, area_id, sum(n) FROM stats_rollup GROUP BY 1, 2"
                      ).fetchall() == [(2, 2, 2), (3, 3, 2)]


def test_m011_rolls_up_the_closure_kinds_and_relapses_already_there(tmp_path):
    from server.db.sqlite_history import ROLLUP_LEVELS, rollup_key_sql
    from server.ledger import metrics

    db = connect(tmp_path / "a.db")
    migrations.apply(db, stop_before="m011_closures")
    add_city_and_reporter(db)
    insert = ("INSERT INTO problems (id, reporter_id, area_id, description, status, found_at,"
              " created_at, updated_at, accepted_at, closure_kind, relapsed)"
              " VALUES (?, 1, 1, 'x', ?, 'now', 'now', 'now', '2026-09-29T02:00:00+00:00', ?, ?)")
    for problem_id, status, kind, relapsed in (
            ("unreachable", "closed", "unreachable", 0), ("no-contact", "closed", "no_contact", 0),
            ("explained", "closed", "explained", 1), ("relapsed", "dispatched", None, 1)):
        db.execute(insert, [problem_id, status, kind, relapsed])
    migrate(db)

    def rollup():
        return sorted(db.execute("SELECT level, week, area_id, unit_id, category_id, features,"
                                 " deadline, n FROM stats_rollup").fetchall())

    rebuilt = sorted(tuple(row) for level in ROLLUP_LEVELS for row in db.execute(
        f"SELECT {rollup_key_sql('p', level)}, count(*) FROM problems p"
        " GROUP BY 1, 2, 3, 4, 5, 6, 7"))
    assert rollup() == rebuilt
    closures = {metrics.unpack(row[5])["closure"] for row in rollup()}
    assert closures == {0, 1, 2, 3}
    assert sum(row[7] for row in rollup() if metrics.unpack(row[5])["relapsed"]) == 2 * 2
    # The triggers watch the new columns.
    db.execute("UPDATE problems SET closure_kind = NULL, relapsed = 0")
    assert {metrics.unpack(row[5])["closure"] for row in rollup()} == {0}
    assert not [row for row in rollup() if metrics.unpack(row[5])["relapsed"]]


def test_m013_replaces_the_failure_counter_with_counted_attempts(tmp_path):
    db = connect(tmp_path / "a.db")
    migrations.apply(db, stop_before="m013_lockout")
    db.execute("INSERT INTO login_failures (key, failures, first_failure_at, locked_until)"
               " VALUES ('field1', 0, '2026-01-01T00:00:00+00:00', '2026-01-01T00:15:00+00:00')")
    migrate(db)
    assert not db["login_failures"].exists()
    assert db["login_attempts"].columns_dict == {
        "id": int, "account": str, "address": str, "at": str, "state": str}
    with contextlib.suppress(sqlite3.IntegrityError), immediate(db):
        db.execute("INSERT INTO login_attempts (account, address, at, state)"
                   " VALUES ('a', '', 'now', 'ok')")
    assert db["login_attempts"].count == 0


def test_m014_sessions_already_open_count_their_idle_time_from_their_start(tmp_path):
    db = connect(tmp_path / "a.db")
    migrations.apply(db, stop_before="m014_accounts")
    db.execute("INSERT INTO areas (code, name, level, path) VALUES ('1', 'c', 1, '/1/')")
    db.execute("INSERT INTO users (username, display_name, roles, area_id, password_hash,"
               " created_at, updated_at) VALUES ('u', 'u', 'field', 1, 'x', 'now', 'now')")
    db.execute("INSERT INTO web_sessions (token_hash, user_id, created_at, expires_at)"
               " VALUES ('h', 1, '2026-12-06T01:00:00+00:00', '2026-12-06T13:00:00+00:00')")
    migrate(db)
    assert db.execute("SELECT last_seen_at FROM web_sessions").fetchone()[0] == (
        "2026-12-06T01:00:00+00:00")


def test_m019_seeds_the_lists_of_reasons_and_keeps_them_consistent(tmp_path):
    db = connect(tmp_path / "a.db")
    migrations.apply(db, stop_before="m019_reasons")
    db.execute("INSERT INTO areas (code, name, level, path) VALUES ('1', 'c', 1, '/1/')")
    db.execute("INSERT INTO users (username, display_name, roles, area_id, password_hash,"
               " created_at, updated_at) VALUES ('u', 'u', 'office', 1, 'x', 'now', 'now')")
    db.execute("INSERT INTO problems (id, reporter_id, area_id, description, status, found_at,"
               " created_at, updated_at) VALUES ('p', 1, 1, 'x', 'rejected', 'now', 'now',"
               " 'now')")
    db.execute("INSERT INTO problem_events (id, problem_id, kind, at, to_status, note)"
               " VALUES ('e', 'p', 'reject', '2026-12-01T02:00:00+00:00', 'rejected', '旧')")
    migrate(db)
    counts = dict(db.execute("SELECT list, count(*) FROM reason_options GROUP BY list"))
    assert counts == {"reject": 5, "return": 4, "extension": 5, "explained": 5}
    assert db.execute("SELECT label FROM reason_options WHERE list = 'reject'"
                      " ORDER BY position LIMIT 1").fetchone() == ("不属于受理范围",)
    # An event from before keeps no code; the problem's columns start empty.
    assert db.execute("SELECT reject_reason_code FROM problems").fetchone() == (None,)
    # m026 counts the old event by reason ('' for none); m027 drops m019's index by kind,
    # so one problem's events of a kind are read through the problem's.
    assert db.execute("SELECT day, kind, code, n FROM reason_rollup").fetchall() == [
        ("2026-12-01", "reject", "", 1)]
    plan = " ".join(row[3] for row in db.execute(
        "EXPLAIN QUERY PLAN SELECT note FROM problem_events WHERE problem_id = 'p'"
        " AND kind = 'reject' ORDER BY at DESC, rowid DESC LIMIT 1"))
    assert "idx_problem_events_problem" in plan
    for statement in (
            # One option per list needs a note; a label once per list; a known list only.
            "UPDATE reason_options SET needs_text = 1 WHERE list = 'reject'",
            "INSERT INTO reason_options (list, code, label, position)"
            " VALUES ('reject', 'x', '重复反映', 9)",
            "INSERT INTO reason_options (list, code, label, position)"
            " VALUES ('reject', 'other', '新的', 9)",
            "INSERT INTO reason_options (list, code, label, position)"
            " VALUES ('nonsense', 'x', 'x', 1)"):
        with contextlib.suppress(sqlite3.IntegrityError), immediate(db):
            db.execute(statement)
            raise AssertionError(statement)


def test_m018_backfills_a_part_for_each_helper_of_a_dispatched_problem(tmp_path):
    db = connect(tmp_path / "a.db")
    migrations.apply(db, stop_before="m018_joint")
    add_city_and_reporter(db)
    for unit_id, name in ((1, "住建局"), (2, "水务集团"), (3, "交通局")):
        db.execute("INSERT INTO units (id, name, area_id) VALUES (?, ?, 1)", [unit_id, name])
    insert = ("INSERT INTO problems (id, reporter_id, area_id, description, status, found_at,"
              " created_at, updated_at, lead_unit_id, helper_unit_ids, dispatched_at)"
              " VALUES (?, 1, 1, 'x', ?, 'now', 'now', 'now', 1, ?, ?)")
    for problem_id, status, helpers, dispatched_at in (
            ("open", "handling", "[2, 3]", "2026-11-02T01:00:00+00:00"),
            ("closed", "closed", "[3]", "2026-10-02T01:00:00+00:00"),
            ("never-dispatched", "accepted", "[2]", None),
            ("lead-as-helper", "handling", "[1, 99]", "2026-11-03T01:00:00+00:00"),  # 99: gone
            ("bad-json", "handling", "not json", "2026-11-03T01:00:00+00:00")):
        db.execute(insert, [problem_id, status, helpers, dispatched_at])
    db.execute("INSERT INTO problem_events (id, problem_id, kind, actor_id, at, data)"
               " VALUES ('e1', 'open', 'dispatch', 1, '2026-11-05T01:00:00+00:00', '{}')")
    migrate(db)
    rows = db.execute("SELECT problem_id, unit_id, state, dispatched_at, dispatched_by, legacy"
                      " FROM joint_parts ORDER BY problem_id, unit_id").fetchall()
    assert rows == [
        ("closed", 3, "dispatched", "2026-10-02T01:00:00+00:00", None, 1),
        ("open", 2, "dispatched", "2026-11-05T01:00:00+00:00", 1, 0),  # the latest dispatch
        ("open", 3, "dispatched", "2026-11-05T01:00:00+00:00", 1, 0),
    ]
    # One current part per (problem, unit).
    with contextlib.suppress(sqlite3.IntegrityError), immediate(db):
        db.execute("INSERT INTO joint_parts (problem_id, unit_id, dispatched_at)"
                   " VALUES ('open', 2, 'now')")
    assert db["joint_parts"].count == 3


def test_m017_adds_the_tracking_link_and_rolls_up_the_residents_ratings(tmp_path):
    from server.db.sqlite_history import ROLLUP_LEVELS, rollup_key_sql
    from server.ledger import metrics

    db = connect(tmp_path / "a.db")
    migrations.apply(db, stop_before="m017_tracking")
    add_city_and_reporter(db)
    db.execute("INSERT INTO problems (id, reporter_id, area_id, description, status, found_at,"
               " created_at, updated_at, accepted_at) VALUES ('old', 1, 1, 'x', 'closed', 'now',"
               " 'now', 'now', '2026-09-29T02:00:00+00:00')")
    migrate(db)
    assert db.execute("SELECT tracking_hash, resident_rating, resident_comment,"
                      " resident_rated_at, resident_rating_changed_at FROM problems"
                      ).fetchall() == [(None, None, "", None, None)]
    assert db["tracking_hits"].columns_dict == {"id": int, "key": str, "at": str}

    def rollup():
        return sorted(db.execute("SELECT level, week, area_id, unit_id, category_id, features,"
                                 " deadline, n FROM stats_rollup").fetchall())

    def rebuilt():
        return sorted(tuple(row) for level in ROLLUP_LEVELS for row in db.execute(
            f"SELECT {rollup_key_sql('p', level)}, count(*) FROM problems p"
            " GROUP BY 1, 2, 3, 4, 5, 6, 7"))

    assert rollup() == rebuilt()
    # The triggers watch the rating.
    db.execute("UPDATE problems SET resident_rating = 'basically'")
    assert rollup() == rebuilt()
    assert {metrics.unpack(row[5])["resident_rating"] for row in rollup()} == {2}
    # A rating outside the three is refused; two problems cannot share a link.
    with contextlib.suppress(sqlite3.IntegrityError), immediate(db):
        db.execute("UPDATE problems SET resident_rating = 'great'")
    assert db.execute("SELECT resident_rating FROM problems").fetchone()[0] == "basically"
    db.execute("UPDATE problems SET tracking_hash = ?", ["a" * 64])
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO problems (id, reporter_id, area_id, description, status,"
                   " found_at, created_at, updated_at, tracking_hash)"
                   " VALUES ('new', 1, 1, 'x', 'submitted', 'now', 'now', 'now', ?)", ["a" * 64])


def test_m020_adds_reports_numbered_beside_the_ledgers_counters(tmp_path):
    db = connect(tmp_path / "a.db")
    migrations.apply(db, stop_before="m020_reports")
    db.execute("INSERT INTO ledger_counters (year, last_no) VALUES (2026, 41)")
    migrate(db)
    assert db.execute("SELECT last_no, report_last_no FROM ledger_counters").fetchone() == (41, 0)
    assert set(db["reports"].columns_dict) == {
        "id", "number", "kind", "period_start", "period_end", "area_id", "issued_by",
        "issued_at", "data"}
    with contextlib.suppress(sqlite3.IntegrityError), immediate(db):
        db.execute("INSERT INTO reports (number, kind, period_start, period_end, area_id,"
                   " issued_by, issued_at, data) VALUES ('BG-2026-0001', 'year', '', '', 1, 1,"
                   " '', '{}')")
    assert db["reports"].count == 0  # the kind is checked


def test_m021_backfills_the_unit_s_dispatch_and_the_extensions_and_rolls_up_anew(tmp_path):
    from server.db.sqlite_history import ROLLUP_LEVELS, rollup_key_sql
    from server.ledger import metrics

    db = connect(tmp_path / "a.db")
    migrations.apply(db, stop_before="m021_rules")
    add_city_and_reporter(db)
    db.execute("INSERT INTO units (id, name, area_id) VALUES (1, '住建局', 1)")
    insert = ("INSERT INTO problems (id, reporter_id, area_id, description, status, found_at,"
              " created_at, updated_at, accepted_at, lead_unit_id, dispatched_at, deadline,"
              " replied_at, redo_count) VALUES (?, 1, 1, 'x', ?, 'now', 'now', 'now',"
              " '2026-09-29T02:00:00+00:00', ?, ?, '2026-10-20', ?, ?)")
    dispatched = "2026-09-29T03:00:00+00:00"
    for problem_id, status, unit, at, replied, redo in (
            ("with-unit", "replied", 1, dispatched, "2026-10-10T02:00:00+00:00", 1),
            ("late-reply", "replied", 1, dispatched, "2026-10-21T02:00:00+00:00", 0),
            ("no-unit", "accepted", None, None, None, 0)):
        db.execute(insert, [problem_id, status, unit, at, replied, redo])
    for n, kind in enumerate(("approve_extension", "approve_extension", "refuse_extension")):
        db.execute("INSERT INTO problem_events (id, problem_id, kind, at, from_status,"
                   " to_status, note, data) VALUES (?, 'with-unit', ?, 'now', 'handling', NULL,"
                   " '', '{}')", [f"e{n}", kind])
    migrate(db)
    rows = {row["id"]: row for row in db.query("SELECT * FROM problems")}
    assert rows["with-unit"]["unit_dispatched_at"] == dispatched
    assert rows["no-unit"]["unit_dispatched_at"] is None
    assert (rows["with-unit"]["extension_count"], rows["late-reply"]["extension_count"]) == (2, 0)
    assert rows["with-unit"]["unjustified_returns"] == rows["with-unit"]["redo_pending"] == 0

    def rollup():
        return sorted(db.execute("SELECT level, week, area_id, unit_id, category_id, features,"
                                 " deadline, n FROM stats_rollup").fetchall())

    rebuilt = sorted(tuple(row) for level in ROLLUP_LEVELS for row in db.execute(
        f"SELECT {rollup_key_sql('p', level)}, count(*) FROM problems p"
        " GROUP BY 1, 2, 3, 4, 5, 6, 7"))
    assert rollup() == rebuilt
    replies = sorted(metrics.unpack(row[5])["unit_reply"] for row in rollup() if row[0] == 2)
    assert replies == [metrics.UNIT_NONE, metrics.UNIT_ON_TIME, metrics.UNIT_LATE]
    assert sum(row[7] for row in rollup() if metrics.unpack(row[5])["redone"]) == 2
    # The triggers watch the new columns.
    db.execute("UPDATE problems SET redo_count = 0, unjustified_returns = 1")
    assert not [row for row in rollup() if metrics.unpack(row[5])["redone"]]
    assert all(metrics.unpack(row[5])["unjustified_return"] for row in rollup())


def test_m023_lets_the_working_set_walk_the_newest_problems_from_one_index(tmp_path):
    from server import authz
    from server.timeutil import now_iso
    from sync import working_set

    db = open_database(tmp_path / "ledger.db")
    assert "idx_problems_working_set" in {index.name for index in db["problems"].indexes}
    user = authz.User(id=1, username="o", display_name="o", roles=frozenset({"office"}),
                     area_id=1, area_path="/1/", unit_id=None)
    clause, params = working_set.problem_condition(
        user, working_set.Horizon(now_iso(), "2026-01-01"), "p")
    plan = [row[-1] for row in db.execute(
        "EXPLAIN QUERY PLAN SELECT p.found_at, p.rowid FROM problems p"
        f" INDEXED BY idx_problems_working_set WHERE {clause} ORDER BY p.found_at DESC", params)]
    # The whole walk reads the index alone: the rows are looked up only for the page.
    assert any("COVERING INDEX idx_problems_working_set" in step for step in plan), plan
