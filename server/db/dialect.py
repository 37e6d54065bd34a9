"""The SQL the two backends spell differently, one member per construct.

Queries are written once, in the subset SQLite and PostgreSQL both accept, with
``?`` placeholders; where the engines differ the query asks ``db.dialect``.
docs/postgresql.md (section 2) lists every member and why it exists.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str
    # True when the engine chooses indexes from its own statistics, so the
    # hand-steering written for SQLite's planner is skipped.
    plans_itself: bool


SQLITE = Dialect(name="sqlite", plans_itself=False)
POSTGRESQL = Dialect(name="postgresql", plans_itself=True)
