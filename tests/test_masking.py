from server import masking
from server.authz import User


def user(roles, uid=10, unit_id=None):
    return User(id=uid, username="u", display_name="u", roles=frozenset(roles), area_id=1,
                area_path="/1/", unit_id=unit_id,
                permissions=frozenset())


def test_mask_phone():
    assert masking.mask_phone("13812345678") == "138****5678"
    assert masking.mask_phone("0531-1234567") == "053*****4567"
    assert masking.mask_phone("12345") == "***45"
    assert masking.mask_phone(" 13812345678 ") == "138****5678"
    assert masking.mask_phone("") == ""
    assert masking.mask_phone(None) == ""


PROBLEM = {"resident_phone": "13812345678", "reporter_id": 7, "lead_unit_id": 3}


def test_who_sees_the_number():
    assert masking.resident_phone(user({"office"}), PROBLEM) == "13812345678"
    assert masking.resident_phone(user({"field"}, uid=7), PROBLEM) == "13812345678"
    assert masking.resident_phone(user({"handler"}, unit_id=3), PROBLEM) == "13812345678"
    assert masking.resident_phone(user({"handler"}, unit_id=4), PROBLEM) == "138****5678"
    assert masking.resident_phone(user({"field"}), PROBLEM) == "138****5678"
    assert masking.resident_phone(user({"leader"}), PROBLEM) == "138****5678"


def test_a_former_value_is_masked_by_the_same_rule():
    assert masking.resident_phone(user({"leader"}), PROBLEM, "13900001111") == "139****1111"
    assert masking.resident_phone(user({"office"}), PROBLEM, "13900001111") == "13900001111"
    assert masking.resident_phone(user({"leader"}), {"resident_phone": None}) == ""


EDITED = {"changes": {"resident_phone": {"old": "13812345678", "new": "13900001111"},
                      "description": {"old": "旧", "new": "新"}},
          "conflicts": ["resident_phone"]}


def test_event_data_masks_every_personal_value_by_the_same_rule():
    masked = masking.event_data(user({"leader"}), PROBLEM, EDITED)
    assert masked["changes"]["resident_phone"] == {"old": "138****5678", "new": "139****1111"}
    assert masked["changes"]["description"] == {"old": "旧", "new": "新"}
    assert masked["conflicts"] == ["resident_phone"]
    assert EDITED["changes"]["resident_phone"]["old"] == "13812345678"  # a copy, not changed


def test_event_data_is_unchanged_for_those_who_may_see_the_number():
    for viewer in (user({"office"}), user({"field"}, uid=7), user({"handler"}, unit_id=3)):
        assert masking.event_data(viewer, PROBLEM, EDITED) == EDITED


def test_event_data_without_personal_values_or_empty():
    restore = {"field": "resident_phone", "choice": "restore", "edit_id": "e1",
               "changes": {"resident_phone": {"old": "13900001111", "new": "13812345678"}}}
    leader = user({"leader"})
    assert masking.event_data(leader, PROBLEM, restore)["changes"]["resident_phone"] == {
        "old": "139****1111", "new": "138****5678"}
    assert masking.event_data(leader, PROBLEM, restore)["field"] == "resident_phone"
    assert masking.event_data(leader, PROBLEM, {"note": "x"}) == {"note": "x"}
    assert masking.event_data(leader, PROBLEM, {}) == {}
    assert masking.event_data(leader, PROBLEM, None) is None


def test_events_masks_each_events_data():
    events = [{"id": "a", "kind": "reported", "data": {}},
              {"id": "b", "kind": "edited", "data": EDITED}]
    shown = masking.events(user({"leader"}), PROBLEM, events)
    assert shown[1]["data"]["changes"]["resident_phone"]["new"] == "139****1111"
    assert masking.events(user({"office"}), PROBLEM, events) is events


def test_a_name_keeps_its_first_character_only():
    from server.masking import mask_name

    assert [mask_name(name) for name in ("张三", "欧阳娜娜", "李", "  王五 ", "", None, "Amy")] == [
        "张*", "欧***", "*", "王*", "", "", "A**"]
