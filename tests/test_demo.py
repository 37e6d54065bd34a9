"""The demo data generator: a consistent, deterministic city with a full problem ledger."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import uuid
from collections import defaultdict

import pytest
from starlette.testclient import TestClient

from server import auth, authz
from server.app import create_app
from server.db import immediate, open_database
from server.demo import (
    DEMO_PASSWORD,
    DemoDataExists,
    _uuid4,
    demo_accounts,
    seed_demo,
)
from server.ledger import closures, deadlines, workflow
from server.ledger.clock import local_today
from server.ledger.problems import STATUSES
from server.ledger.workflow import derive_status
from server.timeutil import LOCAL_TZ, local_date, parse_iso
from tests.conftest import login, new_database

NOW = dt.datetime(2026, 3, 1, 2, 10, tzinfo=dt.UTC)
PROBLEMS = 300
# Everything the seed writes, including what the triggers derive from it.
DATA_TABLES = (
    "areas", "units", "categories", "users", "visits", "diary_entries", "problems",
    "problem_events", "ledger_counters", "changes", "problem_search_keys", "supervision_orders",
    "joint_parts",
)
# Statuses that carry a ledger number: every one after acceptance.
NUMBERED = set(STATUSES) - {"submitted", "rejected", "merged"}
# Statuses reached through a dispatch (or, for callback and closed, solved on the spot).
DISPATCHED = {"dispatched", "handling", "returned", "replied", "callback", "closed"}
SUPERVISION_ORDER = ("none", "reminded", "supervised", "flagged")
# Digits of an area's code its children share (统计用区划代码 levels).
CODE_PREFIX = {1: 4, 2: 6, 3: 9, 4: 12, 5: 15}


@pytest.fixture
def target(request, tmp_path):
    """``target(name)``: a new database for this test."""
    return lambda name: new_database(request, tmp_path, name)


@pytest.fixture(scope="module")
def seeded(request, tmp_path_factory):
    db = open_database(new_database(request, tmp_path_factory.mktemp("demo"), "demo.db"))
    accounts = seed_demo(db, seed=7, problems=PROBLEMS, now=NOW)
    yield db, accounts
    db.close()


@pytest.fixture(scope="module")
def db(seeded):
    return seeded[0]


def rows(db, sql, params=()):
    return list(db.query(sql, params))


def table_contents(db) -> dict[str, list[tuple]]:
    return {
        table: db.execute(
            f"SELECT * FROM {table} ORDER BY {', '.join(db[table].pks)}").fetchall()
        for table in DATA_TABLES
    }


def seed_fresh(target, seed: int, problems: int = 120):
    db = open_database(target)
    seed_demo(db, seed=seed, problems=problems, now=NOW)
    return db


# --- accounts ---------------------------------------------------------------


def test_accounts_cover_every_role_and_use_the_demo_password(seeded):
    db, accounts = seeded
    assert {account.role for account in accounts} == set(authz.ROLES)
    users = {user["username"]: user for user in rows(db, "SELECT * FROM users")}
    assert len(users) == len(accounts)
    for account in accounts:
        user = users[account.username]
        assert account.password == DEMO_PASSWORD
        assert authz.parse_roles(user["roles"]) == {account.role}
        assert user["display_name"] == account.display_name
        assert auth.verify_password(user["password_hash"], DEMO_PASSWORD)
        assert re.fullmatch(r"1\d{10}", user["phone"])
    for username in ("admin", "office", "office_dc", "leader", "leader_dc", "field", "field2",
                     "handler_zjj", "handler_sw"):
        assert username in users


def test_account_scopes(seeded):
    db, accounts = seeded
    by_name = {account.username: account for account in accounts}
    levels = dict(db.execute(
        "SELECT u.username, a.level FROM users u JOIN areas a ON a.id = u.area_id"
    ).fetchall())
    assert levels["admin"] == levels["office"] == levels["leader"] == 1
    assert by_name["office_dc"].scope == by_name["leader_dc"].scope == "东城区"
    assert levels["field"] == levels["field2"] == 3
    assert by_name["field"].scope != by_name["field2"].scope
    assert by_name["handler_zjj"].scope == "市住建局"
    assert by_name["handler_sw"].scope == "青川水务集团"


def test_every_handler_belongs_to_an_existing_unit(db):
    handlers = rows(db, "SELECT u.unit_id, un.name FROM users u"
                        " LEFT JOIN units un ON un.id = u.unit_id WHERE u.roles = 'handler'")
    assert handlers
    assert all(handler["name"] for handler in handlers)
    unit_count = db.execute("SELECT count(*) FROM units").fetchone()[0]
    assert len({handler["unit_id"] for handler in handlers}) == unit_count


def test_demo_accounts_reads_the_accounts_back(seeded):
    db, accounts = seeded
    assert demo_accounts(db) == accounts


# --- areas, units, categories ---------------------------------------------------


def test_area_paths_follow_the_chain_of_ancestors(db):
    areas = {area["id"]: area for area in rows(db, "SELECT * FROM areas")}
    for area in areas.values():
        chain, current = [], area
        while current is not None:
            chain.append(current["id"])
            current = areas.get(current["parent_id"])
        assert area["path"] == "/" + "/".join(str(i) for i in reversed(chain)) + "/"
        assert len(chain) == area["level"]


def test_area_tree_shape_and_codes(db):
    areas = rows(db, "SELECT * FROM areas")
    children = defaultdict(list)
    for area in areas:
        children[area["parent_id"]].append(area)
    root = children[None]
    assert [area["name"] for area in root] == ["青川市"]
    allowed = {1: (4, 5), 2: (4, 6), 3: (4, 8), 4: (2, 3)}
    for area in areas:
        kids = children[area["id"]]
        if area["level"] in allowed:
            low, high = allowed[area["level"]]
            assert low <= len(kids) <= high, area["name"]
        assert all(kid["level"] == area["level"] + 1 for kid in kids)
        prefix = area["code"][:CODE_PREFIX[area["level"]]]
        assert all(kid["code"].startswith(prefix) for kid in kids)
        assert re.fullmatch(r"\d{15}" if area["level"] == 5 else r"\d{12}", area["code"])
        assert 35.5 < area["lat"] < 37.5 and 116 < area["lng"] < 118
    assert len({area["code"] for area in areas}) == len(areas)


def test_units_and_categories(db):
    units = rows(db, "SELECT * FROM units")
    assert 25 <= len(units) <= 35
    assert all(unit["contact_name"] and unit["contact_phone"] for unit in units)
    categories = rows(db, "SELECT * FROM categories")
    assert len(categories) == 15
    assert all(5 <= category["time_limit_days"] <= 20 for category in categories)
    assert all(category["default_unit_id"] for category in categories)


# --- the ledger -------------------------------------------------------------------


def test_problem_count_and_every_status_appears(db):
    assert db.execute("SELECT count(*) FROM problems").fetchone()[0] == PROBLEMS
    statuses = {row[0] for row in db.execute("SELECT DISTINCT status FROM problems")}
    assert statuses == set(STATUSES)


def test_problems_without_a_phone_close_as_no_contact(db):
    kinds = dict(db.execute("SELECT coalesce(closure_kind, '-'), count(*) FROM problems"
                            " WHERE status = 'closed' GROUP BY 1").fetchall())
    assert kinds.get("no_contact", 0) > 10 and kinds["-"] > kinds["no_contact"]


def test_most_problems_are_closed(db):
    closed = db.execute("SELECT count(*) FROM problems WHERE status = 'closed'").fetchone()[0]
    assert closed > PROBLEMS / 2


def test_ledger_numbers_are_unique_and_gapless_per_year_in_acceptance_order(db):
    problems = rows(db, "SELECT status, ledger_no, accepted_at FROM problems")
    numbered = [p for p in problems if p["ledger_no"]]
    assert {p["status"] for p in numbered} == NUMBERED
    assert all(p["ledger_no"] is None for p in problems if p["status"] not in NUMBERED)
    assert all((p["ledger_no"] is None) == (p["accepted_at"] is None) for p in problems)
    by_year = defaultdict(list)
    for problem in numbered:
        year, seq = re.fullmatch(r"ZF-(\d{4})-(\d{6})", problem["ledger_no"]).groups()
        assert int(year) == local(problem["accepted_at"]).year
        by_year[int(year)].append((int(seq), problem["accepted_at"]))
    for entries in by_year.values():
        entries.sort()
        assert [seq for seq, _ in entries] == list(range(1, len(entries) + 1))
        accepted = [at for _, at in entries]
        assert accepted == sorted(accepted)
    counters = dict(db.execute("SELECT year, last_no FROM ledger_counters").fetchall())
    assert counters == {year: len(entries) for year, entries in by_year.items()}


def local(stamp: str) -> dt.datetime:
    return parse_iso(stamp).astimezone(LOCAL_TZ)


def histories(db) -> dict[str, list[dict]]:
    events = defaultdict(list)
    for event in rows(db, "SELECT * FROM problem_events ORDER BY at, rowid"):
        event["data"] = json.loads(event["data"])
        events[event["problem_id"]].append(event)
    return events


def test_event_data_is_written_as_the_workflow_writes_it(db):
    for kind, data in db.execute("SELECT kind, data FROM problem_events").fetchall():
        assert data == json.dumps(json.loads(data), ensure_ascii=False, sort_keys=True), kind


def test_responses_are_frozen_as_the_workflow_freezes_them(db):
    signed = rows(db, "SELECT unit_dispatched_at, signed_at, resident_contacted,"
                      " responded_in_time FROM problems WHERE signed_at IS NOT NULL")
    assert len(signed) > 50
    for row in signed:  # from the current unit's dispatch
        assert row["responded_in_time"] == int(deadlines.responded_in_time(
            db, row["unit_dispatched_at"], row["signed_at"], row["resident_contacted"] == 1)), row
    assert {row["responded_in_time"] for row in signed} == {0, 1}
    assert db.execute("SELECT count(*) FROM problems WHERE signed_at IS NULL"
                      " AND responded_in_time IS NOT NULL").fetchone() == (0,)


def test_event_histories_are_chains_ending_in_the_problem_status(db):
    """The rules from the docstring of server/demo.py, checked on every problem."""
    events = histories(db)
    for problem in rows(db, "SELECT * FROM problems"):
        history = events[problem["id"]]
        first = history[0]
        assert (first["kind"], first["from_status"], first["to_status"]) == (
            "reported", None, "submitted")
        assert first["at"] == problem["found_at"] <= problem["created_at"]
        status = None
        for event in history:
            assert event["from_status"] == status, event["kind"]
            assert event["to_status"] is None or event["to_status"] != status
            status = event["to_status"] or status
        assert status == derive_status(history) == problem["status"]
        assert [e["at"] for e in history] == sorted(e["at"] for e in history)
        assert parse_iso(history[-1]["at"]) < NOW
        own = [e["at"] for e in history if e["kind"] != "merged_in"]
        assert problem["updated_at"] == max(problem["created_at"], own[-1])
        check_columns_against_events(problem, history)
        check_overdue_flags(history)


def check_columns_against_events(problem: dict, history: list[dict]) -> None:
    """Each column the workflow sets agrees with the events that set it."""
    def last(kind, **match):
        found = [e for e in history if e["kind"] == kind
                 and all(e["data"].get(k) == v for k, v in match.items())]
        return found[-1] if found else None

    on_spot = last("solved_on_spot")
    assert bool(problem["solved_on_spot"]) == bool(on_spot)
    accept = last("accept")
    if accept:
        assert problem["accepted_at"] == accept["at"]
        assert accept["data"]["ledger_no"] == problem["ledger_no"]
    else:
        assert problem["accepted_at"] == (problem["created_at"] if on_spot else None)

    dispatches = [e for e in history if e["kind"] == "dispatch"]
    if dispatches:
        # The clocks start at the first dispatch, and again at one after a justified return.
        starts = [e for e in dispatches if "deadline" in e["data"]]
        assert starts[0] is dispatches[0] and problem["dispatched_at"] == dispatches[0]["at"]
        assert all(e["data"].get("restarts") for e in starts[1:])
        assert [e for e in dispatches if "deadline" not in e["data"]] == [
            e for e in dispatches[1:] if e not in starts]
        assert problem["original_deadline"] == starts[-1]["data"]["deadline"]
        assert problem["unit_dispatched_at"] == dispatches[-1]["at"]
        assert problem["lead_unit_id"] == dispatches[-1]["data"]["lead_unit_id"]
        assert json.loads(problem["helper_unit_ids"]) == dispatches[-1]["data"]["helper_unit_ids"]
        setting = [e for e in history if (e["kind"] == "dispatch" and "deadline" in e["data"])
                   or (e["kind"] in deadlines.EXTENSION_EVENTS and e["data"].get("extra_days"))]
        assert problem["deadline"] == setting[-1]["data"]["deadline"]
        assert problem["extension_count"] == len([
            e for e in setting if e["kind"] != "dispatch" and e["at"] > starts[-1]["at"]])
    else:
        assert problem["dispatched_at"] is problem["lead_unit_id"] is problem["deadline"] is None
        assert problem["status"] not in DISPATCHED or on_spot

    closings = [e for e in history if e["kind"] in ("close_no_contact", "close_explained")
                or (e["kind"] == "callback" and e["data"].get("solved") is True
                    and not e["data"].get("redo_pending"))]
    closing = closings[-1] if closings else None
    ended = {"closed": closing, "rejected": last("reject"), "merged": last("merge")}
    end = ended.get(problem["status"])
    assert problem["closed_at"] == (end["at"] if end else None)
    if problem["status"] == "closed":
        assert problem["closed_on_time"] == int(closing["data"]["on_time"])
        due = local(closing["at"]).date() + dt.timedelta(days=30)
        if closing["kind"] == "close_explained":  # nothing fixed: no 回头看
            assert problem["return_visit_due"] is None
        else:
            assert problem["return_visit_due"] >= due.isoformat()
        if closing["kind"] == "callback":
            assert problem["callback_solved"] == 1 and problem["closure_kind"] is None
        elif closing["kind"] == "close_explained":  # solved but 不满意, explained
            assert problem["closure_kind"] == "explained" and problem["closure_reason"]
        else:  # nobody to call back: closed as 无回访对象
            assert problem["closure_kind"] == "no_contact" and not problem["resident_phone"]
    if any(e["kind"] == "callback" for e in history):
        assert problem["resident_phone"]  # a callback is made only where there is a phone
    if problem["status"] == "merged":
        assert problem["merged_into"] == ended["merged"]["data"]["original_id"]

    reply = last("reply")
    assert problem["outcome"] == (reply["data"]["outcome"] if reply else None)
    assert problem["replied_at"] == (reply["at"] if reply else None)
    levels = [e["data"]["level"] for e in history if e["kind"] in ("remind", "supervise", "flag")]
    assert problem["supervision"] == max(levels, key=SUPERVISION_ORDER.index, default="none")
    callbacks = [e["data"] for e in history if e["kind"] == "callback"]
    if callbacks:
        assert problem["callback_reached"] == int(callbacks[-1]["reached"])
    for data in callbacks:
        if data["reached"]:
            assert data["satisfaction"] in ("satisfied", "basically", "unsatisfied")


def check_overdue_flags(history: list[dict]) -> None:
    """``overdue``: open and past the deadline in force (a local day) just before the event."""
    deadline, status = None, None
    for event in history:
        if "overdue" in event["data"]:
            late = (deadline is not None and status not in ("closed", "rejected", "merged")
                    and local(event["at"]).date().isoformat() > deadline)
            assert event["data"]["overdue"] == late, event["kind"]
        if event["kind"] in ("dispatch", *deadlines.EXTENSION_EVENTS) and (
                "deadline" in event["data"]):
            deadline = event["data"]["deadline"]
        status = event["to_status"] or status


def test_reasons_are_chosen_from_the_lists_and_kept_on_the_problems(db):
    """Rejections, returns and extension requests name an active option of their list; each
    problem keeps the code of its latest such event."""
    from server.ledger import reasons

    active = {name: {option.code for option in options if option.active}
              for name, options in reasons.all_lists(db).items()}
    for name, kind in reasons.KINDS.items():
        code = db.dialect.json_text("e.data", "reason_code")
        events = rows(db, f"SELECT e.problem_id, {code} AS code,"
                          f" p.{name}_reason_code AS kept FROM problem_events e"
                          " JOIN problems p ON p.id = e.problem_id WHERE e.kind = ?"
                          " ORDER BY e.at, e.rowid", [kind])
        assert all(event["code"] in active[name] for event in events), name
        latest = {event["problem_id"]: event for event in events}
        assert all(event["kept"] == event["code"] for event in latest.values()), name
        if name != "explained":  # the demo closes nothing by explanation
            assert len({event["code"] for event in events}) > 1 or name == "return", name
    unchosen = db.execute("SELECT count(*) FROM problems WHERE reject_reason_code IS NULL"
                          " AND status = 'rejected'").fetchone()[0]
    assert unchosen == 0


def test_merged_problems_point_at_originals_that_know_them(db):
    events = histories(db)
    merged = rows(db, "SELECT id, merged_into FROM problems WHERE status = 'merged'")
    assert merged
    for problem in merged:
        mentions = [e for e in events[problem["merged_into"]] if e["kind"] == "merged_in"]
        assert problem["id"] in {e["data"]["duplicate_id"] for e in mentions}


def test_event_actors_fit_their_roles(db):
    roles = dict(db.execute("SELECT id, roles FROM users").fetchall())
    expected = {
        "sign": "handler", "progress": "handler", "reply": "handler", "return": "handler",
        "request_extension": "handler", "accept": "office", "dispatch": "office",
        "verify": "office", "callback": "office", "remind": "office", "supervise": "office",
        "flag": "leader", "solved_on_spot": "field", "close_no_contact": "office",
        "answer_supervision": "handler", "close_supervision": "office",
        "escalate_supervision": "office", "unflag": "leader",
    }
    for kind, actor_id in db.execute("SELECT kind, actor_id FROM problem_events").fetchall():
        if kind in expected:
            assert roles[actor_id] == expected[kind], kind


ORDER_EVENTS = ("supervise", "flag", "answer_supervision", "close_supervision",
                "escalate_supervision", "unflag")


def test_supervision_orders_match_their_events(db):
    orders = rows(db, "SELECT * FROM supervision_orders ORDER BY id")
    problems = {p["id"]: p for p in rows(db, "SELECT * FROM problems")}
    users = {u["id"]: u for u in rows(db, "SELECT * FROM users")}
    events = defaultdict(list)
    for event in rows(db, "SELECT * FROM problem_events WHERE kind IN"
                          f" ({', '.join('?' * len(ORDER_EVENTS))}) ORDER BY at", ORDER_EVENTS):
        events[json.loads(event["data"])["order_id"]].append(event)
    assert set(events) == {order["id"] for order in orders}
    assert {o["outcome"] for o in orders} == {None, "closed", "escalated", "lifted"}
    assert any(o["answered_at"] and not o["closed_at"] for o in orders)
    for order in orders:
        problem = problems[order["problem_id"]]
        issued, *later = events[order["id"]]
        data = json.loads(issued["data"])
        assert issued["kind"] == ("supervise" if order["kind"] == "order" else "flag")
        assert (issued["problem_id"], issued["actor_id"], issued["at"], issued["note"]) == (
            order["problem_id"], order["issued_by"], order["issued_at"], order["requirement"])
        assert (data["number"], data["unit_id"], data.get("answer_by")) == (
            order["number"], order["unit_id"], order["answer_by"])
        assert (order["kind"] == "order") == (order["answer_by"] is not None)
        assert order["number"].startswith(f"DB-{local_date(order['issued_at']).year}-")
        by_kind = {event["kind"]: event for event in later}
        assert len(by_kind) == len(later)
        if order["answered_at"]:
            answer = by_kind.pop("answer_supervision")
            assert order["kind"] == "order"
            assert (answer["actor_id"], answer["at"], answer["note"]) == (
                order["answered_by"], order["answered_at"], order["answer"])
            assert users[order["answered_by"]]["unit_id"] == order["unit_id"]
            assert users[order["answered_by"]]["roles"] == "handler"
        assert "answer_supervision" not in by_kind
        if order["closed_at"]:
            (kind, settled), = by_kind.items()
            assert json.loads(settled["data"])["outcome"] == order["outcome"]
            assert (settled["actor_id"], settled["at"]) == (order["closed_by"], order["closed_at"])
            assert kind == {"closed": "close_supervision", "escalated": "escalate_supervision",
                            "lifted": "unflag"}[order["outcome"]]
        else:
            assert not by_kind
        if order["outcome"] == "closed":
            assert order["answered_at"] and order["answered_at"] < order["closed_at"]
        if order["outcome"] == "escalated":
            assert order["answered_at"] or (
                local_date(order["closed_at"]) > dt.date.fromisoformat(order["answer_by"]))
        if order["outcome"] == "lifted":
            assert order["kind"] == "flag" and problem["status"] == "closed"
            assert problem["closed_at"] < order["closed_at"]


def test_supervision_numbers_count_each_year_without_gaps(db):
    by_year = defaultdict(list)
    for (number,) in db.execute("SELECT number FROM supervision_orders").fetchall():
        _, year, seq = number.split("-")
        by_year[int(year)].append(int(seq))
    counters = dict(db.execute("SELECT year, supervision_last_no FROM ledger_counters"))
    assert by_year
    for year, numbers in by_year.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1))
        assert counters[year] == len(numbers)
    assert all(counters[year] == 0 for year in set(counters) - set(by_year))


def test_the_city_office_sees_the_demo_orders_on_the_supervision_page(target, tmp_path):
    where = target("s.db")
    db = seed_fresh(where, seed=7, problems=300)
    open_numbers = [number for (number,) in db.execute(
        "SELECT number FROM supervision_orders WHERE closed_at IS NULL")]
    db.close()
    with TestClient(create_app(where, photos=tmp_path / "photos")) as client:
        assert login(client, "office", DEMO_PASSWORD).status_code == 303
        html = client.get("/supervision").text
    assert open_numbers and any(number in html for number in open_numbers)


def test_problems_sit_in_villages_or_grids_and_match_their_visits(db):
    problems = rows(db, "SELECT p.*, a.level, a.path FROM problems p"
                        " JOIN areas a ON a.id = p.area_id")
    visits = {v["id"]: v for v in rows(db, "SELECT v.*, a.level, a.path FROM visits v"
                                           " JOIN areas a ON a.id = v.area_id")}
    diaries = {d["id"]: d for d in rows(db, "SELECT * FROM diary_entries")}
    for problem in problems:
        assert problem["level"] in (4, 5)
        assert problem["urgency"] in ("normal", "urgent", "critical")
        assert problem["supervision"] in ("none", "reminded", "supervised", "flagged")
        if problem["visit_id"] is None:
            assert problem["source"] in ("hotline", "field")
            continue
        visit = visits[problem["visit_id"]]
        assert problem["source"] == "visit"
        assert problem["reporter_id"] == visit["author_id"]
        assert problem["path"].startswith(visit["path"])
        assert visit["started_at"] <= problem["found_at"] <= visit["ended_at"]
        if problem["diary_id"]:
            assert diaries[problem["diary_id"]]["visit_id"] == visit["id"]
    assert sum(p["source"] == "visit" for p in problems) > len(problems) * 0.8


def test_visits_and_diaries(db):
    visits = rows(db, "SELECT v.*, a.level FROM visits v JOIN areas a ON a.id = v.area_id")
    assert PROBLEMS / 5 < len(visits) < PROBLEMS / 2
    methods = {"sbls", "dundian", "xianchang", "ruhu", "jiefang", "other"}
    all_six = ["no_notice", "no_greeting", "no_briefing", "no_escort", "direct_grassroots",
               "direct_scene"]
    for visit in visits:
        assert visit["method"] in methods
        assert 3 <= visit["level"] <= 5
        checklist = json.loads(visit["checklist"])
        assert set(checklist) <= set(all_six)
        if visit["method"] == "sbls":
            assert checklist == all_six
        assert visit["started_at"] < visit["ended_at"] < NOW.isoformat()
    kinds = {row[0] for row in db.execute("SELECT DISTINCT person_kind FROM diary_entries")}
    assert kinds <= {"resident", "business", "cadre", "other"}
    assert db.execute("SELECT count(*) FROM diary_entries WHERE content = ''").fetchone()[0] == 0


def test_timestamps_are_utc_iso_with_offset(db):
    for (at,) in db.execute("SELECT at FROM problem_events LIMIT 200"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", at)
        assert parse_iso(at) < NOW
    oldest = db.execute("SELECT min(found_at) FROM problems").fetchone()[0]
    assert parse_iso(oldest) > NOW - dt.timedelta(days=366)


@pytest.mark.sqlite_only  # SQLite's bulk load leaves foreign keys off; PostgreSQL checks
def test_foreign_keys_hold(db):  # them all when the bulk load commits
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_descriptions_vary(db):
    descriptions = [row[0] for row in db.execute("SELECT description FROM problems")]
    assert len(set(descriptions)) > PROBLEMS * 0.9


# --- determinism and guards -------------------------------------------------------


def test_same_seed_and_now_give_identical_tables(target):
    first = seed_fresh(target("a.db"), seed=3)
    second = seed_fresh(target("b.db"), seed=3)
    assert table_contents(first) == table_contents(second)


def test_another_seed_gives_other_data(target):
    first = seed_fresh(target("a.db"), seed=3)
    second = seed_fresh(target("b.db"), seed=4)
    assert table_contents(first)["problems"] != table_contents(second)["problems"]


def test_seeding_a_database_with_areas_raises(db):
    with pytest.raises(DemoDataExists):
        seed_demo(db, problems=10, now=NOW)
    assert db.execute("SELECT count(*) FROM problems").fetchone()[0] == PROBLEMS


def test_naive_now_is_refused(target):
    db = open_database(target("t.db"))
    with pytest.raises(ValueError, match="naive"):
        seed_demo(db, problems=10, now=dt.datetime(2026, 3, 1))


def test_progress_lines_and_a_tiny_ledger(target):
    lines: list[str] = []
    db = open_database(target("t.db"))
    seed_demo(db, problems=20, now=NOW, progress=lines.append)
    assert lines and "areas" in lines[0] and "20 problems" in lines[-1]
    statuses = {row[0] for row in db.execute("SELECT DISTINCT status FROM problems")}
    assert statuses == set(STATUSES)


def test_uuid_text_matches_the_uuid_module():
    first, second = random.Random(5), random.Random(5)
    for _ in range(200):
        expected = str(uuid.UUID(int=second.getrandbits(128), version=4))
        assert _uuid4(first) == expected


def test_the_workflow_carries_on_from_the_demo_data(target):
    db = seed_fresh(target("w.db"), seed=5, problems=200)
    office = auth.load_user(db, db.execute(
        "SELECT id FROM users WHERE username = 'office'").fetchone()[0])

    def first(status: str, contact: bool | None = None) -> dict | None:
        """The earliest problem in ``status``: with a resident's phone, without one, or either."""
        found = rows(db, "SELECT * FROM problems WHERE status = ? ORDER BY found_at", [status])
        return next((row for row in found
                     if contact is None or closures.has_contact(row) == contact), None)

    year = local_today().year
    counter = db.execute("SELECT last_no, supervision_last_no FROM ledger_counters"
                         " WHERE year = ?", [year]).fetchone()
    submitted, dispatched = first("submitted"), first("dispatched")
    waiting = first("callback", contact=True)
    handling = first("handling")
    handler = auth.load_user(db, db.execute(
        "SELECT id FROM users WHERE unit_id = ?", [dispatched["lead_unit_id"]]).fetchone()[0])
    with immediate(db):
        accepted = workflow.apply(db, office, submitted["id"], "accept", {})
        signed = workflow.apply(db, handler, dispatched["id"], "sign", {"contacted": "1"})
        if waiting["redo_pending"]:  # solved but 不满意: the office's decision first
            redone = workflow.apply(db, office, waiting["id"], "redo", {"note": "重新办理"})
            assert redone["redo_count"] == waiting["redo_count"] + 1
            workflow.apply(db, auth.load_user(db, db.execute(
                "SELECT id FROM users WHERE unit_id = ?", [waiting["lead_unit_id"]]
            ).fetchone()[0]), waiting["id"], "reply", {"outcome": "solved", "note": "已重新办理"})
            workflow.apply(db, office, waiting["id"], "verify", {})
        closed = workflow.apply(db, office, waiting["id"], "callback", {
            "method": "phone", "result": "reached", "solved": "1", "satisfaction": "satisfied"})
        explained = workflow.apply(
            db, office, handling["id"], "close_explained",
            {"reason_code": "policy", "note": "属于政策范围外，已向群众解释"})
        workflow.apply(db, office, dispatched["id"], "supervise", {
            "note": "请说明超时原因", "answer_by": (local_today() + dt.timedelta(3)).isoformat()})
    order = rows(db, "SELECT * FROM supervision_orders ORDER BY id DESC LIMIT 1")[0]
    assert order["number"] == f"DB-{year}-{(counter[1] if counter else 0) + 1:04d}"
    assert accepted["ledger_no"] == f"ZF-{year}-{(counter[0] if counter else 0) + 1:06d}"
    assert signed["status"] == "handling"
    assert closed["status"] == "closed"
    assert (explained["status"], explained["closure_kind"]) == ("closed", "explained")


@pytest.mark.sqlite_only  # the bulk load's pragmas (PostgreSQL's settings are transaction-local)
def test_seeding_restores_the_connection_settings(tmp_path):
    db = open_database(tmp_path / "t.db")
    before = [db.execute(f"PRAGMA {p}").fetchone()[0]
              for p in ("journal_mode", "foreign_keys", "synchronous", "cache_size")]
    seed_demo(db, problems=20, now=NOW)
    after = [db.execute(f"PRAGMA {p}").fetchone()[0]
             for p in ("journal_mode", "foreign_keys", "synchronous", "cache_size")]
    assert after == before and before[:2] == ["wal", 1]


@pytest.mark.sqlite_only  # the file's journal mode, WAL, stays after a bulk load
def test_seeding_works_while_another_connection_is_open(tmp_path):
    db = open_database(tmp_path / "t.db")
    other = open_database(tmp_path / "t.db")
    seed_demo(db, problems=20, now=NOW)
    assert other.execute("SELECT count(*) FROM problems").fetchone()[0] == 20
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_helper_units_parts_follow_the_joint_rules(db):
    """Parts (server/ledger/joint.py) in every state, each agreeing with its events; the lead
    replies only once the current helpers answered or the office let it go ahead."""
    parts = rows(db, "SELECT * FROM joint_parts ORDER BY id")
    # Open parts are few in a ledger of 300 (most problems are closed): "dispatched" need
    # not be among them; the others always are.
    assert {part["state"] for part in parts} >= {"signed", "answered", "removed"}
    handler_unit = dict(db.execute("SELECT id, unit_id FROM users WHERE unit_id IS NOT NULL"))
    events = histories(db)
    by_problem = defaultdict(list)
    for part in parts:
        by_problem[part["problem_id"]].append(part)
    for problem in rows(db, "SELECT * FROM problems WHERE dispatched_at IS NOT NULL"):
        history = events[problem["id"]]
        mine = by_problem[problem["id"]]
        current = {p["unit_id"] for p in mine if p["state"] != "removed"}
        assert current == set(json.loads(problem["helper_unit_ids"]))
        for part in mine:
            own = [e for e in history if e["data"].get("part_id") == part["id"]]
            signs = [e for e in own if e["kind"] == "sign_part"]
            answers = [e for e in own if e["kind"] == "answer_part"]
            assert part["signed_at"] == (signs[0]["at"] if signs else None)
            assert part["answered_at"] == (answers[0]["at"] if answers else None)
            assert part["answer_event_id"] == (answers[0]["id"] if answers else None)
            for event in own:
                assert event["data"]["unit_id"] == part["unit_id"]
                assert handler_unit[event["actor_id"]] == part["unit_id"]
            if part["state"] == "removed":
                assert part["removed_at"] and not own
        released, answered, helpers = False, set(), set()
        for event in history:
            if event["kind"] == "dispatch":
                helpers, released = set(event["data"]["helper_unit_ids"]), False
            elif event["kind"] == "let_lead_reply":
                released = True
            elif event["kind"] == "answer_part":
                answered.add(event["data"]["unit_id"])
            elif event["kind"] == "reply":
                assert released or helpers <= answered, problem["id"]


def test_the_rules_paths_appear(db):
    """Problems in each state the rules on extensions, returns and 重办 add."""
    def count(where: str) -> int:
        return db.execute(f"SELECT count(*) FROM problems WHERE {where}").fetchone()[0]

    def events(kind: str, where: str = "1 = 1") -> int:
        return db.execute(f"SELECT count(*) FROM problem_events WHERE kind = ? AND {where}",
                          [kind]).fetchone()[0]

    json_text = db.dialect.json_text
    assert count(f"{json_text('extension_request', 'awaiting_leader')} IS NOT NULL") > 0
    assert count("status = 'returned'") > 0  # awaiting the office's decision
    assert count("status = 'callback' AND redo_pending = 1") > 0
    assert events("redo") > 0 and events("approve_extension_leader") > 0
    assert events("accept_return") > 0 and events("refuse_return") > 0
    restarts = f"{json_text('data', 'restarts')} IS NOT NULL"  # only ever true
    assert events("dispatch", restarts) == events("accept_return")
    assert count("unjustified_returns > 0") == events("refuse_return")
