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
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from server.db import savepoints
from server.db.dialect import SQLITE
from server.db.errors import BackendErrors
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


# A bulk load's page cache: the indexes on random UUID keys stay in memory
# while millions of rows go in.
BULK_CACHE_KIB = 1_000_000

# How many SQLite virtual-machine steps run between two looks at a time budget.
_BUDGET_CHECK_STEPS = 2000


def _is_busy(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _is_interrupted(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "interrupted" in str(error)


SQLITE_ERRORS = BackendErrors(
    Integrity=sqlite3.IntegrityError,
    Operational=sqlite3.OperationalError,
    is_busy=_is_busy,
    is_interrupted=_is_interrupted,
)


class SqliteDatabase(sqlite_utils.Database):
    """A sqlite-utils database that also answers the backend-neutral interface."""

    dialect = SQLITE
    errors = SQLITE_ERRORS

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    @functools.cached_property
    def identity(self) -> str:
        """The database file's resolved path: two connections to one file share it."""
        file = self.execute("PRAGMA database_list").fetchone()[2]
        # Every in-memory database is a store of its own.
        return str(Path(file).resolve()) if file else f":memory:{id(self)}"

    def executemany(self, sql: str, rows) -> sqlite3.Cursor:
        return self.conn.executemany(sql, rows)

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and empty it."""
        self.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[SqliteDatabase]:
        """``BEGIN IMMEDIATE``: the write lock is taken at the start or not at all."""
        self.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        else:
            try:
                self.execute("COMMIT")
            except BaseException:
                self.rollback()
                raise

    def savepoint(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Undo only what the block wrote if it raises; call inside a transaction."""
        return savepoints.savepoint(self, name)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[SqliteDatabase]:
        """The block's reads see one state of the database, whatever is written meanwhile.

        A deferred ``BEGIN``: the snapshot is taken at the block's first read and held
        to its end, so keep the block short (a long one holds back checkpoints). Inside
        a transaction already open, the block reads in that one.
        """
        if self.in_transaction:
            yield self
            return
        self.execute("BEGIN")
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.execute("COMMIT")

    def bounded(self, seconds: float, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)``, or None if its queries run longer than ``seconds``."""
        if seconds <= 0:
            return None
        deadline = time.monotonic() + seconds
        self.conn.set_progress_handler(lambda: time.monotonic() > deadline, _BUDGET_CHECK_STEPS)
        try:
            return fn(*args)
        except sqlite3.OperationalError as error:
            if not self.errors.is_interrupted(error):
                raise
            return None
        finally:
            self.conn.set_progress_handler(None, 0)

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[SqliteDatabase]:
        """One write transaction tuned for loading a new database, the settings restored after.

        For a new, empty database durability during the load buys nothing: a crash
        leaves a file to delete, not user data to lose. Hence synchronous=OFF, and an
        in-memory rollback journal instead of WAL: with WAL a big load spends most of
        its system time writing and re-reading WAL frames. The journal mode only
        changes if no other connection has the file open. Foreign keys are not checked
        row by row: the loader builds them consistently (and its tests run ``PRAGMA
        foreign_key_check``). These pragmas take effect only outside a transaction,
        which is why the transaction is the block's own.
        """
        saved = {
            pragma: self.execute(f"PRAGMA {pragma}").fetchone()[0]
            for pragma in ("synchronous", "cache_size", "foreign_keys", "busy_timeout",
                           "journal_mode")
        }
        self.execute("PRAGMA synchronous = OFF")
        self.execute(f"PRAGMA cache_size = {-BULK_CACHE_KIB}")
        self.execute("PRAGMA foreign_keys = OFF")
        self.execute("PRAGMA busy_timeout = 0")
        with contextlib.suppress(sqlite3.OperationalError):  # another connection is open
            self.execute("PRAGMA journal_mode = MEMORY")
        self.execute(f"PRAGMA busy_timeout = {saved['busy_timeout']}")
        try:
            with self.write_transaction():
                yield self
        finally:
            for pragma, value in saved.items():
                self.execute(f"PRAGMA {pragma} = {value}")


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
        if db.in_transaction:
            db.execute(INDEX_PENDING_SQL)
            db.execute("DELETE FROM problems_search_pending")
            db.execute("DELETE FROM problems_search_deferral")


def tune_writer(db: sqlite_utils.Database) -> None:
    for pragma, value in WRITER_PRAGMAS.items():
        db.execute(f"PRAGMA {pragma} = {value}")


def open_database(path: str | Path) -> SqliteDatabase:
    """Open (creating if needed) a database file, in WAL mode and fully migrated."""
    db = connect(path)
    db.enable_wal()
    migrate(db)
    return db


class Store:
    """Owns the database file for the web app: one writer thread, many readers."""

    # What ``write`` and ``read`` raise when the database refuses, as ``db.errors``.
    errors = SQLITE_ERRORS
    # Run on new connections by the PostgreSQL store; a file is restored only while no
    # server holds it, so the app's check at start-up is enough here.
    on_connect = None

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

    def _read_only_connection(self) -> SqliteDatabase:
        db = connect(self.path)
        db.execute("PRAGMA query_only = ON")
        return db

    def reader(self) -> SqliteDatabase:
        db = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "generation", None) != self._generation:
            db = self._read_only_connection()
            self._local.db = db
            self._local.generation = self._generation
            with self._lock:
                self._readers.append(db)
        return db

    def export_reader(self) -> SqliteDatabase:
        """A read-only connection of its own, for a streamed export; the caller closes it."""
        return self._read_only_connection()

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self.reader(), *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` on a reader connection in a worker thread."""
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(self.read_sync, fn, *args)

    def _write_in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        with self._writer_db.write_transaction() as db:
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
