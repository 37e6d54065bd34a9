"""``schema_catalog(db)``: a database's schema as plain values that compare across backends
(docs/postgresql.md, section 3: the schema test).

One reader per backend, each giving the same shape:

- ``tables``: name -> ``{"columns": [(name, family, not_null, default)], "primary_key":
  (columns), "unique": {(columns)}, "foreign_keys": {(column, table, column)}}``;
- ``indexes``: name -> ``(table, unique, columns, predicate)``, an expression column as
  ``"<expr>"``, ``predicate`` the WHERE of a partial index as the backend writes it (or
  None); indexes that back a PRIMARY KEY or UNIQUE constraint are in ``tables``;
- ``triggers``: name -> ``(table, timing, events, columns)``, ``columns`` those of an
  ``UPDATE OF`` (sorted; empty for any column).

A type becomes its family (SQLite's affinity names); a primary key column counts as NOT
NULL (SQLite lets a text key hold NULL, but nothing writes one); a default is its literal
without PostgreSQL's ``::type`` cast.
"""

from __future__ import annotations

import re

SQLITE_FAMILIES = {"INTEGER": "INTEGER", "TEXT": "TEXT", "REAL": "REAL", "BLOB": "BLOB"}
POSTGRES_FAMILIES = {
    "bigint": "INTEGER", "integer": "INTEGER", "text": "TEXT", "citext": "TEXT",
    "double precision": "REAL", "bytea": "BLOB", "ARRAY": "ARRAY",
}
_CAST = re.compile(r"(::[a-z ]+)+$")
_TRIGGER = re.compile(
    r"\b(BEFORE|AFTER|INSTEAD OF)\s+(INSERT|UPDATE|DELETE)\b(?:\s+OF\s+(.*?))?\s+ON\s",
    re.IGNORECASE | re.DOTALL)


def schema_catalog(db) -> dict:
    """The catalog of ``db``, a SQLite database (sqlite-utils) or anything with PostgreSQL's
    catalogs behind ``db.execute(sql, params)``."""
    is_sqlite = db.dialect.name == "sqlite"
    return _sqlite_catalog(db) if is_sqlite else _postgres_catalog(db)


def _rows(db, sql: str, params=()) -> list[tuple]:
    return [tuple(row) for row in db.execute(sql, params).fetchall()]


def _default(value) -> str | None:
    return None if value is None else _CAST.sub("", str(value)).strip()


# SQLite ----------------------------------------------------------------------------------

def _sqlite_catalog(db) -> dict:
    tables, indexes = {}, {}
    names = [name for (name,) in _rows(
        db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    for table in names:
        info = _rows(db, "SELECT name, type, \"notnull\", dflt_value, pk"
                         " FROM pragma_table_info(?) ORDER BY cid", [table])
        index_list = _rows(db, "SELECT name, \"unique\", origin FROM pragma_index_list(?)",
                           [table])
        tables[table] = {
            "columns": [(name, SQLITE_FAMILIES.get(kind.upper(), kind.upper()),
                         bool(not_null or pk), _default(default))
                        for name, kind, not_null, default, pk in info],
            "primary_key": tuple(name for name, *_, pk in sorted(info, key=lambda c: c[4])
                                 if pk),
            "unique": {_sqlite_index_columns(db, name)
                       for name, _unique, origin in index_list if origin == "u"},
            "foreign_keys": set(_rows(
                db, 'SELECT "from", "table", "to" FROM pragma_foreign_key_list(?)', [table])),
        }
        for name, unique, origin in index_list:
            if origin == "c":
                indexes[name] = (table, bool(unique), _sqlite_index_columns(db, name),
                                 _sqlite_predicate(db, name))
    triggers = {name: (table, *_trigger_timing(sql)) for name, table, sql in _rows(
        db, "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")}
    return {"tables": tables, "indexes": indexes, "triggers": triggers}


def _sqlite_index_columns(db, index: str) -> tuple[str, ...]:
    return tuple(name if cid >= 0 else "<expr>" for cid, name in _rows(
        db, "SELECT cid, name FROM pragma_index_xinfo(?) WHERE key ORDER BY seqno", [index]))


def _sqlite_predicate(db, index: str) -> str | None:
    (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", [index]).fetchone()
    found = re.search(r"\)\s+WHERE\s+(.*)$", sql, re.DOTALL)
    return " ".join(found.group(1).split()) if found else None


def _trigger_timing(sql: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    timing, event, columns = _TRIGGER.search(sql).groups()
    columns = sorted(column.strip() for column in columns.split(",")) if columns else ()
    return timing.upper(), (event.upper(),), tuple(columns)


# PostgreSQL ------------------------------------------------------------------------------

def _postgres_catalog(db) -> dict:
    tables = {}
    names = [name for (name,) in _rows(
        db, "SELECT table_name FROM information_schema.tables WHERE table_schema ="
            " current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name")]
    for table in names:
        info = _rows(db, "SELECT column_name, data_type, udt_name, is_nullable, column_default"
                         " FROM information_schema.columns WHERE table_schema ="
                         " current_schema() AND table_name = ? ORDER BY ordinal_position",
                     [table])
        constraints = _constraints(db, table)
        primary_key = next((columns for kind, columns, _ in constraints if kind == "p"), ())
        tables[table] = {
            "columns": [(name, POSTGRES_FAMILIES.get(udt if udt == "citext" else kind, kind),
                         nullable == "NO" or name in primary_key, _default(default))
                        for name, kind, udt, nullable, default in info],
            "primary_key": primary_key,
            "unique": {columns for kind, columns, _ in constraints if kind == "u"},
            "foreign_keys": {(columns[0], *target) for kind, columns, target in constraints
                             if kind == "f"},
        }
    return {"tables": tables, "indexes": _postgres_indexes(db),
            "triggers": _postgres_triggers(db)}


def _constraints(db, table: str) -> list[tuple]:
    """(kind, columns, (referenced table, referenced column) or None) per constraint."""
    rows = _rows(db, """
        SELECT c.contype::text,
            array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(num, i)
                  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num
                  ORDER BY k.i),
            c.confrelid::regclass::text,
            (SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.confrelid AND a.attnum = c.confkey[1])
        FROM pg_constraint c
        WHERE c.conrelid = ?::regclass AND c.contype IN ('p', 'u', 'f')""", [table])
    return [(kind, tuple(columns), (target, column) if kind == "f" else None)
            for kind, columns, target, column in rows]


def _postgres_indexes(db) -> dict:
    rows = _rows(db, """
        SELECT i.relname::text, t.relname::text, x.indisunique,
            pg_get_expr(x.indpred, x.indrelid),
            array(SELECT coalesce(a.attname::text, '<expr>')
                  FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(num, n)
                  LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.num
                  WHERE k.n <= x.indnkeyatts ORDER BY k.n)
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class t ON t.oid = x.indrelid
        WHERE t.relnamespace = current_schema()::regnamespace
            AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid
                            AND c.contype IN ('p', 'u', 'x'))""")
    return {name: (table, unique, _without_trailing_rowid(columns), predicate)
            for name, table, unique, predicate, columns in rows}


def _without_trailing_rowid(columns: list[str]) -> tuple[str, ...]:
    """SQLite's indexes end with the rowid without naming it; PostgreSQL's name it (m028)."""
    return tuple(columns[:-1] if len(columns) > 1 and columns[-1] == "rowid" else columns)


def _postgres_triggers(db) -> dict:
    rows = _rows(db, """
        SELECT trigger_name::text, event_object_table::text, action_timing::text,
            array_agg(event_manipulation::text ORDER BY event_manipulation),
            array(SELECT c.event_object_column::text
                  FROM information_schema.triggered_update_columns c
                  WHERE c.trigger_schema = current_schema() AND c.trigger_name = t.trigger_name
                  ORDER BY 1)
        FROM information_schema.triggers t WHERE trigger_schema = current_schema()
        GROUP BY t.trigger_name, t.event_object_table, t.action_timing""")
    return {name: (table, timing, tuple(events), tuple(columns))
            for name, table, timing, events, columns in rows}
