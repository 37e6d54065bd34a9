"""The field app's password change in a real Chromium on an emulated phone
(static/app/password.js against POST /api/account/password)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.conftest import PASSWORD
from tests.test_field_app_browser import (  # noqa: F401 (fixtures)
    browser,
    phone,
    playwright,
    server,
    sign_in,
)

pytestmark = pytest.mark.browser

NEW = "Qingchuan-2026-phone"


def api_sign_in(url: str, username: str, password: str) -> int:
    request = urllib.request.Request(
        f"{url}/api/login", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"username": username, "password": password}).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_app_changes_the_password_with_errors_beside_the_fields(server, phone):  # noqa: F811
    page = phone.new_page()
    sign_in(page, server, "field1")
    page.get_by_role("button", name="修改密码").click()
    current = page.get_by_label("当前密码", exact=True)
    new = page.get_by_label("新密码", exact=True)
    repeat = page.get_by_label("再次输入新密码", exact=True)

    # Checked on the phone: the repeat differs.
    current.fill(PASSWORD)
    new.fill(NEW)
    repeat.fill(NEW + "x")
    page.get_by_role("button", name="修改密码").click()
    page.locator("#password-new_password_repeat-error").get_by_text("两次输入的新密码不一致").wait_for()

    # Checked by the server: a wrong current password, then a common new one.
    current.fill("not-my-password")
    repeat.fill(NEW)
    page.get_by_role("button", name="修改密码").click()
    page.locator("#password-current_password-error").get_by_text("当前密码不正确").wait_for()
    assert current.get_attribute("aria-invalid") == "true"
    current.fill(PASSWORD)
    new.fill("woaini1314")
    repeat.fill("woaini1314")
    page.get_by_role("button", name="修改密码").click()
    page.locator("#password-new_password-error").get_by_text("常见密码").wait_for()
    assert api_sign_in(server.url, "field1", PASSWORD) == 201  # nothing changed yet

    new.fill(NEW)
    repeat.fill(NEW)
    page.get_by_role("button", name="修改密码").click()
    page.get_by_text("密码已修改").wait_for()
    assert page.locator("form").count() == 0  # the form is gone; Home refreshes again
    assert api_sign_in(server.url, "field1", NEW) == 201
    assert api_sign_in(server.url, "field1", PASSWORD) == 401
    # The phone stays signed in.
    page.reload()
    page.get_by_text("测试field1，您好").wait_for()
    page.close()
