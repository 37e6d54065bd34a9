"""Schema: every change is a named migration, applied in order, each in one transaction.

Never edit a migration that has shipped; add a new one.
The tables are described in docs/architecture.md.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("fieldledger")


def run_script(db: sqlite_utils.Database, script: str) -> None:
    """Run SQL statements one by one.

    ``executescript`` would commit the migration's open transaction first, so
    the script is split into complete statements instead.
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            if statement.strip():
                db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement: {statement!r}")


@migrations()
def m001_foundation(db: sqlite_utils.Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );

        CREATE TABLE areas (
            id INTEGER PRIMARY KEY,
            code TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            level INTEGER NOT NULL CHECK (level BETWEEN 1 AND 5),
            parent_id INTEGER REFERENCES areas(id),
            path TEXT NOT NULL UNIQUE,
            lat REAL,
            lng REAL,
            active INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX idx_areas_parent ON areas(parent_id);

        CREATE TABLE units (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            area_id INTEGER NOT NULL REFERENCES areas(id),
            contact_name TEXT NOT NULL DEFAULT '',
            contact_phone TEXT NOT NULL DEFAULT '',
            active INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX idx_units_area ON units(area_id);

        CREATE TABLE categories (
            id INTEGER PRIMARY KEY,
            code TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL UNIQUE,
            default_unit_id INTEGER REFERENCES units(id),
            time_limit_days INTEGER NOT NULL CHECK (time_limit_days BETWEEN 1 AND 365),
            active INTEGER NOT NULL DEFAULT 1
        );

        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            display_name TEXT NOT NULL,
            phone TEXT NOT NULL DEFAULT '',
            roles TEXT NOT NULL,
            area_id INTEGER NOT NULL REFERENCES areas(id),
            unit_id INTEGER REFERENCES units(id),
            password_hash TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_users_area ON users(area_id);
        CREATE INDEX idx_users_unit ON users(unit_id);

        CREATE TABLE web_sessions (
            id INTEGER PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            user_id INTEGER NOT NULL REFERENCES users(id),
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE INDEX idx_web_sessions_user ON web_sessions(user_id);

        CREATE TABLE devices (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_seen_at TEXT,
            revoked_at TEXT,
            revoke_mode TEXT CHECK (revoke_mode IN ('stop', 'wipe')),
            revoked_by INTEGER REFERENCES users(id)
        );
        CREATE INDEX idx_devices_user ON devices(user_id);

        CREATE TABLE login_failures (
            key TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            first_failure_at TEXT NOT NULL,
            locked_until TEXT
        );

        CREATE TABLE visits (
            id TEXT PRIMARY KEY,
            author_id INTEGER NOT NULL REFERENCES users(id),
            area_id INTEGER REFERENCES areas(id),
            place TEXT NOT NULL DEFAULT '',
            method TEXT NOT NULL,
            checklist TEXT NOT NULL DEFAULT '[]',
            companions TEXT NOT NULL DEFAULT '',
            started_at TEXT NOT NULL,
            ended_at TEXT,
            lat REAL,
            lng REAL,
            accuracy_m REAL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_visits_author ON visits(author_id, started_at);
        CREATE INDEX idx_visits_area ON visits(area_id, started_at);

        CREATE TABLE diary_entries (
            id TEXT PRIMARY KEY,
            visit_id TEXT REFERENCES visits(id),
            author_id INTEGER NOT NULL REFERENCES users(id),
            area_id INTEGER REFERENCES areas(id),
            person_name TEXT NOT NULL DEFAULT '',
            person_kind TEXT NOT NULL,
            phone TEXT NOT NULL DEFAULT '',
            address TEXT NOT NULL DEFAULT '',
            content TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_diary_visit ON diary_entries(visit_id);
        CREATE INDEX idx_diary_author ON diary_entries(author_id, recorded_at);

        CREATE TABLE problems (
            id TEXT PRIMARY KEY,
            ledger_no TEXT UNIQUE,
            reporter_id INTEGER NOT NULL REFERENCES users(id),
            visit_id TEXT REFERENCES visits(id),
            diary_id TEXT REFERENCES diary_entries(id),
            area_id INTEGER NOT NULL REFERENCES areas(id),
            place TEXT NOT NULL DEFAULT '',
            lat REAL,
            lng REAL,
            category_id INTEGER REFERENCES categories(id),
            urgency TEXT NOT NULL DEFAULT 'normal',
            description TEXT NOT NULL,
            resident_name TEXT NOT NULL DEFAULT '',
            resident_phone TEXT NOT NULL DEFAULT '',
            suggested_unit_id INTEGER REFERENCES units(id),
            source TEXT NOT NULL DEFAULT 'visit',
            status TEXT NOT NULL,
            lead_unit_id INTEGER REFERENCES units(id),
            deadline TEXT,
            solved_on_spot INTEGER NOT NULL DEFAULT 0,
            supervision TEXT NOT NULL DEFAULT 'none',
            found_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            accepted_at TEXT,
            dispatched_at TEXT,
            closed_at TEXT
        );
        CREATE INDEX idx_problems_area_status ON problems(area_id, status);
        CREATE INDEX idx_problems_status_found ON problems(status, found_at);
        CREATE INDEX idx_problems_unit_status ON problems(lead_unit_id, status);
        CREATE INDEX idx_problems_reporter ON problems(reporter_id, found_at);
        CREATE INDEX idx_problems_found ON problems(found_at);

        CREATE TABLE problem_events (
            id TEXT PRIMARY KEY,
            problem_id TEXT NOT NULL REFERENCES problems(id),
            kind TEXT NOT NULL,
            actor_id INTEGER REFERENCES users(id),
            at TEXT NOT NULL,
            from_status TEXT,
            to_status TEXT,
            note TEXT NOT NULL DEFAULT '',
            data TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX idx_problem_events_problem ON problem_events(problem_id, at);

        CREATE TABLE attachments (
            sha256 TEXT PRIMARY KEY CHECK (length(sha256) = 64),
            size INTEGER NOT NULL,
            mime TEXT NOT NULL,
            width INTEGER,
            height INTEGER,
            uploaded_by INTEGER REFERENCES users(id),
            created_at TEXT NOT NULL
        );

        CREATE TABLE attachment_links (
            -- No foreign key: a record may name a photo whose bytes are
            -- still on their way (text syncs first).
            sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
            record_type TEXT NOT NULL CHECK (record_type IN ('visit', 'diary', 'problem', 'event')),
            record_id TEXT NOT NULL,
            position INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (record_type, record_id, sha256)
        );
        CREATE INDEX idx_attachment_links_sha ON attachment_links(sha256);

        -- Problem events are an append-only history.
        CREATE TRIGGER problem_events_no_update BEFORE UPDATE ON problem_events
        BEGIN SELECT RAISE(ABORT, 'problem_events is append-only'); END;
        CREATE TRIGGER problem_events_no_delete BEFORE DELETE ON problem_events
        BEGIN SELECT RAISE(ABORT, 'problem_events is append-only'); END;
        """
    )


# (table, entity name in the change log). Frozen with m002: a later change
# to the synced tables belongs in a new migration.
SYNCED_TABLES = (
    ("areas", "area"), ("units", "unit"), ("categories", "category"),
    ("visits", "visit"), ("diary_entries", "diary"), ("problems", "problem"),
)


def _bump(entity: str, id_expression: str, deleted: int = 0) -> str:
    key = f"CAST({id_expression} AS TEXT)"
    return (
        f"DELETE FROM changes WHERE entity = '{entity}' AND entity_id = {key};\n"
        f"INSERT INTO changes (entity, entity_id, deleted) VALUES ('{entity}', {key}, {deleted});"
    )


def _change_log_triggers(tables) -> str:
    """Triggers that move a row to the top of the change log whenever it is written."""
    statements = []
    for table, entity in tables:
        for event in ("INSERT", "UPDATE"):
            statements.append(
                f"CREATE TRIGGER {table}_changed_{event.lower()} AFTER {event} ON {table}\n"
                f"BEGIN\n{_bump(entity, 'NEW.id')}\nEND;"
            )
        statements.append(
            f"CREATE TRIGGER {table}_changed_delete AFTER DELETE ON {table}\n"
            f"BEGIN\n{_bump(entity, 'OLD.id', deleted=1)}\nEND;"
        )
    # A new event changes its problem: phones receive problems with their history.
    statements.append(
        "CREATE TRIGGER problem_events_changed AFTER INSERT ON problem_events\n"
        f"BEGIN\n{_bump('problem', 'NEW.problem_id')}\nEND;"
    )
    return "\n".join(statements) + "\n"


@migrations()
def m002_sync(db: sqlite_utils.Database) -> None:
    """The sync protocol: server epoch, per-client progress, the change log, uploads.

    Triggers keep the change log: whatever writes a synced table (a phone's
    push, the office, an import, the demo seeder) stamps the row with a new
    global version, so no write path can forget to.
    """
    import uuid

    db["settings"].insert({"key": "epoch", "value": str(uuid.uuid4())})
    run_script(
        db,
        """
        CREATE TABLE sync_clients (
            client_id TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            device_id INTEGER REFERENCES devices(id),
            last_mutation_id INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        -- Mutations the server refused for good, with the reason shown on the phone.
        CREATE TABLE sync_rejections (
            client_id TEXT NOT NULL,
            mutation_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            code TEXT NOT NULL,
            message TEXT NOT NULL,
            args TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (client_id, mutation_id)
        );

        -- One row per synced record, at the version of its latest change: a
        -- pull reads the rows above its cursor, so its cost follows the number
        -- of changes, not the size of the ledger.
        CREATE TABLE changes (
            version INTEGER PRIMARY KEY AUTOINCREMENT,
            entity TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0,
            UNIQUE (entity, entity_id)
        );

        CREATE TABLE uploads (
            id TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            length INTEGER NOT NULL,
            sha256 TEXT,
            filename TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            completed_at TEXT
        );
        CREATE INDEX idx_uploads_user_sha ON uploads(user_id, sha256);

        ALTER TABLE problems ADD COLUMN conflict INTEGER NOT NULL DEFAULT 0;
        -- A duplicate points at the original it was merged into.
        ALTER TABLE problems ADD COLUMN merged_into TEXT REFERENCES problems(id);
        -- For each editable field, the version at which it last changed.
        ALTER TABLE problems ADD COLUMN field_versions TEXT NOT NULL DEFAULT '{}';

        """,
    )
    run_script(db, _change_log_triggers(SYNCED_TABLES))
    for table, entity in SYNCED_TABLES:
        db.execute(
            f"INSERT INTO changes (entity, entity_id) SELECT '{entity}', id FROM {table}"
            " ORDER BY rowid"
        )


@migrations()
def m003_ledger(db: sqlite_utils.Database) -> None:
    """The problem ledger's workflow: numbering, deadlines, replies, callbacks, return visits."""
    run_script(
        db,
        """
        CREATE TABLE ledger_counters (
            year INTEGER PRIMARY KEY,
            last_no INTEGER NOT NULL
        );

        -- Working-day calendar entries that override (or extend) the bundled
        -- Chinese holiday calendar: public holidays and adjusted working days.
        CREATE TABLE calendar_days (
            day TEXT PRIMARY KEY,
            is_workday INTEGER NOT NULL,
            note TEXT NOT NULL DEFAULT ''
        );

        ALTER TABLE categories ADD COLUMN return_visit_days INTEGER NOT NULL DEFAULT 30;

        ALTER TABLE problems ADD COLUMN helper_unit_ids TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE problems ADD COLUMN original_deadline TEXT;
        ALTER TABLE problems ADD COLUMN extension_request TEXT;
        ALTER TABLE problems ADD COLUMN signed_at TEXT;
        ALTER TABLE problems ADD COLUMN resident_contacted INTEGER;
        ALTER TABLE problems ADD COLUMN replied_at TEXT;
        ALTER TABLE problems ADD COLUMN outcome TEXT;
        ALTER TABLE problems ADD COLUMN redo_count INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE problems ADD COLUMN callback_reached INTEGER;
        ALTER TABLE problems ADD COLUMN callback_solved INTEGER;
        ALTER TABLE problems ADD COLUMN satisfaction TEXT;
        ALTER TABLE problems ADD COLUMN closed_on_time INTEGER;
        ALTER TABLE problems ADD COLUMN return_visit_due TEXT;
        ALTER TABLE problems ADD COLUMN return_visit_result TEXT;
        ALTER TABLE problems ADD COLUMN relapsed INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE problems ADD COLUMN supervision_note TEXT NOT NULL DEFAULT '';
        CREATE INDEX idx_problems_deadline ON problems(status, deadline);
        CREATE INDEX idx_problems_return_due ON problems(return_visit_due);
        """,
    )


def _search_body(row: str) -> str:
    """SQL for the indexed text of one problem row (``row`` is NEW, OLD or a table alias).

    ASCII and other non-CJK characters are copied as they are (FTS5's unicode61
    tokenizer makes words of them); each CJK character becomes the bigram it
    starts, or itself at the end of a run: 漏水 -> " 漏水  水 ". Frozen with
    m004: server/ledger/queries.py builds its queries on this shape.
    """
    text = (
        f"{row}.description || ' ' || {row}.place || ' ' || {row}.resident_name"
        f" || ' ' || ifnull({row}.ledger_no, '')"
    )
    return f"""(WITH RECURSIVE s(rest) AS (SELECT {text}
            UNION ALL SELECT substr(rest, 2) FROM s WHERE length(rest) > 1)
        SELECT group_concat(CASE
            WHEN unicode(rest) NOT BETWEEN 13312 AND 40959 THEN substr(rest, 1, 1)
            WHEN unicode(substr(rest, 2)) BETWEEN 13312 AND 40959
                THEN ' ' || substr(rest, 1, 2) || ' '
            ELSE ' ' || substr(rest, 1, 1) || ' ' END, '')
        FROM s)"""


@migrations()
def m004_search(db: sqlite_utils.Database) -> None:
    """Ledger search and filters: a bigram full-text index, and indexes for filters and stats.

    ``problem_search_keys`` gives each problem a stable integer key (a rowid
    without INTEGER PRIMARY KEY may change on VACUUM); ``problems_fts`` is a
    contentless FTS5 index keyed by it. Triggers keep both in step with
    description, place, resident name and ledger number, in plain SQL, so any
    connection (the app, the seeder, the sqlite3 shell) may write problems.
    """
    text_columns = "description, place, resident_name, ledger_no"
    changed = " OR ".join(
        f"OLD.{column} IS NOT NEW.{column}" for column in text_columns.split(", ")
    )
    run_script(
        db,
        f"""
        CREATE TABLE problem_search_keys (
            key INTEGER PRIMARY KEY,
            problem_id TEXT NOT NULL UNIQUE
        );
        CREATE VIRTUAL TABLE problems_fts USING fts5(body, content = '');

        INSERT INTO problem_search_keys (problem_id) SELECT id FROM problems ORDER BY rowid;
        INSERT INTO problems_fts (rowid, body)
            SELECT k.key, {_search_body("p")}
            FROM problem_search_keys k JOIN problems p ON p.id = k.problem_id;

        CREATE TRIGGER problems_search_insert AFTER INSERT ON problems
        BEGIN
            -- OR REPLACE: an INSERT OR REPLACE of a problem fires no delete trigger.
            INSERT OR REPLACE INTO problem_search_keys (problem_id) VALUES (NEW.id);
            INSERT INTO problems_fts (rowid, body) VALUES (
                (SELECT key FROM problem_search_keys WHERE problem_id = NEW.id),
                {_search_body("NEW")});
        END;
        CREATE TRIGGER problems_search_update AFTER UPDATE OF {text_columns} ON problems
        WHEN {changed}
        BEGIN
            INSERT INTO problems_fts (problems_fts, rowid, body) VALUES ('delete',
                (SELECT key FROM problem_search_keys WHERE problem_id = OLD.id),
                {_search_body("OLD")});
            INSERT INTO problems_fts (rowid, body) VALUES (
                (SELECT key FROM problem_search_keys WHERE problem_id = NEW.id),
                {_search_body("NEW")});
        END;
        CREATE TRIGGER problems_search_delete AFTER DELETE ON problems
        BEGIN
            INSERT INTO problems_fts (problems_fts, rowid, body) VALUES ('delete',
                (SELECT key FROM problem_search_keys WHERE problem_id = OLD.id),
                {_search_body("OLD")});
            DELETE FROM problem_search_keys WHERE problem_id = OLD.id;
        END;

        CREATE INDEX idx_problems_category_found ON problems(category_id, found_at);
        CREATE INDEX idx_problems_unit_found ON problems(lead_unit_id, found_at);
        CREATE INDEX idx_problems_supervision_found ON problems(supervision, found_at);
        CREATE INDEX idx_problems_urgency_found ON problems(urgency, found_at);
        CREATE INDEX idx_problems_source_found ON problems(source, found_at);
        CREATE INDEX idx_diary_recorded ON diary_entries(recorded_at);
        CREATE INDEX idx_problems_deadline_only ON problems(deadline);
        CREATE INDEX idx_problems_closed ON problems(closed_at);
        -- Nearby problems of the same category (a bounding box on lat/lng).
        CREATE INDEX idx_problems_category_lat ON problems(category_id, lat);
        -- Statistics read a period of acceptances from this index alone.
        CREATE INDEX idx_problems_stats ON problems(
            accepted_at, status, lead_unit_id, category_id, area_id, dispatched_at, signed_at,
            resident_contacted, deadline, closed_at, closed_on_time, outcome, callback_reached,
            callback_solved, satisfaction
        );
        """,
    )


SEARCH_BODY_FUNCTION = "fl_search_body"
# The CJK code points of m004's rule (13312-40959), which become bigrams.
_CJK_RUN = re.compile("[\u3400-\u9fff]+")


def _bigrams(run: re.Match) -> str:
    chars = run.group()
    return "".join(f" {chars[i:i + 2]} " for i in range(len(chars) - 1)) + f" {chars[-1]} "


def search_body(description, place, resident_name, ledger_no) -> str | None:
    """The indexed text of one problem: the rule of m004's ``_search_body``, in Python.

    Frozen with m005: the full-text index holds this text (the index m004
    built included, as the rule is the same), and a contentless FTS5 index
    can only remove a row given the very text it indexed.
    """
    if description is None or place is None or resident_name is None:
        return None  # as SQL's || gives
    text = f"{description} {place} {resident_name} {ledger_no or ''}"
    # SQLite's text functions stop at a NUL character; m004's rule did too.
    text, nul, _rest = text.partition("\0")
    if nul and not text:
        return "  "
    return _CJK_RUN.sub(_bigrams, text)


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions the schema's triggers call; every connection that writes needs them."""
    conn.create_function(SEARCH_BODY_FUNCTION, 4, search_body, deterministic=True)


SEARCH_TEXT_COLUMNS = ("description", "place", "resident_name", "ledger_no")


def search_body_sql(row: str) -> str:
    """SQL for the indexed text of the problem row ``row`` (NEW, OLD or an alias)."""
    columns = ", ".join(f"{row}.{column}" for column in SEARCH_TEXT_COLUMNS)
    return f"{SEARCH_BODY_FUNCTION}({columns})"


# Problems written while a deferral is open enter the index once, at its end
# (``server.db.search_indexed_at_end``). CROSS JOIN keeps SQLite reading the
# few pending keys first, not every key.
INDEX_PENDING_SQL = f"""INSERT INTO problems_fts (rowid, body)
    SELECT k.key, {search_body_sql("p")} FROM problems_search_pending s
    CROSS JOIN problem_search_keys k ON k.key = s.key
    CROSS JOIN problems p ON p.id = k.problem_id"""


@migrations()
def m005_search_function(db: sqlite_utils.Database) -> None:
    """The search triggers call ``search_body``, and a sync push indexes its problems at once.

    Cutting the text into bigrams in SQL cost ~100 µs per written problem.
    ``search_body`` gives the same text (so the index m004 built stays right);
    ``server.db.connect`` registers it on every connection. A connection
    without it (the sqlite3 shell) can still read problems and change their
    other columns, but inserting or deleting a problem or changing its text
    fails with "no such function".

    FTS5 writes its pending rows to disk at every savepoint, and a push opens
    one per mutation: indexed one by one, each new problem became a segment
    of its own, merged again at commit. While ``problems_search_deferral``
    holds a row (only ever inside a write transaction), a new problem's key
    goes to ``problems_search_pending`` instead, and ``INDEX_PENDING_SQL``
    indexes them all in one statement before the commit.
    """
    changed = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in SEARCH_TEXT_COLUMNS)
    key = "(SELECT key FROM problem_search_keys WHERE problem_id = {}.id)"
    run_script(
        db,
        f"""
        CREATE TABLE problems_search_deferral (id INTEGER PRIMARY KEY CHECK (id = 1));
        CREATE TABLE problems_search_pending (key INTEGER PRIMARY KEY);

        DROP TRIGGER problems_search_insert;
        DROP TRIGGER problems_search_update;
        DROP TRIGGER problems_search_delete;

        CREATE TRIGGER problems_search_insert AFTER INSERT ON problems
        BEGIN
            -- OR REPLACE: an INSERT OR REPLACE of a problem fires no delete trigger.
            INSERT OR REPLACE INTO problem_search_keys (problem_id) VALUES (NEW.id);
            INSERT INTO problems_search_pending (key)
                SELECT {key.format("NEW")} WHERE EXISTS (SELECT 1 FROM problems_search_deferral);
            INSERT INTO problems_fts (rowid, body)
                SELECT {key.format("NEW")}, {search_body_sql("NEW")}
                WHERE NOT EXISTS (SELECT 1 FROM problems_search_deferral);
        END;
        -- A pending problem is not in the index yet: it is indexed as it is at the end.
        CREATE TRIGGER problems_search_update AFTER UPDATE OF {", ".join(SEARCH_TEXT_COLUMNS)}
        ON problems
        WHEN ({changed})
            AND {key.format("OLD")} NOT IN (SELECT key FROM problems_search_pending)
        BEGIN
            INSERT INTO problems_fts (problems_fts, rowid, body) VALUES ('delete',
                {key.format("OLD")}, {search_body_sql("OLD")});
            INSERT INTO problems_fts (rowid, body) VALUES (
                {key.format("NEW")}, {search_body_sql("NEW")});
        END;
        CREATE TRIGGER problems_search_delete AFTER DELETE ON problems
        BEGIN
            INSERT INTO problems_fts (problems_fts, rowid, body)
                SELECT 'delete', {key.format("OLD")}, {search_body_sql("OLD")}
                WHERE {key.format("OLD")} NOT IN (SELECT key FROM problems_search_pending);
            DELETE FROM problems_search_pending WHERE key = {key.format("OLD")};
            DELETE FROM problem_search_keys WHERE problem_id = OLD.id;
        END;
        """,
    )


# m006's row-only statistics features, as its index stores them (and m009's extend them).
STATS_FEATURES_M006 = (
    "(ifnull((status = 'closed'), 0) << 0)"
    " | (ifnull((status = 'closed' AND coalesce(closed_on_time, deadline IS NULL"
    " OR date(closed_at, '+8 hours') <= deadline) = 1), 0) << 1)"
    " | (ifnull((outcome IS NOT NULL), 0) << 2)"
    " | (ifnull((outcome = 'solved'), 0) << 3)"
    " | (ifnull((callback_reached = 1 AND callback_solved IS NOT NULL"
    " AND satisfaction IS NOT NULL), 0) << 4)"
    " | (ifnull((callback_solved = 1), 0) << 5)"
    " | (ifnull((CASE satisfaction WHEN 'satisfied' THEN 1 WHEN 'basically' THEN 2"
    " WHEN 'unsatisfied' THEN 3 ELSE 0 END), 0) << 6)"
    " | (ifnull((dispatched_at IS NOT NULL), 0) << 8)"
)


@migrations()
def m006_stats_features(db: sqlite_utils.Database) -> None:
    """Statistics read the cohort's time-independent features from an index.

    The index holds, besides the columns the statistics query reads, the
    values of three expressions of that query (``server.ledger.metrics``): the packed
    features that depend on the problem row alone (its ``stored_features_sql``,
    frozen here as text), and the Julian days of acceptance and dispatch.
    SQLite reads an indexed expression from the index when the query's
    expression is the same, and otherwise computes it from the row, so the
    figures never depend on this index, only the speed. It replaces
    ``idx_problems_stats`` (m004), which the statistics alone used.

    Also an index on ``visit_id`` (each listed visit counts its problems, which
    without it reads every problem), and visits in order of time, for the home
    page's latest visits.
    """
    features = STATS_FEATURES_M006
    run_script(
        db,
        f"""
        DROP INDEX idx_problems_stats;
        CREATE INDEX idx_problems_stats_features ON problems(
            accepted_at, status, area_id, lead_unit_id, category_id, ({features}),
            julianday(accepted_at), julianday(dispatched_at), resident_contacted, signed_at,
            deadline
        );
        CREATE INDEX idx_problems_visit ON problems(visit_id);
        CREATE INDEX idx_visits_started ON visits(started_at);
        """,
    )


@migrations()
def m007_problem_moves(db: sqlite_utils.Database) -> None:
    # A problem leaves a phone's scope when its area or its lead unit changes;
    # the former values tell pull whom to send a tombstone.
    run_script(
        db,
        """
        CREATE TABLE problem_moves (
            id INTEGER PRIMARY KEY,
            problem_id TEXT NOT NULL REFERENCES problems(id),
            area_id INTEGER,
            lead_unit_id INTEGER
        );
        CREATE INDEX idx_problem_moves_problem ON problem_moves(problem_id);
        CREATE TRIGGER problems_moved AFTER UPDATE OF area_id, lead_unit_id ON problems
        WHEN OLD.area_id IS NOT NEW.area_id OR OLD.lead_unit_id IS NOT NEW.lead_unit_id
        BEGIN
            INSERT INTO problem_moves (problem_id, area_id, lead_unit_id)
            VALUES (OLD.id, OLD.area_id, OLD.lead_unit_id);
        END;
        """,
    )



@migrations()
def m008_search_areas(db: sqlite_utils.Database) -> None:
    """Each search key carries its problem's area, so a search inside an area reads few keys.

    A broad word searched within a town (漏水: 24,000 matches in a million
    problems, the town 15,000 problems) otherwise reads one side row by row:
    the town's problems with a look-up of each one's key, or the matches with
    each one's area. ``(area_id, key)`` gives the town's keys from an index
    alone, and ``server.ledger.search.search_condition`` intersects them with
    the matches. Triggers keep the area in step with the problem's.
    """
    key = "(SELECT key FROM problem_search_keys WHERE problem_id = {}.id)"
    run_script(
        db,
        f"""
        ALTER TABLE problem_search_keys ADD COLUMN area_id INTEGER;
        UPDATE problem_search_keys
            SET area_id = (SELECT area_id FROM problems WHERE id = problem_id);
        CREATE INDEX idx_problem_search_keys_area ON problem_search_keys(area_id, key);

        DROP TRIGGER problems_search_insert;
        CREATE TRIGGER problems_search_insert AFTER INSERT ON problems
        BEGIN
            -- OR REPLACE: an INSERT OR REPLACE of a problem fires no delete trigger.
            INSERT OR REPLACE INTO problem_search_keys (problem_id, area_id)
                VALUES (NEW.id, NEW.area_id);
            INSERT INTO problems_search_pending (key)
                SELECT {key.format("NEW")} WHERE EXISTS (SELECT 1 FROM problems_search_deferral);
            INSERT INTO problems_fts (rowid, body)
                SELECT {key.format("NEW")}, {search_body_sql("NEW")}
                WHERE NOT EXISTS (SELECT 1 FROM problems_search_deferral);
        END;
        CREATE TRIGGER problems_search_area AFTER UPDATE OF area_id ON problems
        WHEN OLD.area_id IS NOT NEW.area_id
        BEGIN
            UPDATE problem_search_keys SET area_id = NEW.area_id WHERE problem_id = NEW.id;
        END;
        """,
    )


# m009's row-only statistics features: m006's, and whether a signing was a response.
# Frozen here as text: the index and the roll-up's triggers spell them exactly as
# server.ledger.metrics.stored_features_sql() does (tests/test_metrics_fast.py checks it).
STATS_FEATURES_M009 = STATS_FEATURES_M006 + " | (ifnull((responded_in_time IS 1), 0) << 9)"
# m011's: m009's, and how a problem was closed without a valid callback, and whether it
# ever relapsed (反弹) at a 回头看.
STATS_FEATURES_M011 = (
    STATS_FEATURES_M009
    + " | (ifnull((CASE closure_kind WHEN 'unreachable' THEN 1 WHEN 'no_contact' THEN 2"
    " WHEN 'explained' THEN 3 ELSE 0 END), 0) << 10)"
    " | (ifnull((relapsed = 1), 0) << 12)"
)
_STATS_COLUMNS = re.compile(
    r"\b(status|closed_on_time|deadline|closed_at|outcome|callback_reached|callback_solved"
    r"|satisfaction|dispatched_at|responded_in_time|closure_kind|relapsed|resident_rating"
    r"|lead_unit_id|replied_at|original_deadline|redo_count|unjustified_returns"
    r"|unit_dispatched_at)\b")
ROLLUP_COLUMNS = "level, week, area_id, unit_id, category_id, features, deadline"
ROLLUP_LEVELS = (2, 3)  # districts (for the city's statistics) and towns (for a district's)


def rollup_key_sql(row: str, level: int, features: str | None = None) -> str:
    """SQL for the roll-up key (ROLLUP_COLUMNS) of the problem ``row`` (NEW, OLD or an alias)
    at the area ``level``.

    The week counts local Monday-to-Sunday weeks from 2000-01-03, in whole
    milliseconds (Julian days hold them), exactly. The area is the problem's
    area's ancestor at ``level`` (the level-th id of its path), or the area
    itself when its path is shorter; areas never move, so it never changes. A
    closed problem keeps only whether it had a deadline ('0'), an open one its
    deadline, which the statistics compare with today. ``features``: the packed row-only
    features as a migration froze them (STATS_FEATURES_M009, ...), the latest by default.
    """
    path = f"(SELECT path FROM areas WHERE id = {row}.area_id)"
    rest = f"substr({path}, 2)"
    for _ in range(level - 1):
        rest = f"substr({rest}, instr({rest}, '/') + 1)"
    features = _STATS_COLUMNS.sub(lambda m: f"{row}.{m.group(1)}",
                                  features or STATS_FEATURES_LATEST)
    return (
        f"{level},"
        f" ifnull((CAST(round((julianday({row}.accepted_at) - julianday('2000-01-03'))"
        " * 86400000) AS INTEGER) + 28800000) / 604800000, -1),"
        f" ifnull(nullif(CAST({rest} AS INTEGER), 0), {row}.area_id),"
        f" ifnull({row}.lead_unit_id, 0), ifnull({row}.category_id, 0), {features},"
        f" CASE WHEN {row}.deadline IS NULL THEN '' WHEN {row}.status = 'closed' THEN '0'"
        f" ELSE {row}.deadline END"
    )


def _in_cohort(row: str) -> str:
    return f"{row}.accepted_at IS NOT NULL AND {row}.status NOT IN ('rejected', 'merged')"


ROLLUP_WATCHED_M009 = (
    "accepted_at, status, area_id, lead_unit_id, category_id, deadline, closed_at,"
    " closed_on_time, outcome, callback_reached, callback_solved, satisfaction,"
    " dispatched_at, responded_in_time")


def _rollup_sql(features: str) -> tuple[str, str, str]:
    """The roll-up's trigger statements that count a problem in (NEW) and out (OLD), and
    the SELECT that rebuilds it, for the packed ``features`` of a migration."""
    count_in = "\n".join(f"""INSERT INTO stats_rollup ({ROLLUP_COLUMNS}, n)
            SELECT {rollup_key_sql("NEW", level, features)}, 1 WHERE {_in_cohort("NEW")}
            ON CONFLICT DO UPDATE SET n = n + 1;""" for level in ROLLUP_LEVELS)
    old_keys = [rollup_key_sql("OLD", level, features) for level in ROLLUP_LEVELS]
    count_out = "\n".join(f"""UPDATE stats_rollup SET n = n - 1
            WHERE {_in_cohort("OLD")}
            AND ({ROLLUP_COLUMNS}) = (SELECT {old_key});
            DELETE FROM stats_rollup
            WHERE n = 0 AND ({ROLLUP_COLUMNS}) = (SELECT {old_key});""" for old_key in old_keys)
    rebuild = " UNION ALL ".join(
        f"SELECT {rollup_key_sql('p', level, features)}, count(*) FROM problems p"
        f" WHERE {_in_cohort('p')} GROUP BY 1, 2, 3, 4, 5, 6, 7" for level in ROLLUP_LEVELS)
    return count_in, count_out, rebuild


# A migration that changes the statistics' row-only features drops their indexes and the
# roll-up's triggers (STATS_DROP), changes the problems, then builds them for its features
# (_stats_build): the indexes that store them, the roll-up rebuilt from the problems, and
# the triggers that keep it, watching ``watched``.
STATS_DROP = """
        DROP TRIGGER problems_stats_insert;
        DROP TRIGGER problems_stats_update;
        DROP TRIGGER problems_stats_delete;
        DROP INDEX idx_problems_stats_features;
        DROP INDEX idx_problems_stats_area;"""


def _stats_build(features: str, watched: str) -> str:
    count_in, count_out, rebuild = _rollup_sql(features)
    return f"""
        CREATE INDEX idx_problems_stats_features ON problems(
            accepted_at, status, area_id, lead_unit_id, category_id, ({features}),
            julianday(accepted_at), deadline
        );
        CREATE INDEX idx_problems_stats_area ON problems(
            area_id, accepted_at, status, lead_unit_id, category_id, ({features}),
            julianday(accepted_at), deadline
        );
        DELETE FROM stats_rollup;
        INSERT INTO stats_rollup ({ROLLUP_COLUMNS}, n) {rebuild};
        {_stats_triggers(count_in, count_out, watched)}"""


def _stats_triggers(count_in: str, count_out: str, watched: str) -> str:
    """The triggers that keep the roll-up as problems are inserted, updated in
    ``watched`` columns, and deleted."""
    return f"""
        CREATE TRIGGER problems_stats_insert AFTER INSERT ON problems
        BEGIN
            {count_in}
        END;
        CREATE TRIGGER problems_stats_update AFTER UPDATE OF {watched} ON problems
        BEGIN
            {count_out}
            {count_in}
        END;
        CREATE TRIGGER problems_stats_delete AFTER DELETE ON problems
        BEGIN
            {count_out}
        END;"""


@migrations()
def m009_stats_rollup(db: sqlite_utils.Database) -> None:
    """Statistics over long periods read a weekly roll-up instead of every problem.

    ``responded_in_time``: whether the unit signed, with the resident contacted,
    within the response time. The workflow freezes it at signing, as it does
    ``closed_on_time`` at closing; here it is worked out for the problems signed
    before, with the settings and calendar of now. With it, every feature but the
    deadline (compared with today) depends on the problem row alone.

    ``stats_rollup`` counts the problems of the statistics' cohort (accepted, not
    rejected or merged) per local week of acceptance, area, lead unit, category,
    row-only features and deadline, kept by triggers, twice: per district (level
    2, for the city's statistics: ~130,000 rows for a year of a million
    problems) and per town (level 3, for a district's: ~250,000). ``server.ledger.metrics``
    reads whole weeks from it for users above the town level and the days at a
    period's ends from the problems. The triggers expect ``recursive_triggers``
    (``server.db.connect`` sets it): an INSERT OR REPLACE of a problem must
    uncount the row it replaces.
    The statistics index now stores the new feature, not the response clock's
    columns; a copy led by the area serves users below the city.
    """
    from server.settings import settings
    from server.workdays import WorkCalendar

    db.execute("ALTER TABLE problems ADD COLUMN responded_in_time INTEGER")
    days = int(settings(db)["response_limit_days"])
    calendar = WorkCalendar.load(db)
    dispatch_days = [row[0] for row in db.execute(
        "SELECT DISTINCT date(dispatched_at, '+8 hours') FROM problems"
        " WHERE signed_at IS NOT NULL AND dispatched_at IS NOT NULL")]
    db.execute("CREATE TEMP TABLE response_last_days (day TEXT PRIMARY KEY, last TEXT)")
    db.conn.executemany("INSERT INTO temp.response_last_days VALUES (?, ?)", [
        (day, calendar.add_working_days_or_weekdays(dt.date.fromisoformat(day), days)
         .isoformat())
        for day in dispatch_days if day])
    db.execute(
        "UPDATE problems SET responded_in_time = (resident_contacted IS 1"
        " AND date(signed_at, '+8 hours') <= (SELECT last FROM temp.response_last_days"
        " WHERE day = date(dispatched_at, '+8 hours')))"
        " WHERE signed_at IS NOT NULL AND dispatched_at IS NOT NULL")
    db.execute("DROP TABLE temp.response_last_days")

    count_in, count_out, rebuild = _rollup_sql(STATS_FEATURES_M009)
    run_script(
        db,
        f"""
        DROP INDEX idx_problems_stats_features;
        CREATE INDEX idx_problems_stats_features ON problems(
            accepted_at, status, area_id, lead_unit_id, category_id, ({STATS_FEATURES_M009}),
            julianday(accepted_at), deadline
        );
        CREATE INDEX idx_problems_stats_area ON problems(
            area_id, accepted_at, status, lead_unit_id, category_id, ({STATS_FEATURES_M009}),
            julianday(accepted_at), deadline
        );

        CREATE TABLE stats_rollup (
            level INTEGER NOT NULL,
            week INTEGER NOT NULL,
            area_id INTEGER NOT NULL,
            unit_id INTEGER NOT NULL,
            category_id INTEGER NOT NULL,
            features INTEGER NOT NULL,
            deadline TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY ({ROLLUP_COLUMNS})
        ) WITHOUT ROWID;
        INSERT INTO stats_rollup ({ROLLUP_COLUMNS}, n) {rebuild};
        {_stats_triggers(count_in, count_out, ROLLUP_WATCHED_M009)}
        """,
    )


@migrations()
def m010_pilot(db: sqlite_utils.Database) -> None:
    """Columns and tables for a county's first weeks on the ledger.

    ``deadline_provisional``: the deadline runs through a year whose official
    holiday arrangement is not entered yet, so it was counted Monday to Friday
    (暂定) and is computed again when the year is entered (``calendar_years``
    records who entered which year, when).

    ``closure_kind``: how a closed problem was closed when no callback could
    judge it: ``unreachable`` (无法回访), ``no_contact`` (无回访对象),
    ``explained`` (解释说明办结); NULL for a closure after a valid callback.
    ``closure_reason`` holds the office's stated reason.
    """
    run_script(
        db,
        """
        ALTER TABLE problems ADD COLUMN deadline_provisional INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE problems ADD COLUMN closure_kind TEXT;
        ALTER TABLE problems ADD COLUMN closure_reason TEXT;
        CREATE TABLE calendar_years (
            year INTEGER PRIMARY KEY,
            holidays INTEGER NOT NULL,
            workdays INTEGER NOT NULL,
            entered_by INTEGER REFERENCES users(id),
            entered_at TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT ''
        );
        """,
    )


@migrations()
def m011_closures(db: sqlite_utils.Database) -> None:
    """The statistics read how a problem was closed without a valid callback and whether it
    relapsed.

    Two row-only features join m009's (STATS_FEATURES_M011): ``closure_kind``
    (无法回访, 无回访对象 and 解释说明办结 are counted apart: the first two leave the
    samples of 解决率 and 满意率, see docs/metrics.md) and ``relapsed``. The statistics
    indexes are rebuilt to store them, the roll-up's triggers watch the two columns and
    pack them, and the roll-up is rebuilt from the problems.
    """
    watched = ROLLUP_WATCHED_M009 + ", closure_kind, relapsed"
    run_script(
        db,
        f"""
        {STATS_DROP}
        {_stats_build(STATS_FEATURES_M011, watched)}
        """,
    )


@migrations()
def m013_lockout(db: sqlite_utils.Database) -> None:
    """Sign-in attempts are counted before the password is checked, per account and per
    (account, source address) pair (server/auth.py, "Sign-in throttling").

    A row is written, in the write transaction that decides whether the attempt may go
    on, before its password is checked (``checking``); a failure marks it ``failed``, a
    success deletes it with its pair's failures. Rows older than the attempt window are
    deleted. The old per-username counter is dropped: its counts are 15 minutes long at
    most.
    """
    run_script(
        db,
        """
        DROP TABLE login_failures;
        CREATE TABLE login_attempts (
            id INTEGER PRIMARY KEY,
            account TEXT NOT NULL,
            address TEXT NOT NULL,
            at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'checking' CHECK (state IN ('checking', 'failed'))
        );
        CREATE INDEX idx_login_attempts_account ON login_attempts(account, address, at);
        CREATE INDEX idx_login_attempts_at ON login_attempts(at);
        """,
    )


@migrations()
def m014_accounts(db: sqlite_utils.Database) -> None:
    """Web sessions remember when they were last used, so an idle one ends
    (``session_idle_minutes``, server/settings.py); sessions already open count
    from when they began."""
    run_script(
        db,
        """
        ALTER TABLE web_sessions ADD COLUMN last_seen_at TEXT;
        UPDATE web_sessions SET last_seen_at = created_at;
        """,
    )


@migrations()
def m015_audit(db: sqlite_utils.Database) -> None:
    """The administration's audit trail (``server/audit.py``): one row per change an
    administrator makes, written in the change's own transaction, never updated or deleted.

    ``actor_id`` NULL is the command line. ``entity`` names the kind of record (users, units,
    areas, categories, devices, calendar, import) and ``entity_id`` the record (a device's id,
    a calendar's year; NULL for an import as a whole); ``label`` is its name at the time.
    ``old`` and ``new`` hold the changed values as JSON (phones masked, passwords never).
    ``area_id`` and ``old_area_id`` are the record's area after and before the change (NULL
    for records the whole deployment shares): they decide which administrators see the row.
    """
    run_script(
        db,
        """
        CREATE TABLE admin_audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor_id INTEGER REFERENCES users(id),
            action TEXT NOT NULL,
            entity TEXT NOT NULL,
            entity_id INTEGER,
            label TEXT NOT NULL DEFAULT '',
            area_id INTEGER REFERENCES areas(id),
            old_area_id INTEGER REFERENCES areas(id),
            old TEXT,
            new TEXT
        );
        CREATE INDEX idx_admin_audit_actor ON admin_audit(actor_id, id);
        CREATE INDEX idx_admin_audit_entity ON admin_audit(entity, entity_id, id);
        CREATE TRIGGER admin_audit_no_update BEFORE UPDATE ON admin_audit
        BEGIN
            SELECT RAISE(ABORT, 'admin_audit is append-only');
        END;
        CREATE TRIGGER admin_audit_no_delete BEFORE DELETE ON admin_audit
        BEGIN
            SELECT RAISE(ABORT, 'admin_audit is append-only');
        END;
        """,
    )


@migrations()
def m016_supervision(db: sqlite_utils.Database) -> None:
    """Supervision as paperwork with answers (``server/ledger/supervision.py``).

    A row of ``supervision_orders`` is an office's 督办单 (``kind`` 'order': a requirement and
    a date ``answer_by`` for the lead unit's 督办回复) or a leader's 挂牌督办 (``kind`` 'flag':
    ``requirement`` holds the 批示). ``number`` (``DB-2026-0001``) counts each year without
    gaps in ``ledger_counters.supervision_last_no``, beside the ledger's own ``last_no``.
    ``unit_id`` is the lead unit when it was issued. ``closed_at`` NULL is open; ``outcome``
    says how it ended: an order 'closed' (销号) or 'escalated' (提请挂牌), a flag 'lifted' (摘牌).
    """
    run_script(
        db,
        """
        ALTER TABLE ledger_counters ADD COLUMN supervision_last_no INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE supervision_orders (
            id INTEGER PRIMARY KEY,
            problem_id TEXT NOT NULL REFERENCES problems(id),
            number TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('order', 'flag')),
            requirement TEXT NOT NULL,
            answer_by TEXT,
            issued_by INTEGER NOT NULL REFERENCES users(id),
            issued_at TEXT NOT NULL,
            unit_id INTEGER REFERENCES units(id),
            answer TEXT,
            answered_by INTEGER REFERENCES users(id),
            answered_at TEXT,
            closed_by INTEGER REFERENCES users(id),
            closed_at TEXT,
            outcome TEXT CHECK (outcome IN ('closed', 'escalated', 'lifted'))
        );
        CREATE INDEX idx_supervision_problem ON supervision_orders(problem_id, issued_at);
        CREATE INDEX idx_supervision_open_unit ON supervision_orders(unit_id, issued_at)
            WHERE closed_at IS NULL;
        """,
    )


# m017's row-only statistics features: m011's, and the resident's own rating on the tracking
# page (群众自评): 1 satisfied, 2 basically, 3 unsatisfied, 0 none.
STATS_FEATURES_M017 = (
    STATS_FEATURES_M011
    + " | (ifnull((CASE resident_rating WHEN 'satisfied' THEN 1 WHEN 'basically' THEN 2"
    " WHEN 'unsatisfied' THEN 3 ELSE 0 END), 0) << 13)"
)
# The features rollup_key_sql packs by default (the triggers of the newest migration).
STATS_FEATURES_LATEST = STATS_FEATURES_M017


@migrations()
def m017_tracking(db: sqlite_utils.Database) -> None:
    """The resident's tracking page (``server/ledger/tracking.py``): a link without login.

    ``tracking_hash`` is the SHA-256 (hex) of the link's random token, made on the phone
    (or by the office on re-issue); the token itself is never stored. NULL: no link, or
    revoked. ``resident_rating`` (satisfied, basically, unsatisfied), ``resident_comment``,
    ``resident_rated_at`` (the first rating: the change window counts from it) and
    ``resident_rating_changed_at`` hold the resident's own rating of the handling.
    ``tracking_hits`` counts the page's requests per client address and per link for the
    rate limit (rows older than the window are deleted as new ones come).

    The rating joins the row-only statistics features (STATS_FEATURES_M017), as m011's
    did: the statistics indexes are rebuilt to store it, the roll-up's triggers watch the
    column and pack it, and the roll-up is rebuilt from the problems.
    """
    watched = ROLLUP_WATCHED_M009 + ", closure_kind, relapsed, resident_rating"
    run_script(
        db,
        f"""
        ALTER TABLE problems ADD COLUMN tracking_hash TEXT;
        CREATE UNIQUE INDEX idx_problems_tracking ON problems(tracking_hash)
            WHERE tracking_hash IS NOT NULL;
        ALTER TABLE problems ADD COLUMN resident_rating TEXT
            CHECK (resident_rating IN ('satisfied', 'basically', 'unsatisfied'));
        ALTER TABLE problems ADD COLUMN resident_comment TEXT NOT NULL DEFAULT '';
        ALTER TABLE problems ADD COLUMN resident_rated_at TEXT;
        ALTER TABLE problems ADD COLUMN resident_rating_changed_at TEXT;
        CREATE TABLE tracking_hits (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX idx_tracking_hits_key ON tracking_hits(key, at);
        CREATE INDEX idx_tracking_hits_at ON tracking_hits(at);

        {STATS_DROP}
        {_stats_build(STATS_FEATURES_M017, watched)}
        """,
    )


@migrations()
def m018_joint(db: sqlite_utils.Database) -> None:
    """Joint handling (协办, ``server/ledger/joint.py``): one row of ``joint_parts`` per helper
    unit a problem was dispatched to, its part's life: ``dispatched`` → ``signed`` (签收) →
    ``answered`` (协办意见 in ``opinion``), or ``removed`` when a re-dispatch drops the unit
    (the row stays: the history; a unit added again gets a new row). At most one row per
    (problem, unit) is not removed. ``legacy`` marks the parts backfilled here for problems
    already finished: nobody could answer them, so the statistics leave them out.
    """
    run_script(
        db,
        """
        CREATE TABLE joint_parts (
            id INTEGER PRIMARY KEY,
            problem_id TEXT NOT NULL REFERENCES problems(id),
            unit_id INTEGER NOT NULL REFERENCES units(id),
            state TEXT NOT NULL DEFAULT 'dispatched'
                CHECK (state IN ('dispatched', 'signed', 'answered', 'removed')),
            dispatched_at TEXT NOT NULL,
            dispatched_by INTEGER REFERENCES users(id),
            signed_at TEXT,
            signed_by INTEGER REFERENCES users(id),
            answered_at TEXT,
            answered_by INTEGER REFERENCES users(id),
            opinion TEXT,
            answer_event_id TEXT,
            removed_at TEXT,
            removed_by INTEGER REFERENCES users(id),
            legacy INTEGER NOT NULL DEFAULT 0
        );
        CREATE UNIQUE INDEX idx_joint_parts_current ON joint_parts(problem_id, unit_id)
            WHERE state != 'removed';
        -- A unit's parts by state: the 协办 queues and the handlers' problem scope.
        CREATE INDEX idx_joint_parts_unit ON joint_parts(unit_id, state, problem_id);
        INSERT INTO joint_parts (problem_id, unit_id, state, dispatched_at, dispatched_by, legacy)
            SELECT p.id, h.value, 'dispatched',
                coalesce((SELECT e.at FROM problem_events e WHERE e.problem_id = p.id
                          AND e.kind = 'dispatch' ORDER BY e.at DESC, e.rowid DESC LIMIT 1),
                         p.dispatched_at),
                (SELECT e.actor_id FROM problem_events e WHERE e.problem_id = p.id
                 AND e.kind = 'dispatch' ORDER BY e.at DESC, e.rowid DESC LIMIT 1),
                p.status IN ('closed', 'rejected', 'merged')
            FROM problems p, json_each(CASE WHEN json_valid(p.helper_unit_ids)
                                       THEN p.helper_unit_ids ELSE '[]' END) h
            WHERE p.dispatched_at IS NOT NULL
                AND h.value IN (SELECT id FROM units) AND h.value IS NOT p.lead_unit_id
            GROUP BY p.id, h.value;
        """,
    )


@migrations()
def m019_reasons(db: sqlite_utils.Database) -> None:
    """The reasons an office or a unit chooses from (``server/ledger/reasons.py``).

    ``reason_options`` holds four lists (``list``): why a report is not accepted
    (``reject``, 不予立案), why a unit sends a problem back (``return``, 退单), why it asks
    for more time (``extension``, 延期) and why a problem is closed by explanation
    (``explained``, 解释说明办结). An option is deactivated, never deleted, so the events
    that name its ``code`` keep their label; ``position`` orders a list; at most one option
    of a list ``needs_text`` (其他: the note says what). The lists start with the defaults
    below (labels from the string catalog, ``reasons.default.<list>.<code>``).

    The problem keeps the latest code of each list (``reject_reason_code``,
    ``return_reason_code``, ``extension_reason_code``, ``explained_reason_code``) for the
    export; the statistics count the events by kind and time (``idx_problem_events_kind``).
    """
    from server.i18n import gettext

    run_script(
        db,
        """
        CREATE TABLE reason_options (
            id INTEGER PRIMARY KEY,
            list TEXT NOT NULL CHECK (list IN ('reject', 'return', 'extension', 'explained')),
            code TEXT NOT NULL,
            label TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1,
            position INTEGER NOT NULL,
            needs_text INTEGER NOT NULL DEFAULT 0,
            UNIQUE (list, code),
            UNIQUE (list, label)
        );
        CREATE UNIQUE INDEX idx_reason_options_needs_text ON reason_options(list)
            WHERE needs_text;
        ALTER TABLE problems ADD COLUMN reject_reason_code TEXT;
        ALTER TABLE problems ADD COLUMN return_reason_code TEXT;
        ALTER TABLE problems ADD COLUMN extension_reason_code TEXT;
        ALTER TABLE problems ADD COLUMN explained_reason_code TEXT;
        CREATE INDEX idx_problem_events_kind ON problem_events(kind, at);
        """,
    )
    defaults = {
        "reject": ("out_of_scope", "duplicate", "unreasonable", "unverifiable", "other"),
        "return": ("not_our_duty", "handled_elsewhere", "wrong_info", "other"),
        "extension": ("departments", "funding", "season", "long_works", "other"),
        "explained": ("policy", "legacy", "beyond_law", "accepted", "other"),
    }
    for name, codes in defaults.items():
        for position, code in enumerate(codes, start=1):
            db.execute(
                "INSERT INTO reason_options (list, code, label, position, needs_text)"
                " VALUES (?, ?, ?, ?, ?)",
                [name, code, gettext(f"reasons.default.{name}.{code}"), position,
                 int(code == "other")],
            )


@migrations()
def m020_reports(db: sqlite_utils.Database) -> None:
    """Reports handed up (周报/月报/季报, ``server/ledger/reports.py``).

    A row of ``reports`` is one issued report: ``number`` (``BG-2026-0001``) counts each
    year without gaps in ``ledger_counters.report_last_no``; ``kind`` and the period's
    first and last local day; ``area_id`` the scope (that area's subtree, as the
    statistics page counts it); ``data`` the JSON of everything the report shows, frozen
    as issued: the whole output of ``metrics.compute``, the assessment with the weights
    it used, and the lists. Reports are never edited: triggers refuse UPDATE and DELETE.
    The assessment's weights are a row of ``settings`` (``assessment_weights``).
    """
    run_script(
        db,
        """
        ALTER TABLE ledger_counters ADD COLUMN report_last_no INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE reports (
            id INTEGER PRIMARY KEY,
            number TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('week', 'month', 'quarter')),
            period_start TEXT NOT NULL,
            period_end TEXT NOT NULL,
            area_id INTEGER NOT NULL REFERENCES areas(id),
            issued_by INTEGER NOT NULL REFERENCES users(id),
            issued_at TEXT NOT NULL,
            data TEXT NOT NULL
        );
        CREATE INDEX idx_reports_area ON reports(area_id, issued_at);
        CREATE TRIGGER reports_no_update BEFORE UPDATE ON reports
        BEGIN
            SELECT RAISE(ABORT, 'reports are issued once');
        END;
        CREATE TRIGGER reports_no_delete BEFORE DELETE ON reports
        BEGIN
            SELECT RAISE(ABORT, 'reports are issued once');
        END;
        """,
    )


# m021's: m017's with a unit's dispatch for the first dispatch, and the lead unit's reply
# against the deadline, closing by the original deadline, 重办 and unjustified returns.
STATS_FEATURES_M021 = (
    STATS_FEATURES_M017.replace("(dispatched_at IS NOT NULL)", "(unit_dispatched_at IS NOT NULL)")
    + " | (ifnull((CASE WHEN lead_unit_id IS NULL OR deadline IS NULL THEN 0"
    " WHEN status IN ('dispatched', 'handling') THEN 3 WHEN replied_at IS NULL THEN 0"
    " WHEN date(replied_at, '+8 hours') <= deadline THEN 1 ELSE 2 END), 0) << 15)"
    " | (ifnull((status = 'closed' AND (coalesce(original_deadline, deadline) IS NULL"
    " OR date(closed_at, '+8 hours') <= coalesce(original_deadline, deadline))), 0) << 17)"
    " | (ifnull((redo_count > 0), 0) << 18)"
    " | (ifnull((unjustified_returns > 0), 0) << 19)"
)
STATS_FEATURES_LATEST = STATS_FEATURES_M021


@migrations()
def m021_rules(db: sqlite_utils.Database) -> None:
    """Extensions, returns and 重办 with rules (``server/ledger/rules.py``), and the figures
    they need (docs/metrics.md).

    ``unit_dispatched_at``: the current lead unit's dispatch, which starts its response
    clock (``dispatched_at`` stays the first dispatch); NULL while no unit holds the
    problem. ``extension_count``: extensions approved. ``unjustified_returns``: returns the
    office found not justified. ``redo_pending``: a callback said "solved but 不满意" and
    the office has not yet decided 重办 or a closure with an explanation.

    The statistics' row-only features become STATS_FEATURES_M021: the indexes are rebuilt,
    the roll-up's triggers watch the new columns, and the roll-up is rebuilt. The triggers
    are dropped before the backfill, so it does not count every problem out and in.
    Independent of m022 and m024: a database that has them applies it after them.
    """
    watched = (ROLLUP_WATCHED_M009 + ", closure_kind, relapsed, resident_rating, replied_at,"
               " original_deadline, redo_count, unjustified_returns, unit_dispatched_at")
    run_script(
        db,
        f"""
        {STATS_DROP}

        ALTER TABLE problems ADD COLUMN unit_dispatched_at TEXT;
        ALTER TABLE problems ADD COLUMN extension_count INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE problems ADD COLUMN unjustified_returns INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE problems ADD COLUMN redo_pending INTEGER NOT NULL DEFAULT 0;
        UPDATE problems SET unit_dispatched_at = dispatched_at
            WHERE dispatched_at IS NOT NULL AND lead_unit_id IS NOT NULL;
        UPDATE problems SET extension_count = granted.n
            FROM (SELECT problem_id, count(*) AS n FROM problem_events
                  WHERE kind = 'approve_extension' GROUP BY problem_id) AS granted
            WHERE problems.id = granted.problem_id;

        {_stats_build(STATS_FEATURES_M021, watched)}
        """,
    )


@migrations()
def m022_device_health(db: sqlite_utils.Database) -> None:
    """The latest health a phone reported with a push or pull (``server/device_health.py``):
    the JSON as sent, and when it came."""
    run_script(
        db,
        """
        ALTER TABLE devices ADD COLUMN health TEXT;
        ALTER TABLE devices ADD COLUMN health_at TEXT;
        """,
    )


@migrations()
def m023_working_set(db: sqlite_utils.Database) -> None:
    """A phone's working set read newest first (``sync/working_set.py``): the columns
    that decide whether a problem is in it, so that walking the newest problems
    down to the cap's floor reads this index alone."""
    run_script(
        db,
        """
        CREATE INDEX idx_problems_working_set ON problems(
            found_at, area_id, status, closed_at, reporter_id, lead_unit_id
        );
        """,
    )


@migrations()
def m024_ask_reporter(db: sqlite_utils.Database) -> None:
    """The office's question to a problem's reporter (请补充), open until the reporter adds a
    note to the problem (``problems.info_request``: the question, NULL when none is open)."""
    run_script(db, "ALTER TABLE problems ADD COLUMN info_request TEXT;")


@migrations()
def m025_form_drafts(db: sqlite_utils.Database) -> None:
    """What was typed into a form whose session had expired, between the sign-in and the
    page it returns to (``server/drafts.py``): in a table, so that another process may
    serve that page. ``key_hash`` is the SHA-256 of the random key in the URL, never the
    key; ``fields`` the typed ``[name, value]`` pairs as JSON; ``stored_at`` UTC ISO-8601
    with microseconds (the expiry and the owner's cap go by it)."""
    run_script(
        db,
        """
        CREATE TABLE form_drafts (
            key_hash TEXT PRIMARY KEY,
            owner_id INTEGER NOT NULL REFERENCES users(id),
            path TEXT NOT NULL,
            fields TEXT NOT NULL,
            stored_at TEXT NOT NULL
        );
        CREATE INDEX idx_form_drafts_owner ON form_drafts(owner_id, stored_at);
        """,
    )


def migrate(db: sqlite_utils.Database) -> None:
    migrations.apply(db)
