"""Noticing that the database was restored from a backup.

Phones hold cursors (versions they have pulled up to). A restored database
hands those versions out again for different changes, so a phone that lost
nothing of its own would skip them. The server therefore remembers, outside
the database (beside the photos, which a restore does not roll back), the
highest version it ever served. If the database starts below that mark, it
went back in time: the server takes a new epoch, and every phone starts over
and sends again what it holds (docs/sync-protocol.md, "Restores and the epoch").
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import sqlite_utils

MARK_FILE = "highest-version-served"


def _mark_path(root: Path) -> Path:
    return Path(root) / MARK_FILE


def read_mark(root: Path) -> int:
    try:
        return int(_mark_path(root).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def raise_mark(root: Path, version: int) -> None:
    """Record that versions up to ``version`` were served (never lowers the mark)."""
    if version <= read_mark(root):
        return
    path = _mark_path(root)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(str(version))
    os.replace(temporary, path)


def latest_version(db: sqlite_utils.Database) -> int:
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
    return row[0] if row else 0


def renew_epoch_if_restored(db: sqlite_utils.Database, root: Path) -> bool:
    """At start-up: a new epoch if the database is behind what was served. Returns True then."""
    mark = read_mark(root)
    if latest_version(db) >= mark:
        return False
    db.execute("UPDATE settings SET value = ? WHERE key = 'epoch'", [str(uuid.uuid4())])
    # Versions from here on are new to every phone: start the mark again.
    _mark_path(root).write_text(str(latest_version(db)))
    return True
