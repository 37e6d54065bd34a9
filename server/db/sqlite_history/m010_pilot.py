from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


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
