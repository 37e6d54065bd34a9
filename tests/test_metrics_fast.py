"""The statistics' fast path (the weekly roll-up for whole weeks, one query over an index
that stores the row-only features for the rest) against a straightforward computation,
problem by problem, over random ledgers, before and after random changes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import re
from collections import Counter

import pytest

from server import authz
from server.areas import insert_area
from server.db import immediate
from server.db.dialect import POSTGRESQL
from server.db.postgresql_history import _shared as postgresql_history
from server.db.sqlite_history import ROLLUP_LEVELS, rollup_key_sql
from server.ledger import clock, metrics, states
from server.ledger.problems import STATUSES
from server.ledger.queries import local_day_start
from server.timeutil import LOCAL_TZ, parse_iso, to_iso
from tests.ledger_helpers import add_problem, load

TODAY = clock.local_today()
THIS_MONDAY = metrics.monday(TODAY)
PERIOD = metrics.Period(TODAY - dt.timedelta(days=40), TODAY)
NOW = dt.datetime.now(dt.UTC)
DAY, WEEK = dt.timedelta(days=1), dt.timedelta(weeks=1)

# Periods that take every path of metrics.grouped_counts: whole weeks only, whole weeks
# with days at one end or both, days only (within one week, or across one Monday).
PERIODS = {
    "40 days to today": PERIOD,
    "mid-week to today": metrics.Period(THIS_MONDAY - 5 * WEEK + 2 * DAY, TODAY),
    "Monday to today": metrics.Period(THIS_MONDAY - 4 * WEEK, TODAY),
    "Monday to Sunday": metrics.Period(THIS_MONDAY - 5 * WEEK, THIS_MONDAY - DAY),
    "Monday to mid-week": metrics.Period(THIS_MONDAY - 4 * WEEK,
                                         THIS_MONDAY - 2 * WEEK + 2 * DAY),
    "mid-week to Sunday": metrics.Period(THIS_MONDAY - 4 * WEEK + 3 * DAY,
                                         THIS_MONDAY - WEEK - DAY),
    "inside one week": metrics.Period(THIS_MONDAY - 2 * WEEK + DAY,
                                      THIS_MONDAY - 2 * WEEK + 4 * DAY),
    "across one Monday": metrics.Period(THIS_MONDAY - 3 * WEEK + 4 * DAY,
                                        THIS_MONDAY - 2 * WEEK + 2 * DAY),
    "one Sunday": metrics.Period(THIS_MONDAY - 2 * WEEK - DAY, THIS_MONDAY - 2 * WEEK - DAY),
    "one Monday": metrics.Period(THIS_MONDAY - 2 * WEEK, THIS_MONDAY - 2 * WEEK),
    "today": metrics.Period(TODAY, TODAY),
}
# Users reading the roll-up (the city, districts) and users who do not (a town, a village,
# a handler's unit, a field official's area or own reports).
ROLLUP_USERS = ("office", "office_d1", "leader_d2")
OTHER_USERS = ("office@t1", "leader@v1", "handler1", "field1")


def user_of(db, world, name: str) -> authz.User:
    """A conftest user, or ``role@area``: the office or leader user moved to that area."""
    if "@" not in name:
        return load(db, world, name)
    username, area = name.split("@")
    path = db.execute("SELECT path FROM areas WHERE id = ?", [world.areas[area]]).fetchone()[0]
    return dataclasses.replace(load(db, world, username), area_id=world.areas[area],
                               area_path=path)


# The index and the roll-up's triggers ------------------------------------------------------


def normalised(sql: str) -> str:
    return " ".join(sql.split())


@pytest.mark.sqlite_only  # the index's SQL as SQLite keeps it (sqlite_master)
@pytest.mark.parametrize("index", [metrics.STATS_INDEX, metrics.STATS_AREA_INDEX])
def test_the_index_stores_the_row_only_features_as_the_query_spells_them(db, index):
    index_sql = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", [index]).fetchone()[0]
    # The query's expression, without the table alias, is one of the index's columns:
    # if a formula changes, a new migration must rebuild the index to match it.
    assert metrics.stored_features_sql(db.dialect).replace("p.", "") in normalised(index_sql)


@pytest.mark.sqlite_only  # the triggers' SQL as SQLite keeps it (sqlite_master)
def test_the_rollup_triggers_count_the_features_as_the_query_spells_them(db):
    """The roll-up's triggers pack the row-only features exactly as the statistics read
    them from the index: a changed formula needs a migration that rewrites both."""
    triggers = dict(db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN"
        " ('problems_stats_insert', 'problems_stats_update', 'problems_stats_delete')"))
    assert set(triggers) == {"problems_stats_insert", "problems_stats_update",
                             "problems_stats_delete"}
    features = normalised(metrics.stored_features_sql(db.dialect))
    counted_in = features.replace("p.", "NEW.")
    counted_out = features.replace("p.", "OLD.")
    assert counted_in in normalised(triggers["problems_stats_insert"])
    assert counted_out not in normalised(triggers["problems_stats_insert"])
    assert counted_in in normalised(triggers["problems_stats_update"])
    assert counted_out in normalised(triggers["problems_stats_update"])
    assert counted_out in normalised(triggers["problems_stats_delete"])
    assert counted_in not in normalised(triggers["problems_stats_delete"])
    # And the key the tests below rebuild the roll-up with is the triggers' key.
    for level in ROLLUP_LEVELS:
        assert normalised(rollup_key_sql("NEW", level)) in normalised(
            triggers["problems_stats_insert"])
        assert normalised(rollup_key_sql("OLD", level)) in normalised(
            triggers["problems_stats_delete"])


def function_calls(db, sql: str, params: list) -> Counter:
    return Counter(row[5] for row in db.execute(f"EXPLAIN {sql}", params)
                   if row[1] in ("Function", "PureFunc"))


@pytest.mark.sqlite_only  # SQLite's query plan and bytecode (EXPLAIN)
@pytest.mark.parametrize("username, index", [
    ("office", metrics.STATS_INDEX), ("handler1", metrics.STATS_INDEX),
    ("office_d1", metrics.STATS_AREA_INDEX), ("office@t1", metrics.STATS_AREA_INDEX),
])
def test_the_query_reads_the_features_from_the_index(db, world, username, index):
    user = user_of(db, world, username)
    sql, params = metrics.cohort_query(db.dialect, user, PERIOD, metrics.monday(PERIOD.start),
                                       TODAY, metrics.child_codes(db, user)[0])
    plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert f"INDEX {index}" in plan, plan
    calls = function_calls(db, sql, params)
    # Only the constant Monday weeks are counted from (today is a parameter), and the
    # rounding of the week's milliseconds. Were the index not used, every problem would
    # call julianday() again (the week), date() (on_time) and more.
    assert calls == Counter({"julianday(-1)": 1, "round(1)": 1, "substr(3)": 1,
                             "instr(2)": 1}), calls


@pytest.mark.parametrize("username", ["office", "office_d1", "handler1"])
def test_the_postgresql_queries_carry_no_sqlite_spelling(db, world, username):
    user = user_of(db, world, username)
    codes = metrics.child_codes(db, user)[0]
    start = THIS_MONDAY - 6 * WEEK
    queries = [metrics.cohort_query(POSTGRESQL, user, PERIOD, start, TODAY, codes)[0],
               metrics.rollup_query(POSTGRESQL, user, start, THIS_MONDAY - DAY, start, TODAY,
                                    codes)[0],
               metrics.rollup_totals_query(POSTGRESQL, user, start, THIS_MONDAY - DAY, TODAY)[0]]
    for sql in queries:
        found = re.findall(r"INDEXED BY|LIMIT -1|\bifnull\(|\binstr\(|\bjulianday\(|\bdate\("
                           r"| IS 1\b|AS INTEGER", sql)
        assert found == [], sql
    assert "fl_julianday(p.accepted_at)" in queries[0]
    assert "fl_local_day(p.closed_at)" in queries[0]


@pytest.mark.sqlite_only  # SQLite's query plan and bytecode (EXPLAIN)
def test_the_rollup_query_reads_a_range_of_weeks_by_the_primary_key(db, world):
    start = THIS_MONDAY - 6 * WEEK
    user = load(db, world, "office_d1")
    sql, params = metrics.rollup_query(db.dialect, user, start, THIS_MONDAY - DAY, start, TODAY,
                                       metrics.child_codes(db, user)[0])
    plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "SEARCH r USING PRIMARY KEY (level=? AND week>? AND week<?)" in plan, plan
    assert "SCAN r" not in plan, plan
    # Per roll-up row only the child area's code (substr, instr); today is a parameter.
    calls = function_calls(db, sql, params)
    assert set(calls) <= {"substr(3)", "instr(2)"}, calls


# A straightforward computation -----------------------------------------------------------


def local_day(stamp: str) -> dt.date:
    return parse_iso(stamp).astimezone(LOCAL_TZ).date()


def features(row: dict) -> dict[str, int]:
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
    if row["lead_unit_id"] is None or row["deadline"] is None:
        unit_reply = metrics.UNIT_NONE
    elif row["status"] in ("dispatched", "handling"):
        unit_reply = metrics.UNIT_HOLDS
    elif row["replied_at"] is None:
        unit_reply = metrics.UNIT_NONE
    elif local_day(row["replied_at"]).isoformat() <= row["deadline"]:
        unit_reply = metrics.UNIT_ON_TIME
    else:
        unit_reply = metrics.UNIT_LATE
    original = row["original_deadline"] or row["deadline"]
    on_time_original = closed and (original is None or (
        row["closed_at"] is not None and local_day(row["closed_at"]).isoformat() <= original))
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
        "dispatched": row["unit_dispatched_at"] is not None,
        "responded": row["responded_in_time"] == 1,
        "closure": metrics.CLOSURE_CODES.get(row["closure_kind"], 0),
        "relapsed": row["relapsed"] == 1,
        "resident_rating": metrics.SATISFACTION_CODES.get(row["resident_rating"], 0),
        "unit_reply": unit_reply,
        "on_time_original": on_time_original,
        "redone": row["redo_count"] > 0,
        "unjustified_return": row["unjustified_returns"] > 0,
        "deadline": deadline,
    }


def child_area(paths: dict[int, str], user: authz.User, area_id: int) -> int | None:
    path = paths[area_id]
    if path == user.area_path:
        return user.area_id
    if not path.startswith(user.area_path):
        return None
    return int(path[len(user.area_path):].split("/")[0])


def straightforward(db, user: authz.User, period: metrics.Period) -> dict:
    """Totals and counts per dimension, reading every problem in scope."""
    paths = dict(db.execute("SELECT id, path FROM areas").fetchall())
    start, end = local_day_start(period.start), local_day_start(period.end + DAY)
    scope, params = authz.problem_scope(user, "p")
    result = {dim: {} for dim in ("total", *metrics.DIMENSIONS)}
    for row in db.query(f"SELECT p.* FROM problems p WHERE {scope}", params):
        accepted = row["accepted_at"]
        if accepted is None or not start <= accepted < end or row["status"] in (
                "rejected", "merged"):
            continue
        found = features(row)
        counts = {name: int(bool(test(found))) for name, test in metrics.COUNTS.items()}
        keys = {
            "total": None, "unit": row["lead_unit_id"], "category": row["category_id"],
            "area": child_area(paths, user, row["area_id"]),
            "week": metrics.monday(local_day(accepted)).isoformat(),
        }
        for dim, key in keys.items():
            into = result[dim].setdefault(key, dict.fromkeys(metrics.COUNTS, 0))
            for name, n in counts.items():
                into[name] += n
    return result


def assert_same_counts(db, user: authz.User, period: metrics.Period, label) -> dict:
    """metrics.compute equals the straightforward computation, and so does compute from the
    roll-up's two parts read apart (as the statistics page reads them); returns the
    straightforward computation."""
    fast = metrics.compute(db, user, period, metrics.settings(db))
    today = clock.local_today()
    parts = [row for part in (metrics.UNIT_AND_CATEGORY, metrics.AREA_AND_WEEK)
             for row in metrics.rollup_part(db, user, period, part, today)]
    from_parts = metrics.compute(db, user, period, metrics.settings(db), parts, today)
    for key in ("totals", "units", "categories", "areas", "weeks"):
        assert from_parts[key] == fast[key], (label, key)
    expected = straightforward(db, user, period)
    assert {name: fast["totals"].get(name, 0) for name in metrics.COUNTS} == (
        expected["total"].get(None, dict.fromkeys(metrics.COUNTS, 0))), label
    for dim, key in (("unit", "units"), ("category", "categories"), ("area", "areas"),
                     ("week", "weeks")):
        got = {row.key: dict(row.counts) for row in fast[key]}
        assert got == expected[dim], (label, dim)
    return expected


# Random ledgers --------------------------------------------------------------------------


def grow_world(db, world) -> tuple[list[int], list[int]]:
    """More towns, villages and categories than conftest's, so that districts have several
    towns and towns several villages. Returns every area id and category id."""
    with immediate(db):
        a = world.areas
        a["t3"] = insert_area(db, "370102002", "东关街道", 3, a["d1"])
        a["v3"] = insert_area(db, "370102002001", "东关社区", 4, a["t3"])
        a["v4"] = insert_area(db, "370102001002", "和平社区", 4, a["t1"])
        a["g4"] = insert_area(db, "370102001002001", "第二网格", 5, a["v4"])
        a["t4"] = insert_area(db, "370103002", "青石镇", 3, a["d2"])
        a["d3"] = insert_area(db, "370104", "南山区", 2, a["city"])
        roads = db["categories"].insert({
            "code": "roads", "name": "道路", "default_unit_id": world.units["u1"],
            "time_limit_days": 5}).last_pk
    return list(a.values()), [world.category, roads]


def stamp(rng: random.Random, after: dt.datetime, within_days: float) -> str:
    """A stored timestamp up to ``within_days`` after ``after``, never later than now;
    often on a second next to local midnight (16:00 UTC), where local days turn."""
    moment = after + dt.timedelta(days=rng.uniform(0, within_days))
    if rng.random() < 0.3:
        moment = moment.replace(hour=15 + rng.randint(0, 1), minute=rng.choice([0, 59]),
                                second=rng.choice([0, 59]), microsecond=0)
    return to_iso(min(max(moment, after), NOW))


FIRST = dt.datetime.combine(PERIOD.start - 5 * DAY, dt.time(), dt.UTC)


def random_problem(rng: random.Random, world, n: int, areas: list[int],
                   categories: list[int]) -> dict:
    accepted = rng.random() < 0.95
    accepted_at = stamp(rng, FIRST, (NOW - FIRST).days + 1) if accepted else None
    base = parse_iso(accepted_at) if accepted_at else FIRST
    dispatched_at = stamp(rng, base, 3) if accepted and rng.random() < 0.8 else None
    signed_at = (stamp(rng, parse_iso(dispatched_at), 12)
                 if dispatched_at and rng.random() < 0.8 else None)
    maybe = lambda values: rng.choice([None, *values])  # noqa: E731
    return {
        "id": f"random-{n}",
        "reporter_id": world.users["field1"],
        "area_id": rng.choice(areas),
        "description": "随机问题",
        "category_id": maybe(categories),
        "lead_unit_id": maybe(list(world.units.values())),
        "status": rng.choice(STATUSES),
        "found_at": to_iso(FIRST), "created_at": to_iso(FIRST), "updated_at": to_iso(FIRST),
        "accepted_at": accepted_at,
        "dispatched_at": dispatched_at,
        "unit_dispatched_at": maybe([dispatched_at]) if dispatched_at else None,
        "signed_at": signed_at,
        "replied_at": maybe([stamp(rng, base, 20)]),
        "resident_contacted": maybe([0, 1]) if signed_at else None,
        "responded_in_time": maybe([0, 1]) if signed_at else None,
        "closed_at": stamp(rng, base, 20) if rng.random() < 0.6 else None,
        "closed_on_time": maybe([0, 1]),
        "deadline": random_deadline(rng),
        "original_deadline": random_deadline(rng),
        "redo_count": rng.choice([0, 0, 1, 2]),
        "unjustified_returns": rng.choice([0, 0, 1]),
        "outcome": maybe(states.OUTCOMES),
        "callback_reached": maybe([0, 1]),
        "callback_solved": maybe([0, 1]),
        "satisfaction": maybe([*states.SATISFACTION, "other"]),
        "closure_kind": maybe([*states.CLOSURE_KINDS, "other"]),
        "relapsed": rng.choice([0, 0, 1]),
        "resident_rating": maybe(states.SATISFACTION),
    }


def random_deadline(rng: random.Random) -> str | None:
    # Often today or the days next to it, where "passed" turns.
    return rng.choice([None, *((TODAY + dt.timedelta(days=rng.randint(-15, 10))).isoformat()
                               for _ in range(3)), (TODAY + DAY * rng.randint(-1, 1)).isoformat()])


def random_ledger(db, world, seed: int, size: int = 250) -> tuple[random.Random, dict]:
    rng = random.Random(seed)
    areas, categories = grow_world(db, world)
    rows = [random_problem(rng, world, n, areas, categories) for n in range(size)]
    with immediate(db):
        db["problems"].insert_all(rows)
    return rng, {"areas": areas, "categories": categories, "ids": [row["id"] for row in rows],
                 "next": size}


@pytest.fixture
def rollup_reads(monkeypatch) -> list:
    """The (start, end) of every roll-up read by metrics.grouped_counts."""
    reads = []
    real = metrics.rollup_query

    def spy(dialect, user, start, end, first_week, *rest):
        reads.append((start, end))
        return real(dialect, user, start, end, first_week, *rest)

    monkeypatch.setattr(metrics, "rollup_query", spy)
    return reads


def assert_all_users_and_periods(db, world, rollup_reads: list) -> None:
    for name in (*ROLLUP_USERS, *OTHER_USERS):
        user = user_of(db, world, name)
        assert metrics.reads_rollup(user) == (name in ROLLUP_USERS), name
        for label, period in PERIODS.items():
            before = len(rollup_reads)
            expected = assert_same_counts(db, user, period, (name, label))
            if name == "office" and label == "40 days to today":
                assert expected["total"][None]["accepted"] > 100
            if name not in ROLLUP_USERS:
                assert len(rollup_reads) == before, (name, label)
            elif label in ("Monday to Sunday", "40 days to today", "Monday to today",
                           "mid-week to today"):  # in one query, and in two parts
                assert len(rollup_reads) == before + 3, (name, label)


@pytest.mark.parametrize("seed", range(5))
def test_the_fast_path_counts_what_a_straightforward_computation_counts(
        db, world, seed, rollup_reads):
    random_ledger(db, world, seed)
    assert_all_users_and_periods(db, world, rollup_reads)
    assert rollup_reads  # the roll-up path really ran


# Random changes ---------------------------------------------------------------------------


def rollup(db) -> Counter:
    return Counter({tuple(row[:7]): row[7] for row in db.execute(
        "SELECT level, week, area_id, unit_id, category_id, features, deadline, n"
        " FROM stats_rollup")})


def backend_rollup_key_sql(db, row: str, level: int) -> str:
    """The roll-up key as the database's own schema history spells it."""
    if db.dialect is POSTGRESQL:
        return postgresql_history.rollup_key_sql(
            row, level, postgresql_history.STATS_FEATURES_LATEST)
    return rollup_key_sql(row, level)


def rebuilt_rollup(db) -> Counter:
    return Counter({tuple(row[:7]): row[7] for level in ROLLUP_LEVELS for row in db.execute(
        f"SELECT {backend_rollup_key_sql(db, 'p', level)}, count(*) FROM problems p"
        " WHERE p.accepted_at IS NOT NULL AND p.status NOT IN ('rejected', 'merged')"
        " GROUP BY 1, 2, 3, 4, 5, 6, 7")})


def assert_rollup_is_rebuilt(db) -> None:
    kept = rollup(db)
    assert not [key for key, n in kept.items() if n <= 0], "rows with n <= 0 remain"
    assert kept == rebuilt_rollup(db)


def random_change(rng: random.Random, db, world, ledger: dict) -> None:
    """One random change of the problems through SQL."""
    ids = ledger["ids"]
    problem = rng.choice(ids)
    maybe = lambda values: rng.choice([None, *values])  # noqa: E731
    sets = {
        "status": lambda: rng.choice(STATUSES),
        "deadline": lambda: random_deadline(rng),
        "area_id": lambda: rng.choice(ledger["areas"]),
        "lead_unit_id": lambda: maybe(list(world.units.values())),
        "category_id": lambda: maybe(ledger["categories"]),
        "accepted_at": lambda: maybe([stamp(rng, FIRST, (NOW - FIRST).days + 1)]),
        "closed_at": lambda: maybe([stamp(rng, FIRST, (NOW - FIRST).days + 1)]),
        "closed_on_time": lambda: maybe([0, 1]),
        "responded_in_time": lambda: maybe([0, 1]),
        "satisfaction": lambda: maybe([*states.SATISFACTION, "other"]),
        "outcome": lambda: maybe(states.OUTCOMES),
        "callback_reached": lambda: maybe([0, 1]),
        "callback_solved": lambda: maybe([0, 1]),
        "dispatched_at": lambda: maybe([stamp(rng, FIRST, 3)]),
        "closure_kind": lambda: maybe([*states.CLOSURE_KINDS, "other"]),
        "relapsed": lambda: rng.choice([0, 1]),
        "resident_rating": lambda: maybe(states.SATISFACTION),
        "unit_dispatched_at": lambda: maybe([stamp(rng, FIRST, 3)]),
        "replied_at": lambda: maybe([stamp(rng, FIRST, (NOW - FIRST).days + 1)]),
        "original_deadline": lambda: random_deadline(rng),
        "redo_count": lambda: rng.choice([0, 1, 2]),
        "unjustified_returns": lambda: rng.choice([0, 1]),
        "description": lambda: "改过的描述",  # not counted: no change to the roll-up
    }
    kind = rng.random()
    if kind < 0.55:  # one or a few columns of one problem
        columns = rng.sample(sorted(sets), rng.choice([1, 1, 2, 3]))
        db.execute(f"UPDATE problems SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?",
                   [sets[c]() for c in columns] + [problem])
    elif kind < 0.65:  # one column of several problems at once
        column = rng.choice(sorted(sets))
        chosen = rng.sample(ids, min(len(ids), rng.randint(2, 20)))
        db.execute(f"UPDATE problems SET {column} = ? WHERE id IN ({', '.join('?' * len(chosen))})",
                   [sets[column](), *chosen])
    elif kind < 0.7:  # out of the cohort and back, or an update that changes nothing
        db.execute("UPDATE problems SET accepted_at = NULL WHERE id = ?", [problem])
        db.execute("UPDATE problems SET accepted_at = ? WHERE id = ?",
                   [stamp(rng, FIRST, (NOW - FIRST).days + 1), problem])
        db.execute("UPDATE problems SET status = status, deadline = deadline WHERE id = ?",
                   [problem])
    elif kind < 0.85:
        db.execute("DELETE FROM problem_moves WHERE problem_id = ?", [problem])
        db.execute("DELETE FROM problems WHERE id = ?", [problem])
        ids.remove(problem)
    else:
        row = random_problem(rng, world, ledger["next"], ledger["areas"], ledger["categories"])
        ledger["next"] += 1
        db["problems"].insert(row)
        ids.append(row["id"])


@pytest.mark.parametrize("seed", range(3))
def test_the_rollup_follows_every_change_of_the_problems(db, world, seed, rollup_reads):
    rng, ledger = random_ledger(db, world, 100 + seed, size=200)
    assert_rollup_is_rebuilt(db)
    for _ in range(12):
        with immediate(db):
            for _ in range(rng.randint(5, 25)):
                random_change(rng, db, world, ledger)
        assert_rollup_is_rebuilt(db)
    assert ledger["next"] > 200 and len(ledger["ids"]) < ledger["next"]  # inserts and deletes
    assert_all_users_and_periods(db, world, rollup_reads)


def test_a_rolled_back_change_leaves_the_rollup_as_it_was(db, world):
    random_ledger(db, world, 7, size=100)
    before = rollup(db)
    with pytest.raises(RuntimeError), immediate(db):
        db.execute("UPDATE problems SET status = 'closed', deadline = NULL")
        db.execute("DELETE FROM problem_moves")
        db.execute("DELETE FROM problems WHERE id LIKE 'random-%'")
        raise RuntimeError("rolled back")
    assert rollup(db) == before == rebuilt_rollup(db)


# Week boundaries --------------------------------------------------------------------------


def test_a_problem_accepted_at_local_midnight_on_a_monday_counts_in_that_week(db, world):
    boundary = THIS_MONDAY - 2 * WEEK
    sunday = dt.datetime.combine(boundary - DAY, dt.time(), dt.UTC)
    monday_midnight = to_iso(sunday.replace(hour=16))  # 00:00:00 local, the Monday
    sunday_last_second = to_iso(sunday.replace(hour=15, minute=59, second=59))
    assert local_day(monday_midnight) == boundary
    add_problem(db, world, id="at-midnight", accepted_at=monday_midnight,
                area_id=world.areas["v1"])
    add_problem(db, world, id="before-midnight", accepted_at=sunday_last_second,
                area_id=world.areas["v1"], status="closed")
    office = load(db, world, "office")
    assert metrics.reads_rollup(office)
    weeks = {
        # Whole weeks only: both read from the roll-up.
        metrics.Period(boundary - 2 * WEEK, boundary + 2 * WEEK - DAY): 2,
        # The boundary's weeks whole, days at both ends from the problems.
        metrics.Period(boundary - 2 * WEEK + 3 * DAY, boundary + WEEK + 2 * DAY): 2,
        # Either week alone, from the roll-up.
        metrics.Period(boundary, boundary + WEEK - DAY): 1,
        metrics.Period(boundary - WEEK, boundary - DAY): 1,
        # The Monday's week from the roll-up, the Sunday from the problems, and back.
        metrics.Period(boundary - DAY, boundary + WEEK - DAY): 2,
        metrics.Period(boundary - WEEK, boundary): 2,
        metrics.Period(boundary - DAY, boundary - DAY): 1,
        metrics.Period(boundary, boundary): 1,
    }
    for period, n in weeks.items():
        for name in ("office", "office_d1", "office@t1"):
            expected = assert_same_counts(db, user_of(db, world, name), period, (name, period))
            assert expected["total"][None]["accepted"] == n
    result = metrics.compute(db, office, metrics.Period(boundary - WEEK, boundary + WEEK - DAY))
    by_week = {row.key: (row.counts["accepted"], row.counts["closed"]) for row in result["weeks"]}
    assert by_week == {(boundary - WEEK).isoformat(): (1, 1), boundary.isoformat(): (1, 0)}


def test_a_problem_accepted_in_the_last_milliseconds_of_a_sunday_counts_once(db, world):
    boundary = THIS_MONDAY - 2 * WEEK
    sunday = dt.datetime.combine(boundary - DAY, dt.time(), dt.UTC)
    add_problem(db, world, id="late", area_id=world.areas["v1"],
                accepted_at=to_iso(sunday.replace(hour=15, minute=59, second=59,
                                                  microsecond=995000)))
    add_problem(db, world, id="later", area_id=world.areas["v1"],
                accepted_at=to_iso(sunday.replace(hour=15, minute=59, second=59,
                                                  microsecond=999000)))
    period = metrics.Period(boundary - DAY, boundary + WEEK - DAY)
    assert straightforward(db, load(db, world, "office"), period)["total"][None]["accepted"] == 2
    assert_same_counts(db, load(db, world, "office"), period, "office")


def test_only_an_area_scope_reads_the_rollup(db, world):
    """An administrator sees no problems (problem_scope is "0"): no roll-up either."""
    office = load(db, world, "office")
    assert metrics.reads_rollup(office)
    for roles in ({"admin"}, {"office", "field"}, {"leader", "handler"}):
        assert not metrics.reads_rollup(dataclasses.replace(office, roles=frozenset(roles)))
