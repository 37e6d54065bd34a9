"""Extensions, returns (退单) and 重办 with rules (server/ledger/rules.py): every path, and
every action refused in the wrong state and for every role that may not take it."""

from __future__ import annotations

import json

import pytest

from server import auth
from server.db import immediate
from server.errors import NotFound
from server.ledger import deadlines, rules, workflow
from server.ledger.states import TransitionError
from server.timeutil import local_date
from server.validation import ValidationError
from server.workdays import WorkCalendar
from tests.conftest import ROLE_USERS, post_form
from tests.ledger_helpers import add_problem

pytest_plugins = ["tests.clock"]

# A reason from each list (server/ledger/reasons.py) the actions take.
ASK, NOT_OURS, POLICY = ({"reason_code": "funding"}, {"reason_code": "not_our_duty"},
                         {"reason_code": "policy"})


def handling(act, world, problem="p1", unit="u1", handler="handler1"):
    act("office", problem, "accept")
    act("office", problem, "dispatch", lead_unit_id=world.units[unit], time_limit_days="10")
    return act(handler, problem, "sign", contacted="1")


def to_callback(act, db, world, problem="p1"):
    handling(act, world, problem)
    db["problems"].update(world.problems[problem], {"resident_phone": "13812345678"})
    act("handler1", problem, "reply", outcome="solved", note="已修")
    return act("office", problem, "verify")


def events(db, problem_id):
    return [(row["kind"], row["at"], json.loads(row["data"])) for row in db.query(
        "SELECT kind, at, data FROM problem_events WHERE problem_id = ? ORDER BY at, rowid",
        [problem_id])]


def replayed(db, problem_id):
    return deadlines.deadline_from_events(WorkCalendar.load(db), events(db, problem_id))


def set_setting(db, key, value):
    with immediate(db):
        db["settings"].insert({"key": key, "value": str(value)}, replace=True)


# Extensions ------------------------------------------------------------------------------


def test_a_short_first_extension_is_the_office_s_alone(act, db, world):
    before = handling(act, world)
    act("handler1", "p1", "request_extension", **ASK, extra_days="3", note="需协调")
    approved = act("office", "p1", "approve_extension")
    assert approved["deadline"] > before["deadline"]
    assert approved["original_deadline"] == before["deadline"]
    assert approved["extension_count"] == 1 and approved["extension_request"] is None
    replay = replayed(db, world.problems["p1"])
    assert replay.deadline.isoformat() == approved["deadline"]
    assert replay.original.isoformat() == before["deadline"]


def test_no_more_extensions_than_the_setting_allows(act, db, world):
    handling(act, world)
    act("handler1", "p1", "request_extension", **ASK, extra_days="3", note="需协调")
    act("office", "p1", "approve_extension")
    with pytest.raises(TransitionError) as refused:
        act("handler1", "p1", "request_extension", **ASK, extra_days="2", note="再延")
    assert "最多延期 1 次" in refused.value.message
    assert "request_extension" not in workflow.allowed_actions(
        db, db["problems"].get(world.problems["p1"]),
        auth.load_user(db, world.users["handler1"]))


def test_a_second_extension_needs_a_leader_after_the_office(act, db, world):
    set_setting(db, "extension_max_count", 2)
    handling(act, world)
    act("handler1", "p1", "request_extension", **ASK, extra_days="3", note="需协调")
    first = act("office", "p1", "approve_extension")
    act("handler1", "p1", "request_extension", **ASK, extra_days="2", note="再延")
    waiting = act("office", "p1", "approve_extension")
    # The office agreed: the deadline does not move until a leader does.
    assert waiting["deadline"] == first["deadline"] and rules.awaiting_leader(waiting)
    assert waiting["extension_count"] == 1
    assert replayed(db, world.problems["p1"]).deadline.isoformat() == first["deadline"]
    for name in ("approve_extension", "refuse_extension"):
        with pytest.raises(TransitionError) as refused:
            act("office", "p1", name, note="再审")
        assert "等待领导审批" in refused.value.message
    with pytest.raises(TransitionError) as refused:
        act("handler1", "p1", "approve_extension_leader")
    assert refused.value.status == 403
    approved = act("leader", "p1", "approve_extension_leader", note="同意")
    assert approved["deadline"] > first["deadline"] and approved["extension_count"] == 2
    assert approved["extension_request"] is None
    assert replayed(db, world.problems["p1"]).deadline.isoformat() == approved["deadline"]
    with pytest.raises(TransitionError):
        act("handler1", "p1", "request_extension", **ASK, extra_days="2", note="第三次")


def test_a_long_extension_needs_a_leader_who_may_refuse_it(act, db, world):
    before = handling(act, world)
    act("handler1", "p1", "request_extension", **ASK, extra_days="11", note="工程量大")
    act("office", "p1", "approve_extension")
    with pytest.raises(ValidationError):
        act("leader", "p1", "refuse_extension_leader")  # a refusal says why
    refused = act("leader", "p1", "refuse_extension_leader", note="时限内完成")
    assert refused["deadline"] == before["deadline"] and refused["extension_request"] is None
    assert refused["extension_count"] == 0
    # Not used up: the unit may ask again, for fewer days.
    act("handler1", "p1", "request_extension", **ASK, extra_days="10", note="压缩工期")
    assert act("office", "p1", "approve_extension")["extension_count"] == 1


def test_the_leader_threshold_is_a_setting(act, db, world):
    set_setting(db, "extension_leader_days", 20)
    handling(act, world)
    act("handler1", "p1", "request_extension", **ASK, extra_days="15", note="工程量大")
    assert act("office", "p1", "approve_extension")["extension_count"] == 1


def test_a_leader_has_nothing_to_decide_without_an_office_approval(act, db, world):
    handling(act, world)
    for name, data in (("approve_extension_leader", {}),
                       ("refuse_extension_leader", {"note": "不同意"})):
        with pytest.raises(TransitionError) as refused:
            act("leader", "p1", name, **data)
        assert "没有等待领导审批" in refused.value.message
    act("handler1", "p1", "request_extension", **ASK, extra_days="3", note="需协调")
    with pytest.raises(TransitionError):
        act("leader", "p1", "approve_extension_leader")


# Returns (退单) ------------------------------------------------------------------------------


def test_a_return_waits_for_the_office_s_decision(act, db, world):
    handling(act, world)
    act("handler1", "p1", "return", **NOT_OURS, note="不属于住建局职责")
    with pytest.raises(TransitionError) as refused:
        act("office", "p1", "dispatch", lead_unit_id=world.units["u2"])
    assert refused.value.status == 409
    with pytest.raises(ValidationError):
        act("office", "p1", "refuse_return")  # the unit is told why


def test_a_justified_return_restarts_the_clocks_with_the_new_unit(act, db, world, clock):
    clock(2026, 9, 1)  # a Tuesday
    first = handling(act, world)
    act("handler1", "p1", "return", **NOT_OURS, note="不属于住建局职责")
    clock(2026, 9, 8)
    accepted = act("office", "p1", "accept_return", note="确属供水公司职责")
    assert accepted["status"] == "accepted" and accepted["lead_unit_id"] is None
    assert accepted["unit_dispatched_at"] is None
    again = act("office", "p1", "dispatch", lead_unit_id=world.units["u2"],
                time_limit_days="5")
    assert again["dispatched_at"] == first["dispatched_at"]  # the first dispatch stays
    assert again["unit_dispatched_at"] > first["dispatched_at"]
    # Five working days from Tuesday 8 September: Tuesday 15 September, the original too.
    assert again["deadline"] == again["original_deadline"] == "2026-09-15"
    replay = replayed(db, world.problems["p1"])
    assert (replay.deadline.isoformat(), replay.original.isoformat()) == (
        "2026-09-15", "2026-09-15")
    # The new unit's response clock runs from its own dispatch: a response, a week after
    # the first dispatch.
    signed = act("handler2", "p1", "sign", contacted="1")
    assert signed["responded_in_time"] == 1


def test_a_relapse_hands_the_problem_to_its_unit_on_a_new_response_clock(act, db, world,
                                                                         clock):
    clock(2026, 9, 1)
    to_callback(act, db, world)
    act("office", "p1", "callback", method="phone", result="reached", solved="1",
        satisfaction="satisfied")
    clock(2026, 10, 12)
    reopened = act("field1", "p1", "return_visit", held="0", note="又漏水了")
    assert local_date(reopened["unit_dispatched_at"]).isoformat() == "2026-10-12"
    assert act("handler1", "p1", "sign", contacted="1")["responded_in_time"] == 1


def test_a_justified_return_may_go_back_to_the_same_unit_on_new_clocks(act, db, world,
                                                                       clock):
    """A return about something else than the duty (its helper units, say): the office
    accepts it and dispatches to the same unit, with other helpers and new clocks."""
    clock(2026, 9, 1)
    first = handling(act, world)
    act("handler1", "p1", "return", **NOT_OURS, note="需增加协办单位")
    clock(2026, 9, 8)
    act("office", "p1", "accept_return")
    again = act("office", "p1", "dispatch", lead_unit_id=world.units["u1"],
                helper_unit_ids=[str(world.units["u2"])], time_limit_days="3")
    # Three working days from Tuesday 8 September; the first deadline was 15 September.
    assert again["deadline"] == again["original_deadline"] == "2026-09-11"
    assert first["deadline"] == "2026-09-15"


def test_office_decisions_on_returns_only_when_returned(act, db, world):
    handling(act, world)
    for name, data in (("accept_return", {}), ("refuse_return", {"note": "属于"})):
        with pytest.raises(TransitionError) as refused:
            act("office", "p1", name, **data)
        assert refused.value.status == 409


# 重办 ------------------------------------------------------------------------------------


def test_solved_but_unsatisfied_waits_for_the_office_then_redo(act, db, world):
    to_callback(act, db, world)
    answer = {"method": "phone", "result": "reached", "solved": "1",
              "satisfaction": "unsatisfied"}
    waiting = act("office", "p1", "callback", **answer)
    assert waiting["status"] == "callback" and waiting["redo_pending"] == 1
    assert waiting["closed_at"] is None
    for name, data in (("callback", answer), ("close_unreachable", {})):
        with pytest.raises(TransitionError) as refused:
            act("office", "p1", name, **data)
        assert "重办" in refused.value.message
    with pytest.raises(ValidationError):
        act("office", "p1", "redo")  # the unit is told what to do again
    redone = act("office", "p1", "redo", note="群众不满意，重新处理")
    assert redone["status"] == "handling" and redone["redo_count"] == 1
    assert redone["redo_pending"] == 0
    with pytest.raises(TransitionError):
        act("office", "p1", "redo", note="再来")
    act("handler1", "p1", "reply", outcome="solved", note="重新处理完毕")
    act("office", "p1", "verify")
    closed = act("office", "p1", "callback", **{**answer, "satisfaction": "satisfied"})
    assert closed["status"] == "closed" and closed["redo_count"] == 1


def test_solved_but_unsatisfied_may_be_closed_with_an_explanation(act, db, world):
    to_callback(act, db, world)
    act("office", "p1", "callback", method="phone", result="reached", solved="1",
        satisfaction="unsatisfied")
    closed = act("office", "p1", "close_explained", **POLICY, note="已按政策解决，诉求超出标准")
    assert closed["status"] == "closed" and closed["redo_pending"] == 0
    assert closed["closure_kind"] == "explained" and closed["redo_count"] == 0


def test_redo_of_a_problem_solved_on_the_spot_goes_to_the_office(act, db, world):
    add_problem(db, world, id="on-spot", status="callback", solved_on_spot=1,
                accepted_at="2026-01-01T02:00:00+00:00", resident_phone="13812345678")
    act("office", "on-spot", "callback", method="phone", result="reached", solved="1",
        satisfaction="unsatisfied")
    redone = act("office", "on-spot", "redo", note="群众不满意")
    assert (redone["status"], redone["redo_count"]) == ("accepted", 1)


def test_redo_needs_a_pending_decision(act, db, world):
    to_callback(act, db, world)
    with pytest.raises(TransitionError) as refused:
        act("office", "p1", "redo", note="重办")
    assert "没有待决定重办" in refused.value.message


# Roles: every new action, for every role that may not take it ------------------------------

# The state each action is taken from, and the role that may take it.
SETUPS = {
    "accept_return": ("returned", "office"),
    "refuse_return": ("returned", "office"),
    "approve_extension_leader": ("awaiting_leader", "leader"),
    "refuse_extension_leader": ("awaiting_leader", "leader"),
    "redo": ("redo_pending", "office"),
}


def prepare(act, db, world, state):
    if state == "returned":
        handling(act, world)
        act("handler1", "p1", "return", **NOT_OURS, note="不属于本单位")
    elif state == "awaiting_leader":
        handling(act, world)
        act("handler1", "p1", "request_extension", **ASK, extra_days="15", note="工程量大")
        act("office", "p1", "approve_extension")
    else:
        to_callback(act, db, world)
        act("office", "p1", "callback", method="phone", result="reached", solved="1",
            satisfaction="unsatisfied")


@pytest.mark.parametrize("action", sorted(SETUPS))
@pytest.mark.parametrize("role", sorted(ROLE_USERS))
def test_every_role_but_the_deciding_one_is_refused(act, db, world, action, role):
    state, allowed = SETUPS[action]
    prepare(act, db, world, state)
    user = auth.load_user(db, world.users[ROLE_USERS[role]])
    problem = db["problems"].get(world.problems["p1"])
    may = action in workflow.allowed_actions(db, problem, user)
    assert may == (role == allowed)
    if role != allowed:
        # Refused (403), or not even shown to a role outside the ledger (404).
        with pytest.raises((TransitionError, NotFound)) as refused:
            act(ROLE_USERS[role], "p1", action, note="试试")
        assert getattr(refused.value, "status", 403) == 403


# The pages ----------------------------------------------------------------------------------


def test_the_office_decides_a_return_on_the_page(login_as, db, act, world):
    handling(act, world)
    act("handler1", "p1", "return", **NOT_OURS, note="不属于本单位")
    office = login_as("office")
    page = office.get(f"/problems/{world.problems['p1']}").text
    assert "/actions/accept_return" in page and "/actions/refuse_return" in page
    assert "/actions/dispatch" not in page
    refused = post_form(office, f"/problems/{world.problems['p1']}/actions/refuse_return", {})
    assert refused.status_code == 400 and "请填写" in refused.text
    assert db["problems"].get(world.problems["p1"])["status"] == "returned"  # nothing saved
    done = post_form(office, f"/problems/{world.problems['p1']}/actions/accept_return", {})
    assert done.status_code == 303
    assert db["problems"].get(world.problems["p1"])["status"] == "accepted"
    handler = login_as("handler1")
    denied = post_form(handler, f"/problems/{world.problems['p1']}/actions/refuse_return",
                       {"note": "x"})
    assert denied.status_code in (403, 404)


def test_the_page_shows_both_deadlines_and_the_extension(login_as, db, act, world):
    set_setting(db, "extension_max_count", 2)
    handling(act, world)
    act("handler1", "p1", "request_extension", **ASK, extra_days="3", note="需协调")
    act("office", "p1", "approve_extension")
    act("handler1", "p1", "request_extension", **ASK, extra_days="2", note="再延两天")
    act("office", "p1", "approve_extension")
    problem = db["problems"].get(world.problems["p1"])
    page = login_as("leader").get(f"/problems/{problem['id']}").text
    assert problem["original_deadline"] in page and problem["deadline"] in page
    assert 'id="extension-count">1<' in page and "等待领导审批" in page and "再延两天" in page
    assert "/actions/approve_extension_leader" in page
    response = post_form(login_as("leader"), f"/problems/{problem['id']}/actions/"
                         "refuse_extension_leader", {})
    assert response.status_code == 400


def test_the_work_queues_of_the_decisions(login_as, db, world):
    returned = add_problem(db, world, status="returned", lead_unit_id=world.units["u1"],
                           description="退回待决定")
    pending = add_problem(db, world, status="callback", redo_pending=1,
                          description="待决定重办")
    waiting = add_problem(db, world, status="handling", lead_unit_id=world.units["u1"],
                          extension_request='{"extra_days": 15, "awaiting_leader": true}',
                          description="待领导审批")
    office = login_as("office").get("/work").text
    assert returned in queue(office, "returned") and pending in queue(office, "redo_decision")
    assert waiting not in queue(office, "extension")
    leader = login_as("leader").get("/work").text
    assert waiting in queue(leader, "extension_leader")
    assert 'id="q-returned"' not in leader


def queue(html, key):
    from tests.test_ledger_pages import queue as find

    return find(html, key)


def test_the_stats_page_shows_the_new_figures_with_their_samples(login_as, db, world):
    from server.ledger.clock import now_iso

    stamp = now_iso()
    add_problem(db, world, status="handling", accepted_at=stamp, lead_unit_id=world.units["u1"],
                dispatched_at=stamp, unit_dispatched_at=stamp, redo_count=1,
                unjustified_returns=1, outcome="solved", deadline="2020-01-01")
    html = login_as("office").get("/stats").text
    for label in ("原定期限办结率", "单位按期答复率", "重办率", "不当退单率", "按期办结率"):
        assert label in html
    assert "重办过 1 ÷ 已答复 1" in html and "不当退单 1 ÷ 已交办 1" in html
    assert "期限内答复 0 ÷ 已答复或超期未答复 1" in html
