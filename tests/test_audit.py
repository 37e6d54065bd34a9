"""The administration's audit trail: every kind of administrator's change is recorded once,
in its own transaction, with who, when, the old and new values (phones masked, passwords
never); the 操作日志 page lists it, filtered and paged, to the administrators whose area it
concerns."""

from __future__ import annotations

import json

import pytest

from server import audit, auth, importer
from server.db import immediate
from server.i18n import gettext as _
from tests.conftest import PASSWORD, post_form
from tests.test_admin import (
    NEW_PASSWORD,
    area_form,
    category_form,
    create,
    created_id,
    edit_fields,
    unit_form,
    user_form,
)
from tests.test_admin_calendar import apply_form
from tests.test_calendar_entry import SAMPLE_2027
from tests.test_importer import csv_bytes, upload


def entries(db, **where) -> list[dict]:
    clause = " AND ".join(f"{key} = ?" for key in where) or "1 = 1"
    rows = list(db.query(f"SELECT * FROM admin_audit WHERE {clause} ORDER BY id",
                         list(where.values())))
    for row in rows:
        row["old"] = json.loads(row["old"]) if row["old"] else None
        row["new"] = json.loads(row["new"]) if row["new"] else None
    return rows


def only(db, **where) -> dict:
    [entry] = entries(db, **where)
    return entry


def all_text(db) -> str:
    return json.dumps(list(db.query("SELECT * FROM admin_audit")), ensure_ascii=False)


# Every kind of change is recorded ----------------------------------------------------


def test_creating_an_account_records_its_values_with_the_phone_masked(admin, db, world):
    user_id = created_id(create(admin, "users", user_form(phone="13800001234")))
    entry = only(db, entity="users", entity_id=user_id)
    assert (entry["actor_id"], entry["action"], entry["label"]) == (
        world.users["admin"], "create", "zhangsan")
    assert entry["area_id"] == world.areas["t1"] and entry["old"] is None
    assert entry["new"] == {"username": "zhangsan", "display_name": "张三",
                            "phone": "138****1234", "roles": "field,office",
                            "area_code": "370102001", "unit_name": "", "active": 1}
    assert entry["at"]
    text = all_text(db)
    assert "13800001234" not in text and NEW_PASSWORD not in text
    assert db["users"].get(user_id)["password_hash"] not in text


def test_an_accounts_update_records_only_what_changed(admin, db, world):
    user_id = world.users["field1"]
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), "roles": ["field", "leader"],
            "phone": "13912345678"}
    created_id(post_form(admin, f"/admin/users/{user_id}", data))
    entry = only(db, entity="users", entity_id=user_id)
    assert entry["action"] == "update"
    assert entry["old"] == {"roles": "field", "phone": ""}
    assert entry["new"] == {"roles": "field,leader", "phone": "139****5678"}


def test_a_password_reset_is_recorded_without_the_password(admin, db, world):
    user_id = world.users["field1"]
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), "password": NEW_PASSWORD}
    created_id(post_form(admin, f"/admin/users/{user_id}", data))
    entry = only(db, entity="users", entity_id=user_id)
    assert entry["old"] == {} and entry["new"] == {"password": audit.PASSWORD_CHANGED}
    text = all_text(db)
    assert NEW_PASSWORD not in text and db["users"].get(user_id)["password_hash"] not in text
    page = admin.get("/admin/audit").text
    assert _("audit.value", field=_("audit.field.password"),
             value=_("audit.password_changed")) in page


def test_the_devices_a_password_reset_stops_are_recorded(admin, client, db, world):
    response = client.post("/api/login", json={"username": "field1", "password": PASSWORD,
                                               "device_name": "field1的手机"})
    device_id = response.json()["device_id"]
    user_id = world.users["field1"]
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), "password": NEW_PASSWORD}
    created_id(post_form(admin, f"/admin/users/{user_id}", data))
    stopped = only(db, entity="devices", entity_id=device_id)
    assert (stopped["action"], stopped["actor_id"]) == ("revoke", world.users["admin"])
    assert stopped["new"]["revoke_mode"] == "stop"
    assert only(db, entity="users")["new"] == {"password": audit.PASSWORD_CHANGED}


def test_saving_an_unchanged_form_records_nothing(admin, db, world):
    user_id = world.users["field1"]
    created_id(post_form(admin, f"/admin/users/{user_id}",
                         edit_fields(admin, f"/admin/users/{user_id}")))
    assert entries(db) == []


@pytest.mark.parametrize(("resource", "form", "changes", "area"), [
    ("units", unit_form, {"contact_phone": "0531-9999999"}, "d1"),
    ("areas", area_form, {"name": "桃花街道"}, None),
    ("categories", category_form, {"time_limit_days": "20"}, None),
])
def test_units_areas_and_categories_are_recorded(admin, db, world, resource, form, changes,
                                                 area):
    record_id = created_id(create(admin, resource, form()))
    data = {**edit_fields(admin, f"/admin/{resource}/{record_id}"), **changes}
    created_id(post_form(admin, f"/admin/{resource}/{record_id}", data))
    created, updated = entries(db, entity=resource, entity_id=record_id)
    assert (created["action"], updated["action"]) == ("create", "update")
    [(name, value)] = changes.items()
    assert updated["old"] == {name: created["new"][name]}
    new = int(value) if name == "time_limit_days" else value
    assert updated["new"] == {name: "053*****9999" if name == "contact_phone" else new}
    expected_area = {"units": world.areas.get(area), "areas": record_id, "categories": None}
    assert created["area_id"] == expected_area[resource]
    assert "0531-8888888" not in all_text(db)  # a unit's contact phone is masked too


def test_an_import_records_each_row_and_the_file(admin, db, world):
    content = csv_bytes([["单位名称", "所属区域"], ["东城区应急局", "370102"],
                         ["西湖区城管局", "370103"]])
    assert upload(admin, "units", "单位.csv", content).status_code == 303
    rows = entries(db, entity="units")
    assert [(e["action"], e["label"]) for e in rows] == [("create", "东城区应急局"),
                                                          ("create", "西湖区城管局")]
    imported = only(db, entity="import")
    assert imported["new"] == {"kind": "units", "file": "单位.csv", "created": 2}
    assert imported["actor_id"] == world.users["admin"]


def test_a_refused_import_records_nothing(admin, db):
    content = csv_bytes([["单位名称", "所属区域"], ["东城区应急局", "370102"],
                         ["无区域单位", "999"]])
    assert upload(admin, "units", "单位.csv", content).status_code == 400
    assert entries(db) == []


def test_the_command_lines_import_is_recorded_without_an_actor(db, world, tmp_path):
    path = tmp_path / "units.csv"
    path.write_bytes(csv_bytes([["单位名称", "所属区域"], ["东城区应急局", "370102"]]))
    importer.import_file(db, importer.system_actor(db), "units", path)
    assert {e["actor_id"] for e in entries(db)} == {None}
    assert only(db, entity="import")["area_id"] == world.areas["city"]


def test_entering_a_years_calendar_is_recorded_with_old_and_new_days(admin, db, world):
    for rows in (SAMPLE_2027, SAMPLE_2027.replace("2027-02-13", "2027-02-14")):
        preview = post_form(admin, "/admin/calendar/preview", {"year": "2027", "rows": rows})
        assert post_form(admin, "/admin/calendar/apply",
                         apply_form(preview.text)).status_code == 303
    first, second = entries(db, entity="calendar", entity_id=2027)
    assert first["action"] == "enter" and first["old"] is None
    assert "2027-02-13" in first["new"]["workdays"] and len(first["new"]["holidays"]) == 6
    assert (first["new"]["source"], first["new"]["recomputed"]) == ("typed", 0)
    assert second["old"]["workdays"] == first["new"]["workdays"]
    assert "2027-02-14" in second["new"]["workdays"]
    assert first["area_id"] is None and first["actor_id"] == world.users["admin"]


def test_revoking_a_device_is_recorded_once(admin, client, db, world):
    response = client.post("/api/login", json={"username": "field1", "password": PASSWORD,
                                               "device_name": "field1的手机"})
    device_id = response.json()["device_id"]
    for mode in ("stop", "stop", "wipe"):
        assert post_form(admin, f"/admin/devices/{device_id}/revoke",
                         {"mode": mode}).status_code == 303
    stop, wipe = entries(db, entity="devices", entity_id=device_id)
    assert stop["action"] == "revoke" and stop["label"] == "field1的手机 (field1)"
    assert stop["old"] == {"revoked_at": None, "revoke_mode": None}
    assert stop["new"]["revoke_mode"] == "stop" and stop["new"]["revoked_at"]
    assert wipe["old"] == {"revoke_mode": "stop"} and wipe["new"] == {"revoke_mode": "wipe"}
    assert stop["area_id"] == world.areas["t1"]


def test_a_refused_change_records_nothing(admin, db, world):
    assert create(admin, "units", unit_form(area_code="999")).status_code == 400
    response = create(admin, "users", user_form(roles=["handler"], unit_name=""))
    assert response.status_code == 400
    assert entries(db) == []


def test_the_trail_is_append_only(admin, db):
    created_id(create(admin, "units", unit_form()))
    with pytest.raises(db.errors.Integrity), immediate(db):
        db.execute("UPDATE admin_audit SET actor_id = NULL")
    with pytest.raises(db.errors.Integrity), immediate(db):
        db.execute("DELETE FROM admin_audit")
    assert len(entries(db)) == 1


def test_record_refuses_an_unknown_kind(db):
    with pytest.raises(ValueError), immediate(db):
        audit.record(db, None, "delete", "users", 1)


# The page ---------------------------------------------------------------------------


def test_the_page_lists_changes_newest_first(admin, db):
    created_id(create(admin, "units", unit_form()))
    created_id(create(admin, "categories", category_form()))
    page = admin.get("/admin/audit")
    assert page.status_code == 200
    assert 'href="/admin/audit"' in page.text  # in the admin nav
    assert page.text.index("道路交通") < page.text.index("交通运输局")
    assert _("audit.value", field=_("unit.contact_phone"), value="053*****8888") in page.text
    assert "0531-8888888" not in page.text
    assert _("audit.actions.create") in page.text and "测试admin (admin)" in page.text


def test_the_page_filters_by_actor_and_record(admin, admin_d2, db, world):
    created_id(create(admin, "categories", category_form()))
    unit_id = created_id(create(admin_d2, "units", unit_form(name="西湖区城管局",
                                                              area_code="370103")))
    by_d2 = admin.get("/admin/audit", params={"actor": "admin_d2"}).text
    assert "西湖区城管局" in by_d2 and "道路交通" not in by_d2
    by_kind = admin.get("/admin/audit", params={"entity": "categories"}).text
    assert "道路交通" in by_kind and "西湖区城管局" not in by_kind
    one = admin.get("/admin/audit", params={"entity": "units", "entity_id": unit_id}).text
    assert "西湖区城管局" in one
    none = admin.get("/admin/audit", params={"entity": "units", "entity_id": unit_id + 1})
    assert none.status_code == 200 and _("common.empty") in none.text


def test_the_page_pages_through_with_its_filters(admin, db, world):
    with immediate(db):
        for n in range(audit.PAGE_SIZE + 3):
            audit.record(db, world.users["admin"], "update", "categories", world.category,
                         label=f"类别{n:03d}", old={"name": "a"}, new={"name": "b"})
    first = admin.get("/admin/audit", params={"entity": "categories"}).text
    assert "类别052" in first and "类别002" not in first
    assert 'href="/admin/audit?entity=categories&page=2"' in first
    second = admin.get("/admin/audit", params={"entity": "categories", "page": "2"}).text
    assert "类别002" in second and "类别052" not in second
    assert admin.get("/admin/audit", params={"page": "abc"}).status_code == 200


def test_a_district_admin_sees_changes_in_the_district_and_shared_records(
        admin, admin_d2, db, world):
    created_id(create(admin, "units", unit_form(name="东城区应急局", area_code="370102")))
    created_id(create(admin, "units", unit_form(name="西湖区城管局", area_code="370103")))
    created_id(create(admin, "categories", category_form()))
    page = admin_d2.get("/admin/audit").text
    assert "西湖区城管局" in page and "道路交通" in page
    assert "东城区应急局" not in page
    assert "东城区应急局" in admin.get("/admin/audit").text


def test_a_district_admin_still_sees_a_record_moved_out_of_the_district(
        admin, admin_d2, db, world):
    user_id = world.users["field2"]
    data = {**edit_fields(admin, f"/admin/users/{user_id}"), "area_code": "370102"}
    created_id(post_form(admin, f"/admin/users/{user_id}", data))
    page = admin_d2.get("/admin/audit").text
    assert _("audit.change", field=_("user.area"), old="370103001", new="370102") in page
    assert admin_d2.get(f"/admin/users/{user_id}").status_code == 404  # the record is gone


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"entity": "problems"}, "entity", _("audit.bad_entity")),
    ({"entity_id": "abc"}, "entity_id", _("audit.bad_entity_id")),
    ({"entity_id": "1" * 13}, "entity_id", _("audit.bad_entity_id")),
    ({"actor": "nobody"}, "actor", _("audit.unknown_actor", value="nobody")),
    ({"actor": "x" * 33}, "actor", _("validation.too_long", label=_("audit.actor"), max=32)),
])
def test_bad_filters_are_refused_beside_their_field(admin, db, params, field, message):
    created_id(create(admin, "units", unit_form()))
    response = admin.get("/admin/audit", params=params)
    assert response.status_code == 400
    assert f'<p class="error" id="e-{field}">{message}</p>' in response.text
    assert "交通运输局" not in response.text  # no entries under a filter that did not apply


@pytest.mark.parametrize("username", ["office", "leader", "field1", "handler1"])
def test_only_administrators_read_the_trail(login_as, username):
    assert login_as(username).get("/admin/audit").status_code == 403


def test_the_audit_scope_is_empty_for_non_administrators(db, world):
    from server import authz

    office = auth.load_user(db, world.users["office"])
    assert authz.audit_scope(office, "a") == ("1 = 0", [])
