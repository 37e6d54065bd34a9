"""The export's XLSX written as it streams: sent in chunks while rows are still being read,
and read back by openpyxl cell by cell (empty cells, dates, text that XML must escape)."""

from __future__ import annotations

import datetime as dt
import io
import random
import zipfile

import openpyxl

from server.ledger import export, xlsx

ROW = [
    7, "ZF-2026-000007", "走访发现", dt.datetime(2026, 3, 1, 10, 30, 15), "  三号楼 <东> & 西",
    "漏水\x01\x1f\ufffe\uffff严重", "", dt.datetime(2026, 3, 1, 11, 0), None, "水务集团、燃气公司",
    None, dt.date(2026, 3, 13), "延期1次，共3个工作日\n至2026-03-18", dt.date(2026, 3, 18),
    "暂定", "", "", "", "已解决", None, "", "", "", "办理中", "", "", "", "", '王"大爷"',
    "138****5678",
]
HEADING = ["青川市问题台账", "范围：青川市", "筛选条件：无（全部问题）"]


def read_back(data: bytes) -> list[list]:
    """The header row and the rows below it."""
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    return [list(row) for row in sheet.iter_rows(min_row=len(HEADING) + 1, values_only=True)]


def test_cells_read_back_in_their_columns():
    data = b"".join(xlsx.chunks(iter([ROW]), HEADING))
    rows = read_back(data)
    assert rows[0] == export.headers()
    assert rows[1] == [
        7, "ZF-2026-000007", "走访发现", dt.datetime(2026, 3, 1, 10, 30, 15),
        "  三号楼 <东> & 西", "漏水严重", None, dt.datetime(2026, 3, 1, 11, 0), None,
        "水务集团、燃气公司", None, dt.datetime(2026, 3, 13), "延期1次，共3个工作日\n至2026-03-18",
        dt.datetime(2026, 3, 18), "暂定", None, None, None, "已解决", None, None, None, None,
        "办理中", None, None, None, None, '王"大爷"', "138****5678",
    ]
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert [sheet.cell(n, 1).value for n in (1, 2, 3)] == HEADING


def test_an_empty_export_is_a_workbook_with_headers():
    data = b"".join(xlsx.chunks(iter([]), HEADING))
    assert read_back(data) == [export.headers()]
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert sheet.auto_filter.ref == "A4:AD4"


def test_row_heights_follow_the_wrapped_text():
    room = export.COLUMNS[5].width - 0.5  # the description's
    assert xlsx._lines("漏水", room) == 1
    assert xlsx._lines("漏" * 40, room) == 4  # 88 units
    assert xlsx._lines("a" * 40, room) == 2
    assert xlsx._lines("漏水\n\n严重", room) == 3

    def height(changes: dict[int, str]) -> float | None:
        values = [changes.get(n, value) for n, value in enumerate(ROW)]
        return openpyxl.load_workbook(io.BytesIO(b"".join(xlsx.chunks(
            iter([values]), HEADING)))).active.row_dimensions[5].height

    assert height({}) == 3 * xlsx._LINE_HEIGHT  # 协办单位 and 延期 take three lines
    short = {4: "三号楼", 9: "水务集团", 12: "", 28: "王大爷"}
    assert height(short) is None  # one line: the default height
    assert height({**short, 5: "漏" * 40}) == 4 * xlsx._LINE_HEIGHT
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
    for chunk in xlsx.chunks(rows(), HEADING):
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
    assert [xlsx._column_letters(i) for i in (0, 15, 25, 26, 27, 701, 702)] == [
        "A", "P", "Z", "AA", "AB", "ZZ", "AAA"]
