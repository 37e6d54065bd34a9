from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m024_ask_reporter(db: sqlite_utils.Database) -> None:
    """The office's question to a problem's reporter (请补充), open until the reporter adds a
    note to the problem (``problems.info_request``: the question, NULL when none is open)."""
    run_script(db, "ALTER TABLE problems ADD COLUMN info_request TEXT;")
