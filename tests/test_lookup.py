"""Looking up, online, a problem outside the phone's working set (sync/lookup.py)."""

from __future__ import annotations

import pytest

from tests.conftest import api_login
from tests.sync_helpers import phone
from tests.test_working_set import now, report  # noqa: F401 (fixture)


def lookup(client, username: str, **params):
    token = api_login(client, username)
    return client.get("/api/problems/lookup", params=params,
                      headers={"Authorization": f"Bearer {token}"})


def test_a_problem_outside_the_set_is_found_online_by_its_ledger_number(client, db, world, now):  # noqa: F811
    old = report(db, world, now, area="v1", status="closed", found_days_ago=300,
                 closed_days_ago=200)
    db["problems"].update(old, {"ledger_no": "ZF-2025-000042", "resident_phone": "13812345678"})
    field1 = phone(client, "field1")
    field1.pull()
    assert old not in field1.records("problem")
    response = lookup(client, "field1", q="ZF-2025-000042")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    [found] = response.json()["problems"]
    assert found["id"] == old
    assert found["resident_phone"] == "138****5678"  # masked as the pull masks it
    assert [e["kind"] for e in found["events"]] == []


def test_a_lookup_by_words_stays_within_the_users_scope(client, db, world, now):  # noqa: F811
    mine = report(db, world, now, area="v1")
    theirs = report(db, world, now, area="v2")
    for problem_id in (mine, theirs):
        db["problems"].update(problem_id, {"description": "垃圾清运不及时"})
    assert {p["id"] for p in lookup(client, "field1", q="垃圾清运").json()["problems"]} == {mine}
    assert {p["id"] for p in lookup(client, "office", q="垃圾清运").json()["problems"]} == {
        mine, theirs}
    assert lookup(client, "handler2", q="垃圾清运").json() == {"problems": [], "more": False}


@pytest.mark.parametrize(("params", "code"), [
    ({}, "lookup_missing"),
    ({"q": "   "}, "lookup_missing"),
    ({"q": "漏" * 101}, "lookup_too_long"),
])
def test_a_bad_lookup_is_refused(client, world, params, code):
    response = lookup(client, "field1", **params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_a_lookup_without_words_finds_nothing(client, world):
    assert lookup(client, "field1", q="!!!").json() == {"problems": [], "more": False}


def test_the_administrator_may_not_look_problems_up(client, world):
    assert lookup(client, "admin", q="ZF").status_code == 403
