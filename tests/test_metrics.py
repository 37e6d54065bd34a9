"""Statistics on a small hand-made ledger whose rates are worked out by hand below."""

from __future__ import annotations

import datetime as dt

import pytest

from server import metrics, workflow
from server.db import immediate
from server.timeutil import to_iso
from tests.ledger_helpers import add_problem, load

TODAY = workflow.local_today()
PAST = (TODAY - dt.timedelta(days=5)).isoformat()  # a deadline already passed
FUTURE = (TODAY + dt.timedelta(days=10)).isoformat()  # a deadline still ahead


def at(days_ago: int, hour_utc: int = 2) -> str:
    """A stored timestamp ``days_ago`` local days back, at 10:00 Shanghai time by default."""
    day = TODAY - dt.timedelta(days=days_ago)
    return to_iso(dt.datetime.combine(day, dt.time(hour_utc), dt.UTC))


@pytest.fixture
def ledger(db, world):
    """Problems A-F (unit u1, district d1), I (unit u2, district d2), plus G and J left out."""
    u1, u2 = world.units["u1"], world.units["u2"]
    common = {"found_at": at(21), "accepted_at": at(20), "area_id": world.areas["g1"],
              "lead_unit_id": u1}
    dispatched = {"dispatched_at": at(19), "signed_at": at(19, 3), "resident_contacted": 1}
    made = {
        # A: closed on time; the unit said solved, the resident said solved and satisfied.
        "A": {**common, **dispatched, "status": "closed", "closed_at": at(10), "deadline": PAST,
              "closed_on_time": 1, "outcome": "solved", "callback_reached": 1,
              "callback_solved": 1, "satisfaction": "satisfied"},
        # B: closed late; signed nine days after dispatch (no response); basically satisfied.
        "B": {**common, **dispatched, "signed_at": at(10), "status": "closed",
              "closed_at": at(3), "deadline": PAST, "closed_on_time": 0, "outcome": "solved",
              "callback_reached": 1, "callback_solved": 1, "satisfaction": "basically"},
        # C: the unit claimed solved, the resident said not solved: back in handling, overdue.
        "C": {**common, **dispatched, "resident_contacted": 0, "status": "handling",
              "deadline": PAST, "outcome": "solved", "callback_reached": 1,
              "callback_solved": 0, "satisfaction": "unsatisfied"},
        # D: awaiting callback; the resident was not reached (not a valid callback).
        "D": {**common, **dispatched, "status": "callback", "deadline": FUTURE,
              "outcome": "solved", "callback_reached": 0},
        # E: dispatched, not signed yet.
        "E": {**common, "dispatched_at": at(2), "status": "dispatched", "deadline": FUTURE},
        # F: accepted, not dispatched.
        "F": {**common, "status": "accepted"},
        # I: solved on the spot in district d2 (unit u2): closed, no deadline, no reply.
        "I": {**common, "area_id": world.areas["v2"], "lead_unit_id": u2, "status": "closed",
              "closed_at": at(20, 4), "closed_on_time": 1, "solved_on_spot": 1,
              "callback_reached": 1, "callback_solved": 1, "satisfaction": "satisfied"},
        # G: merged after acceptance: counts nowhere, whatever else it says.
        "G": {**common, **dispatched, "status": "merged", "closed_at": at(15),
              "outcome": "solved", "callback_reached": 1, "callback_solved": 1,
              "satisfaction": "satisfied", "deadline": PAST},
        # J: accepted before the period.
        "J": {**common, "accepted_at": at(60), "found_at": at(61), "status": "closed",
              "closed_at": at(50), "closed_on_time": 1},
    }
    for fields in made.values():  # frozen at signing by the workflow's rule
        if fields.get("signed_at"):
            fields["responded_in_time"] = int(workflow.responded_in_time(
                db, fields["dispatched_at"], fields["signed_at"],
                fields["resident_contacted"] == 1))
    return {key: add_problem(db, world, **fields) for key, fields in made.items()}


PERIOD = metrics.Period(TODAY - dt.timedelta(days=30), TODAY)


def test_counts_and_rates_by_hand(db, world, ledger):
    result = metrics.compute(db, load(db, world, "office"), PERIOD)
    counts, rates = result["totals"], result["rates"]
    # Cohort: A B C D E F I = 7 (G merged and J accepted earlier are left out;
    # the world's p1-p3 have no accepted_at).
    assert counts["accepted"] == 7
    # 办结率 = closed / accepted = {A, B, I} / 7
    assert (rates["completion"].numerator, rates["completion"].n) == (3, 7)
    assert rates["completion"].percent() == "42.86%"
    # 按期办结率 = closed on time / closed = {A, I} / {A, B, I} = 2/3
    assert (rates["on_time"].numerator, rates["on_time"].n) == (2, 3)
    # 解决率 = resident said solved / valid callbacks = {A, B, I} / {A, B, C, I} = 3/4
    # (D's callback did not reach the resident, so it is no sample.)
    assert (rates["resolution"].numerator, rates["resolution"].n) == (3, 4)
    assert rates["resolution"].percent() == "75.00%"
    # The units' own claim: outcome 'solved' / replied = {A, B, C, D} / {A, B, C, D} = 4/4
    assert (rates["claimed"].numerator, rates["claimed"].n) == (4, 4)
    # 满意率 = (satisfied + 0.9 x basically) / valid = (2 [A, I] + 0.9 x 1 [B]) / 4 = 0.725
    assert rates["satisfaction"].n == 4
    assert rates["satisfaction"].value == pytest.approx(0.725)
    assert (counts["satisfied"], counts["basically"], counts["unsatisfied"]) == (2, 1, 1)
    # 响应率 = signed within 1 working day AND contacted / dispatched
    #        = {A, D} / {A, B, C, D, E} = 2/5  (B signed late, C did not contact, E unsigned)
    assert (rates["response"].numerator, rates["response"].n) == (2, 5)
    # 超期率 = (closed late + open past deadline) / due
    #        = ({B} + {C}) / {A, B, C} = 2/3  (D and E are not due yet; I has no deadline)
    assert (rates["overdue"].numerator, rates["overdue"].n) == (2, 3)


def test_satisfaction_weight_comes_from_settings(db, world, ledger):
    with immediate(db):
        db["settings"].insert({"key": "satisfaction_weight", "value": "0.5"})
    result = metrics.compute(db, load(db, world, "office"), PERIOD)
    # (2 + 0.5 x 1) / 4 = 0.625
    assert result["rates"]["satisfaction"].value == pytest.approx(0.625)
    with immediate(db):
        db["settings"].update("satisfaction_weight", {"value": "7"})  # out of range: ignored
    assert metrics.settings(db)["satisfaction_weight"] == 0.9


def test_breakdowns_and_ranking(db, world, ledger):
    result = metrics.compute(db, load(db, world, "office"), PERIOD)
    units = {row.key: row for row in result["units"]}
    u1, u2 = world.units["u1"], world.units["u2"]
    # u1: A-F, closed {A, B} -> 2/6; u2: I -> 1/1
    assert (units[u1].rates["completion"].numerator, units[u1].rates["completion"].n) == (2, 6)
    assert (units[u2].rates["completion"].numerator, units[u2].rates["completion"].n) == (1, 1)
    ranked, rest = metrics.rank(result["units"], "completion", min_sample=5)
    # u2 has the better rate (100%) but only one problem: not ranked.
    assert [row.key for row in ranked] == [u1] and ranked[0].rank == 1
    assert [row.key for row in rest] == [u2] and rest[0].rank is None
    ranked, rest = metrics.rank(result["units"], "completion", min_sample=1)
    assert [row.key for row in ranked] == [u2, u1]
    # Overdue: lower is better. u1 has 2/3, u2 no sample.
    ranked, rest = metrics.rank(result["units"], "overdue", min_sample=1)
    assert [row.key for row in ranked] == [u1] and [row.key for row in rest] == [u2]
    # Areas: the office's child districts d1 (A-F) and d2 (I).
    areas = {row.label: row.counts["accepted"] for row in result["areas"]}
    assert areas == {"东城区": 6, "西湖区": 1}
    # Weeks add up to the total.
    assert sum(row.counts["accepted"] for row in result["weeks"]) == 7


def test_scope(db, world, ledger):
    # office_d1 sees district d1 only: A-F.
    result = metrics.compute(db, load(db, world, "office_d1"), PERIOD)
    assert result["totals"]["accepted"] == 6
    assert (result["rates"]["completion"].numerator, result["rates"]["completion"].n) == (2, 6)
    # leader_d2 sees I only.
    result = metrics.compute(db, load(db, world, "leader_d2"), PERIOD)
    assert result["totals"]["accepted"] == 1


def test_empty_rates_are_none_not_zero(db, world):
    result = metrics.compute(db, load(db, world, "office"), PERIOD)
    assert result["rates"]["completion"].value is None
    assert result["rates"]["completion"].percent() == "—"


def test_rejected_counts_nowhere_through_the_workflow(db, world):
    office = load(db, world, "office")
    with immediate(db):
        workflow.apply(db, office, world.problems["p1"], "reject", {"note": "不属实"})
    result = metrics.compute(db, office, PERIOD)
    assert result["totals"]["accepted"] == 0


def test_a_full_loop_through_the_workflow(db, world):
    """accept -> dispatch -> sign (contacted) -> reply -> verify -> callback: every rate 1/1."""
    office, handler = load(db, world, "office"), load(db, world, "handler1")
    problem = world.problems["p1"]
    steps = [
        (office, "accept", {}),
        (office, "dispatch", {"lead_unit_id": world.units["u1"], "time_limit_days": 5}),
        (handler, "sign", {"contacted": "1"}),
        (handler, "reply", {"outcome": "solved", "note": "已修复"}),
        (office, "verify", {}),
        (office, "callback", {"reached": "1", "solved": "1", "satisfaction": "satisfied"}),
    ]
    for actor, action, data in steps:
        with immediate(db):
            workflow.apply(db, actor, problem, action, data)
    rates = metrics.compute(db, office, PERIOD)["rates"]
    for name in ("completion", "on_time", "resolution", "claimed", "satisfaction", "response"):
        assert (rates[name].numerator, rates[name].n) == (1, 1), name
    # Closed before its deadline: due (settled), not overdue.
    assert (rates["overdue"].numerator, rates["overdue"].n) == (0, 1)
