from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import SEARCH_TEXT_COLUMNS, run_script, search_body_sql


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
