from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


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
