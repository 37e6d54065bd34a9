"""Joint handling (server/ledger/joint.py): helper units' parts, from dispatch to the lead's reply,
every illegal transition for every role, what each one sees, the queues and the pull."""

from __future__ import annotations

import csv
import io
import json

import pytest

from server import auth, masking
from server.db import immediate
from server.errors import NotFound
from server.ledger import clock, joint, problems, work, workflow
from server.ledger.workflow import TransitionError
from server.validation import ValidationError
from sync.pull import read_pull
from tests.conftest import PASSWORD, post_form

OPINION = "经排查，供水管线无渗漏，已配合更换阀门"


@pytest.fixture
def u3(db, world) -> int:
    """A third unit (交通局) with its handler, handler3: unrelated until it is made a helper."""
    with immediate(db):
        unit = db["units"].insert({"name": "交通局", "area_id": world.areas["city"]}).last_pk
        world.users["handler3"] = db["users"].insert({
            "username": "handler3", "display_name": "测试handler3", "phone": "",
            "roles": "handler", "area_id": world.areas["city"], "unit_id": unit,
            "password_hash": auth.hash_password(PASSWORD), "active": 1,
            "created_at": "2026-01-01T00:00:00+00:00",
            "updated_at": "2026-01-01T00:00:00+00:00"}).last_pk
    world.units["u3"] = unit
    return unit


@pytest.fixture
def joint_problem(act, world):
    """p1 dispatched to 住建局 (u1, handler1) as lead, 水务集团 (u2, handler2) as helper."""
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"],
        helper_unit_ids=[str(world.units["u2"])])
    return world.problems["p1"]


def parts(db, problem_id) -> list[dict]:
    return list(db.query("SELECT * FROM joint_parts WHERE problem_id = ? ORDER BY id",
                         [problem_id]))


def user(db, world, name):
    return auth.load_user(db, world.users[name])


def event(db, problem_id, kind) -> dict:
    row = list(db.query("SELECT * FROM problem_events WHERE problem_id = ? AND kind = ?"
                        " ORDER BY at DESC, rowid DESC LIMIT 1", [problem_id, kind]))[0]
    return row | {"data": json.loads(row["data"])}


def refused(act, username, action, status=409, **data) -> str:
    with pytest.raises(TransitionError) as caught:
        act(username, "p1", action, **data)
    assert caught.value.status == status, caught.value.message
    return caught.value.message


# Dispatch and re-dispatch ---------------------------------------------------------------------


def test_dispatch_gives_each_helper_a_part(db, world, joint_problem):
    [part] = parts(db, joint_problem)
    assert (part["unit_id"], part["state"], part["legacy"]) == (world.units["u2"], "dispatched", 0)
    assert part["dispatched_by"] == world.users["office"]
    assert event(db, joint_problem, "dispatch")["data"]["helpers_added"] == [world.units["u2"]]


def test_a_redispatch_removes_and_adds_helpers_keeping_the_history(act, db, world, u3,
                                                                  joint_problem):
    act("handler2", "p1", "sign_part")
    act("handler1", "p1", "return", reason_code="not_our_duty", note="需重新确定主办单位")
    act("office", "p1", "accept_return")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"], helper_unit_ids=[str(u3)])
    rows = parts(db, joint_problem)
    assert [(r["unit_id"], r["state"]) for r in rows] == [
        (world.units["u2"], "removed"), (u3, "dispatched")]
    assert rows[0]["signed_at"] and rows[0]["removed_by"] == world.users["office"]
    data = event(db, joint_problem, "dispatch")["data"]
    assert (data["helpers_added"], data["helpers_removed"]) == ([u3], [world.units["u2"]])
    # 水务集团 added again: a new part, the removed one stays as it was.
    act("handler1", "p1", "return", reason_code="not_our_duty", note="仍需水务集团配合")
    act("office", "p1", "accept_return")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"],
        helper_unit_ids=[str(u3), str(world.units["u2"])])
    assert [(r["unit_id"], r["state"]) for r in parts(db, joint_problem)] == [
        (world.units["u2"], "removed"), (u3, "dispatched"), (world.units["u2"], "dispatched")]


def test_a_kept_helper_keeps_its_part_as_it_is(act, db, world, joint_problem):
    act("handler2", "p1", "sign_part")
    act("handler2", "p1", "answer_part", note=OPINION)
    act("handler1", "p1", "return", reason_code="not_our_duty", note="退回")
    act("office", "p1", "accept_return")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"],
        helper_unit_ids=[str(world.units["u2"])])
    [part] = parts(db, joint_problem)
    assert (part["state"], part["opinion"]) == ("answered", OPINION)


def test_the_lead_unit_is_never_its_own_helper(act, db, world):
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"],
        helper_unit_ids=[str(world.units["u1"])])
    assert parts(db, world.problems["p1"]) == []


# The helper's path and the lead's reply -------------------------------------------------------


def test_the_helper_signs_posts_progress_and_answers(act, db, world, joint_problem):
    act("handler2", "p1", "sign_part", note="已安排人员")
    act("handler2", "p1", "progress_part", note="已到现场排查")
    act("handler2", "p1", "answer_part", note=OPINION)
    [part] = parts(db, joint_problem)
    assert part["state"] == "answered" and part["opinion"] == OPINION
    assert part["signed_by"] == part["answered_by"] == world.users["handler2"]
    answer = event(db, joint_problem, "answer_part")
    assert part["answer_event_id"] == answer["id"]
    for kind in ("sign_part", "progress_part", "answer_part"):
        assert event(db, joint_problem, kind)["data"]["unit_id"] == world.units["u2"]
        assert event(db, joint_problem, kind)["actor_id"] == world.users["handler2"]
    # Parts change no status: the lead is still where it was.
    assert db["problems"].get(joint_problem)["status"] == "dispatched"


def test_the_lead_replies_only_once_every_helper_has_answered(act, db, world, u3):
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"],
        helper_unit_ids=[str(world.units["u2"]), str(u3)])
    act("handler1", "p1", "sign")
    message = refused(act, "handler1", "reply", outcome="solved", note="已修复")
    assert "交通局" in message and "水务集团" in message
    act("handler2", "p1", "sign_part")
    act("handler2", "p1", "answer_part", note=OPINION)
    message = refused(act, "handler1", "reply", outcome="solved", note="已修复")
    assert "交通局" in message and "水务集团" not in message
    act("handler3", "p1", "sign_part")
    act("handler3", "p1", "answer_part", note="道路已恢复通行")
    assert act("handler1", "p1", "reply", outcome="solved", note="已修复")["status"] == "replied"


def test_the_office_lets_the_lead_reply_and_a_redispatch_asks_again(act, db, world, u3,
                                                                    joint_problem):
    act("handler1", "p1", "sign")
    with pytest.raises(ValidationError):
        act("office", "p1", "let_lead_reply")  # the note (why) is required
    act("office", "p1", "let_lead_reply", note="协办单位逾期未答复，主办先行答复")
    assert event(db, joint_problem, "let_lead_reply")["data"]["awaited_unit_ids"] == [
        world.units["u2"]]
    refused(act, "office", "let_lead_reply", note="再次")  # already let go ahead
    act("handler1", "p1", "return", reason_code="not_our_duty", note="需增加协办单位")
    act("office", "p1", "accept_return")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"],
        helper_unit_ids=[str(world.units["u2"]), str(u3)])
    act("handler1", "p1", "sign")
    assert "交通局" in refused(act, "handler1", "reply", outcome="solved", note="已修复")
    act("office", "p1", "let_lead_reply", note="情况紧急")
    assert act("handler1", "p1", "reply", outcome="solved", note="已修复")["status"] == "replied"
    # A helper may still answer after the lead replied.
    act("handler2", "p1", "sign_part")
    act("handler2", "p1", "answer_part", note=OPINION)


def test_nothing_to_let_go_when_every_helper_answered(act, joint_problem):
    act("handler2", "p1", "sign_part")
    act("handler2", "p1", "answer_part", note=OPINION)
    assert "没有待答复" in refused(act, "office", "let_lead_reply", note="先行答复")


# Illegal transitions, role by role ------------------------------------------------------------


@pytest.mark.parametrize("username", ["office", "office_d1", "leader", "field1"])
@pytest.mark.parametrize("action", joint.PART_ACTIONS)
def test_only_handlers_take_part_actions(act, joint_problem, username, action):
    refused(act, username, action, status=403, note="文字")


@pytest.mark.parametrize("username", ["handler1", "handler2", "leader", "field1"])
def test_only_the_office_lets_the_lead_reply(act, joint_problem, username):
    refused(act, username, "let_lead_reply", status=403, note="文字")


@pytest.mark.parametrize("action", joint.PART_ACTIONS)
def test_the_lead_unit_cannot_act_for_a_helper(act, joint_problem, action):
    assert "不是此问题的协办单位" in refused(act, "handler1", action, status=403, note="文字")


@pytest.mark.parametrize("action, data", [
    ("sign", {}), ("return", {"note": "退回"}), ("progress", {"note": "进展"}),
    ("request_extension", {"extra_days": "3", "note": "延期"}),
])
def test_a_helper_cannot_take_the_lead_units_actions(act, joint_problem, action, data):
    if action != "sign":
        act("handler1", "p1", "sign")
    refused(act, "handler2", action, status=403, **data)


def test_a_helper_cannot_reply_for_the_lead(act, joint_problem):
    act("handler1", "p1", "sign")
    refused(act, "handler2", "reply", status=403, outcome="solved", note="代为答复")


@pytest.mark.parametrize("action", ["sign_part", "progress_part", "answer_part",
                                    "let_lead_reply"])
def test_a_handler_of_an_unrelated_unit_does_not_find_the_problem(act, u3, joint_problem,
                                                                  action):
    with pytest.raises(NotFound):
        act("handler3", "p1", action, note="文字")


def test_parts_go_in_order_and_once(act, joint_problem):
    assert "请先签收" in refused(act, "handler2", "answer_part", note=OPINION)
    assert "请先签收" in refused(act, "handler2", "progress_part", note="进展")
    act("handler2", "p1", "sign_part")
    assert "已签收" in refused(act, "handler2", "sign_part")
    with pytest.raises(ValidationError):
        act("handler2", "p1", "answer_part", note="   ")  # the opinion is required
    act("handler2", "p1", "answer_part", note=OPINION)
    for action in joint.PART_ACTIONS:
        assert "已提交协办意见" in refused(act, "handler2", action, note="再次")


def test_no_part_action_on_a_closed_problem(act, db, joint_problem):
    with immediate(db):
        db["problems"].update(joint_problem, {"status": "closed"})
    for action in joint.PART_ACTIONS:
        assert "已办结" in refused(act, "handler2", action, note="文字")
    refused(act, "office", "let_lead_reply", note="文字")


def test_a_removed_helper_loses_the_problem(act, db, world, joint_problem):
    act("handler1", "p1", "return", reason_code="not_our_duty", note="退回")
    act("office", "p1", "accept_return")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"])
    with pytest.raises(NotFound):
        act("handler2", "p1", "sign_part")
    with pytest.raises(NotFound):
        problems.get_problem(db, user(db, world, "handler2"), joint_problem)


def test_buttons_follow_the_rules(db, world, act, joint_problem):
    def buttons(name):
        problem = problems.get_problem_row(db, user(db, world, name), joint_problem)
        return set(workflow.allowed_actions(db, problem, user(db, world, name)))

    assert buttons("handler2") & {*joint.ACTIONS, "sign", "reply"} == {"sign_part"}
    assert {"sign_part", "answer_part"}.isdisjoint(buttons("handler1"))
    assert "let_lead_reply" in buttons("office")
    act("handler2", "p1", "sign_part")
    assert buttons("handler2") & set(joint.ACTIONS) == {"progress_part", "answer_part"}


# What each one sees ---------------------------------------------------------------------------


def test_the_helper_unit_reads_the_problem_with_its_resident_phone_masked(db, world,
                                                                        joint_problem):
    with immediate(db):
        db["problems"].update(joint_problem, {"resident_phone": "13812345678"})
    helper = user(db, world, "handler2")
    seen = problems.get_problem(db, helper, joint_problem)
    assert seen["id"] == joint_problem
    assert masking.resident_phone(helper, seen) == "138****5678"  # helpers do not call


def test_the_helper_units_queues(act, db, world, joint_problem):
    def queue(key):
        helper = user(db, world, "handler2")
        [found] = work.work_queues(db, helper, clock.local_today(), only=key)
        return [row["id"] for row in found["rows"]]

    assert "joint_to_sign" in work.work_queue_keys(user(db, world, "handler2"))
    assert queue("joint_to_sign") == [joint_problem] and queue("joint_to_answer") == []
    act("handler2", "p1", "sign_part")
    assert queue("joint_to_sign") == [] and queue("joint_to_answer") == [joint_problem]
    act("handler2", "p1", "answer_part", note=OPINION)
    assert queue("joint_to_answer") == []
    # The lead unit's own queues are not the helper's.
    assert joint_problem not in [
        row["id"] for q in work.work_queues(db, user(db, world, "handler2"),
                                               clock.local_today())
        if q["key"] in ("to_sign", "in_hand") for row in q["rows"]]


def test_the_work_page_lists_the_parts(login_as, joint_problem):
    page = login_as("handler2").get("/work")
    assert page.status_code == 200
    assert "协办待签收" in page.text and f"/problems/{joint_problem}" in page.text


@pytest.mark.parametrize("username", ["office", "leader", "handler1", "handler2"])
def test_the_detail_page_shows_the_parts(act, login_as, joint_problem, username):
    act("handler2", "p1", "sign_part")
    act("handler2", "p1", "answer_part", note=OPINION)
    page = login_as(username).get(f"/problems/{joint_problem}")
    assert page.status_code == 200
    assert 'id="joint-parts"' in page.text and OPINION in page.text and "已答复" in page.text


def test_the_reply_form_names_the_helpers_awaited(act, login_as, joint_problem):
    act("handler1", "p1", "sign")
    page = login_as("handler1").get(f"/problems/{joint_problem}")
    assert 'id="reply-awaited"' in page.text and "水务集团" in page.text
    response = post_form(login_as("handler1"), f"/problems/{joint_problem}/actions/reply",
                         {"outcome": "solved", "note": "已修复"})
    assert response.status_code == 409 and "水务集团" in response.text


def test_the_pages_actions_by_the_helper(login_as, db, joint_problem):
    helper = login_as("handler2")
    url = f"/problems/{joint_problem}/actions"
    assert post_form(helper, f"{url}/sign_part").status_code == 303
    response = post_form(helper, f"{url}/answer_part", {"note": ""})
    assert response.status_code == 400 and "协办意见" in response.text
    assert post_form(helper, f"{url}/answer_part", {"note": OPINION}).status_code == 303
    assert post_form(helper, f"{url}/answer_part", {"note": OPINION}).status_code == 409
    assert post_form(helper, f"{url}/sign", {}).status_code == 403


def test_a_helpers_phone_pulls_the_problem_and_a_tombstone_once_removed(act, db, world,
                                                                      joint_problem):
    helper = user(db, world, "handler2")

    def pulled():
        body = read_pull(db, helper, "client", 0, limit=10_000)
        return {(c["id"], bool(c.get("deleted"))) for c in body["changes"]
                if c["entity"] == "problem"}

    act("handler2", "p1", "sign_part")
    assert (joint_problem, False) in pulled()
    act("handler1", "p1", "return", reason_code="not_our_duty", note="退回")
    act("office", "p1", "accept_return")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"])
    assert (joint_problem, True) in pulled()



def test_the_export_names_the_helpers_with_their_parts_state(act, login_as, db, world, u3):
    def cell() -> str:
        response = login_as("office").get("/problems/export.csv?q=幸福社区")
        assert response.status_code == 200
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        header = next(row for row in rows if "协办单位" in row)
        [line] = rows[rows.index(header) + 1:]
        return line[header.index("协办单位")]

    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"],
        helper_unit_ids=[str(world.units["u2"]), str(u3)])
    act("handler2", "p1", "sign_part")
    act("handler2", "p1", "answer_part", note=OPINION)
    assert cell() == "水务集团（已答复）、交通局（待签收）"
    act("handler1", "p1", "return", reason_code="not_our_duty", note="交通局不需协办")
    act("office", "p1", "accept_return")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"],
        helper_unit_ids=[str(world.units["u2"])])
    assert cell() == "水务集团（已答复）"  # a removed part is not named
