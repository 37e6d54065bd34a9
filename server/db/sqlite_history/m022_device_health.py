from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m022_device_health(db: sqlite_utils.Database) -> None:
    """The latest health a phone reported with a push or pull (``server/device_health.py``):
    the JSON as sent, and when it came."""
    run_script(
        db,
        """
        ALTER TABLE devices ADD COLUMN health TEXT;
        ALTER TABLE devices ADD COLUMN health_at TEXT;
        """,
    )
