"""The administration pages, through the real app: create, edit, list and search each
resource; bad input is refused beside its field and saves nothing; administrators stay
inside their area; CSRF; device revocation."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from server.auth import token_hash, verify_password
from server.i18n import gettext as _
from sync.client import SyncError
from tests.conftest import PASSWORD, api_login, login, post_form
from tests.sync_helpers import phone as sync_phone
from tests.sync_helpers import visit_args

NEW_PASSWORD = "changed-pass-9"

# Helpers -------------------------------------------------------------------


class _AdminForm(HTMLParser):
    """What the admin form (``form.form``) submits when a browser posts it unchanged."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.fields: dict[str, str | list[str]] = {}
        self._in_form = False
        self._select: str | None = None
        self._first: str | None = None
        self._selected: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form" and "form" in (attributes.get("class") or "").split():
            self._in_form = True
        if not self._in_form:
            return
        name = attributes.get("name")
        if tag == "input" and name:
            if attributes.get("type") == "checkbox":
                checked = self.fields.setdefault(name, [])
                if "checked" in attributes:
                    checked.append(attributes.get("value") or "")
            else:
                self.fields[name] = attributes.get("value") or ""
        elif tag == "select":
            self._select, self._first, self._selected = name, None, None
        elif tag == "option" and self._select:
            value = attributes.get("value") or ""
            if self._first is None:
                self._first = value
            if "selected" in attributes:
                self._selected = value

    def handle_endtag(self, tag):
        if tag == "select" and self._select:
            chosen = self._selected if self._selected is not None else self._first
            self.fields[self._select] = chosen or ""
            self._select = None
        elif tag == "form":
            self._in_form = False


def form_fields(html: str) -> dict[str, str | list[str]]:
    parser = _AdminForm()
    parser.feed(html)
    parser.fields.pop("csrf_token", None)
    return parser.fields


def edit_fields(client: TestClient, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return form_fields(response.text)


def assert_field_error(response, field: str, message: str) -> None:
    assert response.status_code == 400, response.text
    assert f'<p class="error" id="e-{field}">{escape(message)}</p>' in response.text
    assert _("common.form_errors") in response.text


def assert_input_kept(response, submitted: dict, except_field: str) -> None:
    """Every field the user filled in (but the wrong one and the password) is shown again."""
    shown = form_fields(response.text)
    for name, value in submitted.items():
        if name in (except_field, "password"):
            continue
        expected = value if isinstance(value, list) or name not in ("active", "roles") else [value]
        assert shown.get(name) == expected, name


def count(db, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def count_sessions(db, user_id: int) -> int:
    sql = "SELECT count(*) FROM web_sessions WHERE user_id = ?"
    return db.execute(sql, [user_id]).fetchone()[0]


def row(db, table: str, record_id: int) -> dict:
    return dict(db[table].get(record_id))


def me_code(client: TestClient, token: str) -> str:
    """What the server says to a device token: "ok", or its 401 error code."""
    response = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    return "ok" if response.status_code == 200 else response.json()["error"]["code"]


def user_form(**changes) -> dict:
    return {
        "username": "zhangsan",
        "display_name": "张三",
        "phone": "13800000000",
        "roles": ["field", "office"],
        "area_code": "370102001",
        "unit_name": "",
        "active": "1",
        "password": NEW_PASSWORD,
        **changes,
    }


def unit_form(**changes) -> dict:
    return {
        "name": "交通运输局",
        "area_code": "370102",
        "contact_name": "赵六",
        "contact_phone": "0531-8888888",
        "active": "1",
        **changes,
    }


def area_form(**changes) -> dict:
    return {
        "code": "370102002",
        "name": "桃园街道",
        "level": "3",
        "parent_code": "370102",
        "active": "1",
        **changes,
    }


def category_form(**changes) -> dict:
    return {
        "code": "road",
        "name": "道路交通",
        "default_unit_name": "住建局",
        "time_limit_days": "15",
        "active": "1",
        **changes,
    }


FORMS = {"users": user_form, "units": unit_form, "areas": area_form, "categories": category_form}


def create(client, resource: str, data: dict):
    return post_form(client, f"/admin/{resource}/new", data)


def created_id(response) -> int:
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith("/admin/") and "?saved=" in location
    return int(location.rsplit("=", 1)[1])


# Creating, editing, listing, searching ------------------------------------


def test_admin_creates_user_with_roles_area_unit_and_password(admin, db, world):
    user_id = created_id(
        create(
            admin,
            "users",
            user_form(roles=["field", "handler"], unit_name="住建局", phone="138 0000 0000"),
        )
    )
    saved = row(db, "users", user_id)
    assert saved["username"] == "zhangsan"
    assert saved["display_name"] == "张三"
    assert saved["phone"] == "138 0000 0000"
    assert saved["roles"] == "field,handler"
    assert saved["area_id"] == world.areas["t1"]
    assert saved["unit_id"] == world.units["u1"]
    assert saved["active"] == 1
    assert verify_password(saved["password_hash"], NEW_PASSWORD)
    assert NEW_PASSWORD not in saved.values()


def test_created_user_can_sign_in(admin, app):
    created_id(create(admin, "users", user_form()))
    with TestClient(app) as browser:
        assert login(browser, "zhangsan", NEW_PASSWORD).status_code == 303


def test_roles_are_stored_in_canonical_order(admin, db):
    user_id = created_id(create(admin, "users", user_form(roles=["office", "field"])))
    assert row(db, "users", user_id)["roles"] == "field,office"


def test_admin_edits_user_and_blank_password_keeps_the_old_one(admin, db, world):
    user_id = world.users["field1"]
    before = row(db, "users", user_id)
    fields = edit_fields(admin, f"/admin/users/{user_id}")
    assert fields["username"] == "field1"
    assert fields["roles"] == ["field"]
    assert fields["area_code"] == "370102001"
    assert fields["password"] == ""
    response = post_form(
        admin,
        f"/admin/users/{user_id}",
        {
            **fields,
            "display_name": "改名了",
            "roles": ["field", "leader"],
            "area_code": "370102",
        },
    )
    assert created_id(response) == user_id
    after = row(db, "users", user_id)
    assert after["display_name"] == "改名了"
    assert after["roles"] == "field,leader"
    assert after["area_id"] == world.areas["d1"]
    assert after["password_hash"] == before["password_hash"]


def test_admin_sets_a_new_password(admin, db, world):
    user_id = world.users["field1"]
    fields = edit_fields(admin, f"/admin/users/{user_id}")
    created_id(post_form(admin, f"/admin/users/{user_id}", {**fields, "password": NEW_PASSWORD}))
    password_hash = row(db, "users", user_id)["password_hash"]
    assert verify_password(password_hash, NEW_PASSWORD)
    assert not verify_password(password_hash, PASSWORD)


def test_admin_creates_and_edits_unit(admin, db, world):
    unit_id = created_id(create(admin, "units", unit_form()))
    saved = row(db, "units", unit_id)
    assert (saved["name"], saved["area_id"], saved["contact_name"], saved["contact_phone"]) == (
        "交通运输局",
        world.areas["d1"],
        "赵六",
        "0531-8888888",
    )
    fields = edit_fields(admin, f"/admin/units/{unit_id}")
    assert fields == {**unit_form(), "active": ["1"]}
    created_id(
        post_form(
            admin, f"/admin/units/{unit_id}", {**fields, "name": "交通局", "area_code": "370100"}
        )
    )
    saved = row(db, "units", unit_id)
    assert (saved["name"], saved["area_id"]) == ("交通局", world.areas["city"])


def test_admin_creates_and_edits_area(admin, db, world):
    area_id = created_id(create(admin, "areas", area_form()))
    saved = row(db, "areas", area_id)
    assert (saved["code"], saved["name"], saved["level"], saved["parent_id"]) == (
        "370102002",
        "桃园街道",
        3,
        world.areas["d1"],
    )
    assert saved["path"] == f"/{world.areas['city']}/{world.areas['d1']}/{area_id}/"
    fields = edit_fields(admin, f"/admin/areas/{area_id}")
    assert fields == {**area_form(), "active": ["1"]}
    created_id(
        post_form(admin, f"/admin/areas/{area_id}", {**fields, "name": "桃园新街道", "active": []})
    )
    saved = row(db, "areas", area_id)
    assert (saved["name"], saved["active"], saved["parent_id"]) == (
        "桃园新街道",
        0,
        world.areas["d1"],
    )


def test_admin_creates_and_edits_category(admin, db, world):
    category_id = created_id(create(admin, "categories", category_form()))
    saved = row(db, "categories", category_id)
    assert (saved["code"], saved["name"], saved["default_unit_id"], saved["time_limit_days"]) == (
        "road",
        "道路交通",
        world.units["u1"],
        15,
    )
    fields = edit_fields(admin, f"/admin/categories/{category_id}")
    assert fields == {**category_form(), "active": ["1"]}
    created_id(
        post_form(
            admin,
            f"/admin/categories/{category_id}",
            {**fields, "time_limit_days": "365", "default_unit_name": ""},
        )
    )
    saved = row(db, "categories", category_id)
    assert (saved["time_limit_days"], saved["default_unit_id"]) == (365, None)


# (resource, search text that finds the new record, text on a row the search must drop)
SEARCHES = [
    ("users", "zhangsan", "测试field1"),
    ("units", "交通", "水务集团"),
    ("areas", "桃园", "白石镇"),
    ("categories", "road", "供水"),
]


@pytest.mark.parametrize(("resource", "query", "other"), SEARCHES)
def test_list_shows_new_record_and_search_finds_it(admin, resource, query, other):
    record_id = created_id(create(admin, resource, FORMS[resource]()))
    listing = admin.get(f"/admin/{resource}")
    assert listing.status_code == 200
    assert f'href="/admin/{resource}/{record_id}"' in listing.text
    assert other in listing.text
    found = admin.get(f"/admin/{resource}", params={"q": query})
    assert found.status_code == 200
    assert f'href="/admin/{resource}/{record_id}"' in found.text
    assert other not in found.text


def test_search_with_no_match_shows_empty_list(admin):
    page = admin.get("/admin/users", params={"q": "没有这个人"}).text
    assert _("common.empty") in page


@pytest.mark.parametrize("resource", sorted(FORMS))
def test_new_form_renders_every_field(admin, resource):
    response = admin.get(f"/admin/{resource}/new")
    assert response.status_code == 200
    assert set(form_fields(response.text)) == set(FORMS[resource]())


# Bad input: 400, message beside the field, input kept, nothing saved -------

T = _  # short alias for the case tables below

USER_CASES = [
    ({"username": ""}, "username", T("validation.required", label=T("user.username"))),
    (
        {"username": "a" * 33},
        "username",
        T("validation.too_long", label=T("user.username"), max=32),
    ),
    ({"username": "ab"}, "username", T("validation.too_short", label=T("user.username"), min=3)),
    ({"username": "zhang san"}, "username", T("validation.pattern", label=T("user.username"))),
    ({"username": "张三丰"}, "username", T("validation.pattern", label=T("user.username"))),
    ({"username": "OFFICE"}, "username", T("user.username_taken")),
    ({"display_name": ""}, "display_name", T("validation.required", label=T("user.display_name"))),
    (
        {"display_name": "张" * 31},
        "display_name",
        T("validation.too_long", label=T("user.display_name"), max=30),
    ),
    (
        {"display_name": "张\x07三"},
        "display_name",
        T("validation.control_chars", label=T("user.display_name")),
    ),
    (
        {"display_name": "张\x00三"},
        "display_name",
        T("validation.nul", label=T("user.display_name")),
    ),
    ({"phone": "电话123456"}, "phone", T("validation.phone", label=T("user.phone"))),
    ({"password": ""}, "password", T("validation.required", label=T("user.password"))),
    ({"password": "short"}, "password", T("validation.too_short", label=T("user.password"), min=8)),
    ({"roles": []}, "roles", T("validation.required", label=T("user.roles"))),
    (
        {"roles": ["field", "superuser"]},
        "roles",
        T("validation.choice", label=T("user.roles"), value="superuser"),
    ),
    ({"roles": ["handler"], "unit_name": ""}, "unit_name", T("user.handler_needs_unit")),
    ({"unit_name": "不存在局"}, "unit_name", T("validation.unknown_unit", value="不存在局")),
    ({"area_code": ""}, "area_code", T("validation.required", label=T("user.area"))),
    ({"area_code": "999999"}, "area_code", T("validation.unknown_area", value="999999")),
]
UNIT_CASES = [
    ({"name": ""}, "name", T("validation.required", label=T("unit.name"))),
    ({"name": "局" * 61}, "name", T("validation.too_long", label=T("unit.name"), max=60)),
    ({"name": "住建局"}, "name", T("validation.duplicate", label=T("unit.name"))),
    ({"area_code": "999999"}, "area_code", T("validation.unknown_area", value="999999")),
    (
        {"contact_name": "赵\x00六"},
        "contact_name",
        T("validation.nul", label=T("unit.contact_name")),
    ),
    (
        {"contact_phone": "call me"},
        "contact_phone",
        T("validation.phone", label=T("unit.contact_phone")),
    ),
]
AREA_CASES = [
    ({"code": ""}, "code", T("validation.required", label=T("area.code"))),
    ({"code": "3701 02"}, "code", T("validation.pattern", label=T("area.code"))),
    ({"code": "3" * 21}, "code", T("validation.too_long", label=T("area.code"), max=20)),
    ({"code": "370102"}, "code", T("validation.duplicate", label=T("area.code"))),
    ({"name": ""}, "name", T("validation.required", label=T("area.name"))),
    ({"level": "6"}, "level", T("validation.choice", label=T("area.level"), value="6")),
    ({"level": "4"}, "level", T("area.level_mismatch")),
    ({"level": "2", "parent_code": "370103"}, "level", T("area.level_mismatch")),
    ({"level": "1", "parent_code": ""}, "level", T("area.one_root")),
    ({"parent_code": ""}, "parent_code", T("validation.required", label=T("area.parent"))),
    ({"parent_code": "999999"}, "parent_code", T("validation.unknown_area", value="999999")),
]
CATEGORY_CASES = [
    ({"code": ""}, "code", T("validation.required", label=T("category.code"))),
    ({"code": "供水"}, "code", T("validation.pattern", label=T("category.code"))),
    ({"code": "water"}, "code", T("validation.duplicate", label=T("category.code"))),
    ({"name": "供水"}, "name", T("validation.duplicate", label=T("category.name"))),
    ({"name": "类" * 31}, "name", T("validation.too_long", label=T("category.name"), max=30)),
    (
        {"default_unit_name": "不存在局"},
        "default_unit_name",
        T("validation.unknown_unit", value="不存在局"),
    ),
    (
        {"time_limit_days": ""},
        "time_limit_days",
        T("validation.required", label=T("category.time_limit_days")),
    ),
    (
        {"time_limit_days": "0"},
        "time_limit_days",
        T("validation.range", label=T("category.time_limit_days"), min=1, max=365),
    ),
    (
        {"time_limit_days": "366"},
        "time_limit_days",
        T("validation.range", label=T("category.time_limit_days"), min=1, max=365),
    ),
    (
        {"time_limit_days": "abc"},
        "time_limit_days",
        T("validation.integer", label=T("category.time_limit_days")),
    ),
    (
        {"time_limit_days": "1.5"},
        "time_limit_days",
        T("validation.integer", label=T("category.time_limit_days")),
    ),
]
BAD_CREATES = [
    pytest.param(resource, changes, field, message, id=f"{resource}-{field}-{n}")
    for resource, cases in (
        ("users", USER_CASES),
        ("units", UNIT_CASES),
        ("areas", AREA_CASES),
        ("categories", CATEGORY_CASES),
    )
    for n, (changes, field, message) in enumerate(cases)
]


@pytest.mark.parametrize(("resource", "changes", "field", "message"), BAD_CREATES)
def test_bad_input_on_create_is_refused_beside_its_field(
    admin, db, resource, changes, field, message
):
    before = count(db, resource)
    data = FORMS[resource](**changes)
    response = create(admin, resource, data)
    assert_field_error(response, field, message)
    assert_input_kept(response, data, except_field=field)
    assert count(db, resource) == before


def test_several_bad_fields_are_all_reported_at_once(admin, db):
    before = count(db, "users")
    response = create(admin, "users", user_form(username="", display_name="", password="x"))
    assert_field_error(response, "username", _("validation.required", label=_("user.username")))
    assert_field_error(
        response, "display_name", _("validation.required", label=_("user.display_name"))
    )
    assert_field_error(
        response, "password", _("validation.too_short", label=_("user.password"), min=8)
    )
    assert count(db, "users") == before


def test_password_is_never_echoed_back(admin):
    response = create(admin, "users", user_form(username="", password="secret-echo-1"))
    assert response.status_code == 400
    assert "secret-echo-1" not in response.text


# (resource, world key, changes, field, message)
BAD_EDITS = [
    ("users", ("users", "field1"), {"username": "OFFICE"}, "username", T("user.username_taken")),
    (
        "users",
        ("users", "field1"),
        {"roles": ["handler"]},
        "unit_name",
        T("user.handler_needs_unit"),
    ),
    (
        "users",
        ("users", "field1"),
        {"password": "short"},
        "password",
        T("validation.too_short", label=T("user.new_password"), min=8),
    ),
    (
        "units",
        ("units", "u1"),
        {"name": "水务集团"},
        "name",
        T("validation.duplicate", label=T("unit.name")),
    ),
    (
        "categories",
        ("category", None),
        {"time_limit_days": "0"},
        "time_limit_days",
        T("validation.range", label=T("category.time_limit_days"), min=1, max=365),
    ),
    ("areas", ("areas", "t1"), {"parent_code": "370103"}, "parent_code", T("area.cannot_move")),
    (
        "areas",
        ("areas", "t1"),
        {"parent_code": "370100", "level": "2"},
        "parent_code",
        T("area.cannot_move"),
    ),
    (
        "areas",
        ("areas", "t1"),
        {"code": "370103"},
        "code",
        T("validation.duplicate", label=T("area.code")),
    ),
    ("areas", ("areas", "city"), {"active": []}, "active", T("area.cannot_disable_own")),
]


def _world_id(world, key):
    collection, name = key
    return getattr(world, collection) if name is None else getattr(world, collection)[name]


@pytest.mark.parametrize(
    ("resource", "key", "changes", "field", "message"),
    BAD_EDITS,
    ids=[f"{case[0]}-{case[3]}-{n}" for n, case in enumerate(BAD_EDITS)],
)
def test_bad_input_on_edit_is_refused_and_row_unchanged(
    admin, db, world, resource, key, changes, field, message
):
    record_id = _world_id(world, key)
    before = row(db, resource, record_id)
    data = {**edit_fields(admin, f"/admin/{resource}/{record_id}"), **changes}
    response = post_form(admin, f"/admin/{resource}/{record_id}", data)
    assert_field_error(response, field, message)
    assert_input_kept(response, data, except_field=field)
    assert row(db, resource, record_id) == before


def test_keeping_own_username_on_edit_is_not_a_duplicate(admin, world):
    user_id = world.users["office"]
    fields = edit_fields(admin, f"/admin/users/{user_id}")
    assert created_id(post_form(admin, f"/admin/users/{user_id}", fields)) == user_id


def test_renaming_username_case_only_is_allowed(admin, db, world):
    user_id = world.users["office"]
    fields = edit_fields(admin, f"/admin/users/{user_id}")
    created_id(post_form(admin, f"/admin/users/{user_id}", {**fields, "username": "Office"}))
    assert row(db, "users", user_id)["username"] == "Office"


# An administrator cannot lock themselves out --------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "key"),
    [
        ({"active": []}, "active", "user.cannot_deactivate_self"),
        ({"roles": ["office"]}, "roles", "user.cannot_change_own_roles"),
        ({"roles": ["admin", "office"]}, "roles", "user.cannot_change_own_roles"),
        ({"area_code": "370102"}, "area_code", "user.cannot_change_own_area"),
        ({"unit_name": "住建局"}, "unit_name", "user.cannot_change_own_unit"),
    ],
    ids=["deactivate", "drop_admin_role", "add_a_role", "narrow_own_area", "join_a_unit"],
)
def test_admin_cannot_change_own_roles_area_unit_or_deactivate_self(
    admin, db, world, changes, field, key
):
    user_id = world.users["admin"]
    before = row(db, "users", user_id)
    audited = count(db, "admin_audit")
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), **changes}
    response = post_form(admin, f"/admin/users/{user_id}", data)
    assert_field_error(response, field, _(key))
    assert row(db, "users", user_id) == before
    assert count(db, "admin_audit") == audited
    assert admin.get("/admin/users").status_code == 200  # still signed in, still admin


def test_admin_may_change_own_name_phone_and_password(admin, db, world):
    user_id = world.users["admin"]
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), "display_name": "新管理员",
            "phone": "13900001111", "password": NEW_PASSWORD}
    created_id(post_form(admin, f"/admin/users/{user_id}", data))
    saved = row(db, "users", user_id)
    assert (saved["display_name"], saved["phone"]) == ("新管理员", "13900001111")


def test_admin_may_deactivate_another_admin(admin_d2, login_as, db, world):
    admin = login_as("admin")
    user_id = world.users["admin_d2"]
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), "active": []}
    created_id(post_form(admin, f"/admin/users/{user_id}", data))
    assert row(db, "users", user_id)["active"] == 0


# Changing a password or deactivating ends the user's sessions ----------------


@pytest.mark.parametrize(
    "changes", [{"password": NEW_PASSWORD}, {"active": []}], ids=["password", "deactivate"]
)
def test_password_change_or_deactivation_signs_the_user_out(admin, login_as, db, world, changes):
    field1 = login_as("field1")
    assert field1.get("/").status_code == 200
    user_id = world.users["field1"]
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), **changes}
    created_id(post_form(admin, f"/admin/users/{user_id}", data))
    response = field1.get("/", follow_redirects=False)
    assert response.status_code in (302, 303)
    assert response.headers["location"].startswith("/login")
    assert count_sessions(db, user_id) == 0


def test_a_password_reset_stops_the_users_devices_as_revoke_stop_does(
    admin, app, login_as, db, world
):
    user_id = world.users["field1"]
    with TestClient(app) as phones:
        stopped_before, kept_wiped, phone_a, phone_b = (
            api_login(phones, "field1") for _n in range(4)
        )
        other_user = api_login(phones, "field2")
        devices = dict(db.execute("SELECT token_hash, id FROM devices").fetchall())
        post_form(admin, f"/admin/devices/{devices[token_hash(stopped_before)]}/revoke",
                  {"mode": "stop"})
        post_form(admin, f"/admin/devices/{devices[token_hash(kept_wiped)]}/revoke",
                  {"mode": "wipe"})
        stop_code = me_code(phones, stopped_before)
        assert stop_code == "device_revoked"
        assert me_code(phones, phone_a) == me_code(phones, phone_b) == "ok"
        browser = login_as("field1")

        data = {**edit_fields(admin, f"/admin/users/{user_id}"), "password": NEW_PASSWORD}
        created_id(post_form(admin, f"/admin/users/{user_id}", data))

        response = browser.get("/", follow_redirects=False)
        assert response.headers["location"].startswith("/login")
        assert me_code(phones, phone_a) == me_code(phones, phone_b) == stop_code
        assert me_code(phones, kept_wiped) == "device_wiped"  # a wipe stays a wipe
        assert me_code(phones, other_user) == "ok"
        stopped = db.execute(
            "SELECT revoke_mode, revoked_by FROM devices WHERE id IN (?, ?)",
            [devices[token_hash(phone_a)], devices[token_hash(phone_b)]],
        ).fetchall()
        assert stopped == [("stop", world.users["admin"])] * 2


def test_after_a_reset_the_phone_keeps_its_unsynced_records_and_sends_them_later(
    admin, client, db, world
):
    user_id = world.users["field1"]
    phone = sync_phone(client, "field1")
    visit = visit_args()
    phone.capture("visit.save", visit)
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), "password": NEW_PASSWORD}
    created_id(post_form(admin, f"/admin/users/{user_id}", data))
    with pytest.raises(SyncError) as refused:
        phone.push()
    assert refused.value.status == 401
    assert refused.value.body["error"]["code"] == "device_revoked"
    assert [m["args"]["id"] for m in phone.state["outbox"]] == [visit["id"]]
    assert db.execute("SELECT count(*) FROM visits WHERE id = ?", [visit["id"]]).fetchone()[0] == 0
    phone.login("field1", NEW_PASSWORD)
    assert [result["status"] for result in phone.push()] == ["applied"]
    assert db.execute("SELECT count(*) FROM visits WHERE id = ?", [visit["id"]]).fetchone()[0] == 1


def test_a_refused_password_reset_leaves_sessions_and_devices_alone(admin, app, login_as, world):
    user_id = world.users["field1"]
    browser = login_as("field1")
    with TestClient(app) as phones:
        token = api_login(phones, "field1")
        data = {**edit_fields(admin, f"/admin/users/{user_id}"), "password": "short"}
        response = post_form(admin, f"/admin/users/{user_id}", data)
        assert_field_error(
            response, "password", _("validation.too_short", label=_("user.new_password"), min=8)
        )
        assert me_code(phones, token) == "ok"
        assert browser.get("/", follow_redirects=False).status_code == 200


def test_a_password_reset_needs_the_csrf_token(admin, app, login_as, world):
    user_id = world.users["field1"]
    with TestClient(app) as phones:
        token = api_login(phones, "field1")
        data = {**edit_fields(admin, f"/admin/users/{user_id}"), "password": NEW_PASSWORD}
        response = admin.post(f"/admin/users/{user_id}", data=data, follow_redirects=False)
        assert response.status_code == 403
        assert me_code(phones, token) == "ok"


def test_other_edits_keep_the_user_signed_in(admin, login_as, world):
    field1 = login_as("field1")
    user_id = world.users["field1"]
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), "display_name": "新名字"}
    created_id(post_form(admin, f"/admin/users/{user_id}", data))
    assert field1.get("/", follow_redirects=False).status_code == 200


def test_new_password_works_and_old_one_does_not(admin, app, world):
    user_id = world.users["field1"]
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), "password": NEW_PASSWORD}
    created_id(post_form(admin, f"/admin/users/{user_id}", data))
    with TestClient(app) as browser:
        assert login(browser, "field1", PASSWORD).status_code == 401
        assert login(browser, "field1", NEW_PASSWORD).status_code == 303


def test_deactivated_user_cannot_sign_in(admin, app, world):
    user_id = world.users["field1"]
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), "active": []}
    created_id(post_form(admin, f"/admin/users/{user_id}", data))
    with TestClient(app) as browser:
        assert login(browser, "field1").status_code == 401


# A district administrator stays inside their district ------------------------


def test_district_admin_cannot_create_user_outside_district(admin_d2, db):
    before = count(db, "users")
    response = create(admin_d2, "users", user_form(area_code="370102"))
    assert_field_error(response, "area_code", _("validation.unknown_area", value="370102"))
    assert count(db, "users") == before


def test_district_admin_creates_user_inside_district(admin_d2, db, world):
    user_id = created_id(create(admin_d2, "users", user_form(area_code="370103001")))
    assert row(db, "users", user_id)["area_id"] == world.areas["t2"]


def test_district_admin_area_choices_are_only_their_district(admin_d2):
    page = admin_d2.get("/admin/users/new").text
    assert 'value="370103"' in page and 'value="370103001001"' in page
    assert 'value="370102"' not in page and 'value="370100"' not in page


@pytest.mark.parametrize("username", ["office_d1", "office", "admin", "field1"])
def test_district_admin_cannot_open_or_edit_users_outside_district(admin_d2, db, world, username):
    user_id = world.users[username]
    before = row(db, "users", user_id)
    assert admin_d2.get(f"/admin/users/{user_id}").status_code == 404
    response = post_form(
        admin_d2, f"/admin/users/{user_id}", user_form(username=username, area_code="370103")
    )
    assert response.status_code == 404
    assert row(db, "users", user_id) == before


def test_district_admin_lists_only_users_of_district(admin_d2, world):
    page = admin_d2.get("/admin/users").text
    for username in ("field2", "leader_d2", "admin_d2"):
        assert f'href="/admin/users/{world.users[username]}"' in page, username
    for username in ("field1", "office_d1", "office", "admin", "handler1"):
        assert f'href="/admin/users/{world.users[username]}"' not in page, username


def test_district_admin_search_stays_inside_district(admin_d2, world):
    page = admin_d2.get("/admin/users", params={"q": "office"}).text
    assert f'href="/admin/users/{world.users["office_d1"]}"' not in page
    assert _("common.empty") in page


@pytest.mark.parametrize("area", ["city", "d1", "t1", "g1"])
def test_district_admin_cannot_open_or_edit_areas_outside_district(admin_d2, db, world, area):
    area_id = world.areas[area]
    before = row(db, "areas", area_id)
    assert admin_d2.get(f"/admin/areas/{area_id}").status_code == 404
    response = post_form(
        admin_d2,
        f"/admin/areas/{area_id}",
        {
            "code": before["code"],
            "name": "改名",
            "level": str(before["level"]),
            "parent_code": "",
            "active": "1",
        },
    )
    assert response.status_code == 404
    assert row(db, "areas", area_id) == before


def test_district_admin_lists_only_areas_of_district(admin_d2, world):
    page = admin_d2.get("/admin/areas").text
    for area in ("d2", "t2", "v2"):
        assert f'href="/admin/areas/{world.areas[area]}"' in page, area
    for area in ("city", "d1", "t1", "v1", "g1"):
        assert f'href="/admin/areas/{world.areas[area]}"' not in page, area


def test_district_admin_cannot_add_area_under_another_district(admin_d2, db):
    before = count(db, "areas")
    response = create(admin_d2, "areas", area_form(parent_code="370102"))
    assert_field_error(response, "parent_code", _("validation.unknown_area", value="370102"))
    assert count(db, "areas") == before


def test_district_admin_cannot_open_city_units(admin_d2, world):
    assert admin_d2.get(f"/admin/units/{world.units['u1']}").status_code == 404


def test_district_admin_edits_user_inside_district(admin_d2, db, world):
    user_id = world.users["field2"]
    data = {**edit_fields(admin_d2, f"/admin/users/{user_id}"), "display_name": "白石镇干部"}
    created_id(post_form(admin_d2, f"/admin/users/{user_id}", data))
    assert row(db, "users", user_id)["display_name"] == "白石镇干部"


def test_district_admin_cannot_move_user_out_of_district(admin_d2, db, world):
    user_id = world.users["field2"]
    before = row(db, "users", user_id)
    data = {**edit_fields(admin_d2, f"/admin/users/{user_id}"), "area_code": "370102001"}
    response = post_form(admin_d2, f"/admin/users/{user_id}", data)
    assert_field_error(response, "area_code", _("validation.unknown_area", value="370102001"))
    assert row(db, "users", user_id) == before


def test_district_admin_can_rename_own_district_through_the_form(admin_d2, db, world):
    area_id = world.areas["d2"]
    data = {**edit_fields(admin_d2, f"/admin/areas/{area_id}"), "name": "西湖新区"}
    response = post_form(admin_d2, f"/admin/areas/{area_id}", data)
    assert response.status_code == 303, response.text
    assert row(db, "areas", area_id)["name"] == "西湖新区"


# A district administrator attaches accounts only to units of the district ---------


def _outside(unit: str = "住建局") -> str:
    return _("audit.unit_outside_area", value=unit, area="西湖区")


@pytest.fixture
def xihu_unit(admin_d2, db):
    unit_id = created_id(create(admin_d2, "units", unit_form(name="西湖区城管局",
                                                              area_code="370103001")))
    return db["units"].get(unit_id)["name"]


def test_district_admin_cannot_create_a_handler_of_a_city_unit(admin_d2, db):
    before, audited = count(db, "users"), count(db, "admin_audit")
    form = user_form(roles=["handler"], area_code="370103", unit_name="住建局")
    response = create(admin_d2, "users", form)
    assert_field_error(response, "unit_name", _outside())
    assert (count(db, "users"), count(db, "admin_audit")) == (before, audited)


@pytest.mark.parametrize("roles", [["handler"], ["field"]], ids=["handler", "field_official"])
def test_district_admin_cannot_attach_an_account_to_a_city_unit(admin_d2, db, world, roles):
    user_id = world.users["field2"]
    before = row(db, "users", user_id)
    data = {**edit_fields(admin_d2, f"/admin/users/{user_id}"), "roles": roles,
            "unit_name": "水务集团"}
    response = post_form(admin_d2, f"/admin/users/{user_id}", data)
    assert_field_error(response, "unit_name", _outside("水务集团"))
    assert row(db, "users", user_id) == before


def test_district_admin_cannot_keep_an_account_on_a_city_unit(admin, admin_d2, db, world):
    """An account the city attached to a city unit: the district may not save it (the
    form keeps the unit selected, and saving would be attaching it)."""
    user_id = world.users["field2"]
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), "unit_name": "住建局"}
    created_id(post_form(admin, f"/admin/users/{user_id}", data))
    before = row(db, "users", user_id)
    data = {**edit_fields(admin_d2, f"/admin/users/{user_id}"), "display_name": "改名"}
    assert data["unit_name"] == "住建局"
    assert_field_error(post_form(admin_d2, f"/admin/users/{user_id}", data), "unit_name",
                       _outside())
    assert row(db, "users", user_id) == before


def test_district_admin_unit_choices_are_only_their_district(admin_d2, xihu_unit):
    page = admin_d2.get("/admin/users/new").text
    assert f'value="{xihu_unit}"' in page
    assert 'value="住建局"' not in page and 'value="水务集团"' not in page


def test_district_admin_attaches_a_handler_to_a_district_unit(admin_d2, db, xihu_unit):
    form = user_form(roles=["handler"], area_code="370103", unit_name=xihu_unit)
    user_id = created_id(create(admin_d2, "users", form))
    unit_id = row(db, "users", user_id)["unit_id"]
    assert row(db, "units", unit_id)["name"] == xihu_unit


def test_city_admin_attaches_accounts_to_city_units(admin, db, world):
    form = user_form(roles=["handler"], area_code="370102", unit_name="住建局")
    user_id = created_id(create(admin, "users", form))
    assert row(db, "users", user_id)["unit_id"] == world.units["u1"]


def test_district_admin_cannot_move_a_unit_out_of_the_district(admin_d2, db, xihu_unit):
    unit_id = db.execute("SELECT id FROM units WHERE name = ?", [xihu_unit]).fetchone()[0]
    before = row(db, "units", unit_id)
    data = {**edit_fields(admin_d2, f"/admin/units/{unit_id}"), "area_code": "370100"}
    response = post_form(admin_d2, f"/admin/units/{unit_id}", data)
    assert_field_error(response, "area_code", _("validation.unknown_area", value="370100"))
    assert row(db, "units", unit_id) == before
    response = create(admin_d2, "units", unit_form(name="越界单位", area_code="370102"))
    assert_field_error(response, "area_code", _("validation.unknown_area", value="370102"))


# Record ids ---------------------------------------------------------------


# Superscript two, Arabic-Indic one and fullwidth one pass str.isdigit() but are not ids.
BAD_IDS = [
    "abc",
    "-1",
    "1.0",
    "0x1",
    "1234567890123",
    "99999999999999999999",
    "%C2%B2",
    "%D9%A1",
    "%EF%BC%91",
]


@pytest.mark.parametrize("resource", sorted(FORMS))
def test_malformed_record_id_is_404(admin, resource):
    for raw_id in BAD_IDS:
        assert admin.get(f"/admin/{resource}/{raw_id}").status_code == 404, raw_id


@pytest.mark.parametrize("resource", sorted(FORMS))
def test_unknown_record_id_is_404_for_get_and_post(admin, db, resource):
    before = count(db, resource)
    assert admin.get(f"/admin/{resource}/999999").status_code == 404
    assert admin.get(f"/admin/{resource}/0").status_code == 404
    assert post_form(admin, f"/admin/{resource}/999999", FORMS[resource]()).status_code == 404
    assert post_form(admin, f"/admin/{resource}/abc", FORMS[resource]()).status_code == 404
    assert count(db, resource) == before


@pytest.mark.parametrize("page", ["abc", "0", "-1", "99999999999999"])
def test_odd_page_numbers_fall_back_to_first_page(admin, page):
    assert admin.get("/admin/users", params={"page": page}).status_code == 200


def test_superscript_page_number_is_not_a_server_error(app, world):
    with TestClient(app, raise_server_exceptions=False) as browser:
        login(browser, "admin")
        assert browser.get("/admin/users", params={"page": "²"}).status_code == 200


def test_non_admin_cannot_use_admin_pages(login_as, db):
    office = login_as("office")
    before = count(db, "units")
    assert office.get("/admin/units").status_code == 403
    assert create(office, "units", unit_form()).status_code == 403
    assert count(db, "units") == before


# CSRF ---------------------------------------------------------------------


def test_post_without_csrf_token_is_refused(admin, db):
    before = count(db, "units")
    response = admin.post("/admin/units/new", data=unit_form(), follow_redirects=False)
    assert response.status_code == 403
    assert _("errors.csrf") in response.text
    assert count(db, "units") == before


def test_post_with_wrong_csrf_token_is_refused(admin, db, world):
    before = row(db, "users", world.users["field1"])
    data = {**user_form(username="field1"), "csrf_token": "not-the-token"}
    response = admin.post(
        f"/admin/users/{world.users['field1']}", data=data, follow_redirects=False
    )
    assert response.status_code == 403
    assert row(db, "users", world.users["field1"]) == before


def test_cross_site_post_is_refused_even_with_the_token(admin, db):
    before = count(db, "categories")
    response = post_form(
        admin, "/admin/categories/new", category_form(), headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert response.status_code == 403
    assert count(db, "categories") == before


def test_same_origin_post_with_token_is_accepted(admin):
    response = post_form(
        admin, "/admin/categories/new", category_form(), headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert response.status_code == 303


def test_device_revoke_needs_csrf(admin, client, db):
    device_id, _token = device_login(client, "field1")
    response = admin.post(
        f"/admin/devices/{device_id}/revoke", data={"mode": "wipe"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert db["devices"].get(device_id)["revoked_at"] is None


# Devices ------------------------------------------------------------------


def device_login(client: TestClient, username: str) -> tuple[int, str]:
    response = client.post(
        "/api/login",
        json={"username": username, "password": PASSWORD, "device_name": f"{username}的手机"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return body["device_id"], body["token"]


def me(client: TestClient, token: str):
    return client.get("/api/me", headers={"Authorization": f"Bearer {token}"})


def test_admin_sees_field_users_device(admin, client):
    device_id, token = device_login(client, "field1")
    assert me(client, token).status_code == 200
    page = admin.get("/admin/devices")
    assert page.status_code == 200
    assert "field1的手机" in page.text
    assert f'action="/admin/devices/{device_id}/revoke"' in page.text


@pytest.mark.parametrize(("mode", "code"), [("stop", "device_revoked"), ("wipe", "device_wiped")])
def test_revoked_device_token_stops_working(admin, client, db, world, mode, code):
    device_id, token = device_login(client, "field1")
    response = post_form(admin, f"/admin/devices/{device_id}/revoke", {"mode": mode})
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/devices"
    answer = me(client, token)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == code
    device = db["devices"].get(device_id)
    assert device["revoke_mode"] == mode
    assert device["revoked_by"] == world.users["admin"]
    assert device["revoked_at"]
    page = admin.get("/admin/devices").text
    assert _(f"device.revoked_{mode}") in page
    assert f'action="/admin/devices/{device_id}/revoke"' not in page


@pytest.mark.parametrize("mode", ["", "delete", "STOP"])
def test_bad_revoke_mode_is_400_and_changes_nothing(admin, client, db, mode):
    device_id, token = device_login(client, "field1")
    before = row(db, "devices", device_id)
    response = post_form(admin, f"/admin/devices/{device_id}/revoke", {"mode": mode})
    assert response.status_code == 400
    assert row(db, "devices", device_id) == before
    assert me(client, token).status_code == 200


def test_revoke_of_unknown_or_malformed_device_is_404(admin):
    assert post_form(admin, "/admin/devices/999999/revoke", {"mode": "stop"}).status_code == 404
    assert post_form(admin, "/admin/devices/abc/revoke", {"mode": "stop"}).status_code == 404


def test_district_admin_cannot_see_or_revoke_device_outside_district(admin_d2, client, db):
    outside_id, outside_token = device_login(client, "field1")
    inside_id, inside_token = device_login(client, "field2")
    page = admin_d2.get("/admin/devices").text
    assert "field1的手机" not in page
    assert f"/admin/devices/{outside_id}/revoke" not in page
    assert "field2的手机" in page
    before = row(db, "devices", outside_id)
    response = post_form(admin_d2, f"/admin/devices/{outside_id}/revoke", {"mode": "wipe"})
    assert response.status_code == 404
    assert row(db, "devices", outside_id) == before
    assert me(client, outside_token).status_code == 200
    # ... while a device inside the district can be revoked.
    assert (
        post_form(admin_d2, f"/admin/devices/{inside_id}/revoke", {"mode": "stop"}).status_code
        == 303
    )
    assert me(client, inside_token).json()["error"]["code"] == "device_revoked"
