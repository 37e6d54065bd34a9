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

import contextlib
import fcntl
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

MARK_FILE = "highest-version-served"
LOCK_FILE = "highest-version-served.lock"
# Pulls run in parallel threads, and in several processes: one at a time reads, compares
# and replaces the mark (else two would race for the same temporary file, or a slower
# one lower the mark). The thread lock orders this process's threads, the file lock
# the processes (a POSIX lock belongs to a process, not to a thread).
_mark_lock = threading.Lock()
# The mark as this process last left it, by folder: a pull at or below it, under the
# same epoch, has nothing to raise and need not take the file lock.
_left: dict[Path, tuple[int, str]] = {}


def _mark_path(root: Path) -> Path:
    return Path(root) / MARK_FILE


def read_mark(root: Path) -> tuple[int, str | None]:
    """The highest version served, and the epoch it was served under."""
    try:
        version, _sep, epoch = _mark_path(root).read_text().strip().partition(" ")
        return int(version or 0), epoch or None
    except (FileNotFoundError, ValueError):
        return 0, None


def _write_mark(root: Path, version: int, epoch: str) -> None:
    path = _mark_path(root)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(f"{version} {epoch}")
    os.replace(temporary, path)


@contextlib.contextmanager
def _marking(root: Path) -> Iterator[None]:
    """The mark to this thread alone, among every process that shares the folder."""
    with _mark_lock, open(Path(root) / LOCK_FILE, "a") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        yield


def raise_mark(root: Path, version: int, epoch: str) -> None:
    """Record that versions up to ``version`` were served under ``epoch``."""
    root = Path(root)
    left = _left.get(root)
    if left is not None and left[1] == epoch and left[0] >= version:
        return
    with _marking(root):
        served, served_epoch = read_mark(root)
        if version > served or epoch != served_epoch:
            served = max(version, served) if epoch == served_epoch else version
            _write_mark(root, served, epoch)
        _left[root] = (served, epoch)


def latest_version(db: sqlite_utils.Database) -> int:
    row = db.execute(db.dialect.latest_version_sql).fetchone()
    return row[0] if row else 0


def restored(db: sqlite_utils.Database, root: Path) -> bool:
    """Whether the database is behind what was served, or is not the one that served it
    (the same backup restored twice)."""
    served, served_epoch = read_mark(root)
    current = db.execute("SELECT value FROM settings WHERE key = 'epoch'").fetchone()[0]
    behind = latest_version(db) < served
    swapped = served_epoch is not None and served_epoch != current
    return behind or swapped


def renew_epoch_if_restored(db: sqlite_utils.Database, root: Path) -> bool:
    """In a write transaction, at start-up (and on PostgreSQL whenever ``restored`` says
    so on a new connection): a new epoch if the database was restored. True if renewed."""
    if not restored(db, root):
        return False
    epoch = str(uuid.uuid4())
    db.execute("UPDATE settings SET value = ? WHERE key = 'epoch'", [epoch])
    # Versions from here on are new to every phone: start the mark again.
    with _marking(root):
        _write_mark(root, latest_version(db), epoch)
        _left[Path(root)] = (latest_version(db), epoch)
    return True
