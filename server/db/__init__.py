"""The database layer: one interface, one module per backend.

``server.db.sqlite`` is the embedded default (one file, one writer thread,
readers beside it). ``server.db.url`` reads a ``--db`` value; ``server.db.dialect``
spells the few SQL constructs the backends write differently. The names below are
the interface the rest of the app imports. ``connect``, ``open_database`` and
``Store`` take a ``--db`` value: a path opens SQLite, a ``postgresql://`` URL the
PostgreSQL backend (``server.db.postgresql``, imported only then). Every
``fn(db, …)`` is given a database answering the same members on either backend
(docs/architecture.md lists them).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from server.db import sqlite
from server.db.dialect import SQLITE
from server.db.sqlite import (
    BUSY_TIMEOUT_MS,
    WRITER_PRAGMAS,
    SqliteDatabase,
    tune_writer,
)
from server.db.url import PostgresServer, parse

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


def _backend(target: str | Path):
    """The backend module for ``target``, and what it opens (a path or a URL)."""
    parsed = parse(str(target))
    if isinstance(parsed, PostgresServer):
        from server.db import postgresql

        return postgresql, parsed.url
    return sqlite, target


def connect(target: str | Path):
    """A connection set up as every FieldLedger connection is, schema untouched."""
    backend, where = _backend(target)
    return backend.connect(where)


def open_database(target: str | Path):
    """A connection to the database, created if it is a new SQLite file, fully migrated."""
    backend, where = _backend(target)
    return backend.open_database(where)


def Store(target: str | Path):
    """The web app's owner of the database: one writer thread, readers beside it."""
    backend, where = _backend(target)
    store_class = sqlite.Store if backend is sqlite else backend.PostgresStore
    return store_class(where)


def immediate(db) -> contextlib.AbstractContextManager:
    """A write transaction that holds the one write lock from its start, on either backend
    (SQLite's ``BEGIN IMMEDIATE``; on PostgreSQL an advisory lock taken first).

    Inside it, ``db.savepoint(name)`` undoes a part that fails.
    """
    return db.write_transaction()


def search_indexed_at_end(db) -> contextlib.AbstractContextManager:
    """Problems written in the block enter the search index together, at its end: SQLite's
    FTS5 index is deferred (m005); PostgreSQL's GIN index keeps a pending list of its own,
    so there nothing is deferred."""
    if db.dialect is SQLITE:
        return sqlite.search_indexed_at_end(db)
    return contextlib.nullcontext()


# Columns a table holds for storage alone: PostgreSQL's explicit ``rowid`` of the tables
# keyed by text (SQLite's is implicit, and ``SELECT *`` never returns it), and its
# problems' search words (m029; SQLite's are in FTS5).
STORAGE_COLUMNS = frozenset({"rowid", "search_tokens"})


def record(row: dict) -> dict:
    """A row read with ``SELECT *`` as the record it stores, without storage columns."""
    return {key: value for key, value in row.items() if key not in STORAGE_COLUMNS}
