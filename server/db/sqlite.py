"""The SQLite backend: one dedicated writer, readers beside it.

SQLite in WAL mode lets readers run while one writer holds the write lock.
All writes go through a single connection owned by a single thread and start
with ``BEGIN IMMEDIATE``, so a write transaction either gets the lock at its
start or fails fast with "database is locked" — never half-way through.
Readers use one connection per worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from server.db.dialect import SQLITE
from server.db.sqlite_history import INDEX_PENDING_SQL, migrate, register_functions

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000

# For the writer alone (figures in docs/performance.md, Sync). Every INSERT
# that fires triggers keeps a statement journal: in memory, not in a temporary
# file. A million-problem ledger is ~5 GB and each write touches random pages
# of a dozen indexes: map the file (SQLite maps at most its first 2 GB here)
# and cache 256 MB of pages. Checkpoint every ~40 MB of WAL rather than 4 MB:
# fewer fsyncs, and a page written by several pushes is copied once.
WRITER_PRAGMAS = {
    "temp_store": "MEMORY",
    "mmap_size": 2**31,
    "cache_size": -256 * 1024,
    "wal_autocheckpoint": 10_000,
}


class SqliteDatabase(sqlite_utils.Database):
    """A sqlite-utils database that also answers the backend-neutral interface."""

    dialect = SQLITE


def connect(path: str | Path) -> SqliteDatabase:
    """Open a connection with the pragmas every FieldLedger connection uses."""
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    register_functions(conn)
    db = SqliteDatabase(conn, execute_plugins=False)
    db.execute("PRAGMA foreign_keys = ON")
    # An INSERT OR REPLACE then fires the delete triggers of the row it replaces, which
    # the statistics' roll-up needs (m009). sqlite_utils sets it too; this does not rely on it.
    db.execute("PRAGMA recursive_triggers = ON")
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


@contextlib.contextmanager
def immediate(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction that takes the write lock at its start.

    Nested ``db.atomic()`` blocks inside it become savepoints.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    else:
        try:
            db.execute("COMMIT")
        except BaseException:
            db.rollback()
            raise


@contextlib.contextmanager
def search_indexed_at_end(db: sqlite_utils.Database) -> Iterator[None]:
    """Problems written in the block enter the full-text index together, at its end.

    Call inside a write transaction (see migration m005); searches in the block
    do not find them yet. Even a block that raises leaves nothing deferred, in
    case the caller commits what it wrote.
    """
    db.execute("INSERT INTO problems_search_deferral (id) VALUES (1)")
    try:
        yield
    finally:
        if db.conn.in_transaction:
            db.execute(INDEX_PENDING_SQL)
            db.execute("DELETE FROM problems_search_pending")
            db.execute("DELETE FROM problems_search_deferral")


def tune_writer(db: sqlite_utils.Database) -> None:
    for pragma, value in WRITER_PRAGMAS.items():
        db.execute(f"PRAGMA {pragma} = {value}")


def open_database(path: str | Path) -> sqlite_utils.Database:
    """Open (creating if needed) a database file, in WAL mode and fully migrated."""
    db = connect(path)
    db.enable_wal()
    migrate(db)
    return db


class Store:
    """Owns the database file for the web app: one writer thread, many readers."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._writer_db: sqlite_utils.Database | None = None
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._generation = 0
        self._local = threading.local()
        self._readers: list[sqlite_utils.Database] = []
        self.open()

    def open(self) -> None:
        """Open the writer (migrating the file); a closed store may be opened again."""
        with self._lock:
            if self._writer is not None:
                return
            self._writer_db = open_database(self.path)
            tune_writer(self._writer_db)
            self._writer = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="fieldledger-writer"
            )
            self._generation += 1

    def reader(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "generation", None) != self._generation:
            db = connect(self.path)
            db.execute("PRAGMA query_only = ON")
            self._local.db = db
            self._local.generation = self._generation
            with self._lock:
                self._readers.append(db)
        return db

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self.reader(), *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` on a reader connection in a worker thread."""
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(self.read_sync, fn, *args)

    def _write_in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        with immediate(self._writer_db) as db:
            return fn(db, *args)

    def _submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future:
        if self._writer is None:
            self.open()
        return self._writer.submit(self._write_in_thread, fn, *args)

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self._submit(fn, *args).result()

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` inside one BEGIN IMMEDIATE transaction on the writer."""
        return await asyncio.wrap_future(self._submit(fn, *args))

    def close(self) -> None:
        with self._lock:
            if self._writer is None:
                return
            self._writer.shutdown(wait=True)
            self._writer_db.close()
            self._writer = self._writer_db = None
            for db in self._readers:
                with contextlib.suppress(sqlite3.ProgrammingError):
                    db.close()
            self._readers.clear()
