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
