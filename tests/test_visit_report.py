"""The 走访报告 (server/visit_report.py, GET /visits/report.docx): a Word document of the
visits in a period and an area, read back with python-docx."""

from __future__ import annotations

import datetime as dt
import io

import docx
import pytest

from server.ledger import clock

TODAY = clock.local_today()
PERIOD = {"from": (TODAY - dt.timedelta(days=7)).isoformat(), "to": TODAY.isoformat()}


def read(response) -> tuple[str, list[list[list[str]]]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
    assert "attachment" in response.headers["content-disposition"]
    document = docx.Document(io.BytesIO(response.content))
    text = "\n".join(paragraph.text for paragraph in document.paragraphs)
    tables = [[[cell.text for cell in row.cells] for row in table.rows]
              for table in document.tables]
    return text, tables


def add_diary(db, world, name: str, kind: str = "resident") -> None:
    now = clock.now_iso()
    db["diary_entries"].insert({
        "id": f"00000000-0000-7000-8000-{len(name):06d}{db['diary_entries'].count:06d}",
        "visit_id": world.visits["v1"], "author_id": world.users["field1"],
        "area_id": world.areas["v1"], "person_name": name, "person_kind": kind,
        "phone": "13812345678", "address": "幸福社区3号楼", "content": "反映路灯不亮",
        "recorded_at": now, "created_at": now, "updated_at": now})


def test_the_office_downloads_the_visits_people_and_problems_of_its_scope(login_as, db, world):
    add_diary(db, world, "张三")
    add_diary(db, world, "王五", "cadre")
    text, (visits, problems) = read(login_as("office").get("/visits/report.docx",
                                                         params=PERIOD))
    assert "走访报告" in text and f"{PERIOD['from']} 至 {PERIOD['to']}" in text
    assert "共走访 2 次，参与干部 2 人；走访对象 2 人（群众1人、村社区干部1人）" in text
    assert "发现问题 1 个" in text
    assert visits[0] == ["走访人", "时间", "地点", "方式", "四不两直", "走访对象", "发现问题"]
    rows = {row[0]: row for row in visits[1:]}
    assert rows["测试field1"][2] == "东城区 › 杏花街道 › 幸福社区 · 村委会"
    assert rows["测试field1"][4:] == ["1/6", "2", "1"]
    assert problems[1][2] == "幸福社区3号楼漏水，墙面渗水" and problems[1][5] == "待受理"
    # No resident's name, phone or address.
    everything = text + str(visits) + str(problems)
    for personal in ("张三", "王五", "13812345678", "3号楼'"):
        assert personal not in everything


def test_a_district_office_and_an_area_filter_see_only_their_visits(login_as, world):
    _, (visits, _) = read(login_as("office_d1").get("/visits/report.docx", params=PERIOD))
    assert [row[0] for row in visits[1:]] == ["测试field1"]
    _, (visits, _) = read(login_as("office").get(
        "/visits/report.docx", params={**PERIOD, "area": "370103"}))
    assert [row[0] for row in visits[1:]] == ["测试field2"]


def test_a_leader_may_download_it(login_as):
    read(login_as("leader").get("/visits/report.docx", params=PERIOD))


@pytest.mark.parametrize("username", ["field1", "handler1", "admin"])
def test_others_may_not(login_as, username):
    response = login_as(username).get("/visits/report.docx", params=PERIOD)
    assert response.status_code == 403


@pytest.mark.parametrize(("params", "message"), [
    ({}, "开始日期不是有效日期"),
    ({"from": "2026-13-01", "to": "2026-12-01"}, "开始日期不是有效日期"),
    ({"from": "2026-12-01", "to": "昨天"}, "结束日期不是有效日期"),
    ({"from": "0001-01-01", "to": "2026-12-01"}, "开始日期不是有效日期"),
    ({"from": "2026-12-05", "to": "2026-12-01"}, "结束日期不能早于开始日期"),
    ({"from": "2025-01-01", "to": "2026-12-01"}, "时间跨度不能超过 366 天"),
    ({"from": "2026-12-01", "to": "2026-12-05", "area": "999999"}, "所选范围不在您的辖区内"),
])
def test_a_bad_request_is_refused_with_its_reason(login_as, params, message):
    response = login_as("office").get("/visits/report.docx", params=params)
    assert response.status_code == 400
    assert message in response.text


def test_an_area_outside_a_district_office_is_refused(login_as):
    response = login_as("office_d1").get("/visits/report.docx",
                                         params={**PERIOD, "area": "370103"})
    assert response.status_code == 400 and "所选范围不在您的辖区内" in response.text


def test_the_visit_list_offers_the_report_to_the_office_only(login_as):
    assert 'action="/visits/report.docx"' in login_as("office").get("/visits").text
    assert 'action="/visits/report.docx"' not in login_as("field1").get("/visits").text


def test_the_visit_page_shows_its_summary(login_as, world):
    page = login_as("office").get(f"/visits/{world.visits['v1']}").text
    assert 'id="visit-summary"' in page and "走访小结" in page and "方式：四不两直暗访" in page
