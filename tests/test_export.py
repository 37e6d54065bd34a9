"""Ledger export: XLSX read back cell by cell, CSV round trip, scope and phone masking."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid

import openpyxl
import pytest

from server import export, ledger_query
from server.db import immediate
from tests.ledger_helpers import add_problem, load

HEADER = [
    "序号", "问题编号", "来源", "发现时间", "地点", "问题描述", "类别", "责任单位", "办理时限",
    "办理进展", "办理结果", "回访情况", "满意度", "状态", "反映人", "联系电话",
]


def add_event(db, problem_id: str, kind: str, at: str, note: str, actor: int) -> None:
    with immediate(db):
        db["problem_events"].insert({
            "id": str(uuid.uuid4()), "problem_id": problem_id, "kind": kind, "actor_id": actor,
            "at": at, "note": note, "data": json.dumps({"overdue": False}),
        })


@pytest.fixture
def closed_problem(db, world):
    problem_id = add_problem(
        db, world, ledger_no="ZF-2026-000100", source="hotline",
        found_at="2026-03-01T02:30:00+00:00", area_id=world.areas["v1"], place="3号楼",
        description="楼顶防水层破损漏水", lead_unit_id=world.units["u1"], deadline="2026-03-13",
        status="closed", outcome="solved", callback_reached=1, callback_solved=1,
        satisfaction="basically", return_visit_result="held", resident_name="王大爷",
        resident_phone="13812345678", closed_at="2026-03-12T02:00:00+00:00",
    )
    handler = world.users["handler1"]
    add_event(db, problem_id, "progress", "2026-03-03T02:00:00+00:00", "已进场勘查", handler)
    add_event(db, problem_id, "progress", "2026-03-05T02:00:00+00:00", "防水层已重做", handler)
    add_event(db, problem_id, "reply", "2026-03-06T02:00:00+00:00", "已修复并验收", handler)
    return problem_id


EXPECTED_ROW = [
    1, "ZF-2026-000100", "12345热线", dt.datetime(2026, 3, 1, 10, 30), "幸福社区 3号楼",
    "楼顶防水层破损漏水", "供水", "住建局", dt.datetime(2026, 3, 13),
    "2026-03-05 防水层已重做", "已解决：已修复并验收",
    "已回访，群众认为已解决；回头看：整改保持", "基本满意", "已办结", "王大爷", "13812345678",
]


def test_xlsx_cell_by_cell(login_as, closed_problem):
    response = login_as("office").get("/problems/export.xlsx?q=防水")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    assert "attachment" in response.headers["content-disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == HEADER
    assert len(rows) == 2
    for column, (got, expected) in enumerate(zip(rows[1], EXPECTED_ROW, strict=True)):
        assert got == expected, HEADER[column]


def test_csv_round_trip(login_as, closed_problem, world):
    client = login_as("office")
    response = client.get("/problems/export.csv?sort=ledger_no&dir=asc")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")  # the BOM Excel looks for
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == HEADER
    by_no = {row[1]: row for row in rows[1:]}
    assert set(by_no) == {"", "ZF-2026-000002", "ZF-2026-000003", "ZF-2026-000100"}
    assert by_no["ZF-2026-000100"][1:] == [
        "ZF-2026-000100", "12345热线", "2026-03-01 10:30", "幸福社区 3号楼", "楼顶防水层破损漏水",
        "供水", "住建局", "2026-03-13", "2026-03-05 防水层已重做", "已解决：已修复并验收",
        "已回访，群众认为已解决；回头看：整改保持", "基本满意", "已办结", "王大爷", "13812345678",
    ]
    assert [row[0] for row in rows[1:]] == ["1", "2", "3", "4"]
    # Written back with the csv module, the same rows come out.
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    assert list(csv.reader(io.StringIO(buffer.getvalue()))) == rows


def test_export_follows_the_filter_and_scope(login_as, world, closed_problem):
    def exported(username: str, query: str = "") -> set[str]:
        response = login_as(username).get(f"/problems/export.csv?{query}")
        assert response.status_code == 200
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))[1:]
        return {row[5] for row in rows}

    assert exported("office", "q=漏水") == {"幸福社区3号楼漏水，墙面渗水", "楼顶防水层破损漏水"}
    # A handler gets only the unit's problems (u1: p3 and the closed one).
    assert exported("handler1") == {"第一网格小区物业不作为，路灯不亮", "楼顶防水层破损漏水"}
    assert exported("handler2") == {"杏花村自来水水压不足"}
    # A district office never gets the other district's rows, whatever the filter says.
    assert "杏花村自来水水压不足" not in exported("office_d1")
    assert exported("office_d1", "area=370103") == set()
    # Field officials may not export at all.
    assert login_as("field1").get("/problems/export.csv").status_code == 403


def test_phone_masked_for_everyone_but_the_office(login_as, closed_problem):
    def phone(username: str) -> str:
        response = login_as(username).get("/problems/export.csv?q=防水")
        return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))[1][-1]

    assert phone("office") == "13812345678"
    assert phone("handler1") == "138****5678"
    assert phone("leader") == "138****5678"


def test_mask_phone():
    assert export.mask_phone("13812345678") == "138****5678"
    assert export.mask_phone("0531-1234567") == "053*****4567"
    assert export.mask_phone("12345") == "***45"
    assert export.mask_phone("") == ""


def test_rows_are_streamed_in_chunks(db, world, monkeypatch):
    monkeypatch.setattr(export, "CHUNK", 10)
    for n in range(35):
        add_problem(db, world, description=f"批量问题{n}")

    rows = export.records(db, load(db, world, "office"), ledger_query.Filter(q="批量"))
    chunks = list(export.csv_chunks(rows))
    assert len(chunks) == 4  # after rows 10, 20 and 30, then the last five
    text = b"".join(chunks).decode("utf-8-sig")
    assert len(list(csv.reader(io.StringIO(text)))) == 36
