"""The Resource classes used directly on a fresh database (no web app)."""

from __future__ import annotations

import pytest

from server import auth, authz
from server.accounts import RESOURCE as USERS
from server.areas import RESOURCE as AREAS
from server.areas import insert_area
from server.categories import RESOURCE as CATEGORIES
from server.db import immediate, open_database
from server.errors import NotFound
from server.i18n import gettext as _
from server.resource import resolve
from server.units import RESOURCE as UNITS
from server.validation import ValidationError
from tests.conftest import build_world


@pytest.fixture
def fresh(db_path):
    db = open_database(db_path)
    world = build_world(db)
    yield db, world
    db.close()


def actor(db, world, username: str) -> authz.User:
    found = auth.load_user(db, world.users[username])
    assert found is not None
    return found


def ids(rows) -> set[int]:
    return {row["id"] for row in rows}


# Area paths -----------------------------------------------------------------


def test_area_paths_follow_the_tree(fresh):
    db, world = fresh
    a = world.areas
    path = {key: db["areas"].get(area_id)["path"] for key, area_id in a.items()}
    assert path["city"] == f"/{a['city']}/"
    assert path["d1"] == f"/{a['city']}/{a['d1']}/"
    assert path["g1"] == f"/{a['city']}/{a['d1']}/{a['t1']}/{a['v1']}/{a['g1']}/"
    assert path["v2"] == f"/{a['city']}/{a['d2']}/{a['t2']}/{a['v2']}/"


def test_insert_area_nested_under_a_new_area(fresh):
    db, world = fresh
    with immediate(db):
        town = insert_area(db, "370102009", "新镇", 3, world.areas["d1"])
        village = insert_area(db, "370102009001", "新村", 4, town)
    assert db["areas"].get(town)["path"] == f"/{world.areas['city']}/{world.areas['d1']}/{town}/"
    assert db["areas"].get(village)["path"] == (
        f"/{world.areas['city']}/{world.areas['d1']}/{town}/{village}/"
    )
    assert not db.execute("SELECT 1 FROM areas WHERE path LIKE 'pending:%'").fetchone()


def test_areas_create_computes_path_and_parent(fresh):
    db, world = fresh
    admin = actor(db, world, "admin")
    data = AREAS.clean(
        {
            "code": "370103001002",
            "name": "白石村",
            "level": "村/社区",
            "parent_code": "370103001",
            "active": "1",
        },
        creating=True,
    )
    with immediate(db):
        area_id = AREAS.create(db, admin, data)
    row = db["areas"].get(area_id)
    assert row["parent_id"] == world.areas["t2"]
    assert row["level"] == 4
    assert row["path"] == (
        f"/{world.areas['city']}/{world.areas['d2']}/{world.areas['t2']}/{area_id}/"
    )


def test_failed_area_create_leaves_nothing_behind(fresh):
    db, world = fresh
    admin = actor(db, world, "admin")
    before = db["areas"].count
    data = AREAS.clean(
        {"code": "X1", "name": "错层", "level": "5", "parent_code": "370102", "active": "1"},
        creating=True,
    )
    with pytest.raises(ValidationError) as raised, immediate(db):
        AREAS.create(db, admin, data)
    assert raised.value.errors == {"level": _("area.level_mismatch")}
    assert db["areas"].count == before


# admin_scope ----------------------------------------------------------------


def test_city_admin_scope_is_every_user(fresh):
    db, world = fresh
    listing = USERS.list(db, actor(db, world, "admin"))
    assert ids(listing.rows) == set(world.users.values())
    assert listing.total == len(world.users)


def test_district_admin_scope_is_the_district_subtree(fresh):
    db, world = fresh
    admin_d2 = actor(db, world, "admin_d2")
    clause, params = authz.admin_scope(admin_d2, "users")
    in_scope = {row[0] for row in db.execute(f"SELECT id FROM users WHERE {clause}", params)}
    assert in_scope == {world.users[name] for name in ("field2", "leader_d2", "admin_d2")}
    areas = {row["id"] for row in AREAS.list(db, admin_d2).rows}
    assert areas == {world.areas[key] for key in ("d2", "t2", "v2")}


def test_admin_scope_is_empty_for_non_admins(fresh):
    db, world = fresh
    office = actor(db, world, "office")
    assert authz.admin_scope(office, "users") == ("1 = 0", [])
    assert USERS.list(db, office).rows == []


def test_get_outside_scope_is_not_found(fresh):
    db, world = fresh
    admin_d2 = actor(db, world, "admin_d2")
    assert USERS.get(db, admin_d2, world.users["field2"])["username"] == "field2"
    with pytest.raises(NotFound):
        USERS.get(db, admin_d2, world.users["field1"])
    with pytest.raises(NotFound):
        UNITS.get(db, admin_d2, world.units["u1"])
    with pytest.raises(NotFound):
        USERS.get(db, actor(db, world, "admin"), 999_999)


def test_categories_are_shared_by_every_admin(fresh):
    db, world = fresh
    assert ids(CATEGORIES.list(db, actor(db, world, "admin_d2")).rows) == {world.category}


def test_list_search_and_paging(fresh):
    db, world = fresh
    admin = actor(db, world, "admin")
    assert ids(USERS.list(db, admin, "office").rows) == {
        world.users["office"],
        world.users["office_d1"],
    }
    assert USERS.list(db, admin, "测试leader_d2").total == 1
    assert USERS.list(db, admin, page=2).rows == []


def test_search_treats_like_wildcards_as_plain_text(fresh):
    db, world = fresh
    admin = actor(db, world, "admin")
    assert USERS.list(db, admin, "%").total == 0
    assert ids(USERS.list(db, admin, "_d").rows) == {
        world.users[name] for name in ("office_d1", "leader_d2", "admin_d2")
    }


# unique() ---------------------------------------------------------------------


def test_unique_raises_on_another_row_with_the_value(fresh):
    db, world = fresh
    with pytest.raises(ValidationError) as raised:
        UNITS.unique(db, "name", "住建局", "name", "重复")
    assert raised.value.errors == {"name": "重复"}


def test_unique_excludes_the_row_being_edited(fresh):
    db, world = fresh
    UNITS.unique(db, "name", "住建局", "name", "重复", exclude_id=world.units["u1"])
    with pytest.raises(ValidationError):
        UNITS.unique(db, "name", "住建局", "name", "重复", exclude_id=world.units["u2"])


def test_unique_passes_for_a_new_value(fresh):
    db, _world = fresh
    UNITS.unique(db, "name", "新单位", "name", "重复")


def test_unique_username_ignores_case(fresh):
    db, world = fresh
    with pytest.raises(ValidationError):
        USERS.unique(db, "username", "FIELD1", "username", "重复")
    USERS.unique(db, "username", "FIELD1", "username", "重复", exclude_id=world.users["field1"])


def test_resolve_turns_value_error_into_field_error():
    def missing(code):
        raise ValueError(f"没有{code}")

    with pytest.raises(ValidationError) as raised:
        resolve("area_code", missing, "X")
    assert raised.value.errors == {"area_code": "没有X"}
    assert resolve("area_code", lambda code: 7, "X") == 7


# Users.prepare and create ---------------------------------------------------


def test_users_prepare_hashes_the_password_and_drops_the_plain_text():
    data = USERS.prepare({"username": "zhangsan", "password": "plain-text-1"})
    assert "password" not in data
    assert data["password_hash"] != "plain-text-1"
    assert auth.verify_password(data["password_hash"], "plain-text-1")
    assert "plain-text-1" not in repr(data)


def test_users_prepare_without_password_sets_no_hash():
    assert USERS.prepare({"username": "x", "password": ""})["password_hash"] is None
    assert USERS.prepare({"username": "x"})["password_hash"] is None


def test_users_create_stores_the_hash_only(fresh):
    db, world = fresh
    admin = actor(db, world, "admin")
    raw = {
        "username": "zhangsan",
        "display_name": "张三",
        "roles": "承办人",
        "area_code": "370100",
        "unit_name": "水务集团",
        "active": "1",
        "password": "plain-text-1",
    }
    data = USERS.prepare(USERS.clean(raw, creating=True))
    with immediate(db):
        user_id = USERS.create(db, admin, data)
    row = db["users"].get(user_id)
    assert (row["roles"], row["unit_id"], row["area_id"]) == (
        "handler",
        world.units["u2"],
        world.areas["city"],
    )
    assert auth.verify_password(row["password_hash"], "plain-text-1")
    assert "plain-text-1" not in row.values()


def test_users_update_with_blank_password_keeps_hash(fresh):
    db, world = fresh
    admin = actor(db, world, "admin")
    user_id = world.users["field1"]
    before = db["users"].get(user_id)["password_hash"]
    values = USERS.form_values(db, admin, user_id)
    data = USERS.prepare(
        USERS.clean({**values, "display_name": "新名", "active": "1"}, creating=False)
    )
    with immediate(db):
        USERS.update(db, admin, user_id, data)
    row = db["users"].get(user_id)
    assert (row["display_name"], row["password_hash"]) == ("新名", before)


def test_users_form_values_show_roles_as_a_list_and_no_password(fresh):
    db, world = fresh
    values = USERS.form_values(db, actor(db, world, "admin"), world.users["handler1"])
    assert values["roles"] == ["handler"]
    assert values["unit_name"] == "住建局"
    assert values["area_code"] == "370100"
    assert values["password"] == ""
    assert "password_hash" not in values


# An administrator attaches accounts only to units of their area ---------------------


def test_users_create_refuses_a_unit_outside_the_admins_subtree(fresh):
    db, world = fresh
    admin_d2 = actor(db, world, "admin_d2")
    raw = {"username": "lisi", "display_name": "李四", "roles": "handler",
           "area_code": "370103", "unit_name": "住建局", "active": "1",
           "password": "plain-text-1"}
    data = USERS.prepare(USERS.clean(raw, creating=True))
    before = db["users"].count
    with pytest.raises(ValidationError) as raised, immediate(db):
        USERS.create(db, admin_d2, data)
    assert raised.value.errors == {
        "unit_name": _("audit.unit_outside_area", value="住建局", area="西湖区")}
    assert db["users"].count == before
    assert db.execute("SELECT count(*) FROM admin_audit").fetchone()[0] == 0


def test_unit_choices_of_an_account_follow_the_admins_subtree(fresh):
    db, world = fresh
    assert USERS.options(db, actor(db, world, "admin_d2"))["unit_name"] == []
    assert {name for name, _label in USERS.options(db, actor(db, world, "admin"))["unit_name"]} \
        == {"住建局", "水务集团"}
    # Categories are shared: their default unit may be any unit.
    assert len(CATEGORIES.options(db, actor(db, world, "admin_d2"))["default_unit_name"]) == 2
