"""A visit's 走访小结 on the phone, composed offline (static/app/summary.js), and the same
text on the office's visit page (server/visit_summary.py) once the phone has synced."""

from __future__ import annotations

import pytest

from server.db import open_database
from tests.conftest import PASSWORD, build_world
from tests.live import axe_violations, running_server
from tests.test_field_app_browser import PHONE, home, pending, poll, sign_in

pytestmark = pytest.mark.browser


class Server:
    def __init__(self, url, world):
        self.url, self.world = url, world


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("summary") / "fieldledger.db"
    db = open_database(path)
    world = build_world(db)
    db.close()
    with running_server(path) as url:
        yield Server(url, world)


def test_the_phone_and_the_office_show_the_same_summary(browser, server):
    phone = browser.new_context(**PHONE, bypass_csp=True)
    phone.set_default_timeout(15000)
    page = phone.new_page()
    sign_in(page, server, "field1")
    phone.set_offline(True)
    page.get_by_role("link", name="开始走访").click()
    page.get_by_role("button", name="全部做到").click()
    page.get_by_label("不听汇报").uncheck()
    page.get_by_label("地点（区域）").select_option(str(server.world.areas["v1"]))
    page.get_by_label("详细地点").fill("村委会")
    page.get_by_role("button", name="开始走访").click()
    page.get_by_text("正在走访：四不两直暗访").wait_for()
    for name, kind in (("欧阳娜娜", "群众"), ("王五", "村社区干部")):
        page.get_by_role("link", name="记民情").click()
        page.get_by_label("谈话对象（可不填）").fill(name)
        page.get_by_label(kind).check()
        page.get_by_label("反映内容").fill("路灯坏了一个月")
        page.get_by_role("button", name="保存", exact=True).click()
        page.get_by_role("heading", name="同步").wait_for()
    page.get_by_role("link", name="记问题").click()
    page.get_by_label("问题描述").fill("幸福社区东门路灯不亮，夜里行人看不清台阶")
    page.get_by_role("button", name="保存", exact=True).click()
    page.get_by_role("heading", name="同步").wait_for()
    page.get_by_role("link", name="继续走访").click()
    page.get_by_role("button", name="结束走访").click()
    page.get_by_role("heading", name="走访小结").wait_for()
    summary = page.locator("#visit-summary").inner_text()
    assert ("四不两直：做到不发通知、不打招呼、不用陪同接待、直奔基层、直插现场；未做到不听汇报"
            in summary)
    assert "走访对象：2人（群众1人、村社区干部1人）" in summary
    assert "谈话对象：欧***、王*" in summary and "娜娜" not in summary
    assert "1. 幸福社区东门路灯不亮，夜里行人看不清台阶（待同步）" in summary
    assert not axe_violations(page)
    page.get_by_role("button", name="复制小结").click()
    page.get_by_text("已复制").wait_for()

    # Back online: once synced and pulled, the phone's summary names the problem's status.
    visit_url = page.url
    phone.set_offline(False)
    home(page)
    pending(page, 0)
    page.goto(visit_url)
    poll(page, "() => (document.getElementById('visit-summary')?.textContent || '')"
               ".includes('（待受理）')", timeout=30)
    on_phone = page.locator("#visit-summary").inner_text()

    office = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    office_page = office.new_page()
    office_page.goto(f"{server.url}/login")
    office_page.get_by_label("用户名").fill("office")
    office_page.get_by_label("密码").fill(PASSWORD)
    office_page.get_by_role("button", name="登录").click()
    office_page.get_by_role("button", name="退出").wait_for()
    office_page.goto(f"{server.url}/visits/{visit_url.rsplit('/', 1)[1]}")
    assert office_page.locator("#visit-summary").inner_text() == on_phone
    office.close()
    phone.close()
