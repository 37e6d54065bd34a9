"""The statistics' fast path (one query over an index that stores the row-only features)
against a straightforward computation, problem by problem, over random ledgers."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

import pytest

from server import authz, metrics, workflow
from server.db import immediate
from server.ledger_query import local_day_start
from server.problems import STATUSES
from server.timeutil import LOCAL_TZ, parse_iso, to_iso
from server.workdays import UnknownCalendarYear, WorkCalendar
from tests.ledger_helpers import load

TODAY = workflow.local_today()
PERIOD = metrics.Period(TODAY - dt.timedelta(days=40), TODAY)
NOW = dt.datetime.now(dt.UTC)


# The index -------------------------------------------------------------------------------


def test_the_index_stores_the_row_only_features_as_the_query_spells_them(db):
    index_sql = db.execute(
        "SELECT sql FROM sqlite_master WHERE name = ?", [metrics.STATS_INDEX]
    ).fetchone()[0]
    # The query's expression, without the table alias, is one of the index's columns:
    # if a formula changes, a new migration must rebuild the index to match it.
    assert metrics.stored_features_sql().replace("p.", "") in " ".join(index_sql.split())


def test_the_query_reads_the_features_from_the_index(db, world):
    sql, params = metrics.cohort_query(db, load(db, world, "office"), PERIOD,
                                       metrics.settings(db))
    plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert f"INDEX {metrics.STATS_INDEX}" in plan
    calls = Counter(row[5] for row in db.execute(f"EXPLAIN {sql}", params)
                    if row[1] in ("Function", "PureFunc"))
    # Only the constants: the period's first day and Monday, and today. Were the
    # index not used, every problem would call julianday() twice and date() once.
    assert calls["julianday(-1)"] == 2 and calls["date(-1)"] == 1, calls


# A straightforward computation -----------------------------------------------------------


def local_day(stamp: str) -> dt.date:
    return parse_iso(stamp).astimezone(LOCAL_TZ).date()


def response_end(calendar: WorkCalendar, dispatched_at: str, days: int) -> str:
    """When the time to respond ends: midnight after the ``days``-th working day."""
    day = local_day(dispatched_at)
    try:
        last = calendar.add_working_days(day, days)
    except UnknownCalendarYear:
        last, counted = day, 0
        while counted < days:
            last += dt.timedelta(days=1)
            counted += last.weekday() < 5
    return local_day_start(last + dt.timedelta(days=1))


def features(row: dict, calendar: WorkCalendar, days: int) -> dict[str, int]:
    """docs/metrics.md's FEATURES, one problem at a time, in Python."""
    closed = row["status"] == "closed"
    if row["closed_on_time"] is not None:
        in_time = row["closed_on_time"] == 1
    elif row["deadline"] is None:
        in_time = True
    else:
        in_time = row["closed_at"] is not None and (
            local_day(row["closed_at"]).isoformat() <= row["deadline"])
    valid = (row["callback_reached"] == 1 and row["callback_solved"] is not None
             and row["satisfaction"] is not None)
    responded = (row["resident_contacted"] == 1 and row["signed_at"] is not None
                 and row["dispatched_at"] is not None
                 and row["signed_at"] < response_end(calendar, row["dispatched_at"], days))
    if row["deadline"] is None:
        deadline = metrics.NO_DEADLINE
    elif row["deadline"] < TODAY.isoformat():
        deadline = metrics.DEADLINE_PASSED
    else:
        deadline = metrics.DEADLINE_AHEAD
    return {
        "closed": closed, "on_time": closed and in_time,
        "replied": row["outcome"] is not None, "claimed_solved": row["outcome"] == "solved",
        "valid_callback": valid, "resident_solved": row["callback_solved"] == 1,
        "satisfaction": metrics.SATISFACTION_CODES.get(row["satisfaction"], 0),
        "dispatched": row["dispatched_at"] is not None, "responded": responded,
        "deadline": deadline,
    }


def child_area(paths: dict[int, str], user: authz.User, area_id: int) -> int | None:
    path = paths[area_id]
    if path == user.area_path:
        return user.area_id
    if not path.startswith(user.area_path):
        return None
    child = int(path[len(user.area_path):].split("/")[0])
    return child


def straightforward(db, user: authz.User, period: metrics.Period, cfg: dict) -> dict:
    """Totals and counts per dimension, reading every problem in scope."""
    calendar = WorkCalendar.load(db)
    days = int(cfg["response_limit_days"])
    paths = dict(db.execute("SELECT id, path FROM areas").fetchall())
    start, end = local_day_start(period.start), local_day_start(
        period.end + dt.timedelta(days=1))
    scope, params = authz.problem_scope(user, "p")
    result = {dim: {} for dim in ("total", *metrics.DIMENSIONS)}
    for row in db.query(f"SELECT p.* FROM problems p WHERE {scope}", params):
        accepted = row["accepted_at"]
        if accepted is None or not start <= accepted < end or row["status"] in (
                "rejected", "merged"):
            continue
        found = features(row, calendar, days)
        counts = {name: int(bool(test(found))) for name, test in metrics.COUNTS.items()}
        day = local_day(accepted)
        keys = {
            "total": None, "unit": row["lead_unit_id"], "category": row["category_id"],
            "area": child_area(paths, user, row["area_id"]),
            "week": (day - dt.timedelta(days=day.weekday())).isoformat(),
        }
        for dim, key in keys.items():
            into = result[dim].setdefault(key, dict.fromkeys(metrics.COUNTS, 0))
            for name, n in counts.items():
                into[name] += n
    return result


# Random ledgers --------------------------------------------------------------------------


def stamp(rng: random.Random, after: dt.datetime, within_days: float) -> str:
    """A stored timestamp up to ``within_days`` after ``after``, never later than now;
    often near local midnight (16:00 UTC), where local days turn."""
    moment = after + dt.timedelta(days=rng.uniform(0, within_days))
    if rng.random() < 0.3:
        moment = moment.replace(hour=15 + rng.randint(0, 1), minute=rng.choice([0, 59]),
                                second=rng.choice([0, 59]))
    return to_iso(min(max(moment, after), NOW))


def random_problem(rng: random.Random, world, n: int) -> dict:
    first = dt.datetime.combine(PERIOD.start - dt.timedelta(days=5), dt.time(), dt.UTC)
    accepted = rng.random() < 0.95
    accepted_at = stamp(rng, first, (NOW - first).days + 1) if accepted else None
    base = parse_iso(accepted_at) if accepted_at else first
    dispatched_at = stamp(rng, base, 3) if accepted and rng.random() < 0.8 else None
    signed_at = (stamp(rng, parse_iso(dispatched_at), 12)
                 if dispatched_at and rng.random() < 0.8 else None)
    maybe = lambda values: rng.choice([None, *values])  # noqa: E731
    return {
        "id": f"random-{n}",
        "reporter_id": world.users["field1"],
        "area_id": rng.choice(list(world.areas.values())),
        "description": "随机问题",
        "category_id": maybe([world.category]),
        "lead_unit_id": maybe(list(world.units.values())),
        "status": rng.choice(STATUSES),
        "found_at": to_iso(first), "created_at": to_iso(first), "updated_at": to_iso(first),
        "accepted_at": accepted_at,
        "dispatched_at": dispatched_at,
        "signed_at": signed_at,
        "resident_contacted": maybe([0, 1]),
        "closed_at": stamp(rng, base, 20) if rng.random() < 0.6 else None,
        "closed_on_time": maybe([0, 1]),
        "deadline": maybe([(TODAY + dt.timedelta(days=rng.randint(-15, 10))).isoformat()
                           for _ in range(3)]),
        "outcome": maybe(workflow.OUTCOMES),
        "callback_reached": maybe([0, 1]),
        "callback_solved": maybe([0, 1]),
        "satisfaction": maybe([*workflow.SATISFACTION, "other"]),
    }


@pytest.mark.parametrize("seed", range(6))
def test_the_fast_path_counts_what_a_straightforward_computation_counts(db, world, seed):
    rng = random.Random(seed)
    rows = [random_problem(rng, world, n) for n in range(250)]
    with immediate(db):
        db["problems"].insert_all(rows)
    cfg = {**metrics.settings(db), "response_limit_days": rng.choice([1, 2, 5])}
    for username in ("office", "office_d1", "leader_d2", "handler1"):
        user = load(db, world, username)
        fast = metrics.compute(db, user, PERIOD, cfg)
        expected = straightforward(db, user, PERIOD, cfg)
        if username == "office":
            assert expected["total"][None]["accepted"] > 100
        assert {name: fast["totals"].get(name, 0) for name in metrics.COUNTS} == (
            expected["total"].get(None, dict.fromkeys(metrics.COUNTS, 0))), username
        for dim, key in (("unit", "units"), ("category", "categories"), ("area", "areas"),
                         ("week", "weeks")):
            got = {row.key: dict(row.counts) for row in fast[key]}
            assert got == expected[dim], (username, dim)
