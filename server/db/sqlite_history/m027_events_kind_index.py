from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m027_events_kind_index(db: sqlite_utils.Database) -> None:
    """Drop m019's index of the events by kind and time. The counts by reason read the
    roll-up now (m026), and without statistics SQLite took that index for every query of
    one problem's events of one kind in time order (a reply, a callback): it walked all
    the events of the kind until it met the problem's, seconds at a million problems."""
    run_script(db, "DROP INDEX idx_problem_events_kind;")
