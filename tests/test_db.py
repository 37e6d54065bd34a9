"""The database layer: WAL, migrations, one writer with BEGIN IMMEDIATE."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from server.db import WRITER_PRAGMAS, Store, connect, immediate, open_database
from server.db import sqlite as sqlite_backend
from server.db.sqlite_history import migrations


@pytest.mark.sqlite_only
def test_open_database_uses_wal_and_foreign_keys(tmp_path):
    db = open_database(tmp_path / "a.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


@pytest.mark.sqlite_only
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


@pytest.mark.sqlite_only
def test_migrations_apply_once(tmp_path):
    path = tmp_path / "a.db"
    open_database(path).close()
    db = open_database(path)
    assert migrations.pending(db) == []
    names = [m.name for m in migrations.applied(db)]
    assert names == sorted(set(names))
    assert "problems" in db.table_names()


def test_immediate_rolls_back_on_error(db_path):
    db = open_database(db_path)
    before = db["settings"].count
    with pytest.raises(RuntimeError), immediate(db):
        db["settings"].insert({"key": "a", "value": "1"})
        raise RuntimeError("stop")
    assert db["settings"].count == before


@pytest.mark.sqlite_only
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
    with pytest.raises(db.errors.Integrity, match="append-only"):
        db.execute("UPDATE problem_events SET note = 'x'")
    with pytest.raises(db.errors.Integrity, match="append-only"):
        db.execute("DELETE FROM problem_events")


def test_store_serialises_writes_and_reads_beside_them(db_path):
    store = Store(db_path)
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


@pytest.mark.sqlite_only
def test_readers_cannot_write(tmp_path):
    store = Store(tmp_path / "a.db")
    with pytest.raises(sqlite3.OperationalError):
        store.read_sync(lambda db: db.execute("INSERT INTO settings VALUES ('a', 'b')"))
    store.close()


def test_store_reopens_after_close(db_path):
    store = Store(db_path)
    store.close()
    store.write_sync(lambda db: db["settings"].insert({"key": "a", "value": "b"}))
    assert store.read_sync(lambda db: db["settings"].get("a")["value"]) == "b"
    store.close()


@pytest.mark.sqlite_only
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


# The backend-neutral interface on SQLite ------------------------------------------------

SLOW_QUERY = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)"
    " SELECT count(*) FROM (SELECT i FROM n LIMIT 100000000)"
)


@pytest.mark.sqlite_only
def test_errors_name_sqlites_exceptions_by_meaning(tmp_path):
    path = tmp_path / "a.db"
    db = open_database(path)
    db["settings"].insert({"key": "a", "value": "1"})
    with pytest.raises(db.errors.Integrity):
        db.execute("INSERT INTO settings (key, value) VALUES ('a', '2')")
    other = connect(path)
    other.execute("PRAGMA busy_timeout = 0")
    with immediate(db), pytest.raises(other.errors.Operational) as busy:
        other.execute("BEGIN IMMEDIATE")
    assert other.errors.is_busy(busy.value)
    assert not other.errors.is_interrupted(busy.value)
    db.conn.set_progress_handler(lambda: 1, 1)
    with pytest.raises(db.errors.Operational) as interrupted:
        db.execute("SELECT count(*) FROM settings")
    db.conn.set_progress_handler(None, 0)
    assert db.errors.is_interrupted(interrupted.value)
    assert not db.errors.is_busy(interrupted.value)
    assert not db.errors.is_busy(ValueError("database is locked"))
    assert sqlite_backend.Store.errors is db.errors


def test_in_transaction_follows_begin_and_commit(db_path):
    db = open_database(db_path)
    assert not db.in_transaction
    with immediate(db):
        assert db.in_transaction
    assert not db.in_transaction


def test_a_savepoint_undoes_only_its_own_block(db_path):
    db = open_database(db_path)
    with immediate(db):
        db["settings"].insert({"key": "kept", "value": "1"})
        with pytest.raises(RuntimeError), db.savepoint("attempt"):
            db["settings"].insert({"key": "undone", "value": "1"})
            raise RuntimeError("stop")
        with db.savepoint("attempt"):
            db["settings"].insert({"key": "released", "value": "1"})
        assert db.in_transaction
    assert sorted(row["key"] for row in db["settings"].rows_where("key IN (?, ?, ?)",
                  ["kept", "undone", "released"])) == ["kept", "released"]


@pytest.mark.sqlite_only
def test_a_savepoint_lets_through_an_error_that_ended_the_transaction(tmp_path):
    db = open_database(tmp_path / "a.db")
    db.execute("BEGIN IMMEDIATE")
    with pytest.raises(RuntimeError, match="ended"), db.savepoint("attempt"):
        db.execute("ROLLBACK")  # as a RAISE(ROLLBACK) trigger would
        raise RuntimeError("ended")
    assert not db.in_transaction


def test_a_savepoint_name_must_be_an_identifier(db_path):
    db = open_database(db_path)
    with pytest.raises(ValueError), db.savepoint("a; DROP TABLE settings"):
        pass


def test_a_snapshot_sees_one_state_of_the_database(db_path):
    path = db_path
    writer = open_database(path)
    reader = connect(path)

    def count():
        return reader.execute("SELECT count(*) FROM settings").fetchone()[0]

    before = count()
    with reader.snapshot():
        assert count() == before
        with immediate(writer):
            writer["settings"].insert({"key": "new", "value": "1"})
        assert count() == before
        assert reader.in_transaction
    assert not reader.in_transaction
    assert count() == before + 1


def test_a_snapshot_inside_a_transaction_reads_in_it(db_path):
    db = open_database(db_path)
    with immediate(db):
        db["settings"].insert({"key": "mine", "value": "1"})
        with db.snapshot():
            assert db["settings"].get("mine")["value"] == "1"
        assert db.in_transaction  # the snapshot did not end the caller's transaction
    assert db["settings"].get("mine")["value"] == "1"


def test_a_snapshot_that_raises_ends_its_transaction(db_path):
    db = open_database(db_path)
    with pytest.raises(RuntimeError), db.snapshot():
        db.execute("SELECT count(*) FROM settings").fetchone()
        raise RuntimeError("stop")
    assert not db.in_transaction


@pytest.mark.sqlite_only
def test_bounded_gives_none_when_the_queries_outrun_the_budget(tmp_path):
    db = open_database(tmp_path / "a.db")

    def slow():
        return db.execute(SLOW_QUERY).fetchone()[0]

    def quick():
        return db.execute("SELECT 41 + 1").fetchone()[0]

    assert db.bounded(0.05, slow) is None
    assert db.bounded(5, quick) == 42
    assert db.bounded(0, quick) is None  # no time left: not even started
    with pytest.raises(db.errors.Operational, match="no such table"):
        db.bounded(5, db.execute, "SELECT * FROM missing")
    assert db.execute("SELECT 1").fetchone() == (1,)  # the budget ended with the call


@pytest.mark.sqlite_only
def test_bulk_load_is_one_write_transaction_with_the_settings_restored(tmp_path):
    path = tmp_path / "a.db"
    db = open_database(path)
    pragmas = ("synchronous", "cache_size", "foreign_keys", "busy_timeout", "journal_mode")

    def settings():
        return {name: db.execute(f"PRAGMA {name}").fetchone()[0] for name in pragmas}

    before = settings()
    other = connect(path)
    other.execute("PRAGMA busy_timeout = 0")
    with db.bulk_load():
        during = settings()
        db["settings"].insert({"key": "loaded", "value": "1"})
        with pytest.raises(other.errors.Operational, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.close()
    assert during["synchronous"] == 0 and during["foreign_keys"] == 0
    assert during["cache_size"] < before["cache_size"]
    assert settings() == before
    assert db["settings"].get("loaded")["value"] == "1"
    with pytest.raises(RuntimeError), db.bulk_load():
        db["settings"].insert({"key": "dropped", "value": "1"})
        raise RuntimeError("stop")
    assert db.execute("SELECT count(*) FROM settings WHERE key = 'dropped'").fetchone() == (0,)
    assert settings() == before


@pytest.mark.sqlite_only
def test_identity_names_the_file_whatever_the_path_that_opened_it(tmp_path):
    (tmp_path / "sub").mkdir()
    first = open_database(tmp_path / "a.db")
    again = connect(tmp_path / "sub" / ".." / "a.db")
    (tmp_path / "link.db").symlink_to(tmp_path / "a.db")
    linked = connect(tmp_path / "link.db")
    other = open_database(tmp_path / "b.db")
    assert first.identity == again.identity == linked.identity
    assert first.identity == str((tmp_path / "a.db").resolve())
    assert other.identity != first.identity
    assert connect(":memory:").identity != connect(":memory:").identity


def test_executemany_runs_one_statement_over_many_rows(db_path):
    db = open_database(db_path)
    with immediate(db):
        db.executemany("INSERT INTO settings (key, value) VALUES (?, ?)",
                       [(f"many{n}", str(n)) for n in range(5)])
    assert db.execute("SELECT count(*) FROM settings WHERE key LIKE 'many%'").fetchone() == (5,)


@pytest.mark.sqlite_only
def test_checkpoint_empties_the_wal(tmp_path):
    path = tmp_path / "a.db"
    db = open_database(path)
    with immediate(db):
        db["settings"].insert({"key": "a", "value": "x" * 10_000})
    wal = tmp_path / "a.db-wal"
    assert wal.stat().st_size > 0
    db.checkpoint()
    assert wal.stat().st_size == 0


@pytest.mark.sqlite_only
def test_the_export_reader_is_a_read_only_connection_of_its_own(tmp_path):
    store = Store(tmp_path / "a.db")
    reader = store.export_reader()
    try:
        assert reader is not store.reader()
        assert reader.identity == store.reader().identity
        with pytest.raises(reader.errors.Operational, match="readonly"):
            reader.execute("INSERT INTO settings VALUES ('a', 'b')")
    finally:
        reader.close()
        store.close()
