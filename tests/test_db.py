"""The database layer: WAL, migrations, one writer with BEGIN IMMEDIATE."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from server.db import WRITER_PRAGMAS, Store, connect, immediate, open_database
from server.db.sqlite_history import migrations


def test_open_database_uses_wal_and_foreign_keys(tmp_path):
    db = open_database(tmp_path / "a.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_a_replaced_problem_is_uncounted_by_its_delete_triggers(world, db):
    """INSERT OR REPLACE fires the replaced row's delete triggers (recursive_triggers),
    which keep the statistics' roll-up and the search keys right."""
    assert db.execute("PRAGMA recursive_triggers").fetchone() == (1,)
    with immediate(db):
        db.execute("UPDATE problems SET accepted_at = found_at WHERE id = ?",
                   [world.problems["p2"]])
    row = next(db.query("SELECT * FROM problems WHERE id = ?", [world.problems["p2"]]))
    before = db.execute("SELECT sum(n) FROM stats_rollup").fetchone()
    assert before == (2,)  # counted per district and per town
    with immediate(db):
        db.execute(f"INSERT OR REPLACE INTO problems ({', '.join(row)})"
                   f" VALUES ({', '.join('?' * len(row))})", list(row.values()))
    assert db.execute("SELECT sum(n) FROM stats_rollup").fetchone() == before
    assert db.execute("SELECT count(*) FROM problem_search_keys").fetchone() == (
        db.execute("SELECT count(*) FROM problems").fetchone())


def test_migrations_apply_once(tmp_path):
    path = tmp_path / "a.db"
    open_database(path).close()
    db = open_database(path)
    assert migrations.pending(db) == []
    names = [m.name for m in migrations.applied(db)]
    assert names == sorted(set(names))
    assert "problems" in db.table_names()


def test_immediate_rolls_back_on_error(tmp_path):
    db = open_database(tmp_path / "a.db")
    before = db["settings"].count
    with pytest.raises(RuntimeError), immediate(db):
        db["settings"].insert({"key": "a", "value": "1"})
        raise RuntimeError("stop")
    assert db["settings"].count == before


def test_immediate_takes_the_write_lock_at_begin(tmp_path):
    path = tmp_path / "a.db"
    first = open_database(path)
    second = connect(path)
    second.execute("PRAGMA busy_timeout = 50")
    with immediate(first), pytest.raises(sqlite3.OperationalError, match="locked"):
        second.execute("BEGIN IMMEDIATE")
    second.execute("BEGIN IMMEDIATE")
    second.execute("ROLLBACK")


def test_problem_events_are_append_only(world, db):
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE problem_events SET note = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM problem_events")


def test_store_serialises_writes_and_reads_beside_them(tmp_path):
    store = Store(tmp_path / "a.db")
    errors = []

    def add(db, n):
        current = db.execute("SELECT count(*) FROM settings WHERE key LIKE 'k%'").fetchone()[0]
        db["settings"].insert({"key": f"k{n}", "value": str(current)})

    def worker(n):
        try:
            store.write_sync(add, n)
            store.read_sync(lambda db: db.execute("SELECT count(*) FROM settings").fetchone())
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    values = sorted(
        int(v)
        for v in store.read_sync(
            lambda db: [
                row[0] for row in db.execute("SELECT value FROM settings WHERE key LIKE 'k%'")
            ]
        )
    )
    assert values == list(range(40))  # each write saw all earlier ones
    store.close()


def test_readers_cannot_write(tmp_path):
    store = Store(tmp_path / "a.db")
    with pytest.raises(sqlite3.OperationalError):
        store.read_sync(lambda db: db.execute("INSERT INTO settings VALUES ('a', 'b')"))
    store.close()


def test_store_reopens_after_close(tmp_path):
    store = Store(tmp_path / "a.db")
    store.close()
    store.write_sync(lambda db: db["settings"].insert({"key": "a", "value": "b"}))
    assert store.read_sync(lambda db: db["settings"].get("a")["value"]) == "b"
    store.close()


def test_the_writer_alone_is_tuned_for_bulk_writes(tmp_path):
    store = Store(tmp_path / "a.db")

    def pragmas(db):
        return {name: db.execute(f"PRAGMA {name}").fetchone()[0] for name in WRITER_PRAGMAS}

    written, read = store.write_sync(pragmas), store.read_sync(pragmas)
    store.close()
    assert written["temp_store"] == 2  # MEMORY
    assert written["cache_size"] == WRITER_PRAGMAS["cache_size"]
    assert written["wal_autocheckpoint"] == WRITER_PRAGMAS["wal_autocheckpoint"]
    assert read["cache_size"] != WRITER_PRAGMAS["cache_size"]
