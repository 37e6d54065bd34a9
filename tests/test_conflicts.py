"""Conflicting edits: both values on the detail page, and the office's restore/keep action."""

from __future__ import annotations

import json

import pytest

from server.ledger import conflicts
from tests.conftest import post_form
from tests.sync_helpers import problem_args
from tests.test_sync_mutations import RawPhone, events, row, snapshot

FIRST, SECOND = "第一部手机：3号楼东侧墙面渗水", "第二部手机：5号楼楼顶漏水严重"


@pytest.fixture
def conflicted(client, db):
    """field1 reported a problem; their two phones then edited its description from
    the same version: the second edit won and the problem is flagged."""
    phone_a, phone_b = RawPhone(client, "field1"), RawPhone(client, "field1")
    args = problem_args(resident_phone="13812345678")
    phone_a.apply("problem.report", args)
    version = phone_a.pull_version("problem", args["id"])
    assert phone_b.pull_version("problem", args["id"]) == version
    for sender, text in ((phone_a, FIRST), (phone_b, SECOND)):
        sender.apply("problem.edit", {"problem_id": args["id"], "base_version": version,
                                      "changes": {"description": text}})
    problem = row(db, "problems", args["id"])
    assert (problem["description"], problem["conflict"]) == (SECOND, 1)
    return args["id"], phone_b


def resolve(client, problem_id, **data):
    return post_form(client, f"/problems/{problem_id}/actions/resolve_conflict", data)


def test_the_detail_page_shows_both_values_of_a_conflicting_edit(conflicted, login_as):
    problem_id, _phone = conflicted
    page = login_as("office").get(f"/problems/{problem_id}")
    assert page.status_code == 200
    assert 'class="conflict-current">' + SECOND in page.text
    assert 'class="conflict-other">' + FIRST in page.text
    assert "测试field1" in page.text  # who wrote each value
    assert 'value="restore"' in page.text and 'value="keep"' in page.text


def test_restoring_sets_the_other_value_through_the_edit_path(conflicted, login_as, db):
    problem_id, phone_b = conflicted
    before = json.loads(row(db, "problems", problem_id)["field_versions"])["description"]
    office = login_as("office")
    response = resolve(office, problem_id, field="description", choice="restore")
    assert response.status_code == 303, response.text
    problem = row(db, "problems", problem_id)
    assert (problem["description"], problem["conflict"]) == (FIRST, 0)
    # The restore is a write of the field like an edit: its version moved and the
    # phones pull the restored text.
    assert json.loads(problem["field_versions"])["description"] > before
    assert phone_b.pull_version("problem", problem_id) > before
    event = events(db, problem_id)[-1]
    data = json.loads(event["data"])
    assert event["kind"] == "resolve_conflict"
    assert (data["field"], data["choice"]) == ("description", "restore")
    assert data["changes"]["description"] == {"old": SECOND, "new": FIRST}
    page = office.get(f"/problems/{problem_id}")
    assert "conflict-other" not in page.text
    assert "已恢复被覆盖的问题描述" in page.text  # the timeline says what was done
    assert "有冲突修改" not in page.text.split("<h1>")[1].split("</h1>")[0]


def test_keeping_the_current_value_clears_the_conflict(conflicted, login_as, db):
    problem_id, _phone = conflicted
    response = resolve(login_as("office"), problem_id, field="description", choice="keep")
    assert response.status_code == 303
    problem = row(db, "problems", problem_id)
    assert (problem["description"], problem["conflict"]) == (SECOND, 0)
    assert json.loads(events(db, problem_id)[-1]["data"])["choice"] == "keep"


def test_one_of_two_conflicts_settled_leaves_the_flag(client, login_as, db):
    phone_a, phone_b = RawPhone(client, "field1"), RawPhone(client, "field1")
    args = problem_args(place="3号楼")
    phone_a.apply("problem.report", args)
    version = phone_a.pull_version("problem", args["id"])
    for sender, text in ((phone_a, "甲"), (phone_b, "乙")):
        sender.apply("problem.edit", {"problem_id": args["id"], "base_version": version,
                                      "changes": {"description": text + "描述", "place": text}})
    office = login_as("office")
    assert resolve(office, args["id"], field="place", choice="restore").status_code == 303
    problem = row(db, "problems", args["id"])
    assert (problem["place"], problem["description"], problem["conflict"]) == ("甲", "乙描述", 1)
    assert resolve(office, args["id"], field="description", choice="keep").status_code == 303
    assert row(db, "problems", args["id"])["conflict"] == 0


@pytest.mark.parametrize("data, status, text", [
    ({"field": "resident_name", "choice": "restore"}, 400, "没有待处理的冲突修改"),
    ({"field": "no_such_field", "choice": "restore"}, 400, "没有待处理的冲突修改"),
    ({"field": "description", "choice": "both"}, 400, "取值无效"),
    ({"choice": "restore"}, 400, "冲突的内容"),
])
def test_bad_input_is_refused_and_nothing_is_saved(conflicted, login_as, db, data, status, text):
    problem_id, _phone = conflicted
    before = snapshot(db)
    response = resolve(login_as("office"), problem_id, **data)
    assert response.status_code == status
    assert text in response.text
    assert snapshot(db) == before


def test_a_problem_without_conflict_refuses_the_action(login_as, world, db):
    before = snapshot(db)
    response = resolve(login_as("office"), world.problems["p1"], field="description",
                       choice="restore")
    assert response.status_code == 409
    assert "没有待处理的冲突修改" in response.text
    assert snapshot(db) == before


@pytest.mark.parametrize("username", ["field1", "leader", "handler1"])
def test_only_the_office_resolves_conflicts(conflicted, login_as, db, username):
    problem_id, _phone = conflicted
    before = snapshot(db)
    client = login_as(username)
    page = client.get(f"/problems/{problem_id}")
    if page.status_code == 200:  # those who see it see both values but no buttons
        assert "conflict-other" in page.text and 'value="restore"' not in page.text
    response = resolve(client, problem_id, field="description", choice="restore")
    assert response.status_code in (403, 404)
    assert snapshot(db) == before


def test_a_conflicting_phone_number_is_masked_for_those_who_may_not_see_it(client, login_as):
    phone_a, phone_b = RawPhone(client, "field1"), RawPhone(client, "field1")
    args = problem_args(resident_phone="13800000000")
    phone_a.apply("problem.report", args)
    version = phone_a.pull_version("problem", args["id"])
    for sender, number in ((phone_a, "13811112222"), (phone_b, "13933334444")):
        sender.apply("problem.edit", {"problem_id": args["id"], "base_version": version,
                                      "changes": {"resident_phone": number}})
    office = login_as("office").get(f"/problems/{args['id']}").text
    assert "13811112222" in office and "13933334444" in office
    leader = login_as("leader").get(f"/problems/{args['id']}").text
    assert "13811112222" not in leader and "13933334444" not in leader
    assert "138****2222" in leader and "139****4444" in leader


def test_open_conflicts_follow_the_events():
    def event(kind, data, at, actor=1):
        return {"id": at, "kind": kind, "data": data, "at": at, "actor_id": actor,
                "actor_name": f"u{actor}"}

    history = [
        event("reported", {}, "t0"),
        event("edited", {"changes": {"place": {"old": "a", "new": "b"}}, "conflicts": []}, "t1"),
        event("edited", {"changes": {"place": {"old": "b", "new": "c"}},
                         "conflicts": ["place"]}, "t2", actor=2),
    ]
    found = conflicts.open_conflicts(history)
    assert found["place"]["other"] == "b" and found["place"]["other_at"] == "t1"
    assert found["place"]["current"] == "c" and found["place"]["current_by"] == "u2"
    settled = [*history, event("resolve_conflict", {"field": "place", "choice": "keep"}, "t3")]
    assert conflicts.open_conflicts(settled) == {}


def test_a_restored_phone_number_stays_masked_in_the_history(client, login_as):
    """The office restores an overwritten number: the resolve_conflict event carries both
    numbers; those who may not see them get them masked on the page and in pull."""
    from tests.test_sync_pull import Puller

    phone_a, phone_b = RawPhone(client, "field1"), RawPhone(client, "field1")
    args = problem_args(resident_phone="13800000000")
    phone_a.apply("problem.report", args)
    version = phone_a.pull_version("problem", args["id"])
    for sender, number in ((phone_a, "13811112222"), (phone_b, "13933334444")):
        sender.apply("problem.edit", {"problem_id": args["id"], "base_version": version,
                                      "changes": {"resident_phone": number}})
    office = login_as("office")
    assert resolve(office, args["id"], field="resident_phone",
                   choice="restore").status_code == 303
    assert "13933334444" in office.get(f"/problems/{args['id']}").text
    leader_page = login_as("leader").get(f"/problems/{args['id']}").text
    for number in ("13800000000", "13811112222", "13933334444"):
        assert number not in leader_page
    assert "139****4444" in leader_page and "138****2222" in leader_page
    [problem] = [change["data"] for change in Puller(client, "leader").changes()
                 if change["entity"] == "problem" and change["id"] == args["id"]]
    [restored] = [e for e in problem["events"] if e["kind"] == "resolve_conflict"]
    assert restored["data"]["changes"]["resident_phone"] == {"old": "139****4444",
                                                            "new": "138****2222"}
