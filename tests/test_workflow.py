"""The problem state machine: every path through the loop, and every refusal."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from server import auth
from server.db import immediate
from server.errors import NotFound
from server.ledger import clock, closures, deadlines, numbering, workflow
from server.ledger.workflow import ACTIONS, TransitionError
from server.validation import ValidationError
from tests.conftest import ROLE_USERS, csrf_of

RESIDENT_PHONE = "13812345678"


@pytest.fixture(autouse=True)
def p1_has_a_resident_to_call(db, world):
    """The world's p1 was reported with the resident's phone: its callback is owed."""
    with immediate(db):
        db["problems"].update(world.problems["p1"], {"resident_name": "王大爷",
                                                     "resident_phone": RESIDENT_PHONE})


def events(db, problem_id):
    return list(db.query(
        "SELECT kind, from_status, to_status, data FROM problem_events WHERE problem_id = ?"
        " ORDER BY at, rowid", [problem_id]))


def status(db, world, key):
    return db["problems"].get(world.problems[key])["status"]


def walk_to_handling(act):
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=1)  # 住建局: handler1's unit
    act("handler1", "p1", "sign", contacted="1")


def test_full_loop_to_a_lasting_fix(act, db, world):
    accepted = act("office", "p1", "accept", urgency="urgent")
    assert accepted["ledger_no"].startswith("ZF-")
    dispatched = act("office", "p1", "dispatch", lead_unit_id=world.units["u1"],
                     helper_unit_ids=[str(world.units["u2"])], time_limit_days="5")
    assert dispatched["deadline"] == dispatched["original_deadline"]
    assert json.loads(dispatched["helper_unit_ids"]) == [world.units["u2"]]
    act("handler1", "p1", "sign", contacted="1")
    act("handler1", "p1", "progress", note="已联系物业，安排维修")
    act("handler2", "p1", "sign_part")  # the helper unit (水务集团) answers first
    act("handler2", "p1", "answer_part", note="供水管线无渗漏，配合排查完毕")
    act("handler1", "p1", "reply", outcome="solved", note="屋面防水已修复")
    act("office", "p1", "verify")
    closed = attempt(act, "reached", solved="1", satisfaction="satisfied")
    assert closed["status"] == "closed"
    assert closed["closed_on_time"] == 1
    assert closed["return_visit_due"] is not None
    held = act("office", "p1", "return_visit", held="1", note="回头看：未再漏水")
    assert held["status"] == "closed" and held["return_visit_result"] == "held"
    kinds = [e["kind"] for e in events(db, world.problems["p1"])]
    assert kinds == ["reported", "accept", "dispatch", "sign", "progress", "sign_part",
                     "answer_part", "reply", "verify", "callback", "return_visit"]
    row = db["problems"].get(world.problems["p1"])
    assert (row["urgency"], row["outcome"], row["satisfaction"], row["resident_contacted"]) == (
        "urgent", "solved", "satisfied", 1)


def test_status_is_derived_from_the_events(act, db, world):
    walk_to_handling(act)
    act("handler1", "p1", "reply", outcome="partial", note="部分解决")
    assert workflow.derive_status(events(db, world.problems["p1"])) == status(db, world, "p1")


def test_relapse_reopens_with_the_unit_and_is_flagged(act, db, world):
    walk_to_handling(act)
    act("handler1", "p1", "reply", outcome="solved", note="已修")
    act("office", "p1", "verify")
    attempt(act, "reached", solved="1", satisfaction="basically")
    reopened = act("field1", "p1", "return_visit", held="0", note="又漏水了")
    assert reopened["status"] == "dispatched"
    assert reopened["relapsed"] == 1 and reopened["closed_at"] is None


def test_a_signing_freezes_whether_it_was_a_response(act, db, world):
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"])
    signed = act("handler1", "p1", "sign", contacted="1")  # the day of dispatch
    assert signed["responded_in_time"] == 1
    returned = act("handler1", "p1", "return", reason_code="not_our_duty", note="不属于住建局职责")
    assert returned["signed_at"] is None and returned["responded_in_time"] is None
    act("office", "p1", "refuse_return", note="属于住建局职责")
    assert act("handler1", "p1", "sign")["responded_in_time"] == 0  # resident not contacted
    act("handler1", "p1", "reply", outcome="solved", note="已修")
    act("office", "p1", "verify")
    attempt(act, "reached", solved="1", satisfaction="satisfied")
    reopened = act("field1", "p1", "return_visit", held="0", note="又漏水了")
    assert reopened["responded_in_time"] is None


@pytest.mark.parametrize(("dispatched", "signed", "limit", "responded"), [
    # Wednesday 30 September 2026, then the National Day holiday (1-7 October) and the
    # adjusted working Saturday 10 October: one working day ends on Thursday 8 October.
    ("2026-09-30T02:00:00+00:00", "2026-10-08T15:59:59+00:00", 1, True),  # 23:59:59 local
    ("2026-09-30T02:00:00+00:00", "2026-10-08T16:00:00+00:00", 1, False),  # midnight
    ("2026-09-30T02:00:00+00:00", "2026-10-10T09:00:00+00:00", 3, True),  # the Saturday
    ("2026-09-30T02:00:00+00:00", "2026-10-10T09:00:00+00:00", 2, False),
    ("2026-09-30T15:30:00+00:00", "2026-10-09T01:00:00+00:00", 1, False),  # Oct 1 local
    ("2027-12-31T02:00:00+00:00", "2028-01-03T02:00:00+00:00", 1, True),  # unknown year:
    ("2027-12-31T02:00:00+00:00", "2028-01-04T02:00:00+00:00", 1, False),  # Mon-Fri
])
def test_the_response_time_counts_working_days(db, dispatched, signed, limit, responded):
    with immediate(db):
        db.execute("INSERT INTO settings (key, value) VALUES ('response_limit_days', ?)"
                   " ON CONFLICT (key) DO UPDATE SET value = excluded.value", [str(limit)])
    assert deadlines.responded_in_time(db, dispatched, signed, True) is responded
    assert deadlines.responded_in_time(db, dispatched, signed, False) is False


def test_a_note_past_its_limit_is_refused_whole_by_the_workflow(act, db, world):
    events = db["problem_events"].count
    with pytest.raises(ValidationError) as error:
        act("office", "p1", "reject", reason_code="other", note="理" * 2001)
    assert "2,000" in error.value.errors["note"] or "2000" in error.value.errors["note"]
    assert status(db, world, "p1") == "submitted" and db["problem_events"].count == events
    rejected = act("office", "p1", "reject", reason_code="other", note="理" * 2000)
    assert rejected["status"] == "rejected"


def test_reject_needs_a_reason(act, db, world):
    with pytest.raises(ValidationError) as error:
        act("office", "p1", "reject", reason_code="duplicate")
    assert "note" in error.value.errors
    assert status(db, world, "p1") == "submitted"
    with pytest.raises(ValidationError) as error:
        act("office", "p1", "reject", reason_code="duplicate",
            note=" \u3000\n ")  # spaces say nothing
    assert "note" in error.value.errors
    assert status(db, world, "p1") == "submitted"
    rejected = act("office", "p1", "reject", reason_code="out_of_scope", note="  不属于本辖区 ")
    assert rejected["status"] == "rejected"
    assert db.execute("SELECT note FROM problem_events WHERE problem_id = ? AND kind = 'reject'",
                      [world.problems["p1"]]).fetchone() == ("不属于本辖区",)


def test_merge_links_both_ways_and_notes_follow(act, db, world):
    act("office", "p3", "accept") if status(db, world, "p3") == "submitted" else None
    original = db["problems"].get(world.problems["p3"])
    merged = act("office", "p1", "merge", original_id=original["id"], note="同一问题")
    assert merged["status"] == "merged" and merged["merged_into"] == original["id"]
    original_events = events(db, original["id"])
    assert original_events[-1]["kind"] == "merged_in"
    assert json.loads(original_events[-1]["data"])["duplicate_id"] == world.problems["p1"]


def test_merge_refuses_itself_and_unknown(act, db, world):
    with pytest.raises(ValidationError):
        act("office", "p1", "merge", original_id=world.problems["p1"])
    with pytest.raises(ValidationError):
        act("office", "p1", "merge", original_id="00000000-0000-4000-8000-999999999999")
    assert status(db, world, "p1") == "submitted"


@pytest.mark.parametrize("typed", ["ZF-2026-000003", "zf-2026-000003", " ZF - 2026 - 3 ",
                                   "00000000-0000-4000-8000-000000000003"])
def test_merge_names_the_original_by_its_ledger_number_or_its_id(act, world, typed):
    merged = act("office", "p1", "merge", original_id=typed)
    assert merged["merged_into"] == world.problems["p3"]


@pytest.mark.parametrize("username, typed", [
    ("office", "ZF-2026-009999"),  # no such number
    ("office_d1", "ZF-2026-000002"),  # exists, but outside this office's area
])
def test_merge_with_a_wrong_number_names_it(act, db, world, username, typed):
    with pytest.raises(ValidationError) as error:
        act(username, "p1", "merge", original_id=typed)
    assert error.value.errors["original_id"].startswith(f"没有找到编号为 {typed} 的问题")
    assert status(db, world, "p1") == "submitted"


def test_normal_ledger_no_tolerates_case_spaces_and_short_serials():
    assert numbering.normal_ledger_no(" zf-2026-523 ") == "ZF-2026-000523"
    assert numbering.normal_ledger_no("ZF-2026- 000523") == "ZF-2026-000523"
    assert numbering.normal_ledger_no("2026-000523") is None
    assert numbering.normal_ledger_no("00000000-0000-4000-8000-000000000003") is None


def test_a_return_not_justified_goes_back_to_the_unit_on_its_clock(act, db, world):
    act("office", "p1", "accept")
    first = act("office", "p1", "dispatch", lead_unit_id=world.units["u1"])
    returned = act("handler1", "p1", "return", reason_code="not_our_duty", note="不属于住建局职责")
    assert returned["status"] == "returned"
    again = act("office", "p1", "refuse_return", note="属于住建局职责")
    assert again["status"] == "dispatched" and again["lead_unit_id"] == world.units["u1"]
    assert again["deadline"] == first["deadline"]
    assert again["unit_dispatched_at"] == first["unit_dispatched_at"]
    assert again["unjustified_returns"] == 1


def test_extension_approved_keeps_original_deadline(act, db, world):
    walk_to_handling(act)
    before = db["problems"].get(world.problems["p1"])
    act("handler1", "p1", "request_extension", reason_code="departments", extra_days="3",
        note="需要协调供水管网")
    with pytest.raises(TransitionError):
        act("handler1", "p1", "request_extension", reason_code="departments", extra_days="2",
            note="再申请")
    approved = act("office", "p1", "approve_extension")
    assert approved["deadline"] > before["deadline"]
    assert approved["original_deadline"] == before["deadline"]
    assert approved["extension_request"] is None


def test_extension_refused_keeps_deadline(act, db, world):
    walk_to_handling(act)
    before = db["problems"].get(world.problems["p1"])["deadline"]
    act("handler1", "p1", "request_extension", reason_code="departments", extra_days="3",
        note="理由")
    refused = act("office", "p1", "refuse_extension", note="时限内可以完成")
    assert refused["deadline"] == before and refused["extension_request"] is None


def test_extension_after_deadline_is_refused(act, db, world):
    walk_to_handling(act)
    db["problems"].update(world.problems["p1"], {"deadline": "2020-01-01"})
    with pytest.raises(TransitionError):
        act("handler1", "p1", "request_extension", reason_code="departments", extra_days="3",
            note="晚了")


def test_send_back_counts_redo(act, db, world):
    walk_to_handling(act)
    act("handler1", "p1", "reply", outcome="explained", note="已解释")
    back = act("office", "p1", "send_back", note="证据不足")
    assert back["status"] == "handling" and back["redo_count"] == 1


def test_callback_not_solved_goes_back_to_handling(act, db, world):
    walk_to_handling(act)
    act("handler1", "p1", "reply", outcome="solved", note="已修")
    act("office", "p1", "verify")
    with pytest.raises(ValidationError):
        attempt(act, "reached", solved="0", satisfaction="unsatisfied")
    back = attempt(act, "reached", solved="0", satisfaction="unsatisfied", note="群众反映仍在漏水")
    assert back["status"] == "handling"


def test_callback_not_reached_stays_due(act, db, world):
    walk_to_handling(act)
    act("handler1", "p1", "reply", outcome="solved", note="已修")
    act("office", "p1", "verify")
    row = attempt(act, "no_answer")
    assert row["status"] == "callback" and row["callback_reached"] == 0


def test_verifier_is_never_the_handler(act, db, world):
    # A user who is both handler and office may not verify their own reply.
    db["users"].update(world.users["handler1"], {"roles": "handler,office",
                                                  "area_id": world.areas["city"]})
    walk_to_handling(act)
    act("handler1", "p1", "reply", outcome="solved", note="已修")
    with pytest.raises(TransitionError) as error:
        act("handler1", "p1", "verify")
    assert error.value.status == 403
    problem = db["problems"].get(world.problems["p1"])
    both = auth.load_user(db, world.users["handler1"])
    assert not {"verify", "send_back"} & set(workflow.allowed_actions(db, problem, both))
    office = auth.load_user(db, world.users["office"])
    assert {"verify", "send_back"} <= set(workflow.allowed_actions(db, problem, office))


def test_supervision_is_a_flag_not_a_state(act, db, world):
    act("office", "p2", "remind", note="请尽快签收")
    flagged = act("leader", "p2", "flag", note="挂牌督办，限期解决")
    assert flagged["status"] == "dispatched"
    assert flagged["supervision"] == "flagged"
    assert act("office", "p2", "remind")["supervision"] == "flagged"  # never lowered


def test_overdue_is_frozen_into_each_event(act, db, world):
    walk_to_handling(act)
    db["problems"].update(world.problems["p1"], {"deadline": "2020-01-01"})
    act("handler1", "p1", "progress", note="仍在办理")
    last = events(db, world.problems["p1"])[-1]
    assert json.loads(last["data"])["overdue"] is True
    assert json.loads(events(db, world.problems["p1"])[2]["data"])["overdue"] is False


def test_ledger_numbers_are_gapless_per_year(act, db, world):
    # The world already numbered ZF-2026-000002 and -000003.
    for year, expected in ((2026, "ZF-2026-000004"), (2026, "ZF-2026-000005"),
                           (2027, "ZF-2027-000001")):
        with immediate(db):
            assert numbering.next_ledger_no(db, year) == expected


def test_failed_action_leaves_no_trace(act, db, world):
    before = (events(db, world.problems["p1"]), db["problems"].get(world.problems["p1"]))
    act("office", "p1", "accept")
    with pytest.raises(ValidationError):
        act("office", "p1", "dispatch", lead_unit_id="99999")
    after = db["problems"].get(world.problems["p1"])
    assert after["status"] == "accepted" and after["deadline"] is None
    assert len(events(db, world.problems["p1"])) == len(before[0]) + 1


ALL_STATES = ("submitted", "accepted", "dispatched", "handling", "returned", "replied",
              "callback", "closed", "rejected", "merged")


@pytest.mark.parametrize("role", sorted(ROLE_USERS))
def test_illegal_transitions_are_refused_for_every_role(db, world, role):
    username = ROLE_USERS[role]
    actor = auth.load_user(db, world.users[username])
    problem_id = world.problems["p3"]  # visible to every role but admin; unit u1 = handler1
    for state in ALL_STATES:
        db["problems"].update(problem_id, {"status": state})
        for name, action in ACTIONS.items():
            allowed_state = state in action.from_states
            allowed_role = bool(action.roles & actor.roles) and (
                not action.unit_only or actor.unit_id == world.units["u1"])
            if allowed_state and allowed_role:
                continue
            with pytest.raises((TransitionError, NotFound)), immediate(db):
                workflow.apply(db, actor, problem_id, name, {})
            assert db["problems"].get(problem_id)["status"] == state


# Deadlines in Chinese working days --------------------------------------------------


def calendar(db):
    from server.workdays import WorkCalendar

    return WorkCalendar.load(db)


def test_deadline_skips_national_day_and_counts_the_adjusted_saturday(db):
    # 2026: 1–7 October off; Saturday 10 October is an adjusted working day.
    cal = calendar(db)
    assert cal.is_workday(dt.date(2026, 10, 10))
    assert not cal.is_workday(dt.date(2026, 10, 5))
    # From Wednesday 30 September: 8 (Thu), 9 (Fri), 10 (the adjusted Saturday), 12 (Mon).
    assert cal.add_working_days(dt.date(2026, 9, 30), 3) == dt.date(2026, 10, 10)
    assert cal.add_working_days(dt.date(2026, 9, 30), 4) == dt.date(2026, 10, 12)


def test_deadline_across_spring_festival(db):
    cal = calendar(db)
    # Spring Festival 2026: 15–23 February off; 14 February (Sat) and 28 February (Sat) worked.
    assert cal.is_workday(dt.date(2026, 2, 14))
    assert not cal.is_workday(dt.date(2026, 2, 17))
    assert cal.add_working_days(dt.date(2026, 2, 13), 1) == dt.date(2026, 2, 14)
    assert cal.add_working_days(dt.date(2026, 2, 14), 1) == dt.date(2026, 2, 24)


def test_a_year_the_package_does_not_know_can_be_entered(db):
    from server.workdays import UnknownCalendarYear, set_year

    with pytest.raises(UnknownCalendarYear):
        calendar(db).add_working_days(dt.date(2027, 9, 30), 3)
    with immediate(db):
        set_year(db, 2027, holidays=[dt.date(2027, 10, d) for d in range(1, 8)],
                 workdays=[dt.date(2027, 10, 9)])
    cal = calendar(db)
    assert cal.add_working_days(dt.date(2027, 9, 30), 1) == dt.date(2027, 10, 8)
    assert cal.add_working_days(dt.date(2027, 10, 8), 1) == dt.date(2027, 10, 9)


def test_replaying_the_history_follows_the_deadline_convention(db):
    from server.ledger.deadlines import deadline_from_events

    cal = calendar(db)
    history = [
        ("reported", "2026-12-01T02:00:00+00:00", {}),
        ("dispatch", "2026-12-06T02:00:00+00:00",
         {"time_limit_days": 20, "deadline": "2027-01-01", "provisional": True}),
        ("approve_extension", "2026-12-20T02:00:00+00:00", {"extra_days": 2}),
        ("deadline_recomputed", "2026-12-21T02:00:00+00:00", {"deadline": "2030-01-01"}),
    ]
    replay = deadline_from_events(cal, history)
    # Monday to Friday through 2027, which the calendar does not know.
    assert (replay.deadline, replay.provisional) == (dt.date(2027, 1, 5), True)
    assert (replay.original, replay.original_was_provisional) == (dt.date(2027, 1, 1), True)
    # A later event with a time limit starts a new deadline; the original stays the first.
    history.append(("reset", "2026-12-22T02:00:00+00:00", {"time_limit_days": 1}))
    replay = deadline_from_events(cal, history)
    assert (replay.deadline, replay.provisional) == (dt.date(2026, 12, 23), False)
    assert replay.original == dt.date(2027, 1, 1)
    assert deadline_from_events(cal, history[:1]) is None
    assert deadline_from_events(cal, [history[0], history[2]]) is None


def test_a_deadline_into_an_unknown_year_is_never_refused(db):
    deadline, provisional = calendar(db).deadline(dt.date(2026, 12, 6), 20)
    assert (deadline, provisional) == (dt.date(2027, 1, 1), True)
    deadline, provisional = calendar(db).deadline(dt.date(2026, 12, 6), 5)
    assert (deadline, provisional) == (dt.date(2026, 12, 11), False)


# Ways out: callback attempts, closures without a valid callback, relapse -----------------


def walk_to_callback(act, problem="p1"):
    act("office", problem, "accept")
    act("office", problem, "dispatch", lead_unit_id=1)
    act("handler1", problem, "sign", contacted="1")
    act("handler1", problem, "reply", outcome="solved", note="已修")
    act("office", problem, "verify")


def attempt(act, result, problem="p1", method="phone", **more):
    return act("office", problem, "callback", method=method, result=result, **more)


def office_actions(db, world, key="p1"):
    office = auth.load_user(db, world.users["office"])
    return workflow.allowed_actions(db, db["problems"].get(world.problems.get(key, key)), office)


@pytest.fixture
def days_ago(monkeypatch):
    """days_ago(n): the workflow's events are stamped n local days back until reset."""
    real = clock.utcnow

    def shift(n: int):
        moment = real() - dt.timedelta(days=n)
        monkeypatch.setattr(clock, "utcnow", lambda: moment)

    yield shift
    monkeypatch.setattr(clock, "utcnow", real)


def test_each_callback_attempt_is_recorded_with_how_and_what_came_of_it(act, db, world):
    walk_to_callback(act)
    for method, result in (("phone", "no_answer"), ("sms", "refused"),
                           ("visit", "invalid_number")):
        row = attempt(act, result, method=method)
        assert row["status"] == "callback" and row["callback_reached"] == 0
    callbacks = [json.loads(e["data"]) for e in events(db, world.problems["p1"])
                 if e["kind"] == "callback"]
    assert [(c["method"], c["result"], c["reached"]) for c in callbacks] == [
        ("phone", "no_answer", False), ("sms", "refused", False),
        ("visit", "invalid_number", False)]
    closed = attempt(act, "reached", solved="1", satisfaction="basically")
    assert closed["status"] == "closed" and closed["closure_kind"] is None
    assert json.loads(events(db, world.problems["p1"])[-1]["data"])["result"] == "reached"


@pytest.mark.parametrize(("data", "field"), [
    ({}, "method"),
    ({"method": "phone"}, "result"),
    ({"method": "fax", "result": "no_answer"}, "method"),
    ({"method": "phone", "result": "maybe"}, "result"),
    ({"method": "phone", "result": "reached"}, "solved"),
    ({"method": "phone", "result": "reached", "solved": "1"}, "satisfaction"),
    ({"method": "phone", "result": "reached", "solved": "0", "satisfaction": "unsatisfied"},
     "note"),
])
def test_a_bad_callback_is_refused_and_leaves_no_trace(act, db, world, data, field):
    walk_to_callback(act)
    before = len(events(db, world.problems["p1"]))
    with pytest.raises(ValidationError) as error:
        act("office", "p1", "callback", **data)
    assert field in error.value.errors
    assert len(events(db, world.problems["p1"])) == before
    assert db["problems"].get(world.problems["p1"])["callback_reached"] is None


def test_unreachable_needs_enough_failed_attempts_over_enough_days(act, db, world, days_ago):
    days_ago(1)
    walk_to_callback(act)
    assert "close_unreachable" not in office_actions(db, world)
    attempt(act, "no_answer")
    days_ago(0)
    attempt(act, "refused")
    with pytest.raises(TransitionError) as error:
        act("office", "p1", "close_unreachable")
    assert error.value.status == 409
    # Two attempts on two days: one more attempt is missing, no more days.
    assert "还差 1 次、0 天" in error.value.message
    assert "close_unreachable" not in office_actions(db, world)
    attempt(act, "invalid_number")
    assert "close_unreachable" in office_actions(db, world)
    closed = act("office", "p1", "close_unreachable", note="三次未联系上")
    assert closed["status"] == "closed" and closed["closure_kind"] == "unreachable"
    assert closed["closure_reason"] == "三次未联系上"
    assert closed["closed_at"] and closed["closed_on_time"] == 1 and closed["return_visit_due"]
    last = events(db, world.problems["p1"])[-1]
    assert (last["kind"], last["from_status"], last["to_status"]) == (
        "close_unreachable", "callback", "closed")
    assert json.loads(last["data"])["attempts"] == 3 and json.loads(last["data"])["days"] == 2


def test_unreachable_attempts_on_one_day_are_not_enough(act, db, world):
    walk_to_callback(act)
    for _ in range(4):
        attempt(act, "no_answer")
    with pytest.raises(TransitionError) as error:
        act("office", "p1", "close_unreachable")
    assert "还差 0 次、1 天" in error.value.message


def test_the_unreachable_rule_comes_from_the_settings(act, db, world):
    with immediate(db):
        db["settings"].insert_all([{"key": "unreachable_attempts", "value": "1"},
                                   {"key": "unreachable_min_days", "value": "1"}])
    walk_to_callback(act)
    attempt(act, "no_answer")
    assert act("office", "p1", "close_unreachable")["closure_kind"] == "unreachable"


def test_attempts_of_an_earlier_round_do_not_count(act, db, world, days_ago):
    days_ago(2)
    walk_to_callback(act)
    attempt(act, "no_answer")
    attempt(act, "no_answer")
    days_ago(0)
    attempt(act, "reached", solved="0", satisfaction="unsatisfied", note="仍然漏水")
    act("handler1", "p1", "reply", outcome="solved", note="重新修好")
    act("office", "p1", "verify")
    attempt(act, "no_answer")
    assert "close_unreachable" not in office_actions(db, world)
    progress = closures.unreachable_progress(db, db["problems"].get(world.problems["p1"]))
    assert (progress.attempts, progress.days) == (1, 1)


def test_no_contact_closes_instead_of_a_callback(act, db, world):
    db["problems"].update(world.problems["p1"], {"resident_phone": "", "resident_name": ""})
    walk_to_callback(act)
    actions = office_actions(db, world)
    assert "callback" not in actions and "close_unreachable" not in actions
    assert "close_no_contact" in actions
    with pytest.raises(TransitionError):
        attempt(act, "no_answer")
    with pytest.raises(TransitionError):
        act("office", "p1", "close_unreachable")
    closed = act("office", "p1", "close_no_contact")
    assert closed["status"] == "closed" and closed["closure_kind"] == "no_contact"
    assert closed["closure_reason"] is None and closed["return_visit_due"]


def test_no_contact_is_refused_when_there_is_a_resident_to_call(act, db, world):
    walk_to_callback(act)
    assert "close_no_contact" not in office_actions(db, world)
    with pytest.raises(TransitionError) as error:
        act("office", "p1", "close_no_contact")
    assert error.value.status == 409
    assert status(db, world, "p1") == "callback"


@pytest.mark.parametrize("state", ["accepted", "dispatched", "handling", "returned", "replied",
                                   "callback"])
def test_explained_closes_any_accepted_open_problem_with_a_reason(act, db, world, state):
    db["problems"].update(world.problems["p3"], {"status": state})
    with pytest.raises(ValidationError) as error:
        act("office", "p3", "close_explained", reason_code="policy", note="  ")
    assert "note" in error.value.errors and status(db, world, "p3") == state
    closed = act("office", "p3", "close_explained", reason_code="policy",
                 note="属于政策范围外，已解释")
    assert closed["status"] == "closed" and closed["closure_kind"] == "explained"
    assert closed["closure_reason"] == "属于政策范围外，已解释"
    assert closed["return_visit_due"] is None
    # Nothing was fixed that a 回头看 could check.
    with pytest.raises(TransitionError):
        act("field1", "p3", "return_visit", held="1")


@pytest.mark.parametrize("state", ["submitted", "closed", "rejected", "merged"])
def test_explained_is_refused_before_acceptance_and_after_the_end(act, db, world, state):
    db["problems"].update(world.problems["p3"], {"status": state})
    with pytest.raises(TransitionError):
        act("office", "p3", "close_explained", reason_code="policy", note="理由")
    assert status(db, world, "p3") == state


def solved_on_spot(db, world, phone="13812345678") -> str:
    """A field report solved on the spot, as sync/mutations.py's problem.report leaves it."""
    problem_id = world.problems["p1"]
    with immediate(db):
        db["problems"].update(problem_id, {
            "status": "callback", "solved_on_spot": 1, "accepted_at": clock.now_iso(),
            "closed_on_time": 1, "ledger_no": "ZF-2026-000009", "resident_phone": phone})
        db["problem_events"].insert({
            "id": "00000000-0000-4000-8000-000000009999", "problem_id": problem_id,
            "kind": "solved_on_spot", "actor_id": world.users["field1"],
            "at": clock.now_iso(), "from_status": "submitted", "to_status": "callback",
            "note": "当场修好", "data": "{}"})
    return problem_id


def test_solved_on_the_spot_but_not_solved_goes_back_to_the_office(act, db, world):
    solved_on_spot(db, world)
    back = attempt(act, "reached", solved="0", satisfaction="unsatisfied", note="并没有修好")
    assert back["status"] == "accepted" and back["lead_unit_id"] is None
    assert back["closed_on_time"] is None
    last = events(db, world.problems["p1"])[-1]
    assert (last["kind"], last["from_status"], last["to_status"]) == (
        "callback", "callback", "accepted")
    assert "dispatch" in office_actions(db, world)
    dispatched = act("office", "p1", "dispatch", lead_unit_id=world.units["u1"])
    assert dispatched["status"] == "dispatched" and dispatched["deadline"]
    assert act("handler1", "p1", "sign", contacted="1")["status"] == "handling"


def test_a_dispatched_problem_not_solved_still_goes_back_to_its_unit(act, db, world):
    walk_to_callback(act)
    back = attempt(act, "reached", solved="0", satisfaction="unsatisfied", note="仍漏水")
    assert back["status"] == "handling" and back["lead_unit_id"] == world.units["u1"]


def test_relapse_reopens_for_the_unit_on_a_fresh_deadline(act, db, world):
    walk_to_callback(act)
    attempt(act, "reached", solved="1", satisfaction="satisfied")
    first_deadline = "2026-01-09"  # as if dispatched long ago
    db["problems"].update(world.problems["p1"], {"deadline": first_deadline,
                                                 "original_deadline": first_deadline})
    reopened = act("field1", "p1", "return_visit", held="0", note="又漏水了")
    limit = db["categories"].get(world.category)["time_limit_days"]
    expected, provisional = workflow.WorkCalendar.load(db).deadline(clock.local_today(), limit)
    assert reopened["status"] == "dispatched" and reopened["lead_unit_id"] == world.units["u1"]
    assert reopened["deadline"] == expected.isoformat() != first_deadline
    assert reopened["deadline_provisional"] == int(provisional)
    # The earlier answer no longer counts: it stays in the callback event only.
    assert (reopened["callback_reached"], reopened["callback_solved"],
            reopened["satisfaction"]) == (None, None, None)
    data = json.loads(events(db, world.problems["p1"])[-1]["data"])
    assert data["time_limit_days"] == limit and data["deadline"] == expected.isoformat()
    assert data["provisional"] is provisional and data["held"] is False
    # Handled and closed again: a new 回头看 is due and allowed.
    act("handler1", "p1", "sign", contacted="1")
    act("handler1", "p1", "reply", outcome="solved", note="彻底修好")
    act("office", "p1", "verify")
    closed = attempt(act, "reached", solved="1", satisfaction="satisfied")
    assert closed["return_visit_result"] is None and closed["return_visit_due"]
    assert closed["relapsed"] == 1
    assert act("office", "p1", "return_visit", held="1")["return_visit_result"] == "held"
    with pytest.raises(TransitionError):
        act("office", "p1", "return_visit", held="1")


def test_a_relapse_of_a_closure_apart_clears_its_kind(act, db, world):
    with immediate(db):
        db["settings"].insert_all([{"key": "unreachable_attempts", "value": "1"},
                                   {"key": "unreachable_min_days", "value": "1"}])
    walk_to_callback(act)
    attempt(act, "no_answer")
    act("office", "p1", "close_unreachable")
    reopened = act("office", "p1", "return_visit", held="0", note="问题又出现")
    assert reopened["status"] == "dispatched"
    assert reopened["closure_kind"] is None and reopened["closure_reason"] is None


def test_a_relapse_of_a_problem_solved_on_the_spot_goes_to_the_office(act, db, world):
    solved_on_spot(db, world)
    attempt(act, "reached", solved="1", satisfaction="satisfied")
    reopened = act("field1", "p1", "return_visit", held="0", note="又坏了")
    assert reopened["status"] == "accepted" and reopened["deadline"] is None
    assert "time_limit_days" not in json.loads(events(db, world.problems["p1"])[-1]["data"])
    assert act("office", "p1", "dispatch", lead_unit_id=world.units["u2"])["deadline"]


@pytest.mark.parametrize("role", sorted(ROLE_USERS))
def test_the_closures_are_the_office_s_alone(db, world, role):
    """Each new action, in a state where the office may take it, refused to every other role."""
    actor = auth.load_user(db, world.users[ROLE_USERS[role]])
    problem_id = world.problems["p3"]
    for name, phone in (("close_no_contact", ""), ("close_explained", "13812345678"),
                        ("callback", "13812345678"), ("close_unreachable", "13812345678")):
        db["problems"].update(problem_id, {"status": "callback", "resident_phone": phone})
        data = {"note": "理由", "method": "phone", "result": "no_answer", "reason_code": "policy"}
        if role == "office":
            continue
        with pytest.raises((TransitionError, NotFound)) as error, immediate(db):
            workflow.apply(db, actor, problem_id, name, data)
        if isinstance(error.value, TransitionError):
            assert error.value.status == 403
        assert db["problems"].get(problem_id)["status"] == "callback"


def test_attempts_count_where_no_event_brought_the_problem_to_callback(act, db, world):
    # An older or imported problem whose history lacks the verify: every attempt is this round's.
    db["problems"].update(world.problems["p3"], {"status": "callback",
                                                 "resident_phone": RESIDENT_PHONE})
    attempt(act, "no_answer", problem="p3")
    attempt(act, "refused", problem="p3")
    progress = closures.unreachable_progress(db, db["problems"].get(world.problems["p3"]))
    assert (progress.attempts, progress.days, progress.attempts_missing) == (2, 1, 1)


def test_a_note_holding_nul_is_refused_by_the_form_and_nothing_is_saved(login_as, db, world):
    from server.i18n import gettext as _  # a local name: the module loops with "_"

    office = login_as("office")
    problem_id = world.problems["p1"]

    def events():
        return db.execute("SELECT count(*) FROM problem_events WHERE problem_id = ?",
                          [problem_id]).fetchone()

    before = events()
    response = office.post(f"/problems/{problem_id}/actions/ask_reporter",
                           data={"note": "请补充\x00照片", "csrf_token": csrf_of(office)})
    assert response.status_code == 400
    assert _("validation.nul", label=_("workflow.field.note")) in response.text
    assert events() == before
    assert db["problems"].get(problem_id)["info_request"] is None
