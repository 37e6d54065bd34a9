"""Plain SQL for the push's hot path.

sqlite-utils' ``db[table].insert()`` inspects the table on every call (four
schema queries and a savepoint per row); a push writes hundreds of rows, so
the handlers issue prepared statements instead (sqlite3 caches them by text).
"""

from __future__ import annotations

from functools import cache

import sqlite_utils


@cache
def _insert_sql(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    sql = (f"INSERT INTO {table} ({', '.join(columns)})"
           f" VALUES ({', '.join('?' * len(columns))})")
    if key:
        updates = ", ".join(f"{column} = excluded.{column}" for column in columns
                            if column not in key)
        sql += f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    return sql


def insert(db: sqlite_utils.Database, table: str, row: dict,
           replace_on: tuple[str, ...] = ()) -> None:
    """Insert ``row``; with ``replace_on`` (a unique key's columns), a row already holding
    that key takes the new values instead."""
    db.execute(_insert_sql(table, tuple(row), replace_on), tuple(row.values()))


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
