"""The phone's working set: a snapshot of it, then the change log, hold exactly the set."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.ledger import clock as ledger_clock
from server.timeutil import to_iso
from sync import pull, working_set
from sync.client import page_changes
from tests.conftest import api_login
from tests.sync_helpers import new_id, phone, visit_args
from tests.test_sync_pull import Puller

AREAS = ("city", "d1", "d2", "t1", "t2", "v1", "v2", "g1")
USERS = ("field1", "office_d1", "handler1", "leader")
DAY = dt.timedelta(days=1)


@pytest.fixture
def now(monkeypatch):
    """The ledger's clock, moved by the test: now["at"] += DAY."""
    moment = {"at": dt.datetime.now(dt.UTC).replace(microsecond=0)}
    monkeypatch.setattr(ledger_clock, "utcnow", lambda: moment["at"])
    return moment


def report(db, world, now, *, area="v1", reporter="office", found_days_ago=1,
           status="handling", unit=None, closed_days_ago=None) -> str:
    problem_id = new_id()
    at = to_iso(now["at"])
    db["problems"].insert({
        "id": problem_id, "reporter_id": world.users[reporter], "area_id": world.areas[area],
        "description": "楼道灯不亮", "status": status,
        "lead_unit_id": world.units[unit] if unit else None,
        "closed_at": (to_iso(now["at"] - closed_days_ago * DAY)
                      if closed_days_ago is not None else None),
        "found_at": to_iso(now["at"] - found_days_ago * DAY), "created_at": at, "updated_at": at,
    })
    return problem_id


def close(db, now, problem_id: str) -> None:
    db["problems"].update(problem_id, {"status": "closed", "closed_at": to_iso(now["at"])})


def full_replay(client, username: str) -> dict:
    """Every record the user may hold, replayed from the whole change log (format 1)."""
    records = {}
    for change in Puller(client, username).changes():
        key = (change["entity"], change["id"])
        if change.get("deleted"):
            records.pop(key, None)
        else:
            records[key] = change["data"]
    return records


def held(sender) -> dict:
    return {tuple(key.split(":", 1)): {k: v for k, v in record.items() if k != "_version"}
            for key, record in sender.state["records"].items()}


def floor_of(sender) -> str | None:
    return pull.parse_cursor(sender.state["cursor"]).floor


def in_set(records: dict, floor: str | None) -> dict:
    return {key: data for key, data in records.items()
            if key[0] != "problem" or floor is None or data["found_at"] >= floor}


OPERATIONS = st.one_of(
    st.tuples(st.just("report"), st.sampled_from(AREAS), st.integers(0, 200),
              st.sampled_from(("office", "field1")), st.sampled_from((None, "u1", "u2"))),
    st.tuples(st.just("close"), st.integers(0, 50)),
    st.tuples(st.just("reopen"), st.integers(0, 50)),
    st.tuples(st.just("move"), st.integers(0, 50), st.sampled_from(AREAS)),
    st.tuples(st.just("dispatch"), st.integers(0, 50), st.sampled_from((None, "u1", "u2"))),
    st.tuples(st.just("advance"), st.integers(1, 60)),
    st.tuples(st.just("sync"),),
)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(username=st.sampled_from(USERS), cap=st.sampled_from((2, 4, 1000)),
       before=st.lists(OPERATIONS, max_size=8), after=st.lists(OPERATIONS, max_size=14))
def test_a_snapshot_and_the_log_hold_what_a_full_replay_holds_in_the_set(
        client, db, world, now, monkeypatch, username, cap, before, after):
    now["at"] = dt.datetime.now(dt.UTC).replace(microsecond=0)
    monkeypatch.setattr(working_set, "problem_cap", lambda _db: cap)
    problems = list(world.problems.values())
    sender = phone(client, username)

    def run(operations):
        for operation in operations:
            kind, *args = operation
            if kind == "report":
                area, days, reporter, unit = args
                problems.append(report(db, world, now, area=area, reporter=reporter,
                                       found_days_ago=days, unit=unit))
            elif kind == "close":
                close(db, now, problems[args[0] % len(problems)])
            elif kind == "reopen":
                db["problems"].update(problems[args[0] % len(problems)],
                                      {"status": "handling", "closed_at": None})
            elif kind == "move":
                db["problems"].update(problems[args[0] % len(problems)],
                                      {"area_id": world.areas[args[1]]})
            elif kind == "dispatch":
                unit = world.units[args[1]] if args[1] else None
                db["problems"].update(problems[args[0] % len(problems)], {"lead_unit_id": unit})
            elif kind == "advance":
                now["at"] += args[0] * DAY
            else:
                sender.pull()

    run(before)
    sender.pull()  # the snapshot
    run(after)
    sender.pull()
    assert held(sender) == in_set(full_replay(client, username), floor_of(sender))


def test_a_problem_closed_more_than_90_days_ago_leaves_the_phone_by_time(client, db, world, now):
    problem_id = report(db, world, now, area="v1", reporter="field1")
    close(db, now, problem_id)
    field1 = phone(client, "field1")
    field1.pull()
    assert problem_id in field1.records("problem")
    now["at"] += 89 * DAY
    field1.pull()
    assert problem_id in field1.records("problem")
    now["at"] += 2 * DAY  # no change at all: only time passed
    field1.pull()
    assert problem_id not in field1.records("problem")


def test_visits_older_than_90_days_leave_the_phone_by_time(client, db, world, now):
    field1 = phone(client, "field1")
    visit = visit_args(started_at=to_iso(now["at"] - 80 * DAY))
    field1.capture("visit.save", visit)
    field1.sync()
    assert visit["id"] in field1.records("visit")
    now["at"] += 11 * DAY
    field1.pull()
    assert visit["id"] not in field1.records("visit")


def test_a_problem_moved_out_of_the_area_leaves_the_phone(client, db, world, now):
    problem_id = report(db, world, now, area="v1")
    field1 = phone(client, "field1")
    field1.pull()
    assert problem_id in field1.records("problem")
    db["problems"].update(problem_id, {"area_id": world.areas["v2"]})
    field1.pull()
    assert problem_id not in field1.records("problem")


def test_under_the_cap_a_new_phone_gets_the_newest(client, db, world, now, monkeypatch):
    monkeypatch.setattr(working_set, "problem_cap", lambda _db: 3)
    db.execute("UPDATE problems SET found_at = ?", [to_iso(now["at"] - 100 * DAY)])
    ages = {report(db, world, now, area="v1", found_days_ago=days): days for days in range(6)}
    office = phone(client, "office_d1")
    office.pull()
    newest = sorted(ages, key=ages.get)[:3]
    assert set(office.records("problem")) == set(newest)
    newer = report(db, world, now, area="v1", found_days_ago=0)
    office.pull()
    assert newer in office.records("problem")  # a new problem always enters


def test_the_cap_is_a_setting(db):
    assert working_set.problem_cap(db) == 5000
    db["settings"].upsert({"key": "phone_problem_cap", "value": "800"})
    assert working_set.problem_cap(db) == 800
    db["settings"].upsert({"key": "phone_problem_cap", "value": "5"})  # out of bounds
    assert working_set.problem_cap(db) == 5000


def test_changes_made_during_a_snapshot_arrive_after_it(client, db, world, now):
    ids = [report(db, world, now, area="v1", found_days_ago=days) for days in range(5)]
    token = api_login(client, "office_d1")
    headers = {"Authorization": f"Bearer {token}"}
    client_id = new_id()

    def get(cursor):
        response = client.get("/api/sync/pull", headers=headers, params={
            "client_id": client_id, "cursor": cursor, "limit": 2, "format": 2})
        assert response.status_code == 200, response.text
        return response.json()

    first = get("0")
    assert first["snapshot"] is True and first["has_more"] is True
    db["problems"].update(ids[4], {"description": "快照途中改的"})
    records, cursor, body = {}, first["cursor"], first
    while True:
        for change in page_changes(body):
            records[(change["entity"], change["id"])] = change.get("data")
        if not body["has_more"]:
            break
        body = get(cursor)
        cursor = body["cursor"]
    assert records[("problem", ids[4])]["description"] == "快照途中改的"


def test_pull_pages_are_compact_and_compressed(client, db, world, now):
    for days in range(40):
        report(db, world, now, area="v1", found_days_ago=days)
    token = api_login(client, "office")
    response = client.get("/api/sync/pull", headers={
        "Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"},
        params={"client_id": new_id(), "cursor": "0", "format": 2, "limit": 1000})
    assert response.headers["content-encoding"] == "gzip"
    body = response.json()
    problems = body["records"]["problem"]
    assert "description" in problems["columns"]
    assert all(isinstance(row, list) and len(row) == len(problems["columns"])
               for row in problems["rows"])
    assert len(problems["versions"]) == len(problems["rows"]) >= 40
    compact = json.dumps(body, ensure_ascii=False).encode()
    first_format = json.dumps(page_changes(body), ensure_ascii=False).encode()
    assert len(gzip.compress(compact)) < len(gzip.compress(first_format))


@pytest.mark.parametrize("cursor", [
    "-1", "abc", "1.5", "c2.", "c2.!!!", "c2." + "A" * 500,
    "c2.WzEsbnVsbCxudWxsLCJub3BlIixudWxsXQ",  # [1,null,null,"nope",null]: no such part
    "c2.WyJ4IixudWxsLG51bGwsbnVsbCxudWxsXQ",  # ["x",...]: the version not a number
])
def test_a_bad_working_set_cursor_is_refused(client, world, cursor):
    token = api_login(client, "field1")
    response = client.get("/api/sync/pull", headers={"Authorization": f"Bearer {token}"},
                          params={"client_id": new_id(), "cursor": cursor, "format": 2})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_cursor"


@pytest.mark.parametrize("page_format", ["0", "3", "x", "２"])
def test_a_bad_format_is_refused(client, world, page_format):
    token = api_login(client, "field1")
    response = client.get("/api/sync/pull", headers={"Authorization": f"Bearer {token}"},
                          params={"client_id": new_id(), "cursor": "0", "format": page_format})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_format"


def test_a_phone_of_before_goes_on_from_its_version(client, db, world, now):
    """A bare version (a phone that pulled format 1) continues the log without a snapshot."""
    old = Puller(client, "field1")
    version = old.pages()[-1]["cursor"]
    problem_id = report(db, world, now, area="v1")
    response = old.get(cursor=version, format=2)
    body = response.json()
    assert body["snapshot"] is False
    assert [c["id"] for c in page_changes(body)] == [problem_id]



# Snapshot pages shared between phones (sync/shared_pages.py) ----------------------------


def new_account(db, world, like: str, username: str) -> None:
    """An account with the roles, area, unit and password of ``like``, and no records."""
    template = db["users"].get(world.users[like])
    world.users[username] = db["users"].insert({
        **{k: v for k, v in template.items() if k != "id"},
        "username": username, "display_name": f"测试{username}"}).last_pk


def test_phones_of_one_view_share_snapshot_pages(client, db, world, now):
    for days in range(5):
        report(db, world, now, area="t1", found_days_ago=days)
    new_account(db, world, "field1", "rush1")
    new_account(db, world, "field1", "rush2")
    pages = client.app.state.shared_pages
    first = phone(client, "rush1")
    first.pull()
    builds = pages.builds
    second = phone(client, "rush2")
    second.pull()
    assert pages.builds == builds and pages.hits >= builds
    assert held(second) == held(first) == in_set(full_replay(client, "rush2"), None)
    assert held(second)  # areas, units, categories and the area's problems


def test_a_shared_page_read_before_a_change_still_brings_the_change(client, db, world, now):
    problem_id = report(db, world, now, area="t1")
    new_account(db, world, "field1", "rush1")
    new_account(db, world, "field1", "rush2")
    phone(client, "rush1").pull()
    db["problems"].update(problem_id, {"description": "快照之后改的"})
    hits = client.app.state.shared_pages.hits
    late = phone(client, "rush2")
    late.pull()
    assert client.app.state.shared_pages.hits > hits  # the pages read before the change
    assert late.records("problem")[problem_id]["description"] == "快照之后改的"
    assert held(late) == in_set(full_replay(client, "rush2"), None)


def test_a_user_with_records_of_their_own_has_pages_of_their_own(client, db, world, now):
    own = report(db, world, now, area="v2", reporter="field1")  # outside field1's area
    db["problems"].update(own, {"resident_phone": "13812345678"})
    new_account(db, world, "field1", "rush1")
    newcomer, reporter = phone(client, "rush1"), phone(client, "field1")
    newcomer.pull()
    reporter.pull()
    assert own not in newcomer.records("problem")
    assert reporter.records("problem")[own]["resident_phone"] == "13812345678"
    assert held(reporter) == in_set(full_replay(client, "field1"), None)


def test_the_view_names_what_a_snapshot_depends_on(db, world):
    from server import auth

    new_account(db, world, "field1", "rush1")
    new_account(db, world, "field1", "rush2")
    new_account(db, world, "field2", "rush3")
    new_account(db, world, "handler1", "rush4")
    new_account(db, world, "handler2", "rush5")

    def view(username):
        return working_set.view_of(db, auth.load_user(db, world.users[username]))

    assert view("rush1") == view("rush2")
    assert view("rush1") != view("rush3")  # another area
    assert view("rush4") != view("rush5")  # another unit
    assert view("rush1")[0] is None and view("field1")[0] == world.users["field1"]
    db["visits"].update(world.visits["v2"], {"author_id": world.users["rush2"]})
    assert view("rush2")[0] == world.users["rush2"]  # a visit of their own


def test_a_pull_counts_90_days_from_the_start_of_the_hour(client, db, world, now):
    now["at"] = now["at"].replace(minute=30, second=0)
    line = now["at"] - working_set.RECENTLY_CLOSED
    just_out = report(db, world, now, area="t1", status="closed")
    db["problems"].update(just_out, {"closed_at": to_iso(line - dt.timedelta(minutes=10))})
    long_out = report(db, world, now, area="t1", status="closed")
    db["problems"].update(long_out, {"closed_at": to_iso(line - dt.timedelta(minutes=40))})
    token = api_login(client, "field1")
    response = client.get("/api/sync/pull", headers={"Authorization": f"Bearer {token}"},
                          params={"client_id": new_id(), "cursor": "0", "format": 2,
                                  "limit": 1000})
    snapshot = {change["id"] for change in page_changes(response.json())}
    assert just_out in snapshot and long_out not in snapshot
    field1 = phone(client, "field1")
    field1.pull()
    assert just_out in field1.records("problem")
    now["at"] += dt.timedelta(minutes=30)  # the next hour: its line has passed the closure
    field1.pull()
    assert just_out not in field1.records("problem")


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_a_shared_page_reaches_clients_with_and_without_gzip(client, db, world, now, encoding):
    report(db, world, now, area="t1")
    token = api_login(client, "field1")

    def first_page(accept):
        response = client.get("/api/sync/pull", headers={
            "Authorization": f"Bearer {token}", "Accept-Encoding": accept},
            params={"client_id": new_id(), "cursor": "0", "format": 2})
        assert response.status_code == 200
        return response

    response = first_page(encoding)
    assert response.headers.get("content-encoding") == (
        "gzip" if encoding == "gzip" else None)
    assert "Accept-Encoding" in response.headers["vary"]
    body = response.json()
    assert body["snapshot"] is True and body["records"]["area"]["rows"]
    assert body["records"] == first_page("gzip").json()["records"]


def test_log_pages_after_the_first_end_on_a_multiple_of_the_alignment(db, world, now):
    for days in range(250):
        report(db, world, now, area="t1", found_days_ago=days % 30)
    latest = db.execute("SELECT max(version) FROM changes").fetchone()[0]
    assert latest > 2 * pull.LOG_ALIGN
    end = pull.log_page_end(db, 37, 150)
    assert end % pull.LOG_ALIGN == 0 and 37 < end <= 37 + 150
    assert pull.log_page_end(db, end, 150) == end + pull.LOG_ALIGN
    assert pull.log_page_end(db, 37, 40) == 37 + 40  # less than one step: not rounded
    assert pull.log_page_end(db, latest - 10, 150) is None  # the rest of the log


def test_phones_of_one_view_share_log_pages(client, db, world, now):
    new_account(db, world, "field1", "rush1")
    new_account(db, world, "field1", "rush2")
    first, second = phone(client, "rush1"), phone(client, "rush2")
    first.pull()
    second.pull()
    for days in range(3 * pull.LOG_ALIGN):
        report(db, world, now, area="t1", found_days_ago=days % 30)
    pages = client.app.state.shared_pages
    first.pull(limit=pull.LOG_ALIGN)
    builds, hits = pages.builds, pages.hits
    assert builds >= 2
    db["problems"].update(next(iter(first.records("problem"))), {"description": "之后改的"})
    second.pull(limit=pull.LOG_ALIGN)
    assert pages.builds == builds and pages.hits >= hits + 2  # the same pages, not rebuilt
    assert held(second) == held(first) | {
        key: value for key, value in held(second).items() if value.get("description") == "之后改的"}
    assert held(second) == in_set(full_replay(client, "rush2"), None)
