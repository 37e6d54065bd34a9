from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import _search_body, run_script


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
