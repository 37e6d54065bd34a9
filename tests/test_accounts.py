"""The password rule (server/accounts.py): one rule for every way a password is set,
the administrator's form, the import, ``fieldledger create-user`` and the user's own change
(that last one in tests/test_account_password.py)."""

from __future__ import annotations

import pytest
from markupsafe import escape

from server import accounts, auth, importer
from server.cli import main
from server.db import immediate, open_database
from server.i18n import gettext as _
from server.importer import ImportFailed
from tests.conftest import post_form
from tests.test_admin import edit_fields, user_form
from tests.test_importer import csv_bytes

SAME_AS_USERNAME = _("account.password.same_as_username")
TOO_COMMON = _("account.password.too_common")


@pytest.mark.parametrize("password", [
    "123456789", "12345678", "password", "PassWord", "iloveyou", "88888888", "11111111",
    "5201314520", "woaini1314", "WOAINI1314", "qq123456", "a123456789", "1qaz2wsx",
])
def test_common_passwords_are_refused_whatever_their_case(password):
    assert accounts.password_problem(password, "zhangsan") == TOO_COMMON


def test_the_list_holds_the_common_chinese_passwords_and_a_few_hundred_in_all():
    common = accounts.common_passwords()
    for password in ("123456", "5201314", "woaini1314", "1314520", "qq123456", "a123456",
                     "88888888", "11111111", "666666", "000000", "password", "iloveyou"):
        assert password in common
    assert 200 <= len(common) <= 2000
    assert not any(line.startswith("#") for line in common)


@pytest.mark.parametrize("password", ["zhangsan", "ZhangSan", "ZHANGSAN"])
def test_the_username_is_refused_as_password(password):
    assert accounts.password_problem(password, " zhangsan ") == SAME_AS_USERNAME


def test_an_ordinary_password_passes():
    assert accounts.password_problem("Qingchuan-走访-2026", "zhangsan") is None
    assert accounts.password_problem("zhangsan2026!", "zhangsan") is None


# The administrator's form: create and reset ------------------------------------------


def _field_error(response, field: str, message: str) -> None:
    assert response.status_code == 400, response.text
    assert f'<p class="error" id="e-{field}">{escape(message)}</p>' in response.text


@pytest.mark.parametrize(("password", "message"), [
    ("woaini1314", TOO_COMMON),
    ("88888888", TOO_COMMON),
    ("ZhangSan", SAME_AS_USERNAME),
])
def test_admin_create_refuses_weak_passwords_and_saves_nothing(admin, db, password, message):
    before = db["users"].count
    response = post_form(admin, "/admin/users/new", user_form(password=password))
    _field_error(response, "password", message)
    assert db["users"].count == before


def test_the_password_error_comes_with_the_other_fields_errors(admin, db):
    before = db["users"].count
    response = post_form(admin, "/admin/users/new",
                         user_form(password="123456789", display_name="", roles=[]))
    _field_error(response, "password", TOO_COMMON)
    _field_error(response, "display_name", _("validation.required", label=_("user.display_name")))
    assert db["users"].count == before


def test_admin_reset_refuses_weak_passwords_and_changes_nothing(admin, db, world):
    user_id = world.users["field1"]
    before = db["users"].get(user_id)["password_hash"]
    fields = edit_fields(admin, f"/admin/users/{user_id}")
    response = post_form(admin, f"/admin/users/{user_id}", {**fields, "password": "5201314520"})
    _field_error(response, "password", TOO_COMMON)
    response = post_form(admin, f"/admin/users/{user_id}", {**fields, "password": "FIELD1"})
    _field_error(response, "password", _("validation.too_short", label=_("user.new_password"),
                                         min=accounts.MIN_PASSWORD_LENGTH))
    assert db["users"].get(user_id)["password_hash"] == before


def test_admin_reset_to_the_username_is_refused(admin, db, world):
    user_id = world.users["office_d1"]
    fields = edit_fields(admin, f"/admin/users/{user_id}")
    response = post_form(admin, f"/admin/users/{user_id}", {**fields, "password": "OFFICE_D1"})
    _field_error(response, "password", SAME_AS_USERNAME)
    # Renamed in the same edit: the new username counts.
    response = post_form(admin, f"/admin/users/{user_id}",
                         {**fields, "username": "wang.wei", "password": "Wang.Wei"})
    _field_error(response, "password", SAME_AS_USERNAME)
    assert db["users"].get(user_id)["username"] == "office_d1"


# The import and the command line -------------------------------------------------------


def test_the_import_refuses_weak_passwords_with_their_rows_and_saves_nothing(db, world):
    actor = auth.load_user(db, world.users["admin"])
    before = db["users"].count
    content = csv_bytes([
        ["用户名", "姓名", "角色", "管辖区域", "初始密码"],
        ["wang5", "王五", "走访干部", "370102", "Pass-word-5"],
        ["li6", "李六", "走访干部", "370102", "woaini1314"],
        ["zhao7", "赵七", "走访干部", "370102", "Zhao7"],
        ["sun8", "孙八", "走访干部", "370102", "sun8sun8"],
        ["qian9", "钱九", "走访干部", "370102", "Qian9-2026"],
    ])
    with pytest.raises(ImportFailed) as caught:
        cleaned = importer.parse_and_clean("users", "users.csv", content)
        with immediate(db):
            importer.write_rows(db, actor, cleaned)
    problems = [(problem.row, problem.message) for problem in caught.value.problems]
    label = _("user.password")
    assert (3, f"{label}：{TOO_COMMON}") in problems
    assert any(row == 4 for row, _message in problems)  # too short
    assert all(row != 5 for row, _message in problems)  # sun8sun8 is not the username
    assert all(row not in (2, 6) for row, _message in problems)
    assert db["users"].count == before


def test_the_import_refuses_the_username_as_password(db, world):
    actor = auth.load_user(db, world.users["admin"])
    content = csv_bytes([
        ["用户名", "姓名", "角色", "管辖区域", "初始密码"],
        ["zhouqiang", "周强", "走访干部", "370102", "ZhouQiang"],
    ])
    with pytest.raises(ImportFailed) as caught:
        cleaned = importer.parse_and_clean("users", "users.csv", content)
        with immediate(db):
            importer.write_rows(db, actor, cleaned)
    assert [(p.row, p.message) for p in caught.value.problems] == [
        (2, f"{_('user.password')}：{SAME_AS_USERNAME}")]


@pytest.mark.parametrize(("password", "message"), [
    ("5201314520", TOO_COMMON),
    ("Wang-Li.2026", SAME_AS_USERNAME),
])
def test_create_user_refuses_weak_passwords(db_path, world, capsys, password, message):
    code = main(["--db", str(db_path), "create-user", "wang-li.2026", "--roles", "field",
                 "--area", "370102", "--password", password])
    assert code == 2
    assert f"password: {message}" in capsys.readouterr().err
    assert open_database(db_path)["users"].count == len(world.users)
