"""The helper units' statistics (metrics.helper_units) on a hand-made ledger, worked out by hand."""

from __future__ import annotations

import datetime as dt

import pytest

from server.db import immediate
from server.ledger import clock, metrics
from server.timeutil import LOCAL_TZ, to_iso
from tests.ledger_helpers import add_problem, load

TODAY = clock.local_today()
PAST_DAY = TODAY - dt.timedelta(days=5)
PAST = PAST_DAY.isoformat()  # a deadline already passed
FUTURE = (TODAY + dt.timedelta(days=10)).isoformat()  # a deadline still ahead


def at(days_ago: int) -> str:
    """10:00 Shanghai time ``days_ago`` local days back."""
    return local(TODAY - dt.timedelta(days=days_ago), 10, 0)


def local(day: dt.date, hour: int, minute: int) -> str:
    return to_iso(dt.datetime.combine(day, dt.time(hour, minute), LOCAL_TZ).astimezone(dt.UTC))


@pytest.fixture
def ledger(db, world):
    """Problems P1-P8 with helper units 水务集团 (u2) and 交通局 (u3); see each line."""
    with immediate(db):
        u3 = db["units"].insert({"name": "交通局", "area_id": world.areas["city"]}).last_pk
    u1, u2 = world.units["u1"], world.units["u2"]
    common = {"accepted_at": at(20), "found_at": at(21), "dispatched_at": at(19),
              "lead_unit_id": u1, "area_id": world.areas["g1"]}
    problems = {
        "P1": add_problem(db, world, **common, status="closed", closed_at=at(1), deadline=PAST),
        "P2": add_problem(db, world, **common, status="handling", deadline=FUTURE),
        "P3": add_problem(db, world, **common, status="handling", deadline=PAST),
        "P4": add_problem(db, world, **common, status="merged", deadline=PAST),
        "P5": add_problem(db, world, **common | {"accepted_at": at(80)}, status="handling",
                          deadline=PAST),
        "P6": add_problem(db, world, **common, status="closed", deadline=PAST, closed_at=at(3)),
        "P7": add_problem(db, world, **common | {"area_id": world.areas["v2"]},
                          status="handling", deadline=FUTURE),
        "P8": add_problem(db, world, **common, status="replied", deadline=PAST),
    }
    signed = {"signed_at": at(18)}

    def answered(when: str) -> dict:
        return {**signed, "state": "answered", "answered_at": when, "opinion": "意见"}

    parts = [
        # P1: 水务集团 answered ten days ago (before the deadline): on time. 交通局 answered at
        # 23:30 local on the deadline day (15:30 UTC): on time.
        ("P1", u2, answered(at(10))),
        ("P1", u3, answered(local(PAST_DAY, 23, 30))),
        # P2 (deadline ahead): 水务集团 signed, 交通局 not yet; neither is due.
        ("P2", u2, {**signed, "state": "signed"}),
        ("P2", u3, {}),
        # P3 (deadline passed): 水务集团 never signed: due, not answered. 交通局 was removed by
        # a re-dispatch (after answering): not counted.
        ("P3", u2, {}),
        ("P3", u3, {**answered(at(15)), "state": "removed", "removed_at": at(14)}),
        # P4 merged, P5 accepted before the period: not counted.
        ("P4", u2, answered(at(10))),
        ("P5", u2, answered(at(70))),
        # P6: backfilled onto a problem finished before parts existed (legacy): not counted.
        ("P6", u3, {"legacy": 1}),
        # P7, district d2: 水务集团 answered (deadline ahead): on time. Not in 东城区's figures.
        ("P7", u2, answered(at(5))),
        # P8: 交通局 answered at 00:30 local the day after the deadline (16:30 UTC on the
        # deadline day): late.
        ("P8", u3, answered(local(PAST_DAY + dt.timedelta(days=1), 0, 30))),
    ]
    with immediate(db):
        for key, unit, fields in parts:
            db["joint_parts"].insert({"problem_id": problems[key], "unit_id": unit,
                                      "state": "dispatched", "dispatched_at": at(19),
                                      **fields})
    return {"u2": u2, "u3": u3}


PERIOD = metrics.Period(TODAY - dt.timedelta(days=30), TODAY)


def figures(db, world, username) -> dict:
    return {row.label: (dict(row.counts), {name: (rate.numerator, rate.n)
                                           for name, rate in row.rates.items()})
            for row in metrics.helper_units(db, load(db, world, username), PERIOD)}


def test_helper_units_by_hand(db, world, ledger):
    found = figures(db, world, "office")
    # 水务集团: P1 (answered, on time), P2 (signed), P3 (due, unanswered), P7 (answered, on
    # time). Parts 4; signed 3 (P1, P2, P7); answered 2; on time 2; due 2 answered + P3 = 3.
    assert found["水务集团"] == (
        {"parts": 4, "signed": 3, "answered": 2, "answered_on_time": 2, "due": 3},
        {"signed": (3, 4), "answered": (2, 4), "answered_on_time": (2, 3)})
    # 交通局: P1 (answered on the deadline day), P2 (dispatched), P8 (answered a day late).
    # Parts 3; signed 2; answered 2; on time 1; due 2 (both answered; P2's deadline is ahead).
    assert found["交通局"] == (
        {"parts": 3, "signed": 2, "answered": 2, "answered_on_time": 1, "due": 2},
        {"signed": (2, 3), "answered": (2, 3), "answered_on_time": (1, 2)})
    assert list(found) == sorted(found)  # by unit name


def test_helper_units_within_the_users_scope(db, world, ledger):
    # 东城区's office leaves out P7 (district d2): 水务集团 has P1, P2, P3.
    assert figures(db, world, "office_d1")["水务集团"] == (
        {"parts": 3, "signed": 2, "answered": 1, "answered_on_time": 1, "due": 2},
        {"signed": (2, 3), "answered": (1, 3), "answered_on_time": (1, 2)})
    assert figures(db, world, "leader_d2") == {"水务集团": (
        {"parts": 1, "signed": 1, "answered": 1, "answered_on_time": 1, "due": 1},
        {"signed": (1, 1), "answered": (1, 1), "answered_on_time": (1, 1)})}


def test_the_lead_units_figures_leave_the_parts_out(db, world, ledger):
    """The lead unit (住建局) has the problems; the helpers count only in their own table."""
    result = metrics.compute(db, load(db, world, "office"), PERIOD)
    assert {row.label for row in result["units"]} == {"住建局"}
    assert result["totals"]["accepted"] == 6  # P1-P3, P6-P8: P4 merged, P5 before


def test_the_stats_page_shows_the_helper_table(login_as, ledger):
    page = login_as("office").get("/stats")
    assert page.status_code == 200
    table = page.text.split('id="st-helper-table"')[1].split("</table>")[0]
    row = table.split(f'data-unit="{ledger["u2"]}"')[1].split("</tr>")[0]
    assert "75.00%" in row and "n=4" in row  # signed 3 of 4
    assert "66.67%" in row and "n=3" in row  # answered on time 2 of 3 due
