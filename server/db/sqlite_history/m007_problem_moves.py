from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


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
