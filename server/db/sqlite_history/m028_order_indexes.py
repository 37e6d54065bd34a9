from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m028_order_indexes(db: sqlite_utils.Database) -> None:
    """PostgreSQL's step 28 makes its ordering indexes end with the rowid, NULL first, as
    SQLite's do already. The one index it adds, for the order of ledger numbers, is made
    here too (the unique index of m001 serves that order on SQLite as well), so that both
    histories keep the same indexes."""
    run_script(db, "CREATE INDEX idx_problems_ledger_no_order ON problems(ledger_no);")
