"""SQLite's schema history, one module per migration: the set a database records."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import sqlite_utils

from server.db import connect, open_database, sqlite_history
from server.db.sqlite_history import HISTORY, migrate, migrations

# SQLite's schema history: PostgreSQL's has its own tests (test_schema_parity.py).
pytestmark = pytest.mark.sqlite_only

# A database migrated by the schema history as it stood in one file (server/migrations.py,
# through m024), before it became this package: connect(path); migrate(db); then
# PRAGMA journal_mode = DELETE, VACUUM, and gzip -9.
MIGRATED_IN_ONE_FILE = Path(__file__).parent / "fixtures" / "migrated_through_m024.sqlite.gz"
LAST_IN_ONE_FILE = "m024_ask_reporter"


def set_names() -> list[str]:
    """The names of the set's migrations, in order (all pending on an empty database)."""
    return [migration.name for migration in migrations.pending(sqlite_utils.Database(memory=True))]


def schema(db) -> list[tuple]:
    return db.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()


def contents(db) -> dict[str, list[tuple]]:
    """Every table's rows, but the migrations' times and the server epoch (both made anew)."""
    tables = [row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name != '_sqlite_migrations'")]
    rows = {table: db.execute(f"SELECT * FROM [{table}] ORDER BY 1").fetchall()
            for table in tables}
    rows["settings"] = [row for row in rows["settings"] if row[0] != "epoch"]
    return rows


def test_each_migration_is_the_module_of_its_name_in_order():
    modules = sorted(path.stem for path in Path(sqlite_history.__file__).parent.glob("m*.py"))
    assert [migration.__name__ for migration in HISTORY] == modules
    assert all(migration.__module__ == f"server.db.sqlite_history.{migration.__name__}"
               for migration in HISTORY)
    assert set_names() == modules
    assert migrations.name == "fieldledger"
    assert "m012" not in " ".join(modules)


def test_a_database_migrated_in_one_file_is_migrated_here(tmp_path):
    path = tmp_path / "old.db"
    with gzip.open(MIGRATED_IN_ONE_FILE) as packed, open(path, "wb") as unpacked:
        shutil.copyfileobj(packed, unpacked)
    old = connect(path)
    names = set_names()
    since = names[names.index(LAST_IN_ONE_FILE) + 1:]
    recorded = old.execute("SELECT * FROM _sqlite_migrations ORDER BY id").fetchall()
    assert [row[1:3] for row in recorded] == [
        ("fieldledger", name) for name in names if name not in since]
    assert [migration.name for migration in migrations.pending(old)] == since

    migrate(old)

    after = old.execute("SELECT * FROM _sqlite_migrations ORDER BY id").fetchall()
    assert after[:len(recorded)] == recorded
    assert [row[2] for row in after[len(recorded):]] == since
    fresh = open_database(tmp_path / "fresh.db")
    assert schema(old) == schema(fresh)
    assert contents(old) == contents(fresh)
