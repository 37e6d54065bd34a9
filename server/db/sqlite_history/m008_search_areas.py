from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script, search_body_sql


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
