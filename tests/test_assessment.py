"""考核 on a small hand-made ledger whose scores and ranks are worked out by hand below."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from server.db import immediate
from server.ledger import assessment, clock, metrics
from server.timeutil import to_iso
from server.validation import ValidationError
from tests.conftest import csrf_of
from tests.ledger_helpers import add_problem, load

TODAY = clock.local_today()
PAST = (TODAY - dt.timedelta(days=5)).isoformat()


def at(days_ago: int) -> str:
    return to_iso(dt.datetime.combine(TODAY - dt.timedelta(days=days_ago), dt.time(2), dt.UTC))


def closed(unit: int, on_time: bool, satisfaction: str | None) -> dict:
    callback = ({"callback_reached": 1, "callback_solved": 1, "satisfaction": satisfaction}
                if satisfaction else {})
    return {"lead_unit_id": unit, "dispatched_at": at(9), "status": "closed",
            "closed_at": at(3), "deadline": PAST, "closed_on_time": int(on_time), **callback}


@pytest.fixture
def units(db, world):
    """u1: 4 problems, 3 closed (2 on time), 2 valid callbacks (satisfied, basically).
    u2: 2 problems, both closed on time, both satisfied.
    u3: 2 problems, 1 closed on time and satisfied, 1 open: 按期办结率's n is 1.
    One problem accepted, never dispatched (未交办)."""
    with immediate(db):
        u3 = db["units"].insert({"name": "城管局", "area_id": world.areas["city"]}).last_pk
    u1, u2 = world.units["u1"], world.units["u2"]
    open_problem = {"status": "handling", "dispatched_at": at(9), "deadline": PAST}
    for fields in (
        closed(u1, True, "satisfied"), closed(u1, True, "basically"), closed(u1, False, None),
        {**open_problem, "lead_unit_id": u1},
        closed(u2, True, "satisfied"), closed(u2, True, "satisfied"),
        closed(u3, True, "satisfied"), {**open_problem, "lead_unit_id": u3},
        {"status": "accepted"},
    ):
        add_problem(db, world, accepted_at=at(10), found_at=at(11), **fields)
    return {"u1": u1, "u2": u2, "u3": u3}


def assessed(db, world, weights: dict, min_sample: int = 2) -> assessment.Assessment:
    office = load(db, world, "office")
    result = metrics.compute(db, office, metrics.Period(TODAY - dt.timedelta(days=30), TODAY))
    return assessment.assess(result["units"], weights, min_sample)


def test_default_weights_rank_by_the_composite_score(db, world, units):
    result = assessed(db, world, assessment.DEFAULT_WEIGHTS)
    # u2: 30 × 2/2 + 30 × 2/2 + 40 × 2/2 = 100
    # u1: 30 × 3/4 + 30 × 2/3 + 40 × (1 + 0.9 × 1) / 2 = 22.5 + 20 + 38 = 80.5
    assert [(item.rank, item.row.key, round(item.score, 6)) for item in result.ranked] == [
        (1, units["u2"], 100.0), (2, units["u1"], 80.5)]
    # u3's 按期办结率 rests on one problem, below the minimum sample of 2: listed, not ranked.
    assert [(item.row.key, item.rank) for item in result.too_few] == [(units["u3"], None)]
    # The problem never dispatched is no unit and is never ranked.
    assert result.undispatched is not None and result.undispatched.row.key is None
    assert result.undispatched.rank is None


def test_a_weight_of_zero_leaves_its_rate_out_of_the_score_and_the_sample(db, world, units):
    result = assessed(db, world, {"completion": 100})
    # Completion only: u2 2/2, u1 3/4, u3 1/2 (n = 2, enough now).
    assert [(item.rank, item.row.key, item.score) for item in result.ranked] == [
        (1, units["u2"], 100.0), (2, units["u1"], 75.0), (3, units["u3"], 50.0)]
    assert result.too_few == []


def test_lower_is_better_rates_count_as_their_complement():
    rates = {"overdue": metrics.Rate(1, 4), "completion": metrics.Rate(3, 4)}
    assert assessment.score(rates, {"overdue": 50, "completion": 50}) == 50 * 0.75 + 50 * 0.75
    assert assessment.score({"completion": metrics.Rate(0, 0)}, {"completion": 100}) is None


def test_weights_default_until_set_and_a_bad_stored_value_falls_back(db):
    assert assessment.weights(db) == {"completion": 30, "on_time": 30, "satisfaction": 40}
    with immediate(db):
        db.execute("INSERT INTO settings (key, value) VALUES (?, ?)",
                   [assessment.SETTING_KEY, json.dumps({"completion": 60})])
    assert assessment.weights(db) == assessment.DEFAULT_WEIGHTS  # sums to 60: ignored


@pytest.mark.parametrize(("form", "field"), [
    ({"completion": "50", "on_time": "40"}, "total"),
    ({"completion": "101"}, "completion"),
    ({"completion": "-1", "on_time": "101"}, "completion"),
    ({"completion": "abc", "on_time": "100"}, "completion"),
    ({"completion": "50.5", "on_time": "49.5"}, "completion"),
])
def test_check_refuses_bad_weights(form, field):
    with pytest.raises(ValidationError) as refused:
        assessment.check(form)
    assert field in refused.value.errors


def test_the_admin_page_saves_weights_audited(db, admin):
    response = admin.post("/admin/assessment", data={
        "csrf_token": csrf_of(admin), "completion": "50", "on_time": "10", "satisfaction": "40"},
        follow_redirects=False)
    assert response.status_code == 303
    assert assessment.weights(db) == {"completion": 50, "on_time": 10, "satisfaction": 40}
    entry = db.execute("SELECT action, entity, old, new FROM admin_audit"
                       " ORDER BY id DESC LIMIT 1").fetchone()
    assert entry[:2] == ("update", "settings")
    assert json.loads(entry[2]) == {"completion": 30, "on_time": 30}
    assert json.loads(entry[3]) == {"completion": 50, "on_time": 10}
    page = admin.get("/admin/audit?entity=settings")
    assert "办结率权重" in page.text


def test_the_admin_page_refuses_weights_not_summing_to_100_and_saves_nothing(db, admin):
    audits = db["admin_audit"].count
    response = admin.post("/admin/assessment", data={
        "csrf_token": csrf_of(admin), "completion": "50", "on_time": "30", "satisfaction": "30"})
    assert response.status_code == 400
    assert "各项权重合计应为 100，现在是 110" in response.text
    assert 'value="50"' in response.text  # what was typed stays
    assert assessment.weights(db) == assessment.DEFAULT_WEIGHTS
    assert db["admin_audit"].count == audits
    response = admin.post("/admin/assessment", data={
        "csrf_token": csrf_of(admin), "completion": "x", "on_time": "100"})
    assert response.status_code == 400 and "办结率" in response.text
