"""Statistics on a small hand-made ledger whose rates are worked out by hand below."""

from __future__ import annotations

import datetime as dt

import pytest

from server.db import immediate
from server.ledger import clock, deadlines, metrics, workflow
from server.timeutil import to_iso
from tests.ledger_helpers import add_problem, load

TODAY = clock.local_today()
PAST = (TODAY - dt.timedelta(days=5)).isoformat()  # a deadline already passed
FUTURE = (TODAY + dt.timedelta(days=10)).isoformat()  # a deadline still ahead


def at(days_ago: int, hour_utc: int = 2) -> str:
    """A stored timestamp ``days_ago`` local days back, at 10:00 Shanghai time by default."""
    day = TODAY - dt.timedelta(days=days_ago)
    return to_iso(dt.datetime.combine(day, dt.time(hour_utc), dt.UTC))


@pytest.fixture
def ledger(db, world):
    """Problems A-F and K-N (unit u1, district d1), I (unit u2, district d2), plus G and J
    left out."""
    u1, u2 = world.units["u1"], world.units["u2"]
    common = {"found_at": at(21), "accepted_at": at(20), "area_id": world.areas["g1"],
              "lead_unit_id": u1}
    dispatched = {"dispatched_at": at(19), "unit_dispatched_at": at(19), "signed_at": at(19, 3),
                  "resident_contacted": 1}
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
        "E": {**common, "dispatched_at": at(2), "unit_dispatched_at": at(2),
              "status": "dispatched", "deadline": FUTURE},
        # F: accepted, not dispatched.
        "F": {**common, "status": "accepted"},
        # I: solved on the spot in district d2 (unit u2): closed, no deadline, no reply.
        "I": {**common, "area_id": world.areas["v2"], "lead_unit_id": u2, "status": "closed",
              "closed_at": at(20, 4), "closed_on_time": 1, "solved_on_spot": 1,
              "callback_reached": 1, "callback_solved": 1, "satisfaction": "satisfied"},
        # K: closed as 无法回访 (the resident never answered): closed on time, no sample.
        "K": {**common, **dispatched, "status": "closed", "closed_at": at(5),
              "deadline": FUTURE, "closed_on_time": 1, "outcome": "solved",
              "callback_reached": 0, "closure_kind": "unreachable"},
        # L: closed as 无回访对象 (anonymous); the unit replied partly solved.
        "L": {**common, **dispatched, "status": "closed", "closed_at": at(6), "deadline": PAST,
              "closed_on_time": 1, "outcome": "partial", "closure_kind": "no_contact"},
        # M: the resident said not solved, then the office closed it late as 解释说明办结:
        # its valid but earlier answer leaves the samples of 解决率 and 满意率.
        "M": {**common, **dispatched, "status": "closed", "closed_at": at(4), "deadline": PAST,
              "closed_on_time": 0, "outcome": "solved", "callback_reached": 1,
              "callback_solved": 0, "satisfaction": "unsatisfied",
              "closure_kind": "explained", "closure_reason": "政策不允许"},
        # N: relapsed at 回头看: reopened with its unit on a fresh deadline, unsigned, its
        # callback answers cleared as the workflow clears them.
        "N": {**common, "dispatched_at": at(19), "unit_dispatched_at": at(19),
              "status": "dispatched", "deadline": FUTURE,
              "outcome": "solved", "relapsed": 1, "return_visit_result": "relapsed"},
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
            fields["responded_in_time"] = int(deadlines.responded_in_time(
                db, fields["dispatched_at"], fields["signed_at"],
                fields["resident_contacted"] == 1))
    return {key: add_problem(db, world, **fields) for key, fields in made.items()}


PERIOD = metrics.Period(TODAY - dt.timedelta(days=30), TODAY)


def test_counts_and_rates_by_hand(db, world, ledger):
    result = metrics.compute(db, load(db, world, "office"), PERIOD)
    counts, rates = result["totals"], result["rates"]
    # Cohort: A B C D E F I K L M N = 11 (G merged and J accepted earlier are left out;
    # the world's p1-p3 have no accepted_at).
    assert counts["accepted"] == 11
    # 办结率 = closed / accepted = {A, B, I, K, L, M} / 11: closures without a valid
    # callback are closed.
    assert (rates["completion"].numerator, rates["completion"].n) == (6, 11)
    assert rates["completion"].percent() == "54.55%"
    # 按期办结率 = closed on time / closed = {A, I, K, L} / {A, B, I, K, L, M} = 4/6
    assert (rates["on_time"].numerator, rates["on_time"].n) == (4, 6)
    # 解决率 = resident said solved / (valid callbacks + relapsed) = {A, B, I} / {A, B, C, I, N}
    # = 3/5 (D's callback did not reach the resident; K and L had none; M's answer was valid
    # but M was closed as 解释说明办结: all three are counted apart; N relapsed: not solved.)
    assert (rates["resolution"].numerator, rates["resolution"].n) == (3, 5)
    assert rates["resolution"].percent() == "60.00%"
    # The units' own claim: outcome 'solved' / replied
    #   = {A, B, C, D, K, M, N} / {A, B, C, D, K, L, M, N} = 7/8
    assert (rates["claimed"].numerator, rates["claimed"].n) == (7, 8)
    # 满意率 = (satisfied + 0.9 x basically) / valid = (2 [A, I] + 0.9 x 1 [B]) / 4 = 0.725
    assert rates["satisfaction"].n == 4
    assert rates["satisfaction"].value == pytest.approx(0.725)
    # M's 不满意 is not in the sample: only C's.
    assert (counts["satisfied"], counts["basically"], counts["unsatisfied"]) == (2, 1, 1)
    # 响应率 = signed within 1 working day AND contacted / dispatched
    #        = {A, D, K, L, M} / {A, B, C, D, E, K, L, M, N} = 5/9
    #   (B signed late, C did not contact, E unsigned, N's signing cleared by the relapse)
    assert (rates["response"].numerator, rates["response"].n) == (5, 9)
    # 超期率 = (closed late + open past deadline) / due
    #        = ({B, M} + {C}) / {A, B, C, K, L, M} = 3/6
    #   (D, E and N are open before their deadlines; I has no deadline)
    assert (rates["overdue"].numerator, rates["overdue"].n) == (3, 6)
    # Counted apart, shown beside the rates: one of each closure, one relapse.
    assert (counts["closed_unreachable"], counts["closed_no_contact"],
            counts["closed_explained"], counts["relapsed"]) == (1, 1, 1, 1)


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
    # u1: A-F and K-N, closed {A, B, K, L, M} -> 5/10; u2: I -> 1/1
    assert (units[u1].rates["completion"].numerator, units[u1].rates["completion"].n) == (5, 10)
    assert units[u1].counts["closed_explained"] == 1 and units[u2].counts["closed_explained"] == 0
    assert (units[u2].rates["completion"].numerator, units[u2].rates["completion"].n) == (1, 1)
    ranked, rest = metrics.rank(result["units"], "completion", min_sample=5)
    # u2 has the better rate (100%) but only one problem: not ranked.
    assert [row.key for row in ranked] == [u1] and ranked[0].rank == 1
    assert [row.key for row in rest] == [u2] and rest[0].rank is None
    ranked, rest = metrics.rank(result["units"], "completion", min_sample=1)
    assert [row.key for row in ranked] == [u2, u1]
    # Overdue: lower is better. u1 has 3/6, u2 no sample.
    ranked, rest = metrics.rank(result["units"], "overdue", min_sample=1)
    assert [row.key for row in ranked] == [u1] and [row.key for row in rest] == [u2]
    # Areas: the office's child districts d1 (A-F, K-N) and d2 (I).
    areas = {row.label: row.counts["accepted"] for row in result["areas"]}
    assert areas == {"东城区": 10, "西湖区": 1}
    # Weeks add up to the total.
    assert sum(row.counts["accepted"] for row in result["weeks"]) == 11


def test_units_are_listed_by_name_on_every_backend(db, world, ledger):
    # The groups come back in the backend's own order; a frozen report keeps the list.
    add_problem(db, world, found_at=at(3), accepted_at=at(2), area_id=world.areas["g1"],
                lead_unit_id=None, status="accepted")
    labels = [row.label for row in metrics.compute(db, load(db, world, "office"), PERIOD)["units"]]
    assert labels == ["", "住建局", "水务集团"]


def test_scope(db, world, ledger):
    # office_d1 sees district d1 only: A-F and K-N.
    result = metrics.compute(db, load(db, world, "office_d1"), PERIOD)
    assert result["totals"]["accepted"] == 10
    assert (result["rates"]["completion"].numerator, result["rates"]["completion"].n) == (5, 10)
    # leader_d2 sees I only.
    result = metrics.compute(db, load(db, world, "leader_d2"), PERIOD)
    assert result["totals"]["accepted"] == 1


@pytest.mark.parametrize("username", ["office", "office_d1", "leader_d2", "handler1", "field1"])
@pytest.mark.parametrize("days", [(70, 0), (30, 3), (20, 20), (9, 2)])
def test_totals_alone_are_computes_totals(db, world, ledger, username, days):
    """metrics.totals (the dashboard's previous period: whole weeks by features alone)
    counts what compute counts, whole weeks or not, read from the roll-up or not."""
    period = metrics.Period(TODAY - dt.timedelta(days=days[0]), TODAY - dt.timedelta(days=days[1]))
    user = load(db, world, username)
    full, alone = metrics.compute(db, user, period), metrics.totals(db, user, period)
    assert dict(alone["totals"]) == dict(full["totals"] or dict.fromkeys(metrics.COUNTS, 0))
    assert alone["rates"] == full["rates"]


def test_empty_rates_are_none_not_zero(db, world):
    result = metrics.compute(db, load(db, world, "office"), PERIOD)
    assert result["rates"]["completion"].value is None
    assert result["rates"]["completion"].percent() == "—"


def test_rejected_counts_nowhere_through_the_workflow(db, world):
    office = load(db, world, "office")
    with immediate(db):
        workflow.apply(db, office, world.problems["p1"], "reject",
                       {"reason_code": "unverifiable", "note": "不属实"})
    result = metrics.compute(db, office, PERIOD)
    assert result["totals"]["accepted"] == 0


def test_a_full_loop_through_the_workflow(db, world):
    """accept -> dispatch -> sign (contacted) -> reply -> verify -> callback: every rate 1/1."""
    office, handler = load(db, world, "office"), load(db, world, "handler1")
    problem = world.problems["p1"]
    with immediate(db):
        db["problems"].update(problem, {"resident_phone": "13812345678"})
    steps = [
        (office, "accept", {}),
        (office, "dispatch", {"lead_unit_id": world.units["u1"], "time_limit_days": 5}),
        (handler, "sign", {"contacted": "1"}),
        (handler, "reply", {"outcome": "solved", "note": "已修复"}),
        (office, "verify", {}),
        (office, "callback", {"method": "phone", "result": "reached", "solved": "1",
                              "satisfaction": "satisfied"}),
    ]
    for actor, action, data in steps:
        with immediate(db):
            workflow.apply(db, actor, problem, action, data)
    rates = metrics.compute(db, office, PERIOD)["rates"]
    for name in ("completion", "on_time", "resolution", "claimed", "satisfaction", "response"):
        assert (rates[name].numerator, rates[name].n) == (1, 1), name
    # Closed before its deadline: due (settled), not overdue.
    assert (rates["overdue"].numerator, rates["overdue"].n) == (0, 1)


def test_closures_apart_and_a_relapse_through_the_workflow(db, world):
    """Each new way out, taken through the workflow, lands where docs/metrics.md says."""
    office, handler = load(db, world, "office"), load(db, world, "handler1")
    u1 = world.units["u1"]

    def run(problem, *steps):
        for actor, action, data in steps:
            with immediate(db):
                workflow.apply(db, actor, problem, action, data)

    def to_callback(phone: str):
        problem = add_problem(db, world, status="submitted", resident_phone=phone)
        run(problem, (office, "accept", {}), (office, "dispatch", {"lead_unit_id": u1}),
            (handler, "sign", {"contacted": "1"}),
            (handler, "reply", {"outcome": "solved", "note": "已修"}), (office, "verify", {}))
        return problem

    with immediate(db):  # the attempts may fall on one day (tests/test_workflow.py: days)
        db["settings"].insert({"key": "unreachable_min_days", "value": "1"})
    unreachable = to_callback("13812345678")
    for result in ("no_answer", "refused", "no_answer"):
        run(unreachable, (office, "callback", {"method": "phone", "result": result}))
    run(unreachable, (office, "close_unreachable", {}))
    run(to_callback(""), (office, "close_no_contact", {}))
    explained = add_problem(db, world, status="submitted")
    run(explained, (office, "accept", {}),
        (office, "close_explained", {"reason_code": "policy", "note": "政策不允许"}))
    relapse = to_callback("13912345678")
    answer = {"method": "phone", "result": "reached", "solved": "1", "satisfaction": "satisfied"}
    run(relapse, (office, "callback", answer),
        (office, "return_visit", {"held": "0", "note": "又坏了"}))

    result = metrics.compute(db, office, PERIOD)
    counts, rates = result["totals"], result["rates"]
    assert counts["accepted"] == 4
    # Closed: the three closures apart; the relapse is open again.
    assert (rates["completion"].numerator, rates["completion"].n) == (3, 4)
    assert (counts["closed_unreachable"], counts["closed_no_contact"],
            counts["closed_explained"], counts["relapsed"]) == (1, 1, 1, 1)
    # The relapse's earlier "solved, satisfied" no longer counts: no sample of 满意率, and
    # in 解决率 a relapse is not solved.
    assert rates["satisfaction"].n == 0
    assert (rates["resolution"].numerator, rates["resolution"].n) == (0, 1)

    # Closed again after a new callback: the new answer counts for 满意率; for 解决率 the
    # relapse stays not solved.
    run(relapse, (handler, "sign", {"contacted": "1"}),
        (handler, "reply", {"outcome": "solved", "note": "重新修好"}), (office, "verify", {}),
        (office, "callback", {**answer, "satisfaction": "basically"}))
    result = metrics.compute(db, office, PERIOD)
    counts, rates = result["totals"], result["rates"]
    assert (rates["completion"].numerator, rates["completion"].n) == (4, 4)
    assert (rates["resolution"].numerator, rates["resolution"].n) == (0, 1)
    assert rates["satisfaction"].value == pytest.approx(0.9)
    assert counts["relapsed"] == 1


# Extensions, returns, 重办 and the unit's own on-time figure (server/ledger/rules.py) ------


def day(days_ago: int) -> str:
    return (TODAY - dt.timedelta(days=days_ago)).isoformat()


@pytest.fixture
def rules_ledger(db, world):
    """P1-P9, all accepted 20 days ago, unit u1 but P4 (u2), each one path of the rules."""
    u1, u2 = world.units["u1"], world.units["u2"]
    common = {"found_at": at(21), "accepted_at": at(20), "area_id": world.areas["g1"],
              "lead_unit_id": u1, "dispatched_at": at(19), "unit_dispatched_at": at(19),
              "signed_at": at(19, 3), "resident_contacted": 1}
    answered = {"outcome": "solved", "callback_reached": 1, "callback_solved": 1}
    made = {
        # P1: extended once; closed by the extended deadline, after the original one.
        "P1": {**common, **answered, "satisfaction": "satisfied", "status": "closed",
               "deadline": day(5), "original_deadline": day(8), "extension_count": 1,
               "replied_at": at(7), "closed_at": at(6), "closed_on_time": 1},
        # P2: the unit replied late, closed late.
        "P2": {**common, **answered, "satisfaction": "basically", "status": "closed",
               "deadline": day(5), "original_deadline": day(5), "replied_at": at(3),
               "closed_at": at(2), "closed_on_time": 0},
        # P3: the unit replied in time; the resident could not be reached, so the office
        # closed it late as 无法回访: late for the loop, not for the unit.
        "P3": {**common, "outcome": "solved", "callback_reached": 0, "status": "closed",
               "closure_kind": "unreachable", "deadline": day(5), "original_deadline": day(5),
               "replied_at": at(9), "closed_at": at(1), "closed_on_time": 0},
        # P4: u1's return found justified, dispatched to u2 four days ago: u2's own clocks.
        "P4": {**common, "lead_unit_id": u2, "unit_dispatched_at": at(4),
               "signed_at": at(4, 3), "status": "handling", "deadline": day(-10),
               "original_deadline": day(-10)},
        # P5: u1's return found not justified: back with u1, unsigned, past its deadline.
        "P5": {**common, "signed_at": None, "resident_contacted": None,
               "status": "dispatched", "unjustified_returns": 1, "deadline": day(5),
               "original_deadline": day(5)},
        # P6: solved but 不满意, waiting for the office's decision.
        "P6": {**common, **answered, "satisfaction": "unsatisfied", "status": "callback",
               "redo_pending": 1, "replied_at": at(8), "deadline": day(-10),
               "original_deadline": day(-10)},
        # P7: 重办: back with u1 past its deadline; its reply no longer stands.
        "P7": {**common, **answered, "satisfaction": "unsatisfied", "status": "handling",
               "redo_count": 1, "replied_at": at(10), "deadline": day(5),
               "original_deadline": day(5)},
        # P8: relapsed at 回头看, fixed and closed again; the resident now says solved.
        "P8": {**common, **answered, "satisfaction": "satisfied", "status": "closed",
               "relapsed": 1, "signed_at": None, "deadline": day(-10),
               "original_deadline": day(5), "replied_at": at(2), "closed_at": at(1),
               "closed_on_time": 1},
        # P9: closed in time, no extension.
        "P9": {**common, **answered, "satisfaction": "satisfied", "status": "closed",
               "deadline": day(5), "original_deadline": day(5), "replied_at": at(8),
               "closed_at": at(7), "closed_on_time": 1},
    }
    for fields in made.values():  # frozen at signing, from the current unit's dispatch
        if fields.get("signed_at"):
            fields["responded_in_time"] = int(deadlines.responded_in_time(
                db, fields["unit_dispatched_at"], fields["signed_at"], True))
    return {key: add_problem(db, world, **fields) for key, fields in made.items()}


def test_the_rules_figures_by_hand(db, world, rules_ledger):
    result = metrics.compute(db, load(db, world, "office"), PERIOD)
    counts, rates = result["totals"], result["rates"]
    assert counts["accepted"] == 9
    # 全流程按期办结率 (the deadline in force) = {P1, P8, P9} / closed {P1, P2, P3, P8, P9}
    assert (rates["on_time"].numerator, rates["on_time"].n) == (3, 5)
    # ... by the original deadline: P1 closed after its original one, P8 after its first
    # (before the relapse) = {P9} / 5
    assert (rates["on_time_original"].numerator, rates["on_time_original"].n) == (1, 5)
    # 单位按期答复率 = replied by the deadline {P1, P3, P6, P8, P9}
    #   / (replied {P1, P2, P3, P6, P8, P9} + in the unit's hands past the deadline {P5, P7})
    #   = 5/8 (P4 is with u2 before its deadline: not due yet; P3's late closing is the
    #   office's and the resident's, not the unit's)
    assert (rates["unit_on_time"].numerator, rates["unit_on_time"].n) == (5, 8)
    # 解决率 = said solved and never relapsed {P1, P2, P6, P7, P9}
    #   / valid callbacks or relapsed {P1, P2, P6, P7, P8, P9} = 5/6 (P3 closed apart)
    assert (rates["resolution"].numerator, rates["resolution"].n) == (5, 6)
    # 满意率 keeps its three levels: (3 [P1, P8, P9] + 0.9 x 1 [P2]) / 6 = 0.65
    assert rates["satisfaction"].value == pytest.approx(0.65)
    assert counts["unsatisfied"] == 2  # P6 waiting, P7 redone
    # 重办率 = redone {P7} / replied {P1, P2, P3, P6, P7, P8, P9} = 1/7
    assert (rates["redo"].numerator, rates["redo"].n) == (1, 7)
    # 不当退单率 = {P5} / with a unit {P1-P9} = 1/9
    assert (rates["unjustified_return"].numerator, rates["unjustified_return"].n) == (1, 9)
    # 响应率 per dispatch = {P1, P2, P3, P4, P6, P7, P9} / 9: P4 signed the day u2 got it
    # (a week and more after the first dispatch); P5 and P8 are unsigned.
    assert (rates["response"].numerator, rates["response"].n) == (7, 9)
    units = {row.key: row.rates for row in result["units"]}
    assert (units[world.units["u2"]]["response"].numerator,
            units[world.units["u2"]]["response"].n) == (1, 1)
    assert (units[world.units["u1"]]["unjustified_return"].numerator,
            units[world.units["u1"]]["unjustified_return"].n) == (1, 8)


def test_returns_and_redo_through_the_workflow(db, world):
    """A justified return leaves the returning unit's figures; an unjustified one counts
    against it; 重办 counts."""
    office = load(db, world, "office")
    handler1, handler2 = load(db, world, "handler1"), load(db, world, "handler2")
    u1, u2 = world.units["u1"], world.units["u2"]

    def run(problem, *steps):
        for actor, action, data in steps:
            with immediate(db):
                workflow.apply(db, actor, problem, action, data)

    justified = add_problem(db, world, status="submitted")
    run(justified, (office, "accept", {}), (office, "dispatch", {"lead_unit_id": u1}),
        (handler1, "return", {"reason_code": "not_our_duty", "note": "不属于本单位"}),
        (office, "accept_return", {}),
        (office, "dispatch", {"lead_unit_id": u2}), (handler2, "sign", {"contacted": "1"}))
    unjustified = add_problem(db, world, status="submitted")
    run(unjustified, (office, "accept", {}), (office, "dispatch", {"lead_unit_id": u1}),
        (handler1, "return", {"reason_code": "not_our_duty", "note": "不属于本单位"}),
        (office, "refuse_return", {"note": "属于本单位"}))
    redone = add_problem(db, world, status="submitted", resident_phone="13812345678")
    run(redone, (office, "accept", {}), (office, "dispatch", {"lead_unit_id": u1}),
        (handler1, "sign", {"contacted": "1"}), (handler1, "reply", {"outcome": "solved",
                                                                   "note": "已修"}),
        (office, "verify", {}),
        (office, "callback", {"method": "phone", "result": "reached", "solved": "1",
                              "satisfaction": "unsatisfied"}),
        (office, "redo", {"note": "重办"}))

    result = metrics.compute(db, office, PERIOD)
    units = {row.key: row for row in result["units"]}
    # u1 holds the unjustified return and the redone problem, not the justified return.
    assert units[u1].counts["accepted"] == 2 and units[u2].counts["accepted"] == 1
    rates = units[u1].rates
    assert (rates["unjustified_return"].numerator, rates["unjustified_return"].n) == (1, 2)
    assert (rates["redo"].numerator, rates["redo"].n) == (1, 1)
    # u2's response runs from its own dispatch: signed at once, a response.
    assert (units[u2].rates["response"].numerator, units[u2].rates["response"].n) == (1, 1)
