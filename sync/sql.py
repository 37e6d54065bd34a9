"""Plain SQL for the push's hot path.

sqlite-utils' ``db[table].insert()`` inspects the table on every call (four
schema queries and a savepoint per row); a push writes hundreds of rows, so
the handlers issue prepared statements instead (sqlite3 caches them by text).
"""

from __future__ import annotations

from functools import cache

import sqlite_utils


@cache
def _insert_sql(verb: str, table: str, columns: tuple[str, ...]) -> str:
    return (f"{verb} INTO {table} ({', '.join(columns)})"
            f" VALUES ({', '.join('?' * len(columns))})")


def insert(db: sqlite_utils.Database, table: str, row: dict, replace: bool = False) -> None:
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    db.execute(_insert_sql(verb, table, tuple(row)), tuple(row.values()))


def update(db: sqlite_utils.Database, table: str, record_id, values: dict) -> None:
    assignments = ", ".join(f"{column} = ?" for column in values)
    db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*values.values(), record_id])


def row(db: sqlite_utils.Database, sql: str, params) -> dict | None:
    """The first row of a query as a dict, or None."""
    cursor = db.execute(sql, params)
    values = cursor.fetchone()
    if values is None:
        return None
    return dict(zip((column[0] for column in cursor.description), values, strict=True))
