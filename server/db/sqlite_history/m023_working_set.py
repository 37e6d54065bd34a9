from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


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
