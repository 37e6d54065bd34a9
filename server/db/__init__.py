"""The database layer: one interface, one module per backend.

``server.db.sqlite`` is the embedded default (one file, one writer thread,
readers beside it). ``server.db.url`` reads a ``--db`` value; ``server.db.dialect``
spells the few SQL constructs the backends write differently. The names below are
the interface the rest of the app imports; every ``fn(db, …)`` is given a database
answering the same members on either backend (docs/architecture.md lists them).
"""

import contextlib

from server.db.sqlite import (
    BUSY_TIMEOUT_MS,
    WRITER_PRAGMAS,
    SqliteDatabase,
    Store,
    connect,
    open_database,
    search_indexed_at_end,
    tune_writer,
)

__all__ = [
    "BUSY_TIMEOUT_MS",
    "WRITER_PRAGMAS",
    "SqliteDatabase",
    "Store",
    "connect",
    "immediate",
    "open_database",
    "search_indexed_at_end",
    "tune_writer",
]


def immediate(db) -> contextlib.AbstractContextManager:
    """A write transaction that holds the one write lock from its start, on either backend
    (SQLite's ``BEGIN IMMEDIATE``; on PostgreSQL an advisory lock taken first).

    Inside it, ``db.savepoint(name)`` undoes a part that fails.
    """
    return db.write_transaction()
