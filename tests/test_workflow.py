"""The problem state machine: every path through the loop, and every refusal."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from server import auth, workflow
from server.db import immediate
from server.errors import NotFound
from server.validation import ValidationError
from server.workflow import ACTIONS, TransitionError
from tests.conftest import ROLE_USERS


@pytest.fixture
def act(db, world):
    """act(username, problem_key_or_id, action, **data) applies one action and returns the row."""

    def run(username, problem, action, **data):
        actor = auth.load_user(db, world.users[username])
        problem_id = world.problems.get(problem, problem)
        with immediate(db):
            return workflow.apply(db, actor, problem_id, action, data)

    return run


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
    act("handler1", "p1", "reply", outcome="solved", note="屋面防水已修复")
    act("office", "p1", "verify")
    closed = act("office", "p1", "callback", reached="1", solved="1", satisfaction="satisfied")
    assert closed["status"] == "closed"
    assert closed["closed_on_time"] == 1
    assert closed["return_visit_due"] is not None
    held = act("office", "p1", "return_visit", held="1", note="回头看：未再漏水")
    assert held["status"] == "closed" and held["return_visit_result"] == "held"
    kinds = [e["kind"] for e in events(db, world.problems["p1"])]
    assert kinds == ["reported", "accept", "dispatch", "sign", "progress", "reply", "verify",
                     "callback", "return_visit"]
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
    act("office", "p1", "callback", reached="1", solved="1", satisfaction="basically")
    reopened = act("field1", "p1", "return_visit", held="0", note="又漏水了")
    assert reopened["status"] == "dispatched"
    assert reopened["relapsed"] == 1 and reopened["closed_at"] is None


def test_a_signing_freezes_whether_it_was_a_response(act, db, world):
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"])
    signed = act("handler1", "p1", "sign", contacted="1")  # the day of dispatch
    assert signed["responded_in_time"] == 1
    returned = act("handler1", "p1", "return", note="不属于住建局职责")
    assert returned["signed_at"] is None and returned["responded_in_time"] is None
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"])
    assert act("handler1", "p1", "sign")["responded_in_time"] == 0  # resident not contacted
    act("handler1", "p1", "reply", outcome="solved", note="已修")
    act("office", "p1", "verify")
    act("office", "p1", "callback", reached="1", solved="1", satisfaction="satisfied")
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
        db.execute("INSERT OR REPLACE INTO settings (key, value)"
                   " VALUES ('response_limit_days', ?)", [str(limit)])
    assert workflow.responded_in_time(db, dispatched, signed, True) is responded
    assert workflow.responded_in_time(db, dispatched, signed, False) is False


def test_reject_needs_a_reason(act, db, world):
    with pytest.raises(ValidationError) as error:
        act("office", "p1", "reject")
    assert "note" in error.value.errors
    assert status(db, world, "p1") == "submitted"
    with pytest.raises(ValidationError) as error:
        act("office", "p1", "reject", note=" \u3000\n ")  # spaces say nothing
    assert "note" in error.value.errors
    assert status(db, world, "p1") == "submitted"
    rejected = act("office", "p1", "reject", note="  不属于本辖区 ")
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
    assert workflow.normal_ledger_no(" zf-2026-523 ") == "ZF-2026-000523"
    assert workflow.normal_ledger_no("ZF-2026- 000523") == "ZF-2026-000523"
    assert workflow.normal_ledger_no("2026-000523") is None
    assert workflow.normal_ledger_no("00000000-0000-4000-8000-000000000003") is None


def test_return_to_office_and_reassign_keeps_the_clock(act, db, world):
    act("office", "p1", "accept")
    first = act("office", "p1", "dispatch", lead_unit_id=world.units["u1"])
    returned = act("handler1", "p1", "return", note="不属于住建局职责")
    assert returned["status"] == "returned"
    again = act("office", "p1", "dispatch", lead_unit_id=world.units["u2"])
    assert again["lead_unit_id"] == world.units["u2"]
    assert again["deadline"] == first["deadline"]
    assert again["dispatched_at"] == first["dispatched_at"]


def test_extension_approved_keeps_original_deadline(act, db, world):
    walk_to_handling(act)
    before = db["problems"].get(world.problems["p1"])
    act("handler1", "p1", "request_extension", extra_days="3", note="需要协调供水管网")
    with pytest.raises(TransitionError):
        act("handler1", "p1", "request_extension", extra_days="2", note="再申请")
    approved = act("office", "p1", "approve_extension")
    assert approved["deadline"] > before["deadline"]
    assert approved["original_deadline"] == before["deadline"]
    assert approved["extension_request"] is None


def test_extension_refused_keeps_deadline(act, db, world):
    walk_to_handling(act)
    before = db["problems"].get(world.problems["p1"])["deadline"]
    act("handler1", "p1", "request_extension", extra_days="3", note="理由")
    refused = act("office", "p1", "refuse_extension", note="时限内可以完成")
    assert refused["deadline"] == before and refused["extension_request"] is None


def test_extension_after_deadline_is_refused(act, db, world):
    walk_to_handling(act)
    db["problems"].update(world.problems["p1"], {"deadline": "2020-01-01"})
    with pytest.raises(TransitionError):
        act("handler1", "p1", "request_extension", extra_days="3", note="晚了")


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
        act("office", "p1", "callback", reached="1", solved="0", satisfaction="unsatisfied")
    back = act("office", "p1", "callback", reached="1", solved="0", satisfaction="unsatisfied",
               note="群众反映仍在漏水")
    assert back["status"] == "handling"


def test_callback_not_reached_stays_due(act, db, world):
    walk_to_handling(act)
    act("handler1", "p1", "reply", outcome="solved", note="已修")
    act("office", "p1", "verify")
    row = act("office", "p1", "callback", reached="0")
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
            assert workflow.next_ledger_no(db, year) == expected


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
    from server.workflow import deadline_from_events

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
