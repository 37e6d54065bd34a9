"""The export's rows read in chunks, each in a read transaction of its own, in exactly the
order of one query. (The XLSX written as it streams: tests/test_xlsx.py.)"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from server.db import connect, immediate
from server.db.dialect import POSTGRESQL
from server.ledger import export, queries
from tests.ledger_helpers import add_problem, load


def _export(db, user, f) -> list[list]:
    return list(export.records(db, user, dataclasses.replace(f)))


def _sample_problems(db, world) -> None:
    """Problems with ties in every sort key and NULL deadlines and ledger numbers."""
    found = ["2026-03-01T02:00:00+00:00", "2026-03-02T02:00:00+00:00"]
    deadlines = [None, "2026-03-10", "2026-03-12"]
    statuses = ["accepted", "handling", "closed"]
    for n in range(14):
        add_problem(
            db, world, description=f"样本{n:02d}", found_at=found[n % 2],
            deadline=deadlines[n % 3], status=statuses[n % 3 if n < 12 else 0],
            ledger_no=None if n % 4 == 0 else f"ZF-2026-{200 + n % 7 * 2 + n // 7:06d}",
            lead_unit_id=world.units["u1"] if n % 2 else None,
            resident_phone="13812345678",
        )


def _same_as_one_query(db, user, f, monkeypatch) -> int:
    """Export ``f`` in chunks of 1, 2 and 3 rows: the rows of one chunk, in the order of one
    plain query. Returns the number of rows."""
    monkeypatch.setattr(export, "CHUNK", 10_000)  # one chunk: one query
    whole = _export(db, user, f)
    where, params = queries.conditions(db, user, dataclasses.replace(f))
    plain = [row[0] for row in db.execute(
        f"SELECT p.description FROM problems p WHERE {where}"
        f" ORDER BY {queries.order_by(f)}", params)]
    assert [row[5] for row in whole] == plain
    for chunk in (1, 2, 3):
        monkeypatch.setattr(export, "CHUNK", chunk)
        assert _export(db, user, f) == whole, (f, chunk)
    return len(whole)


def test_chunks_give_the_rows_of_one_query_for_every_sort(db, world, monkeypatch):
    _sample_problems(db, world)
    office, handler = load(db, world, "office"), load(db, world, "handler1")
    sizes = set()
    for sort in queries.SORTS:
        for direction in ("asc", "desc"):
            # No filter; a narrow filter (its index drives the read); a handler's scope.
            for user, extra in ((office, {}), (office, {"category": world.category}),
                                (handler, {})):
                f = queries.Filter(sort=sort, dir=direction, **extra)
                sizes.add(_same_as_one_query(db, user, f, monkeypatch))
    assert sizes == {17, 8}  # every problem for the city office; unit u1's for the handler


@pytest.mark.sqlite_only  # SQLite's planner steering (EXPLAIN QUERY PLAN, INDEXED BY)
def test_many_matches_are_read_through_the_sort_index(db, world, monkeypatch):
    _sample_problems(db, world)
    monkeypatch.setattr(export, "SORTED_READ_MAX", 0)  # every match is one too many
    office = load(db, world, "office")
    for sort in queries.SORTS:
        for direction in ("asc", "desc"):
            f = queries.Filter(sort=sort, dir=direction, area="370102")
            probe = dataclasses.replace(f)
            queries.choose_drive(db, office, probe)
            where, params = queries.conditions(db, office, probe)
            # SQLite would read the area's problems and sort them; the chunks read in order.
            assert export._drive(db, probe, where, params) == (
                f" INDEXED BY {queries.SORT_INDEXES[sort]}")
            assert _same_as_one_query(db, office, f, monkeypatch) == 16  # all but p2


def test_an_engine_that_plans_itself_is_not_asked_for_its_plan():
    class PlansItself:
        dialect = POSTGRESQL

        def execute(self, *args):
            raise AssertionError("no query expected")

    assert export._drive(PlansItself(), queries.Filter(), "1 = 1", []) == ""


def test_chunks_stop_at_max_rows(db, world, monkeypatch):
    _sample_problems(db, world)
    office = load(db, world, "office")
    f = queries.Filter(sort="deadline", dir="asc")
    whole = _export(db, office, f)
    monkeypatch.setattr(export, "CHUNK", 3)
    monkeypatch.setattr(export, "MAX_ROWS", 7)
    assert _export(db, office, f) == whole[:7]


@pytest.mark.sqlite_only  # SQLite's WAL file and its checkpoint, through pragmas
def test_no_transaction_is_open_between_chunks(db_path, db, world, monkeypatch):
    monkeypatch.setattr(export, "CHUNK", 3)
    _sample_problems(db, world)
    reader = connect(db_path)
    reader.execute("PRAGMA query_only = ON")
    try:
        rows = export.records(reader, load(db, world, "office"), queries.Filter())
        first = list(itertools.islice(rows, 3))  # paused after the first chunk
        assert [row[0] for row in first] == [1, 2, 3]
        assert not reader.conn.in_transaction
        add_problem(db, world, description="导出途中写入")  # the WAL has pages to copy
        wal = Path(f"{db_path}-wal")
        assert wal.stat().st_size > 0
        db.execute("PRAGMA busy_timeout = 0")  # a reader in the way answers busy at once
        assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        assert wal.stat().st_size == 0
        for row in rows:  # and so after every row of the export
            assert not reader.conn.in_transaction, row[0]
    finally:
        reader.close()


def test_a_problem_written_mid_export_does_not_break_it(db, world, monkeypatch):
    monkeypatch.setattr(export, "CHUNK", 3)
    _sample_problems(db, world)
    office = load(db, world, "office")
    rows = export.records(db, office, queries.Filter(sort="found_at", dir="asc"))
    seqs = [row[0] for row in itertools.islice(rows, 4)]
    add_problem(db, world, description="导出途中新增")  # found now: after every other row
    add_problem(db, world, description="更早的新问题", found_at="2026-01-01T00:00:00+00:00")
    with immediate(db):  # a row not yet sent moves before the position reached
        db.execute("UPDATE problems SET found_at = '2026-01-02T00:00:00+00:00'"
                   " WHERE description = '样本13'")
    rest = list(rows)
    seqs += [row[0] for row in rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert rest[-1][5] == "导出途中新增"
    assert "更早的新问题" not in [row[5] for row in rest]
    assert len(seqs) == 17  # 17 before; one moved out of reach, one new at the end
