"""Supervision with answers (server/ledger/supervision.py): orders, answers, 销号, escalation,
flags with their 批示, 摘牌, and the leader's page."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from server import auth
from server.db import immediate
from server.errors import NotFound
from server.ledger import clock, numbering, supervision, workflow
from server.ledger.workflow import TransitionError
from server.validation import ValidationError
from tests.conftest import post_form

pytest_plugins = ["tests.clock"]

REQUIREMENT = "限5日内说明超期原因并提出整改措施"


def in_days(days: int) -> str:
    return (clock.local_today() + dt.timedelta(days=days)).isoformat()


def orders(db, world, key="p2") -> list[dict]:
    return list(db.query("SELECT * FROM supervision_orders WHERE problem_id = ? ORDER BY id",
                         [world.problems[key]]))


def events(db, world, key="p2", kind=None) -> list[dict]:
    rows = db.query("SELECT kind, note, data FROM problem_events WHERE problem_id = ?"
                    " ORDER BY at, rowid", [world.problems[key]])
    return [row | {"data": json.loads(row["data"] or "{}")} for row in rows
            if kind is None or row["kind"] == kind]


def counter(db) -> int:
    row = db.execute("SELECT supervision_last_no FROM ledger_counters WHERE year = ?",
                     [clock.local_today().year]).fetchone()
    return row[0] if row else 0


def issue(act, key="p2", days=5, note=REQUIREMENT):
    act("office", key, "supervise", note=note, answer_by=in_days(days))
    return act


# The order's path -------------------------------------------------------------------------


def test_order_is_issued_answered_and_struck_off(act, db, world):
    year = clock.local_today().year
    problem = act("office", "p2", "supervise", note=REQUIREMENT, answer_by=in_days(5))
    assert problem["supervision"] == "supervised"
    assert problem["supervision_note"] == REQUIREMENT
    assert problem["status"] == "dispatched"
    [order] = orders(db, world)
    assert order["number"] == f"DB-{year}-0001"
    assert (order["kind"], order["requirement"], order["answer_by"]) == (
        "order", REQUIREMENT, in_days(5))
    assert order["unit_id"] == world.units["u2"] and order["issued_by"] == world.users["office"]
    [event] = events(db, world, kind="supervise")
    assert event["note"] == REQUIREMENT
    assert event["data"] | {"overdue": False} == {
        "order_id": order["id"], "number": order["number"], "answer_by": in_days(5),
        "unit_id": world.units["u2"], "level": "supervised", "overdue": False}

    act("handler2", "p2", "answer_supervision", order_id=order["id"], note="已安排加压泵检修")
    [order] = orders(db, world)
    assert order["answer"] == "已安排加压泵检修" and order["answered_by"] == world.users["handler2"]
    assert order["answered_at"] and order["closed_at"] is None

    act("office", "p2", "close_supervision", order_id=order["id"], note="回复属实")
    [order] = orders(db, world)
    assert (order["outcome"], order["closed_by"]) == ("closed", world.users["office"])
    kinds = [event["kind"] for event in events(db, world)]
    assert kinds[-3:] == ["supervise", "answer_supervision", "close_supervision"]
    assert events(db, world, kind="close_supervision")[0]["data"]["number"] == order["number"]
    assert supervision.open_orders(db, world.problems["p2"]) == []


def test_numbers_have_no_gaps_and_refusals_take_none(act, db, world):
    year = clock.local_today().year
    issue(act)
    with pytest.raises(ValidationError):
        act("office", "p2", "supervise", note=REQUIREMENT, answer_by=in_days(-1))
    with pytest.raises(TransitionError):
        act("office", "p1", "supervise", note=REQUIREMENT, answer_by=in_days(3))
    act("leader", "p3", "flag", note="请主要负责同志亲自过问")
    issue(act, "p3")
    numbers = [row["number"] for row in db.query("SELECT number FROM supervision_orders"
                                                 " ORDER BY id")]
    assert numbers == [f"DB-{year}-{n:04d}" for n in (1, 2, 3)]
    assert counter(db) == 3
    # The ledger's own numbers run on beside them.
    last = db.execute("SELECT last_no FROM ledger_counters WHERE year = ?", [year]).fetchone()[0]
    with immediate(db):
        assert numbering.next_ledger_no(db, year) == f"ZF-{year}-{last + 1:06d}"


def test_numbers_start_again_each_year(act, db, world, clock):
    clock(2026, 12, 31)
    issue(act)
    clock(2027, 1, 4)
    issue(act, "p3")
    assert [row["number"] for row in db.query("SELECT number FROM supervision_orders")] == [
        "DB-2026-0001", "DB-2027-0001"]


# Bad input: a clear message, nothing saved ------------------------------------------------


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"answer_by": "+5"}, "note", "请填写督办要求"),
    ({"note": "   ", "answer_by": "+5"}, "note", "请填写督办要求"),
    ({"note": REQUIREMENT}, "answer_by", "请填写回复期限"),
    ({"note": REQUIREMENT, "answer_by": "下周五"}, "answer_by", "不是有效日期"),
    ({"note": REQUIREMENT, "answer_by": "-1"}, "answer_by", "不能早于今天"),
])
def test_a_bad_order_is_refused_with_its_reason(act, db, world, data, field, message):
    if data.get("answer_by", "").lstrip("+-").isdigit():
        data = data | {"answer_by": in_days(int(data["answer_by"]))}
    before = db["problems"].get(world.problems["p2"])
    with pytest.raises(ValidationError) as refused:
        act("office", "p2", "supervise", **data)
    assert message in refused.value.errors[field]
    assert orders(db, world) == [] and counter(db) == 0
    assert events(db, world, kind="supervise") == []
    assert db["problems"].get(world.problems["p2"]) == before


def test_today_is_a_good_answer_date(act, db, world):
    act("office", "p2", "supervise", note=REQUIREMENT, answer_by=in_days(0))
    assert orders(db, world)[0]["answer_by"] == in_days(0)


def test_no_order_without_a_lead_unit(act, db, world):
    with pytest.raises(TransitionError) as refused:
        act("office", "p1", "supervise", note=REQUIREMENT, answer_by=in_days(3))
    assert "尚未交办" in refused.value.message and refused.value.status == 409


def test_an_answer_needs_text_and_an_order_of_the_problem(act, db, world):
    issue(act)
    order_id = orders(db, world)[0]["id"]
    with pytest.raises(ValidationError) as refused:
        act("handler2", "p2", "answer_supervision", order_id=order_id, note=" ")
    assert "请填写督办回复" in refused.value.errors["note"]
    issue(act, "p3")
    other = orders(db, world, "p3")[0]["id"]
    for wrong in (other, "9999", "abc"):
        with pytest.raises(ValidationError) as refused:
            act("handler2", "p2", "answer_supervision", order_id=wrong, note="已处理")
        assert refused.value.errors["order_id"] == "请选择该问题上的一张督办单。"
    with pytest.raises(ValidationError) as refused:
        act("handler2", "p2", "answer_supervision", note="已处理")
    assert "督办单" in refused.value.errors["order_id"]
    assert orders(db, world)[0]["answered_at"] is None


def test_a_unit_answers_only_its_own_order(act, db, world):
    """An order stays with the unit it was issued to, even when the problem moves on."""
    issue(act, "p3")  # p3's lead unit is u1 (handler1)
    first = orders(db, world, "p3")[0]
    with immediate(db):
        db["problems"].update(world.problems["p3"], {"lead_unit_id": world.units["u2"]})
    issue(act, "p3")
    with pytest.raises(TransitionError) as refused:
        act("handler2", "p3", "answer_supervision", order_id=first["id"], note="已处理")
    assert refused.value.status == 403 and first["number"] in refused.value.message
    with pytest.raises(NotFound):  # no longer the lead unit: the problem is out of sight
        act("handler1", "p3", "answer_supervision", order_id=first["id"], note="已处理")
    assert orders(db, world, "p3")[0]["answered_at"] is None


def test_an_order_is_answered_once(act, db, world):
    issue(act)
    issue(act)
    first, second = orders(db, world)
    act("handler2", "p2", "answer_supervision", order_id=first["id"], note="已处理")
    with pytest.raises(TransitionError) as refused:
        act("handler2", "p2", "answer_supervision", order_id=first["id"], note="再次回复")
    assert "已回复" in refused.value.message
    assert orders(db, world)[0]["answer"] == "已处理"
    act("handler2", "p2", "answer_supervision", order_id=second["id"], note="第二份")
    act("office", "p2", "close_supervision", order_id=first["id"])
    with pytest.raises(TransitionError) as refused:
        act("office", "p2", "close_supervision", order_id=first["id"])
    assert "已销号" in refused.value.message


def test_no_closing_before_an_answer(act, db, world):
    issue(act)
    order_id = orders(db, world)[0]["id"]
    with pytest.raises(TransitionError) as refused:
        act("office", "p2", "close_supervision", order_id=order_id)
    assert "回复后才能销号" in refused.value.message
    issue(act)
    answered = orders(db, world)[1]["id"]
    act("handler2", "p2", "answer_supervision", order_id=answered, note="已处理")
    with pytest.raises(TransitionError) as refused:  # the other one, still unanswered
        act("office", "p2", "close_supervision", order_id=order_id)
    assert "尚未回复" in refused.value.message
    assert orders(db, world)[0]["closed_at"] is None


# Escalation and flags ---------------------------------------------------------------------


def test_escalation_waits_for_an_answer_or_the_date(act, db, world, clock):
    clock(2026, 12, 7)
    act("office", "p2", "supervise", note=REQUIREMENT, answer_by="2026-12-10")
    order = orders(db, world)[0]
    with pytest.raises(TransitionError) as refused:
        act("office", "p2", "escalate_supervision", order_id=order["id"], note="不回复")
    assert "须责任单位已回复，或已过回复期限" in refused.value.message
    clock(2026, 12, 11)
    with pytest.raises(ValidationError) as refused:
        act("office", "p2", "escalate_supervision", order_id=order["id"])
    assert "note" in refused.value.errors
    problem = act("office", "p2", "escalate_supervision", order_id=order["id"],
                  note="逾期未回复，提请领导挂牌")
    assert orders(db, world)[0]["outcome"] == "escalated"
    # Escalating asks a leader for a flag; it does not flag the problem by itself.
    assert problem["supervision"] == "supervised"
    leader = auth.load_user(db, world.users["leader"])
    page = supervision.leader_page(db, leader, 1)
    assert [row["number"] for row in page["escalated"]] == [order["number"]]
    act("leader", "p2", "flag", note="请水务集团主要负责同志亲自过问")
    assert supervision.leader_page(db, leader, 1)["escalated"] == []


def test_an_answered_order_can_be_escalated_at_once(act, db, world):
    issue(act)
    order_id = orders(db, world)[0]["id"]
    act("handler2", "p2", "answer_supervision", order_id=order_id, note="无法解决")
    act("office", "p2", "escalate_supervision", order_id=order_id, note="回复不实")
    assert orders(db, world)[0]["outcome"] == "escalated"


def test_a_flag_carries_the_instruction_and_is_lifted_once_closed(act, db, world):
    with pytest.raises(ValidationError) as refused:
        act("leader", "p2", "flag", note="")
    assert "请填写领导批示" in refused.value.errors["note"]
    problem = act("leader", "p2", "flag", note="限期解决水压问题")
    assert (problem["supervision"], problem["supervision_note"]) == ("flagged", "限期解决水压问题")
    [flag] = orders(db, world)
    assert (flag["kind"], flag["requirement"], flag["answer_by"]) == ("flag", "限期解决水压问题",
                                                                       None)
    with pytest.raises(TransitionError) as refused:
        act("leader", "p2", "flag", note="再挂一次")
    assert "已挂牌督办" in refused.value.message
    with pytest.raises(TransitionError) as refused:  # the problem is still open
        act("leader", "p2", "unflag", order_id=flag["id"])
    assert refused.value.status == 409
    with immediate(db):
        db["problems"].update(world.problems["p2"], {"status": "closed"})
    problem = act("leader", "p2", "unflag", order_id=flag["id"], note="已整改到位")
    assert orders(db, world)[0]["outcome"] == "lifted"
    assert problem["supervision"] == "flagged"  # the level is history: statistics keep it
    with pytest.raises(TransitionError) as refused:
        act("leader", "p2", "unflag", order_id=flag["id"])
    assert "没有挂牌督办" in refused.value.message
    assert [e["kind"] for e in events(db, world)][-2:] == ["flag", "unflag"]


def test_unflag_names_a_flag_not_an_order(act, db, world):
    issue(act)
    act("leader", "p2", "flag", note="限期解决")
    with immediate(db):
        db["problems"].update(world.problems["p2"], {"status": "closed"})
    order = orders(db, world)[0]
    with pytest.raises(ValidationError):
        act("leader", "p2", "unflag", order_id=order["id"])


def test_a_leader_instructs_on_any_problem_in_scope(act, db, world):
    for key, status in (("p1", "submitted"), ("p3", "closed")):
        with immediate(db):
            db["problems"].update(world.problems[key], {"status": status})
        act("leader", key, "instruct", note="举一反三，排查同类问题")
        [event] = events(db, world, key, kind="instruct")
        assert event["note"] == "举一反三，排查同类问题"
    with pytest.raises(ValidationError):
        act("leader", "p2", "instruct", note="")
    with pytest.raises(NotFound):  # outside the leader's district: not found
        act("leader_d2", "p3", "instruct", note="批示")
    assert orders(db, world, "p1") == []


def test_remind_stays_light(act, db, world):
    problem = act("office", "p2", "remind")
    assert problem["supervision"] == "reminded"
    assert orders(db, world) == []


# Who may do what --------------------------------------------------------------------------

ALLOWED = {
    "supervise": {"office"},
    "answer_supervision": {"handler2"},
    "close_supervision": {"office"},
    "escalate_supervision": {"office"},
    "flag": {"leader"},
    "unflag": {"leader"},
    "instruct": {"leader"},
}
EVERYONE = ("office", "leader", "handler1", "handler2", "field2", "admin")


def _ready(act, db, world, action):
    """p2 in the state where ``action`` is possible for the role that may take it."""
    if action in ("answer_supervision", "close_supervision", "escalate_supervision"):
        issue(act)
        if action != "answer_supervision":
            act("handler2", "p2", "answer_supervision", order_id=orders(db, world)[0]["id"],
                note="已处理")
    if action == "unflag":
        act("leader", "p2", "flag", note="限期解决")
        with immediate(db):
            db["problems"].update(world.problems["p2"], {"status": "closed"})
    return {"note": "文字", "answer_by": in_days(3),
            "order_id": orders(db, world)[0]["id"] if orders(db, world) else None}


@pytest.mark.parametrize("action", sorted(ALLOWED))
@pytest.mark.parametrize("username", EVERYONE)
def test_every_role_for_every_supervision_action(act, db, world, action, username):
    data = _ready(act, db, world, action)
    before = (len(orders(db, world)), len(events(db, world)))
    if username in ALLOWED[action]:
        act(username, "p2", action, **data)
        assert len(events(db, world)) == before[1] + 1
        return
    with pytest.raises((TransitionError, NotFound)) as refused:
        act(username, "p2", action, **data)
    if isinstance(refused.value, TransitionError):
        assert refused.value.status == 403, refused.value.message
    assert (len(orders(db, world)), len(events(db, world))) == before


@pytest.mark.parametrize("action", ["answer_supervision", "close_supervision",
                                    "escalate_supervision", "unflag"])
def test_no_order_no_action(act, db, world, action):
    """Without an order (or a flag) in the right state, its actions are not offered."""
    username = "handler2" if action == "answer_supervision" else (
        "leader" if action == "unflag" else "office")
    if action == "unflag":
        with immediate(db):
            db["problems"].update(world.problems["p2"], {"status": "closed"})
    actor = auth.load_user(db, world.users[username])
    problem = db["problems"].get(world.problems["p2"])
    assert action not in workflow.allowed_actions(db, problem, actor)
    with pytest.raises(TransitionError) as refused:
        act(username, "p2", action, order_id="1", note="文字")
    assert refused.value.status == 409


# Pages ------------------------------------------------------------------------------------


def test_the_page_lists_open_orders_by_unit_with_ages(act, db, world, clock, login_as):
    clock(2026, 12, 1)
    act("office", "p2", "supervise", note="水压问题说明", answer_by="2026-12-03")
    act("office", "p3", "supervise", note="路灯问题说明", answer_by="2026-12-31")
    act("leader", "p3", "flag", note="路灯限期修复")
    clock(2026, 12, 6)
    leader = auth.load_user(db, world.users["leader"])
    page = supervision.leader_page(db, leader, 1)
    assert page["total"] == 3
    assert [(g["unit_name"], [r["kind"] for r in g["rows"]]) for g in page["groups"]] == [
        ("住建局", ["flag", "order"]), ("水务集团", ["order"])]
    water = page["groups"][1]["rows"][0]
    assert (water["age_days"], water["overdue"]) == (5, True)
    assert page["groups"][0]["rows"][1]["overdue"] is False
    # Scoped: a district's leader sees its own problems only (p2 is in 西湖区).
    district = supervision.leader_page(db, auth.load_user(db, world.users["leader_d2"]), 1)
    assert [g["unit_name"] for g in district["groups"]] == ["水务集团"]
    # Paged.
    first = supervision.leader_page(db, leader, 1, per_page=2)
    second = supervision.leader_page(db, leader, 2, per_page=2)
    assert sum(len(g["rows"]) for g in first["groups"] + second["groups"]) == 3
    html = login_as("leader").get("/supervision").text
    assert "住建局" in html and "水务集团" in html and "逾期未回复" in html and "5 天" in html


def test_the_page_is_for_leaders_and_the_office(login_as):
    for username, expected in (("leader", 200), ("office", 200), ("handler1", 403),
                               ("field1", 403), ("admin", 403)):
        assert login_as(username).get("/supervision").status_code == expected, username


def test_the_problem_page_heads_with_flag_and_orders(act, db, world, login_as):
    issue(act)
    act("leader", "p2", "flag", note="限期解决水压问题")
    act("leader", "p2", "instruct", note="举一反三")
    url = f"/problems/{world.problems['p2']}"
    handler = login_as("handler2")
    html = handler.get(url).text
    assert html.index("限期解决水压问题") < html.index(REQUIREMENT) < html.index('id="timeline-h"')
    assert html.index("举一反三") < html.index('id="timeline-h"')
    assert 'action="' + url + '/actions/answer_supervision"' in html
    order_id = orders(db, world)[0]["id"]
    response = post_form(handler, url + "/actions/answer_supervision",
                         {"order_id": str(order_id), "note": ""})
    assert response.status_code == 400 and "请填写督办回复" in response.text
    response = post_form(handler, url + "/actions/answer_supervision",
                         {"order_id": str(order_id), "note": "已检修"})
    assert response.status_code == 303
    office = login_as("office")
    html = office.get(url).text
    assert "/actions/close_supervision" in html and "/actions/escalate_supervision" in html
    assert "/actions/answer_supervision" not in html
    response = post_form(office, url + "/actions/close_supervision", {"order_id": "x"})
    assert response.status_code == 400 and "请选择该问题上的一张督办单" in response.text
    assert post_form(office, url + "/actions/close_supervision",
                     {"order_id": str(order_id)}).status_code == 303
    assert orders(db, world)[0]["outcome"] == "closed"


def test_the_units_queue_shows_flags_first_and_orders_to_answer(act, db, world, login_as):
    issue(act)
    act("leader", "p2", "flag", note="限期解决水压问题")
    html = login_as("handler2").get("/work").text
    assert "待回复的督办单" in html and REQUIREMENT[:10] in html
    flagged = html.index('id="q-unit_flagged"')
    assert flagged < html.index('id="q-to_sign"')
    assert "限期解决水压问题" in html[flagged:]
    other = login_as("handler1").get("/work").text
    assert "待回复的督办单" not in other and "限期解决水压问题" not in other
