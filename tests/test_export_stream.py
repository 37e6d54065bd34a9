"""XLSX export written as it streams: sent in chunks while rows are still being read, and
read back by openpyxl cell by cell (empty cells, dates, text that XML must escape); rows read
in chunks, each in a read transaction of its own, in exactly the order of one query."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import itertools
import random
import zipfile
from pathlib import Path

import openpyxl

from server.db import connect, immediate
from server.ledger import export, queries
from tests.ledger_helpers import add_problem, load

ROW = [
    7, "ZF-2026-000007", "走访发现", dt.datetime(2026, 3, 1, 10, 30, 15), "  三号楼 <东> & 西",
    "漏水\x01\x1f\ufffe\uffff严重", "", dt.datetime(2026, 3, 1, 11, 0), None, "水务集团、燃气公司",
    None, dt.date(2026, 3, 13), "延期1次，共3个工作日\n至2026-03-18", dt.date(2026, 3, 18),
    "暂定", "", "", "", "已解决", None, "", "", "", "办理中", "", "", '王"大爷"', "138****5678",
]
HEADING = ["青川市问题台账", "范围：青川市", "筛选条件：无（全部问题）"]


def read_back(data: bytes) -> list[list]:
    """The header row and the rows below it."""
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    return [list(row) for row in sheet.iter_rows(min_row=len(HEADING) + 1, values_only=True)]


def test_cells_read_back_in_their_columns():
    data = b"".join(export.xlsx_chunks(iter([ROW]), HEADING))
    rows = read_back(data)
    assert rows[0] == export.headers()
    assert rows[1] == [
        7, "ZF-2026-000007", "走访发现", dt.datetime(2026, 3, 1, 10, 30, 15),
        "  三号楼 <东> & 西", "漏水严重", None, dt.datetime(2026, 3, 1, 11, 0), None,
        "水务集团、燃气公司", None, dt.datetime(2026, 3, 13), "延期1次，共3个工作日\n至2026-03-18",
        dt.datetime(2026, 3, 18), "暂定", None, None, None, "已解决", None, None, None, None,
        "办理中", None, None, '王"大爷"', "138****5678",
    ]
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert [sheet.cell(n, 1).value for n in (1, 2, 3)] == HEADING


def test_an_empty_export_is_a_workbook_with_headers():
    data = b"".join(export.xlsx_chunks(iter([]), HEADING))
    assert read_back(data) == [export.headers()]
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert sheet.auto_filter.ref == "A4:AB4"


def test_row_heights_follow_the_wrapped_text():
    room = export.COLUMNS[5].width - 0.5  # the description's
    assert export._lines("漏水", room) == 1
    assert export._lines("漏" * 40, room) == 4  # 88 units
    assert export._lines("a" * 40, room) == 2
    assert export._lines("漏水\n\n严重", room) == 3

    def height(changes: dict[int, str]) -> float | None:
        values = [changes.get(n, value) for n, value in enumerate(ROW)]
        return openpyxl.load_workbook(io.BytesIO(b"".join(export.xlsx_chunks(
            iter([values]), HEADING)))).active.row_dimensions[5].height

    assert height({}) == 3 * export._LINE_HEIGHT  # 协办单位 and 延期 take three lines
    short = {4: "三号楼", 9: "水务集团", 12: "", 26: "王大爷"}
    assert height(short) is None  # one line: the default height
    assert height({**short, 5: "漏" * 40}) == 4 * export._LINE_HEIGHT
    assert height({**short, 5: "漏" * 4000}) == 400  # Excel's most is 409


def test_chunks_leave_while_rows_are_read(monkeypatch):
    monkeypatch.setattr(export, "CHUNK", 10)
    consumed = []

    noise = random.Random(1)

    def rows():
        for n in range(1, 36):
            consumed.append(n)
            text = "".join(noise.choice("漏水路灯物业小区楼道") for _ in range(3000))
            yield [n, f"ZF-2026-{n:06d}", *ROW[2:5], text, *ROW[6:]]

    chunks = []
    for chunk in export.xlsx_chunks(rows(), HEADING):
        chunks.append((len(consumed), chunk))
    # The first bytes leave after the first rows; chunks follow every CHUNK rows.
    assert chunks[0][0] == 10 and len(chunks) >= 3
    assert all(chunk for _rows_read, chunk in chunks)
    data = b"".join(chunk for _rows_read, chunk in chunks)
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    read = read_back(data)
    assert [row[0] for row in read[1:]] == list(range(1, 36))
    assert read[35][1] == "ZF-2026-000035"


def test_column_letters():
    assert [export._column_letters(i) for i in (0, 15, 25, 26, 27, 701, 702)] == [
        "A", "P", "Z", "AA", "AB", "ZZ", "AAA"]


# Rows read in chunks, each in a read transaction of its own ----------------------------


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


def test_chunks_stop_at_max_rows(db, world, monkeypatch):
    _sample_problems(db, world)
    office = load(db, world, "office")
    f = queries.Filter(sort="deadline", dir="asc")
    whole = _export(db, office, f)
    monkeypatch.setattr(export, "CHUNK", 3)
    monkeypatch.setattr(export, "MAX_ROWS", 7)
    assert _export(db, office, f) == whole[:7]


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
