"""The database layer: one interface, one module per backend.

``server.db.sqlite`` is the embedded default (one file, one writer thread,
readers beside it). ``server.db.url`` reads a ``--db`` value; ``server.db.dialect``
spells the few SQL constructs the backends write differently. The names below are
the interface the rest of the app imports.
"""

from server.db.sqlite import (
    BUSY_TIMEOUT_MS,
    WRITER_PRAGMAS,
    SqliteDatabase,
    Store,
    connect,
    immediate,
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
