"""PostgreSQL's schema history against SQLite's: at every step the same tables, columns,
keys, indexes and triggers, the same rows refused, and the same triggers' effects
(docs/postgresql.md, section 3); and the runner migrates once."""

from __future__ import annotations

import itertools
import re
import threading

import psycopg
import pytest
from psycopg import errors as pg_errors

from server.db import connect, postgresql
from server.db.postgresql_history import STEPS, migrate
from server.db.sqlite_history import migrations
from tests.schema_catalog import schema_catalog

pytestmark = pytest.mark.postgres

SQLITE_STEPS = [migration.name for migration in migrations._migrations]
# Tables with SQLite's implicit rowid used by queries: PostgreSQL spells it as a column.
ROWID_TABLES = ("areas", "units", "categories", "visits", "diary_entries", "problems",
                "problem_events")

# Every known difference between the two catalogs, in one place.
SQLITE_ONLY_TABLES = re.compile(
    r"sqlite_sequence|_sqlite_migrations|problems_fts(_\w+)?"
    r"|problems_search_deferral|problems_search_pending")
POSTGRES_ONLY_TABLES = {"fieldledger_migrations"}
# The search words: beside each key from m004, in the problem's row from m029.
POSTGRES_ONLY_COLUMNS = {(table, "rowid") for table in ROWID_TABLES} | {
    ("problem_search_keys", "tokens"), ("problems", "search_tokens")}
POSTGRES_ONLY_INDEXES = {"idx_problem_search_keys_tokens", "idx_problems_search_tokens"}
# FTS5 follows an edited text after the update; PostgreSQL's words (m029) before it.
SEARCH_WORD_TRIGGERS = {"problems_search_update", "problems_search_tokens_insert",
                        "problems_search_tokens_update"}
# Partial indexes: (SQLite's WHERE, PostgreSQL's as pg_get_expr writes it back).
PREDICATES = {
    "idx_supervision_open_unit": ("closed_at IS NULL", "(closed_at IS NULL)"),
    "idx_problems_tracking": ("tracking_hash IS NOT NULL", "(tracking_hash IS NOT NULL)"),
    "idx_joint_parts_current": ("state != 'removed'", "(state <> 'removed'::text)"),
    "idx_reason_options_needs_text": ("needs_text", "(needs_text <> 0)"),
}


@pytest.fixture
def new_pg_url(postgres_url):
    """Makes empty databases (C collation, as open_database requires) and drops them after."""
    admin = psycopg.connect(postgres_url, autocommit=True)
    names = (f"parity_{n}" for n in itertools.count())
    made = []

    def new() -> str:
        name = next(names)
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
                      " LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'")
        made.append(name)
        return psycopg.conninfo.make_conninfo(postgres_url, dbname=name)

    yield new
    for name in made:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


@pytest.fixture
def pg(new_pg_url):
    db = postgresql.connect(new_pg_url())
    yield db
    db.close()


@pytest.fixture
def lite(tmp_path):
    db = connect(tmp_path / "parity.db")
    yield db
    db.close()


def comparable(catalog: dict, backend: str) -> dict:
    """The catalog without the known differences of ``backend``, a listed predicate of a
    partial index as "as listed"."""
    side = 0 if backend == "sqlite" else 1
    catalog = {**catalog, "triggers": {name: trigger for name, trigger in
                                       catalog["triggers"].items()
                                       if name not in SEARCH_WORD_TRIGGERS}}
    indexes = {}
    for name, (table, unique, columns, predicate) in catalog["indexes"].items():
        if predicate is not None and PREDICATES.get(name, (None, None))[side] == predicate:
            predicate = "as listed"
        indexes[name] = (table, unique, columns, predicate)
    if backend == "sqlite":
        indexes = {name: index for name, index in indexes.items()
                   if not SQLITE_ONLY_TABLES.fullmatch(index[0])}
        tables = {name: table for name, table in catalog["tables"].items()
                  if not SQLITE_ONLY_TABLES.fullmatch(name)}
        return {**catalog, "tables": tables, "indexes": indexes}
    tables = {}
    for name, table in catalog["tables"].items():
        if name in POSTGRES_ONLY_TABLES:
            continue
        tables[name] = {
            **table,
            "columns": [column for column in table["columns"]
                        if (name, column[0]) not in POSTGRES_ONLY_COLUMNS],
            "unique": {columns for columns in table["unique"] if columns != ("rowid",)},
        }
    indexes = {name: index for name, index in indexes.items()
               if name not in POSTGRES_ONLY_INDEXES}
    return {**catalog, "tables": tables, "indexes": indexes}


def test_both_histories_name_the_same_steps():
    assert list(STEPS) == SQLITE_STEPS


def test_every_step_leaves_the_same_schema_on_both(lite, pg):
    for step, following in itertools.pairwise([*SQLITE_STEPS, None]):
        migrations.apply(lite, stop_before=following)
        assert migrate(pg, stop_before=following or _step_after(step)) == [step]
        sqlite_catalog = comparable(schema_catalog(lite), "sqlite")
        postgres_catalog = comparable(schema_catalog(pg), "postgresql")
        for part in ("tables", "indexes", "triggers"):
            assert postgres_catalog[part] == sqlite_catalog[part], f"{part} after {step}"


def _step_after(step: str) -> str | None:
    """PostgreSQL's step after ``step``: the last SQLite step may not be the last here."""
    position = STEPS.index(step) + 1
    return STEPS[position] if position < len(STEPS) else None


def test_the_change_log_sequence_hands_out_one_version_at_a_time(pg):
    migrate(pg)
    cache = pg.execute("SELECT seqcache FROM pg_sequence"
                       " WHERE seqrelid = 'changes_version_seq'::regclass").fetchone()[0]
    assert cache == 1


def test_every_foreign_key_on_postgresql_is_deferrable(pg):
    migrate(pg)
    rows = pg.execute("SELECT conname, condeferrable FROM pg_constraint"
                      " WHERE contype = 'f' AND connamespace = current_schema()::regnamespace"
                      ).fetchall()
    assert len(rows) > 40 and all(deferrable for _, deferrable in rows)


# Rows every database holds before the refusals and the triggers' effects are compared.
BASE = (
    "INSERT INTO areas (id, code, name, level, parent_id, path)"
    " VALUES (1, 'city', 'City', 1, NULL, '/1/'), (2, 'district', 'District', 2, 1, '/1/2/'),"
    " (3, 'town', 'Town', 3, 2, '/1/2/3/')",
    "INSERT INTO units (id, name, area_id) VALUES (1, 'Works', 1), (2, 'Water', 1)",
    "INSERT INTO categories (id, code, name, time_limit_days) VALUES (1, 'road', 'Road', 5)",
    "INSERT INTO users (id, username, display_name, roles, area_id, password_hash,"
    " created_at, updated_at) VALUES (1, 'alice', 'Alice', ',office,', 1, 'x', 'now', 'now')",
    "INSERT INTO problems (id, ledger_no, reporter_id, area_id, description, status,"
    " found_at, created_at, updated_at, tracking_hash)"
    " VALUES ('p1', 'ZF-2026-000001', 1, 3, 'leak', 'submitted', 'now', 'now', 'now', 'h1')",
    "INSERT INTO problem_events (id, problem_id, kind, at) VALUES ('e1', 'p1', 'report', 'now')",
    "INSERT INTO admin_audit (at, action, entity) VALUES ('now', 'create', 'users')",
    "INSERT INTO reports (number, kind, period_start, period_end, area_id, issued_by,"
    " issued_at, data) VALUES ('BG-2026-0001', 'week', 'a', 'b', 1, 1, 'now', '{}')",
    "INSERT INTO joint_parts (problem_id, unit_id, dispatched_at) VALUES ('p1', 2, 'now')",
)
SHA = "a" * 64
REFUSED = {
    "an area at level 6": ("INSERT INTO areas (code, name, level, path)"
                           " VALUES ('x', 'x', 6, '/9/')", "check"),
    "a time limit of 0 days": ("INSERT INTO categories (code, name, time_limit_days)"
                               " VALUES ('x', 'x', 0)", "check"),
    "a time limit of 366 days": ("INSERT INTO categories (code, name, time_limit_days)"
                                 " VALUES ('x', 'x', 366)", "check"),
    "a username differing in case only": (
        "INSERT INTO users (username, display_name, roles, area_id, password_hash,"
        " created_at, updated_at) VALUES ('ALICE', 'A', ',field,', 1, 'x', 'now', 'now')",
        "unique"),
    "a device revoked in an unknown mode": (
        "INSERT INTO devices (user_id, name, token_hash, created_at, revoke_mode)"
        " VALUES (1, 'd', 't', 'now', 'erase')", "check"),
    "a 63-character sha256": ("INSERT INTO attachments (sha256, size, mime, created_at)"
                              f" VALUES ('{SHA[1:]}', 1, 'image/jpeg', 'now')", "check"),
    "a link to an unknown kind of record": (
        "INSERT INTO attachment_links (sha256, record_type, record_id)"
        f" VALUES ('{SHA}', 'user', '1')", "check"),
    "a sign-in attempt in an unknown state": (
        "INSERT INTO login_attempts (account, address, at, state)"
        " VALUES ('alice', '::1', 'now', 'locked')", "check"),
    "a supervision of kind x": (
        "INSERT INTO supervision_orders (problem_id, number, kind, requirement, issued_by,"
        " issued_at) VALUES ('p1', 'DB-2026-0001', 'x', 'r', 1, 'now')", "check"),
    "a supervision with an unknown outcome": (
        "INSERT INTO supervision_orders (problem_id, number, kind, requirement, issued_by,"
        " issued_at, outcome) VALUES ('p1', 'DB-2026-0001', 'order', 'r', 1, 'now', 'won')",
        "check"),
    "a resident's rating of great": (
        "UPDATE problems SET resident_rating = 'great' WHERE id = 'p1'", "check"),
    "a second problem with the same tracking link": (
        "INSERT INTO problems (id, reporter_id, area_id, description, status, found_at,"
        " created_at, updated_at, tracking_hash)"
        " VALUES ('p2', 1, 3, 'x', 'submitted', 'now', 'now', 'now', 'h1')", "unique"),
    "a joint part in state x": (
        "INSERT INTO joint_parts (problem_id, unit_id, state, dispatched_at)"
        " VALUES ('p1', 1, 'x', 'now')", "check"),
    "a second current part of one unit": (
        "INSERT INTO joint_parts (problem_id, unit_id, dispatched_at)"
        " VALUES ('p1', 2, 'later')", "unique"),
    "a reason in an unknown list": (
        "INSERT INTO reason_options (list, code, label, position)"
        " VALUES ('praise', 'c', 'l', 1)", "check"),
    "a second needs_text option of a list": (
        "INSERT INTO reason_options (list, code, label, position, needs_text)"
        " VALUES ('reject', 'other_too', 'Other too', 9, 1)", "unique"),
    "a yearly report": (
        "INSERT INTO reports (number, kind, period_start, period_end, area_id, issued_by,"
        " issued_at, data) VALUES ('BG-2026-0002', 'year', 'a', 'b', 1, 1, 'now', '{}')",
        "check"),
    "an edited problem event": ("UPDATE problem_events SET note = 'x'",
                                "problem_events is append-only"),
    "a deleted problem event": ("DELETE FROM problem_events",
                                "problem_events is append-only"),
    "an edited audit row": ("UPDATE admin_audit SET label = 'x'", "admin_audit is append-only"),
    "a deleted audit row": ("DELETE FROM admin_audit", "admin_audit is append-only"),
    "an edited report": ("UPDATE reports SET data = '[]'", "reports are issued once"),
    "a deleted report": ("DELETE FROM reports", "reports are issued once"),
}


def refusal(error: Exception) -> str:
    """What refused a statement: "check", "unique", or a trigger's message."""
    if isinstance(error, pg_errors.CheckViolation):
        return "check"
    if isinstance(error, pg_errors.UniqueViolation):
        return "unique"
    if isinstance(error, pg_errors.RestrictViolation):  # fl_refuse
        return error.diag.message_primary
    message = str(error)
    for prefix, kind in (("CHECK constraint failed", "check"),
                         ("UNIQUE constraint failed", "unique")):
        if message.startswith(prefix):
            return kind
    return message


def test_both_refuse_the_same_rows(lite, pg):
    migrations.apply(lite)
    migrate(pg)
    for db in (lite, pg):
        for statement in BASE:
            db.execute(statement)
    for case, (statement, expected) in REFUSED.items():
        for db in (lite, pg):
            with pytest.raises(db.errors.Integrity) as refused:
                db.execute(statement)
            assert refusal(refused.value) == expected, f"{case} on {type(db).__name__}"


# Problems whose roll-up keys differ in week, area level, unit, category, features and
# deadline; then changes that count them out and in again, and a deletion.
PROBLEMS = (
    ("a", "2026-03-02T01:00:00+00:00", "accepted", 3, 1, 1, "2026-03-09", None),
    ("b", "2026-03-01T17:00:00+00:00", "closed", 2, 2, None, "2026-03-05",
     "2026-03-04T17:30:00+00:00"),
    ("c", "2026-03-08T15:59:59+00:00", "closed", 1, None, 1, None, "2026-03-09T00:00:00Z"),
    ("d", None, "submitted", 3, None, None, None, None),
    ("e", "2026-03-10T08:00:00+00:00", "rejected", 3, 1, 1, None, None),
)
CHANGES = (
    "UPDATE problems SET status = 'closed', closed_at = '2026-03-12T20:00:00+00:00',"
    " outcome = 'solved', callback_reached = 1, callback_solved = 1,"
    " satisfaction = 'basically', resident_rating = 'satisfied' WHERE id = 'a'",
    "UPDATE problems SET area_id = 2, description = 'moved' WHERE id = 'd'",
    "UPDATE problems SET responded_in_time = 1, redo_count = 2, relapsed = 1,"
    " closure_kind = 'explained', unit_dispatched_at = '2026-03-02T00:00:00Z',"
    " replied_at = '2026-03-03T00:00:00Z' WHERE id = 'b'",
    "DELETE FROM problems WHERE id = 'c'",
)


def effects(db) -> dict:
    def rows(sql):
        return [tuple(row) for row in db.execute(sql).fetchall()]

    return {
        "rollup": rows("SELECT level, week, area_id, unit_id, category_id, features, deadline,"
                       " n FROM stats_rollup ORDER BY 1, 2, 3, 4, 5, 6, 7"),
        "changes": rows("SELECT entity, entity_id, deleted FROM changes ORDER BY version"),
        "search_keys": rows("SELECT key, problem_id, area_id FROM problem_search_keys"
                            " ORDER BY key"),
        "moves": rows("SELECT problem_id, area_id, lead_unit_id FROM problem_moves"
                      " ORDER BY id"),
    }


def test_the_triggers_keep_the_same_roll_up_change_log_and_keys_on_both(lite, pg):
    migrations.apply(lite)
    migrate(pg)
    for db in (lite, pg):
        for statement in BASE[:4]:
            db.execute(statement)
        for key, accepted, status, area, unit, category, deadline, closed in PROBLEMS:
            db.execute(
                "INSERT INTO problems (id, reporter_id, area_id, lead_unit_id, category_id,"
                " description, status, found_at, created_at, updated_at, accepted_at,"
                " deadline, closed_at) VALUES (?, 1, ?, ?, ?, ?, ?, 'now', 'now', 'now',"
                " ?, ?, ?)",
                [key, area, unit, category, f"problem {key}", status, accepted, deadline,
                 closed])
    assert effects(pg) == effects(lite)
    assert len(effects(lite)["rollup"]) >= 6
    for statement in CHANGES:
        for db in (lite, pg):
            db.execute(statement)
        assert effects(pg) == effects(lite), statement


# Problems written before m009, for the steps that fill new columns from old rows: m009's
# response in time, m018's joint parts and m021's unit dispatch and extension count.
EARLY_PROBLEMS = (
    ("r1", "2026-03-02T01:00:00Z", "2026-03-03T02:00:00Z", 1, "[2]", "dispatched"),
    ("r2", "2026-03-02T01:00:00Z", "2026-03-20T02:00:00Z", 1, "[2, 1, 99]", "closed"),
    ("r3", "2026-03-06T15:00:00Z", "2026-03-09T02:00:00Z", 0, "not json", "handling"),
    ("r4", None, None, None, "[]", "submitted"),
)
EARLY_EVENTS = (
    ("v1", "r1", "dispatch", "2026-03-02T01:00:00Z"),
    ("v2", "r2", "dispatch", "2026-03-02T01:00:00Z"),
    ("v3", "r2", "dispatch", "2026-03-04T01:00:00Z"),
    ("v4", "r2", "approve_extension", "2026-03-05T01:00:00Z"),
    ("v5", "r2", "approve_extension", "2026-03-06T01:00:00Z"),
)


def filled(db) -> dict:
    def rows(sql):
        return [tuple(row) for row in db.execute(sql).fetchall()]

    return {
        "problems": rows("SELECT id, responded_in_time, unit_dispatched_at, extension_count"
                         " FROM problems ORDER BY id"),
        "joint_parts": rows("SELECT problem_id, unit_id, state, dispatched_at, dispatched_by,"
                            " legacy FROM joint_parts ORDER BY problem_id, unit_id"),
        "rollup": rows("SELECT level, week, area_id, unit_id, category_id, features,"
                       " deadline, n FROM stats_rollup ORDER BY 1, 2, 3, 4, 5, 6, 7"),
    }


def test_the_data_steps_fill_the_same_values_on_both(lite, pg):
    migrations.apply(lite, stop_before="m009_stats_rollup")
    migrate(pg, stop_before="m009_stats_rollup")
    for db in (lite, pg):
        for statement in BASE[:4]:
            db.execute(statement)
        for key, dispatched, signed, contacted, helpers, status in EARLY_PROBLEMS:
            db.execute(
                "INSERT INTO problems (id, reporter_id, area_id, lead_unit_id, category_id,"
                " description, status, found_at, created_at, updated_at, accepted_at,"
                " dispatched_at, signed_at, resident_contacted, helper_unit_ids, deadline)"
                " VALUES (?, 1, 3, 1, 1, 'x', ?, 'now', 'now', 'now', ?, ?, ?, ?, ?,"
                " '2026-03-30')",
                [key, status, dispatched, dispatched, signed, contacted, helpers])
        for key, problem, kind, at in EARLY_EVENTS:
            db.execute("INSERT INTO problem_events (id, problem_id, kind, actor_id, at)"
                       " VALUES (?, ?, ?, 1, ?)", [key, problem, kind, at])
    migrations.apply(lite)
    migrate(pg)
    assert filled(pg) == filled(lite)
    assert [row[1] for row in filled(lite)["problems"]] == [1, 0, 0, None]
    assert len(filled(lite)["joint_parts"]) == 2


def test_migrating_again_applies_nothing(pg):
    assert migrate(pg) == list(STEPS)
    assert migrate(pg) == []
    applied = pg.execute("SELECT name FROM fieldledger_migrations ORDER BY name").fetchall()
    assert [name for (name,) in applied] == sorted(STEPS)


def test_a_step_that_fails_leaves_nothing_behind(pg, monkeypatch):
    from server.db.postgresql_history import m024_ask_reporter

    def half_done(db):
        db.execute("ALTER TABLE problems ADD COLUMN info_request text")
        raise RuntimeError("disk full")

    monkeypatch.setattr(m024_ask_reporter, "apply", half_done)
    with pytest.raises(RuntimeError):
        migrate(pg)
    columns = pg.execute("SELECT 1 FROM information_schema.columns"
                         " WHERE table_name = 'problems' AND column_name = 'info_request'")
    assert columns.fetchone() is None
    assert "m023_working_set" in {name for (name,) in pg.execute(
        "SELECT name FROM fieldledger_migrations").fetchall()}
    monkeypatch.undo()
    assert migrate(pg) == ["m024_ask_reporter", *STEPS[STEPS.index("m024_ask_reporter") + 1:]]


def test_stopping_before_an_unknown_step_is_refused(pg):
    with pytest.raises(ValueError, match="m012"):
        migrate(pg, stop_before="m012_nothing")


def test_two_servers_migrating_together_apply_each_step_once(new_pg_url):
    url = new_pg_url()
    databases = [postgresql.connect(url) for _ in range(2)]
    applied, failures = {}, []
    start = threading.Barrier(2)

    def run(index: int) -> None:
        start.wait()
        try:
            applied[index] = migrate(databases[index])
        except Exception as failure:  # reported below, with the other thread's result
            failures.append(failure)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for db in databases:
        db.close()
    assert failures == []
    assert sorted(applied[0] + applied[1]) == sorted(STEPS)
    assert not set(applied[0]) & set(applied[1])
