"""XLSX export written as it streams: sent in chunks while rows are still being read, and
read back by openpyxl cell by cell (empty cells, dates, text that XML must escape)."""

from __future__ import annotations

import datetime as dt
import io
import random
import zipfile

import openpyxl

from server import export

ROW = [
    7, "ZF-2026-000007", "走访发现", dt.datetime(2026, 3, 1, 10, 30, 15), "  三号楼 <东> & 西",
    "漏水\x01\x1f\ufffe\uffff严重", "", None, dt.date(2026, 3, 13), "", "已解决", "", "", "办理中",
    '王"大爷"', "138****5678",
]


def read_back(data: bytes) -> list[list]:
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def test_cells_read_back_in_their_columns():
    rows = read_back(b"".join(export.xlsx_chunks(iter([ROW]))))
    assert rows[0] == export.headers()
    assert rows[1] == [
        7, "ZF-2026-000007", "走访发现", dt.datetime(2026, 3, 1, 10, 30, 15),
        "  三号楼 <东> & 西", "漏水严重", None, None, dt.datetime(2026, 3, 13), None, "已解决",
        None, None, "办理中", '王"大爷"', "138****5678",
    ]


def test_an_empty_export_is_a_workbook_with_headers():
    assert read_back(b"".join(export.xlsx_chunks(iter([])))) == [export.headers()]


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
    for chunk in export.xlsx_chunks(rows()):
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
