from __future__ import annotations

import sqlite_utils


def m029_row_search_tokens(db: sqlite_utils.Database) -> None:
    """PostgreSQL's step 29 moves its search words into each problem's row. SQLite's
    stay in FTS5 (``problems_fts``), which reads a word's matches as a compact list of
    keys; nothing changes here, and the step keeps both histories numbered alike."""
