"""In Chromium: the field app's first sync takes the working set, and 查台账 finds,
online, a problem outside it, shows it and keeps nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from server.db import immediate, open_database
from server.timeutil import to_iso, utcnow
from tests.test_field_app_browser import (
    PULLED,
    browser,  # noqa: F401 (fixture)
    local_read,
    phone,  # noqa: F401 (fixture)
    playwright,  # noqa: F401 (fixture)
    poll,
    server,  # noqa: F401 (fixture)
    sign_in,
)

pytestmark = pytest.mark.browser
DAY = dt.timedelta(days=1)
STORED = local_read("pulled", "getAllKeys()", "r.result.includes(key)", "key")


def test_a_problem_outside_the_set_is_looked_up_and_not_kept(phone, server):  # noqa: F811
    closed_long_ago = server.world.problems["p3"]
    kept = server.world.problems["p1"]
    db = open_database(server.db_path)
    with immediate(db):
        db.execute("UPDATE problems SET status = 'closed', closed_at = ?, ledger_no = ?"
                   " WHERE id = ?",
                   [to_iso(utcnow() - 200 * DAY), "ZF-2025-000777", closed_long_ago])
    db.close()
    page = phone.new_page()
    sign_in(page, server, "field1")
    poll(page, PULLED, f"problem:{kept}")
    assert not page.evaluate(STORED, f"problem:{closed_long_ago}")

    page.goto(f"{server.url}/app/#/area")
    page.get_by_role("link", name="查不在本机的问题").click()
    page.get_by_role("heading", name="查台账").wait_for()
    page.get_by_label("台账编号或关键词").fill("ZF-2025-000777")
    page.get_by_role("button", name="查询").click()
    page.get_by_text("ZF-2025-000777").click()
    page.get_by_text("此问题不在本机保存的范围内，仅供查看。").wait_for()
    page.get_by_text("第一网格小区物业不作为").wait_for()
    assert not page.evaluate(STORED, f"problem:{closed_long_ago}")

    page.get_by_role("button", name="返回查询").click()
    page.get_by_label("台账编号或关键词").fill("没有这样的问题描述")
    page.get_by_role("button", name="查询").click()
    page.get_by_text("没有找到匹配的问题。").wait_for()
