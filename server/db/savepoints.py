"""Savepoints, spelt alike by SQLite and PostgreSQL: one rule for both backends."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def savepoint(db, name: str) -> Iterator[None]:
    """Undo only what the block wrote if it raises; call inside a transaction."""
    if not name.isidentifier():
        raise ValueError(f"not a savepoint name: {name!r}")
    db.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        # An error that ended the whole transaction took the savepoint with it.
        if db.in_transaction:
            db.execute(f"ROLLBACK TO SAVEPOINT {name}")
            db.execute(f"RELEASE SAVEPOINT {name}")
        raise
    else:
        db.execute(f"RELEASE SAVEPOINT {name}")
