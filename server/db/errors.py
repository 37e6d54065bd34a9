"""What the backends raise, named once by meaning so the app can catch it on either.

``db.errors`` is the instance for ``db``'s backend: ``except db.errors.Integrity``
catches a constraint violation whether sqlite3 or psycopg raised it, and
``db.errors.is_busy(error)`` tells "another writer holds the lock" apart from other
failures. ``NotFound`` is what ``db[table].get(pk)`` raises on both backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlite_utils.db import NotFoundError as NotFound

__all__ = ["BackendErrors", "NotFound"]


@dataclass(frozen=True)
class BackendErrors:
    # Exception classes (or tuples of them) to name in an ``except`` clause.
    Integrity: type[BaseException] | tuple[type[BaseException], ...]
    Operational: type[BaseException] | tuple[type[BaseException], ...]
    # Which Operational errors mean "the write lock was not free in time", and
    # "a time budget (db.bounded) stopped the statement".
    is_busy: Callable[[BaseException], bool]
    is_interrupted: Callable[[BaseException], bool]
