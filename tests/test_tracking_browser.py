"""The resident's tracking link in Chromium: the phone draws the receipt's QR code offline and
sends only the token's hash; the resident's page at a phone's size (rating once, changing it
within 7 days, refused after, a wrong link a plain 404, no personal data, axe)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid

import pytest

from server.db import immediate, open_database
from server.ledger import tracking
from server.timeutil import to_iso, utcnow
from tests.conftest import PASSWORD
from tests.live import axe_violations, sign_in_office
from tests.test_field_app_browser import (
    browser,  # noqa: F401 (fixture)
    home,
    local_read,
    pending,
    phone,  # noqa: F401 (fixture)
    playwright,  # noqa: F401 (fixture)
    server,  # noqa: F401 (fixture)
    sign_in,
)

pytestmark = pytest.mark.browser

SMALL_PHONE = {"viewport": {"width": 360, "height": 640}, "is_mobile": True, "has_touch": True,
               "locale": "zh-CN", "timezone_id": "Asia/Shanghai"}
LOCAL_META = local_read("meta", "get(key)", "r.result ? r.result.v : null", "key")
LOCAL_PROBLEM_IDS = local_read(
    "records", "getAll()", "r.result.filter((x) => x.name === 'problem.report').map((x) => x.id)")


def test_a_fresh_report_shows_its_qr_offline_and_only_the_hash_is_sent(phone, server):  # noqa: F811
    page = phone.new_page()
    pushed = []
    page.on("request", lambda request: pushed.append(request.post_data or "")
            if request.url.endswith("/api/sync/push") else None)
    sign_in(page, server, "field1")
    phone.set_offline(True)
    home(page)
    page.get_by_role("link", name="记问题").click()
    page.get_by_label("问题描述").fill("楼道灯坏了，老人夜里看不见")
    page.get_by_label("反映人").fill("李桂兰")
    page.get_by_label("联系电话").fill("13700001234")
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 1)
    (problem_id,) = page.evaluate(LOCAL_PROBLEM_IDS)
    token = page.evaluate(LOCAL_META, f"tracking:{problem_id}")
    assert tracking.well_formed(token)

    # Still offline: the problem's pages draw the QR code of the link.
    for screen, title in ((f"#/problem/{problem_id}", "修改问题"),
                          (f"#/area/{problem_id}", "问题详情")):
        page.evaluate("(hash) => { location.hash = hash; }", screen)
        page.get_by_role("heading", name=title).wait_for()
        page.get_by_role("heading", name="回执二维码").wait_for()
        qr = page.get_by_role("img", name="群众查询办理进度的二维码")
        assert qr.is_visible() and qr.bounding_box()["width"] >= 200
        assert page.locator(".qr-url").inner_text() == f"{server.url}/t/{token}"

    phone.set_offline(False)
    home(page)
    pending(page, 0)
    stored = server.query("SELECT tracking_hash FROM problems WHERE id = ?", [problem_id])
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(),)]
    sent = "".join(pushed)
    assert problem_id in sent and stored[0][0] in sent and token not in sent
    assert not [row for row in server.query("SELECT * FROM problems") if token in str(row)]


def replied_problem(live) -> str:
    """A problem handled by 住建局, replied, with a resident and a tracking link: its token."""
    token = tracking.new_token()
    now = to_iso(utcnow())
    world = live.world
    db = open_database(live.db_path)
    try:
        with immediate(db):
            problem_id = str(uuid.uuid4())
            db["problems"].insert({
                "id": problem_id, "reporter_id": world.users["field2"],
                "area_id": world.areas["g1"], "description": "小区路灯不亮",
                "status": "replied", "lead_unit_id": world.units["u1"],
                "helper_unit_ids": json.dumps([world.units["u2"]]),
                "category_id": world.category,
                "ledger_no": f"ZF-2026-{uuid.uuid4().int % 10**6:06d}",
                "deadline": "2026-12-18", "deadline_provisional": 1, "outcome": "solved",
                "resident_name": "赵淑芬", "resident_phone": "13512345678",
                "place": "幸福小区8号楼", "found_at": now, "created_at": now, "updated_at": now,
                "accepted_at": now, "replied_at": now,
                "tracking_hash": tracking.hash_token(token)})
            db["problem_events"].insert({
                "id": str(uuid.uuid4()), "problem_id": problem_id, "kind": "reply",
                "actor_id": world.users["handler1"], "at": now, "from_status": "handling",
                "to_status": "replied", "note": "已更换路灯8盏，恢复照明。", "data": "{}"})
    finally:
        db.close()
    return token


@pytest.fixture
def resident(browser):  # noqa: F811
    # axe is injected as an inline script, which the CSP refuses: this context bypasses it.
    context = browser.new_context(**SMALL_PHONE, bypass_csp=True)
    context.set_default_timeout(15000)
    yield context.new_page()
    context.close()


def test_the_resident_rates_once_changes_within_7_days_and_is_refused_after(resident, server):  # noqa: F811
    token = replied_problem(server)
    page = resident
    page.goto(f"{server.url}/t/{token}")
    page.get_by_text("承办单位已答复，正在审核办理结果。").wait_for()
    html = page.content()
    for shown in ("住建局", "水务集团", "已更换路灯8盏", "2026-12-18", "暂定"):
        assert shown in html, shown
    staff = [row[0] for row in server.query("SELECT display_name FROM users")]
    for hidden in ("赵淑芬", "13512345678", "135****5678", "幸福小区8号楼", *staff):
        assert hidden not in html, hidden
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert axe_violations(page) == []

    page.get_by_label("基本满意").check()
    page.get_by_label("意见或建议（可不填）").fill("希望以后巡查勤一些")
    page.get_by_role("button", name="提交评价").click()
    page.get_by_text("评价已提交，谢谢您！").wait_for()
    page.get_by_text("您的评价：基本满意").wait_for()
    assert axe_violations(page) == []

    page.get_by_label("满意", exact=True).check()
    page.get_by_role("button", name="修改评价").click()
    page.get_by_text("您的评价：满意").wait_for()
    (rating, comment), = server.query(
        "SELECT resident_rating, resident_comment FROM problems WHERE tracking_hash = ?",
        [tracking.hash_token(token)])
    assert (rating, comment) == ("satisfied", "希望以后巡查勤一些")

    # The form still open, 8 days pass since the first rating: the change is refused.
    eight_days_ago = to_iso(utcnow() - dt.timedelta(days=8))
    connection = open_database(server.db_path)
    try:
        with immediate(connection):
            connection.execute("UPDATE problems SET resident_rated_at = ? WHERE tracking_hash = ?",
                               [eight_days_ago, tracking.hash_token(token)])
    finally:
        connection.close()
    page.get_by_label("不满意").check()
    with page.expect_response(lambda r: r.url.endswith("/rating")) as answer:
        page.get_by_role("button", name="修改评价").click()
    assert answer.value.status == 403
    page.get_by_text("现已不能修改").first.wait_for()
    page.goto(f"{server.url}/t/{token}")
    assert page.get_by_role("button", name="修改评价").count() == 0
    assert server.query("SELECT resident_rating FROM problems WHERE tracking_hash = ?",
                        [tracking.hash_token(token)]) == [("satisfied",)]
    assert axe_violations(page) == []


def test_a_wrong_link_is_a_plain_404(resident, server):  # noqa: F811
    for token in (tracking.new_token(), "not-a-token"):
        response = resident.goto(f"{server.url}/t/{token}")
        assert response.status == 404
        resident.get_by_text("链接不存在或已失效").wait_for()
    assert axe_violations(resident) == []


def test_the_office_prints_a_receipt_and_revokes_the_link(browser, server):  # noqa: F811
    token = replied_problem(server)
    (problem_id,), = server.query("SELECT id FROM problems WHERE tracking_hash = ?",
                                  [tracking.hash_token(token)])
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai", bypass_csp=True)
    try:
        page = context.new_page()
        sign_in_office(page, server.url, "office", PASSWORD)
        page.goto(f"{server.url}/problems/{problem_id}")
        page.get_by_text("群众查询链接有效。").wait_for()
        page.get_by_role("button", name="重新生成并打印回执").click()
        page.get_by_role("heading", name="问题受理回执").wait_for()
        assert page.get_by_role("img", name="查询办理进度的二维码").is_visible()
        new_token = page.locator(".url").inner_text().rsplit("/t/", 1)[1]
        assert tracking.well_formed(new_token) and new_token != token
        assert axe_violations(page) == []
        page.emulate_media(media="print")
        assert not page.get_by_text("返回问题详情").is_visible()
        page.emulate_media(media="screen")
        page.get_by_role("link", name="返回问题详情").click()
        page.get_by_role("button", name="撤销链接").click()
        page.get_by_text("已撤销群众查询链接").wait_for()
        assert server.query("SELECT tracking_hash FROM problems WHERE id = ?",
                            [problem_id]) == [(None,)]
        assert context.request.get(f"{server.url}/t/{new_token}").status == 404
    finally:
        context.close()
