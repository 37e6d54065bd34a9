from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m014_accounts(db: sqlite_utils.Database) -> None:
    """Web sessions remember when they were last used, so an idle one ends
    (``session_idle_minutes``, server/settings.py); sessions already open count
    from when they began."""
    run_script(
        db,
        """
        ALTER TABLE web_sessions ADD COLUMN last_seen_at TEXT;
        UPDATE web_sessions SET last_seen_at = created_at;
        """,
    )
