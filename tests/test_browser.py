"""End to end in a real Chromium against a real uvicorn server on loopback."""

from __future__ import annotations

import pytest

from server.db import open_database
from tests.conftest import PASSWORD, build_world
from tests.live import running_server, sign_in_office

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    path = tmp_path_factory.mktemp("live") / "fieldledger.db"
    db = open_database(path)
    world = build_world(db)
    db.close()
    with running_server(path) as url:
        yield url, world


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai")
    page = context.new_page()
    yield page
    context.close()


def sign_in(page, url: str, username: str) -> None:
    sign_in_office(page, url, username, PASSWORD)


def test_office_user_signs_in_and_sees_only_their_district(live_server, page):
    url, world = live_server
    sign_in(page, url, "office_d1")
    assert page.get_by_role("heading", name="测试office_d1，您好").is_visible()
    page.get_by_role("link", name="问题台账").click()
    page.wait_for_url(f"{url}/problems")
    rows = page.locator("table tbody tr")
    assert rows.count() == 2
    assert "杏花村自来水水压不足" not in page.content()
    page.get_by_role("link", name="ZF-2026-000003").click()
    assert page.get_by_text("第一网格小区物业不作为，路灯不亮").is_visible()


def test_wrong_password_shows_message_and_keeps_username(live_server, page):
    url, _world = live_server
    page.goto(f"{url}/login")
    page.get_by_label("用户名").fill("leader")
    page.get_by_label("密码").fill("wrong-password")
    page.get_by_role("button", name="登录").click()
    assert page.get_by_role("alert").inner_text() == "用户名或密码错误。"
    assert page.get_by_label("用户名").input_value() == "leader"


def test_admin_creates_a_unit_after_fixing_a_form_error(live_server, page):
    url, _world = live_server
    sign_in(page, url, "admin")
    page.goto(f"{url}/admin/units/new")
    page.get_by_label("单位名称").fill("教育局")
    page.get_by_label("联系电话").fill("not a phone")
    page.get_by_role("button", name="保存").click()
    assert page.get_by_text("联系电话格式不正确").is_visible()
    assert page.get_by_label("单位名称").input_value() == "教育局"  # input kept
    page.get_by_label("所属区域").select_option("370100")
    page.get_by_label("联系电话").fill("0531-8888888")
    page.get_by_role("button", name="保存").click()
    page.wait_for_url(f"{url}/admin/units?saved=*")
    assert page.get_by_role("cell", name="教育局").is_visible()


def test_handler_is_refused_admin_pages_and_can_sign_out(live_server, page):
    url, _world = live_server
    sign_in(page, url, "handler1")
    assert page.get_by_role("link", name="系统管理").count() == 0
    response = page.goto(f"{url}/admin/users")
    assert response.status == 403
    page.goto(f"{url}/")
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url(f"{url}/login")
