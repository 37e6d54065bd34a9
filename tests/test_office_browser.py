"""The office's day in a real Chromium on a desktop screen against a real server.

One problem reported from a phone goes the whole loop through the pages, by
clicks and form fills only: accepted and dispatched by the office, signed,
handled and answered by the unit, verified and called back by another office
user, closed. Then axe-core checks every office page.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import chinese_calendar
import pytest
from playwright.sync_api import expect, sync_playwright

from server.db import connect, immediate, open_database
from server.timeutil import now_iso
from server.workdays import set_year
from tests.conftest import PASSWORD, World, build_world, new_database, photos_folder_of
from tests.live import axe_violations, launch_chromium, running_server, sign_in_office

pytestmark = pytest.mark.browser

DESKTOP = {
    "viewport": {"width": 1366, "height": 900},
    "locale": "zh-CN",
    "timezone_id": "Asia/Shanghai",
}
WAIT_MS = 20_000
REPORTED = "幸福社区3号楼漏水，墙面渗水"  # p1, the world's one submitted problem
RESIDENT, RESIDENT_PHONE = "张阿姨", "13812345678"  # who reported it to field1, to call back
LEDGER_NO = re.compile(r"ZF-\d{4}-\d{6}")


@dataclass
class Live:
    url: str
    db_path: Path | str
    world: World

    def query(self, sql: str, params=()) -> list[tuple]:
        connection = connect(self.db_path)
        try:
            return [tuple(row) for row in connection.execute(sql, params).fetchall()]
        finally:
            connection.close()


def cover_calendar_years(db) -> None:
    """Deadlines count working days; through a year the holiday package does not know
    yet (a CI run next year) they would be provisional (暂定), so such years get plain
    weekends and the loop below sees plain dates."""
    this_year = dt.date.today().year
    for year in (this_year, this_year + 1):
        try:
            chinese_calendar.is_workday(dt.date(year, 6, 1))
        except NotImplementedError:
            with immediate(db):
                set_year(db, year, holidays=[dt.date(year, 1, 1)], workdays=[])


def add_diary_entry(db, world: World) -> None:
    """The world has no diary; one entry gives the diary list and the visit page a row."""
    now = now_iso()
    with immediate(db):
        db["diary_entries"].insert({
            "id": "00000000-0000-4000-8000-000000000201",
            "visit_id": world.visits["v1"],
            "author_id": world.users["field1"],
            "area_id": world.areas["v1"],
            "person_name": "张阿姨",
            "person_kind": "resident",
            "content": "3号楼楼道漏水，希望尽快维修",
            "recorded_at": now,
            "created_at": now,
            "updated_at": now,
        })


def add_resident(db, world: World) -> None:
    with immediate(db):
        db["problems"].update(world.problems["p1"], {"resident_name": RESIDENT,
                                                     "resident_phone": RESIDENT_PHONE})


@pytest.fixture(scope="module")
def live(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("office")
    path = new_database(request, folder, "fieldledger.db")
    db = open_database(path)
    world = build_world(db)
    add_diary_entry(db, world)
    add_resident(db, world)
    cover_calendar_years(db)
    db.close()
    with running_server(path, log=folder / "server.log",
                        photos=photos_folder_of(request, path, folder)) as url:
        yield Live(url, path, world)


@pytest.fixture(scope="module")
def browser():
    # On a busy CI machine a navigation can take several seconds.
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()
    expect.set_options(timeout=None)


def new_page(browser, **options):
    context = browser.new_context(**{**DESKTOP, **options})
    context.set_default_timeout(WAIT_MS)
    return context, context.new_page()


@pytest.fixture
def page(browser):
    context, page = new_page(browser)
    yield page
    context.close()


# Steps a user takes ----------------------------------------------------------------


def sign_in(page, url: str, username: str) -> None:
    sign_in_office(page, url, username, PASSWORD)


def sign_out(page, url: str) -> None:
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url(f"{url}/login*")


def open_action(page, name: str):
    """Unfold one action of the problem page; returns its form."""
    action = page.get_by_role("group", name=name, exact=True)
    form = action.locator("form")
    if not form.is_visible():
        action.get_by_text(name, exact=True).first.click()
        form.wait_for()
    return form


def submit_action(page, form, button: str, done: str) -> None:
    form.get_by_role("button", name=button).click()
    page.wait_for_url(re.compile(rf"/problems/[^/?]+\?done={done}$"))


def open_from_work_queue(page, queue: str, ledger_no: str) -> None:
    page.get_by_role("navigation").get_by_role("link", name="我的工作").click()
    page.get_by_role("heading", name="我的工作", level=1).wait_for()
    page.get_by_role("region", name=queue).get_by_role("link", name=ledger_no).click()
    page.get_by_role("heading", name=ledger_no, level=1).wait_for()


# What the problem page shows ---------------------------------------------------------


def expect_problem(page, status: str, latest_step: str, actor: str, note: str | None = None):
    expect(page.get_by_role("heading", level=1)).to_contain_text(status)
    latest = page.get_by_role("region", name="办理过程").get_by_role("listitem").last
    expect(latest.locator("strong")).to_have_text(latest_step)
    expect(latest).to_contain_text(actor)
    if note:
        expect(latest).to_contain_text(note)


def fact(page, term: str):
    """The value beside a term of the problem's facts list."""
    return page.locator(f"dl.facts dt:text-is('{term}') + dd")


# The loop -------------------------------------------------------------------------------


def accept_from_intake(page, url: str, category: str) -> str:
    page.get_by_role("navigation").get_by_role("link", name="问题台账").click()
    page.get_by_role("navigation", name="按状态").get_by_role("link", name="待受理").click()
    page.wait_for_url(f"{url}/problems?status=submitted")
    page.get_by_role("row").filter(has_text=REPORTED).get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("待受理")

    form = open_action(page, "立案")
    expect(form.get_by_label("问题类别").locator("option:checked")).to_have_text(category)
    expect(form.get_by_label("紧急程度").locator("option:checked")).to_have_text("一般")
    form.get_by_label("紧急程度").select_option(label="较急")
    form.get_by_label("说明").fill("情况属实，予以立案")
    submit_action(page, form, "确认立案", "accept")

    expect(page.get_by_role("status")).to_have_text("已完成：立案")
    expect_problem(page, "已立案", "立案", "测试office", "情况属实，予以立案")
    expect(fact(page, "紧急程度")).to_have_text("较急")
    ledger_no = LEDGER_NO.search(page.get_by_role("heading", level=1).inner_text())
    assert ledger_no, page.get_by_role("heading", level=1).inner_text()
    return ledger_no.group()


def dispatch_to_unit(page, unit: str, working_days: int) -> str:
    form = open_action(page, "交办")
    form.get_by_label("牵头责任单位").select_option(label=unit)
    form.get_by_label("办理时限（工作日）").fill(str(working_days))
    form.get_by_label("说明").fill("请尽快维修并回复")
    submit_action(page, form, "确认交办", "dispatch")

    expect_problem(page, "已交办", "交办", "测试office", "请尽快维修并回复")
    expect(fact(page, "责任单位")).to_have_text(unit)
    deadline = fact(page, "办理时限").inner_text()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", deadline), deadline
    assert deadline > dt.date.today().isoformat()
    return deadline


def handle_and_reply(page) -> None:
    form = open_action(page, "签收")
    # The lead unit's handler has the resident's number to call, beside the question.
    expect(form.get_by_role("link", name=RESIDENT_PHONE)).to_have_attribute(
        "href", f"tel:{RESIDENT_PHONE}")
    form.get_by_label("已联系反映人").check()
    submit_action(page, form, "确认签收", "sign")
    expect_problem(page, "办理中", "签收", "测试handler1")

    form = open_action(page, "办理进展")
    form.get_by_label("说明").fill("已派维修班组查看漏点")
    submit_action(page, form, "保存办理进展", "progress")
    expect_problem(page, "办理中", "办理进展", "测试handler1", "已派维修班组查看漏点")

    form = open_action(page, "答复")
    form.get_by_label("办理结果").select_option(label="已解决")
    form.get_by_label("说明").fill("已更换破损水管，墙面已修补")
    submit_action(page, form, "提交答复", "reply")
    expect_problem(page, "待审核", "答复", "测试handler1", "已更换破损水管，墙面已修补")
    expect(fact(page, "办理结果")).to_have_text("已解决")
    # Whoever answered cannot also approve the answer.
    expect(page.get_by_role("group", name="审核通过", exact=True)).to_have_count(0)


def verify_and_call_back(page) -> None:
    form = open_action(page, "审核通过")
    form.get_by_label("说明").fill("佐证材料齐全")
    submit_action(page, form, "确认审核通过", "verify")
    expect_problem(page, "待回访", "审核通过", "测试office_d1", "佐证材料齐全")

    form = open_action(page, "回访")
    expect(form.get_by_role("link", name=RESIDENT_PHONE)).to_have_attribute(
        "href", f"tel:{RESIDENT_PHONE}")
    form.get_by_label("回访方式").select_option(label="电话")
    form.get_by_label("回访结果").select_option(label="接通")
    form.get_by_role("group", name="问题是否解决").get_by_label("是").check()
    form.get_by_label("满意度").select_option(label="满意")
    form.get_by_label("说明").fill("电话回访，居民表示满意")
    submit_action(page, form, "保存回访结果", "callback")
    expect_problem(page, "已办结", "回访", "测试office_d1", "电话回访，居民表示满意")
    expect(fact(page, "满意度")).to_have_text("满意")
    expect(page.get_by_role("region", name="办理操作").get_by_role(
        "group", name="回访", exact=True)).to_have_count(0)


def expect_listed_under(page, url: str, status: str, ledger_no: str) -> None:
    page.get_by_role("navigation").get_by_role("link", name="问题台账").click()
    page.get_by_role("navigation", name="按状态").get_by_role("link", name=status).click()
    page.wait_for_url(f"{url}/problems?status=*")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=ledger_no))
    expect(row).to_contain_text(status)


@pytest.mark.both_backends
def test_a_reported_problem_goes_from_intake_to_closed(live, page):
    url = live.url
    sign_in(page, url, "office")
    ledger_no = accept_from_intake(page, url, category="供水")
    deadline = dispatch_to_unit(page, "住建局", working_days=5)
    sign_out(page, url)

    sign_in(page, url, "handler1")
    open_from_work_queue(page, "待签收", ledger_no)
    handle_and_reply(page)
    sign_out(page, url)

    sign_in(page, url, "office_d1")
    open_from_work_queue(page, "待审核答复", ledger_no)
    verify_and_call_back(page)
    expect_listed_under(page, url, "已办结", ledger_no)

    assert_ledger_recorded(live, ledger_no, deadline)


def assert_ledger_recorded(live: Live, ledger_no: str, deadline: str) -> None:
    problem_id = live.world.problems["p1"]
    [(status, number, unit_id, outcome, satisfaction, problem_deadline)] = live.query(
        "SELECT status, ledger_no, lead_unit_id, outcome, satisfaction, deadline"
        " FROM problems WHERE id = ?", [problem_id],
    )
    assert (status, number, unit_id, outcome, satisfaction, problem_deadline) == (
        "closed", ledger_no, live.world.units["u1"], "solved", "satisfied", deadline
    )
    events = live.query(
        "SELECT e.kind, u.username, e.from_status, e.to_status FROM problem_events e"
        " JOIN users u ON u.id = e.actor_id WHERE e.problem_id = ? ORDER BY e.at, e.rowid",
        [problem_id],
    )
    assert events == [
        ("reported", "field1", None, "submitted"),
        ("accept", "office", "submitted", "accepted"),
        ("dispatch", "office", "accepted", "dispatched"),
        ("sign", "handler1", "dispatched", "handling"),
        ("progress", "handler1", "handling", None),
        ("reply", "handler1", "handling", "replied"),
        ("verify", "office_d1", "replied", "callback"),
        ("callback", "office_d1", "callback", "closed"),
    ]


# Accessibility -------------------------------------------------------------------------


def unfold_every_action(page) -> None:
    """Axe skips hidden content: open every action form so their fields are judged too."""
    for summary in page.locator("details.action > summary").all():
        summary.click()


def submit_without_browser_checks(page, action: str, button: str) -> None:
    """Submit an empty action form as a browser without form validation would,
    to reach the server's answer: the form again, with the errors beside the fields."""
    form = open_action(page, action)
    form.evaluate("(form) => { form.noValidate = true; }")
    form.get_by_role("button", name=button).click()


def check_pages(page, url: str, pages: dict[str, str]) -> dict[str, list[str]]:
    failures = {}
    for name, path in pages.items():
        response = page.goto(f"{url}{path}")
        assert response.status == 200, (name, response.status)
        if name.startswith("problem"):
            unfold_every_action(page)
        failures[name] = axe_violations(page)
    return failures


def test_office_pages_pass_axe(live, browser):
    # axe is injected as an inline script, which the app's CSP refuses: this
    # context alone bypasses the CSP.
    context, page = new_page(browser, bypass_csp=True)
    url, world = live.url, live.world
    page.goto(f"{url}/login")
    failures = {"login": axe_violations(page)}

    sign_in(page, url, "office")
    failures |= check_pages(page, url, {
        "home": "/",
        "ledger": "/problems",
        "ledger_filtered": f"/problems?status=handling&category={world.category}&q=路灯"
                           "&found_from=2020-01-01&sort=deadline&dir=asc",
        "problem_office": f"/problems/{world.problems['p3']}",
        "work_office": "/work",
        "visits": "/visits",
        "visit": f"/visits/{world.visits['v1']}",
        "diary": "/diary?q=漏水",
        "stats": "/stats",
        "reports": "/reports",
    })
    sign_out(page, url)

    sign_in(page, url, "handler1")
    failures |= check_pages(page, url, {
        "work_handler": "/work",
        "problem_handler": f"/problems/{world.problems['p3']}",
    })
    submit_without_browser_checks(page, "办理进展", "保存办理进展")
    page.get_by_text("请填写说明").wait_for()
    failures["problem_form_error"] = axe_violations(page)
    sign_out(page, url)

    sign_in(page, url, "admin")
    failures |= check_pages(page, url, {"admin_users": "/admin/users",
                                        "admin_calendar": "/admin/calendar",
                                        "admin_reasons": "/admin/reasons",
                                        "admin_audit": "/admin/audit",
                                        "admin_assessment": "/admin/assessment"})
    assert page.goto(f"{url}/admin/audit?entity=x").status == 400  # beside its field
    failures["admin_audit_refused"] = axe_violations(page)
    page.goto(f"{url}/admin/reasons")
    adding = page.get_by_role("region", name="退单原因")
    adding.get_by_role("textbox", name="选项名称", exact=True).last.fill("不属于本单位职责")
    adding.get_by_role("button", name="添加选项").click()
    expect(page.get_by_text("这个列表中已有名为“不属于本单位职责”的选项。")).to_be_visible()
    failures["admin_reasons_refused"] = axe_violations(page)
    context.close()
    assert not any(failures.values()), {k: v for k, v in failures.items() if v}


def test_an_administrator_enters_a_years_holidays(live, browser, tmp_path):
    context, page = new_page(browser, viewport={"width": 1366, "height": 768})
    year = dt.date.today().year + 5  # a year no deadline of the other tests reaches
    sign_in(page, live.url, "admin")
    page.get_by_role("navigation").get_by_role("link", name="工作日历").click()
    page.get_by_role("heading", name="工作日历", level=1).wait_for()
    page.get_by_label("年份", exact=True).fill(str(year))
    page.get_by_label("或直接填写").fill(f"{year}-01-01 休 元旦\n{year}-10-01 放假\n"
                                        f"{year}-13-01 休\n{year}-10-09 上班")
    page.get_by_role("button", name="预览").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(f"{year}-13-01")
    expect(alert.get_by_role("cell", name="3", exact=True)).to_be_visible()
    page.get_by_label("或直接填写").fill(f"{year}-01-01 休 元旦\n{year}-10-01 放假\n"
                                        f"{year}-10-09 上班")
    page.get_by_role("button", name="预览").click()
    preview = page.get_by_role("region", name=f"{year} 年安排预览")
    expect(preview).to_contain_text("放假 2 天，调休上班 1 天。")
    page.screenshot(path=str(tmp_path / "calendar-preview.png"), full_page=True)
    preview.get_by_role("button", name="确认录入").click()
    page.wait_for_url(re.compile(rf"/admin/calendar/{year}\?recomputed=0$"))
    expect(page.get_by_role("status")).to_contain_text(f"已录入 {year} 年的安排")
    expect(page.get_by_role("cell", name="元旦")).to_be_visible()
    assert live.query("SELECT holidays, workdays FROM calendar_years WHERE year = ?",
                      [year]) == [(2, 1)]


# The ledger on an office screen, and a session that expires mid-form ---------------

SMALL_SCREEN = {"width": 1366, "height": 768}


def test_the_ledger_filters_take_one_row_and_the_first_rows_show_at_1366x768(live, browser):
    context, page = new_page(browser)
    page.set_viewport_size(SMALL_SCREEN)
    sign_in(page, live.url, "office")
    page.goto(f"{live.url}/problems")
    row = page.locator(".filter-row")
    tops = {round(box["y"] + box["height"])
            for box in (control.bounding_box() for control in
                        row.locator("input[type=search], select, summary, button").all()
                        if control.is_visible())}
    assert max(tops) - min(tops) <= 2, tops  # one row: every control ends on the same line
    first = page.locator("table.table tbody tr").first.bounding_box()
    assert first["y"] >= 0 and first["y"] + first["height"] <= SMALL_SCREEN["height"], first
    # The other filters wait behind 更多筛选.
    assert not page.get_by_label("来源").is_visible()
    page.get_by_text("更多筛选").click()
    expect(page.get_by_label("来源")).to_be_visible()
    context.close()


def test_a_session_expiring_mid_form_keeps_the_typed_text(live, browser):
    import sqlite3

    context, page = new_page(browser)
    sign_in(page, live.url, "office")
    problem = f"{live.url}/problems/{live.world.problems['p3']}"
    page.goto(problem)
    form = open_action(page, "催办")
    text = "请于本周五前反馈路灯维修进度"
    form.get_by_label("说明").fill(text)
    connection = sqlite3.connect(live.db_path)
    with connection:
        connection.execute("UPDATE web_sessions SET expires_at = '2020-01-01T00:00:00+00:00'")
    connection.close()
    form.get_by_role("button", name="确认催办").click()
    expect(page.get_by_text("您填写的内容已保留")).to_be_visible()
    page.get_by_label("用户名").fill("office")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(re.escape(problem) + r"\?draft="))
    expect(page.get_by_role("group", name="催办", exact=True).get_by_label("说明")).to_have_value(
        text)
    assert live.query("SELECT count(*) FROM problem_events WHERE problem_id = ? AND kind ="
                      " 'remind'", [live.world.problems["p3"]]) == [(0,)]
    context.close()


# Reasons from the lists an administrator keeps -------------------------------------------


def test_a_unit_returns_a_problem_with_a_reason_the_administrator_added(live, browser):
    context, page = new_page(browser)
    sign_in(page, live.url, "admin")
    page.get_by_role("navigation").get_by_role("link", name="原因选项").click()
    page.get_by_role("heading", name="原因选项", level=1).wait_for()
    returns = page.get_by_role("region", name="退单原因")
    returns.get_by_role("textbox", name="选项名称", exact=True).last.fill("需上级部门统筹")
    returns.get_by_role("button", name="添加选项").click()
    expect(page.get_by_role("status")).to_contain_text("已保存")
    sign_out(page, live.url)

    sign_in(page, live.url, "handler2")
    page.goto(f"{live.url}/problems/{live.world.problems['p2']}")
    form = open_action(page, "退回")
    form.get_by_label("退单原因").select_option(label="需上级部门统筹")
    form.get_by_label("说明").fill("涉及跨区管网改造，需市里统筹")
    submit_action(page, form, "确认退回", "return")
    code = live.query("SELECT return_reason_code FROM problems WHERE id = ?",
                      [live.world.problems["p2"]])[0][0]
    assert live.query("SELECT label FROM reason_options WHERE list = 'return' AND code = ?",
                      [code]) == [("需上级部门统筹",)]
    context.close()


# Joint handling (协办) ---------------------------------------------------------------------


def joint_problem(live: Live) -> str:
    """A problem accepted and dispatched to 住建局 (handler1) with 水务集团 (handler2) as helper."""
    from server import auth
    from server.ledger import workflow
    from tests.ledger_helpers import add_problem

    db = open_database(live.db_path)
    try:
        world = live.world
        problem_id = add_problem(db, world, status="submitted", description="小区主干道积水严重",
                                 area_id=world.areas["g1"])
        office = auth.load_user(db, world.users["office"])
        with immediate(db):
            workflow.apply(db, office, problem_id, "accept", {})
            workflow.apply(db, office, problem_id, "dispatch", {
                "lead_unit_id": world.units["u1"], "helper_unit_ids": [str(world.units["u2"])]})
        return db["problems"].get(problem_id)["ledger_no"]
    finally:
        db.close()


def photo_file(name: str, colour: tuple[int, int, int]) -> dict:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (120, 90), colour).save(buffer, "JPEG")
    return {"name": name, "mimeType": "image/jpeg", "buffer": buffer.getvalue()}


def test_a_helper_unit_answers_with_photos_and_the_lead_replies(live, browser):
    url = live.url
    ledger_no = joint_problem(live)
    context, page = new_page(browser, bypass_csp=True)  # axe is injected inline

    sign_in(page, url, "handler2")
    open_from_work_queue(page, "协办待签收", ledger_no)
    submit_action(page, open_action(page, "签收协办"), "确认签收协办", "sign_part")
    expect_problem(page, "已交办", "协办签收", "测试handler2")
    unfold_every_action(page)
    failures = {"problem_helper": axe_violations(page)}
    form = open_action(page, "协办意见")
    form.get_by_label("协办意见").fill("管网排水能力不足，已配合清淤")
    form.get_by_label("整改前照片").set_input_files([photo_file("前.jpg", (90, 60, 40))])
    form.get_by_label("整改后照片").set_input_files([photo_file("后.jpg", (40, 90, 60))])
    submit_action(page, form, "提交协办意见", "answer_part")
    expect_problem(page, "已交办", "协办意见", "测试handler2", "管网排水能力不足，已配合清淤")
    latest = page.get_by_role("region", name="办理过程").get_by_role("listitem").last
    expect(latest.get_by_role("img")).to_have_count(2)
    parts = page.get_by_role("region", name="协办单位")
    expect(parts.get_by_role("row", name=re.compile("水务集团"))).to_contain_text("已答复")
    failures["problem_parts"] = axe_violations(page)
    sign_out(page, url)

    sign_in(page, url, "handler1")
    page.goto(f"{url}/problems?q={ledger_no}")
    page.get_by_role("link", name=ledger_no).click()
    page.get_by_role("heading", name=ledger_no, level=1).wait_for()
    submit_action(page, open_action(page, "签收"), "确认签收", "sign")
    form = open_action(page, "答复")
    form.get_by_label("办理结果").select_option(label="已解决")
    form.get_by_label("说明").fill("已疏通排水管网")
    form.get_by_label("整改后照片").set_input_files([photo_file("完工.jpg", (10, 10, 200))])
    submit_action(page, form, "提交答复", "reply")
    expect_problem(page, "待审核", "答复", "测试handler1", "已疏通排水管网")
    latest = page.get_by_role("region", name="办理过程").get_by_role("listitem").last
    expect(latest.get_by_role("img")).to_have_count(1)
    context.close()
    assert not any(failures.values()), {k: v for k, v in failures.items() if v}


# Returns (退单) decided by the office (server/ledger/rules.py) -----------------------------------


def test_the_office_decides_a_unit_s_return_from_its_work_list(live, browser):
    from server import auth
    from server.ledger import workflow
    from tests.ledger_helpers import add_problem

    db = open_database(live.db_path)
    try:
        world = live.world
        problem_id = add_problem(db, world, status="submitted", description="路面塌陷需修复",
                                 area_id=world.areas["g1"])
        office = auth.load_user(db, world.users["office"])
        handler = auth.load_user(db, world.users["handler2"])
        with immediate(db):
            ledger_no = workflow.apply(db, office, problem_id, "accept", {})["ledger_no"]
            workflow.apply(db, office, problem_id, "dispatch",
                           {"lead_unit_id": world.units["u2"]})
            workflow.apply(db, handler, problem_id, "return",
                           {"reason_code": "not_our_duty", "note": "属于住建局职责"})
    finally:
        db.close()
    context, page = new_page(browser)
    sign_in(page, live.url, "office")
    open_from_work_queue(page, "待决定退单", ledger_no)
    submit_without_browser_checks(page, "退单理由不成立", "确认退回原单位")
    page.get_by_text("请填写说明").wait_for()
    assert live.query("SELECT status FROM problems WHERE id = ?", [problem_id]) == [
        ("returned",)]
    form = open_action(page, "退单理由不成立")
    form.get_by_label("说明").fill("路面养护属于本单位职责，请签收办理")
    submit_action(page, form, "确认退回原单位", "refuse_return")
    assert live.query("SELECT status, lead_unit_id, unjustified_returns FROM problems"
                      " WHERE id = ?", [problem_id]) == [("dispatched", world.units["u2"], 1)]
    context.close()
