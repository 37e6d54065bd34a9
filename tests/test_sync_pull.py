"""Pull: what each user's phone receives, page by page, and what it costs."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest

from server import auth
from server.db import connect
from server.timeutil import now_iso, to_iso, utcnow
from server.views.sync import _read_pull_snapshot
from sync import pull
from sync.epoch import latest_version
from tests.conftest import USERS, api_login
from tests.sync_helpers import new_id, phone, problem_args, visit_args

AREA_PARENTS = {"city": None, "d1": "city", "d2": "city", "t1": "d1", "t2": "d2",
                "v1": "t1", "v2": "t2", "g1": "v1"}
FINISHED = {"closed", "rejected", "merged"}








class Puller:
    def __init__(self, client, username: str):
        self.client = client
        self.username = username
        self.token = api_login(client, username)
        self.client_id = new_id()

    def get(self, **params):
        params.setdefault("client_id", self.client_id)
        return self.client.get("/api/sync/pull", params=params,
                               headers={"Authorization": f"Bearer {self.token}"})

    def page(self, cursor: int, limit: int = 1000) -> dict:
        response = self.get(cursor=cursor, limit=limit)
        assert response.status_code == 200, response.text
        return response.json()

    def pages(self, cursor: int = 0, limit: int = 1000) -> list[dict]:
        pages = []
        while True:
            body = self.page(cursor, limit)
            assert body["reset"] is False
            pages.append(body)
            cursor = body["cursor"]
            if not body["has_more"]:
                return pages

    def changes(self, cursor: int = 0, limit: int = 1000) -> list[dict]:
        return [change for page in self.pages(cursor, limit) for change in page["changes"]]


def subtree(area: str) -> set[str]:
    found = {area}
    while True:
        more = {child for child, parent in AREA_PARENTS.items() if parent in found} - found
        if not more:
            return found
        found |= more


def days_ago(days: int) -> str:
    return to_iso(utcnow() - dt.timedelta(days=days))


def insert_problem(db, world, *, reporter: str, area: str, status: str, closed_days_ago=None,
                   unit: str | None = None, phone_number: str = "") -> str:
    problem_id = new_id()
    now = now_iso()
    db["problems"].insert({
        "id": problem_id, "reporter_id": world.users[reporter], "area_id": world.areas[area],
        "description": f"{status} problem in {area}", "status": status,
        "lead_unit_id": world.units[unit] if unit else None, "resident_phone": phone_number,
        "closed_at": days_ago(closed_days_ago) if closed_days_ago is not None else None,
        "found_at": days_ago(200), "created_at": now, "updated_at": now,
    })
    return problem_id


def add_note(db, world, problem_id: str, actor: str = "office") -> None:
    db["problem_events"].insert({
        "id": new_id(), "problem_id": problem_id, "kind": "note",
        "actor_id": world.users[actor], "at": now_iso(), "note": "办公室补记",
    })


@pytest.fixture
def busy_world(client, db, world):
    """Phones of several users have pushed; the office closed problems long and not long ago."""
    for username, area in (("field1", "v1"), ("field2", "v2"), ("office_d1", "g1"),
                           ("leader_d2", "d2")):
        sender = phone(client, username)
        sender.capture("visit.save", visit_args(area_id=world.areas[area]))
        sender.capture("diary.save", {
            "id": new_id(), "person_kind": "resident", "content": f"{username} 的民情日记",
            "recorded_at": "2026-05-01T10:00:00+08:00", "phone": "13800001111"})
        sender.capture("problem.report", problem_args(area_id=world.areas[area],
                                                      resident_phone="13912345678"))
        sender.capture("problem.report", problem_args(
            area_id=world.areas[area], solved_on_spot={"note": "当场解决"}))
        sender.push()
        assert not sender.state["rejected"]
    extra = {
        "closed_recently_v2": insert_problem(db, world, reporter="office", area="v2",
                                             status="closed", closed_days_ago=10,
                                             phone_number="13700002222"),
        "closed_long_ago_v1_by_field2": insert_problem(db, world, reporter="field2", area="v1",
                                                       status="closed", closed_days_ago=200),
        "closed_long_ago_u1": insert_problem(db, world, reporter="office", area="v2",
                                             status="closed", closed_days_ago=120, unit="u1"),
        "rejected_recently_g1": insert_problem(db, world, reporter="office", area="g1",
                                               status="rejected", closed_days_ago=30),
        "handling_u1_d2": insert_problem(db, world, reporter="leader_d2", area="d2",
                                         status="handling", unit="u1"),
    }
    # 水务集团 (u2) helps with it (协办, server/ledger/joint.py): its handlers hold it too.
    db["joint_parts"].insert({"problem_id": extra["handling_u1_d2"], "unit_id": world.units["u2"],
                              "state": "signed", "dispatched_at": now_iso()})
    return extra


def expected_for(db, world, username: str) -> dict[str, set[str]]:
    role, area, unit = USERS[username]
    user_id = world.users[username]
    areas = {world.areas[a] for a in subtree(area)}
    cutoff = days_ago(90)
    problems = set()
    for row in db.query("SELECT * FROM problems"):
        in_scope = (
            (role in ("field", "office", "leader") and row["area_id"] in areas)
            or (role == "field" and row["reporter_id"] == user_id)
            or (role == "handler" and row["lead_unit_id"] == world.units[unit])
            or (role == "handler" and db.execute(
                "SELECT 1 FROM joint_parts WHERE problem_id = ? AND unit_id = ?"
                " AND state != 'removed'", [row["id"], world.units[unit]]).fetchone())
        )
        recent = row["status"] not in FINISHED or (row["closed_at"] or "") >= cutoff
        if (row["reporter_id"] == user_id or in_scope) and recent:
            problems.add(row["id"])
    return {
        "problem": problems,
        "visit": {r[0] for r in db.execute(
            "SELECT id FROM visits WHERE author_id = ? AND started_at >= ?", [user_id, cutoff])},
        "diary": {r[0] for r in db.execute(
            "SELECT id FROM diary_entries WHERE author_id = ? AND recorded_at >= ?",
            [user_id, cutoff])},
        "area": {str(a) for a in areas},
        "unit": {str(r[0]) for r in db.execute("SELECT id FROM units")},
        "category": {str(r[0]) for r in db.execute("SELECT id FROM categories")},
    }


def by_entity(changes: list[dict], deleted: bool = False) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for change in changes:
        if bool(change.get("deleted")) == deleted:
            found.setdefault(change["entity"], set()).add(change["id"])
    return found


# Scope ----------------------------------------------------------------------------------


@pytest.mark.parametrize("username", sorted(USERS))
def test_a_full_pull_holds_exactly_what_the_user_may_have(client, db, world, busy_world,
                                                          username):
    changes = Puller(client, username).changes()
    expected = expected_for(db, world, username)
    received = by_entity(changes)
    for entity in ("problem", "visit", "diary", "area", "unit", "category"):
        assert received.get(entity, set()) == expected[entity], entity
    own = {r[0] for r in db.execute("SELECT id FROM problems WHERE reporter_id = ?",
                                    [world.users[username]])}
    role, area, _unit = USERS[username]
    areas = {world.areas[a] for a in subtree(area)}
    in_area = {r[0] for r in db.execute(
        f"SELECT id FROM problems WHERE area_id IN ({','.join('?' * len(areas))})",
        sorted(areas))}
    tombstones = by_entity(changes, deleted=True)
    assert set(tombstones) <= {"problem"}
    assert tombstones.get("problem", set()) <= (in_area | own) - expected["problem"]


def test_pulled_records_carry_their_fields_and_no_storage_column(client, world):
    sender = phone(client, "field1")
    sender.capture("visit.save", visit_args(area_id=world.areas["v1"]))
    sender.capture("diary.save", {"id": new_id(), "person_kind": "resident",
                                  "content": "路灯不亮", "recorded_at": now_iso()})
    sender.capture("problem.report", problem_args(area_id=world.areas["v1"]))
    sender.push()
    received = {change["entity"]: change["data"] for change in
                Puller(client, "field1").changes() if not change.get("deleted")}
    for entity in ("problem", "visit", "diary"):
        assert "rowid" not in received[entity], entity
    assert set(received["visit"]) == {
        *(name.strip() for name in pull.VISIT_COLUMNS.split(",")), "photos"}
    assert set(received["diary"]) == {
        *(name.strip() for name in pull.DIARY_COLUMNS.split(",")), "photos"}


@pytest.mark.parametrize("username", ["field1", "office", "leader_d2"])
def test_resident_phones_are_masked_for_those_who_may_not_see_them(client, db, world,
                                                                  busy_world, username):
    # One rule for pages, exports and pull: authz.may_see_resident_phone (the office, the
    # reporter, the lead unit's handlers); everyone else gets server.masking's mask.
    user_id = world.users[username]
    roles = set(db.execute("SELECT roles FROM users WHERE id = ?", [user_id]).fetchone()[0]
                .split(","))
    for change in Puller(client, username).changes():
        if change["entity"] != "problem" or change.get("deleted"):
            continue
        data = change["data"]
        stored = db.execute("SELECT resident_phone FROM problems WHERE id = ?",
                            [change["id"]]).fetchone()[0]
        if data["reporter_id"] == user_id or not stored or "office" in roles:
            assert data["resident_phone"] == stored
        else:
            assert data["resident_phone"] != stored
            assert re.fullmatch(r"\d{3}\*+\d{4}", data["resident_phone"])
            assert data["resident_phone"][-4:] == stored[-4:]


@pytest.mark.parametrize("username", ["field1", "field2"])
def test_a_field_official_never_receives_anothers_visits_or_diaries(client, db, world,
                                                                   busy_world, username):
    others = {r[0] for r in db.execute(
        "SELECT id FROM visits WHERE author_id != ? UNION ALL"
        " SELECT id FROM diary_entries WHERE author_id != ?",
        [world.users[username]] * 2)}
    assert len(others) >= 6
    received = {change["id"] for change in Puller(client, username).changes()}
    assert not received & others


def test_closed_long_ago_leaves_even_the_reporters_phone(client, db, world, busy_world):
    problem_id = busy_world["closed_long_ago_v1_by_field2"]
    assert problem_id not in by_entity(Puller(client, "field2").changes())["problem"]
    assert problem_id not in by_entity(Puller(client, "field1").changes()).get("problem", set())


def test_a_pulled_problem_carries_its_events_and_photos(client, db, world):
    sender = phone(client, "field1")
    from tests.sync_helpers import jpeg

    sha = sender.add_photo(jpeg())
    report = problem_args(photos=[sha], solved_on_spot={"note": "当场修好"})
    sender.capture("problem.report", report)
    sender.sync()
    data = sender.records("problem")[report["id"]]
    assert data["photos"] == [sha]
    assert [event["kind"] for event in data["events"]] == ["reported", "solved_on_spot"]
    assert data["events"][1]["note"] == "当场修好"
    assert data["events"][0]["actor_name"] == "测试field1"


def test_a_pulled_problem_says_whether_its_deadline_is_provisional(client, db, world):
    db["problems"].update(world.problems["p1"],
                          {"deadline": "2027-01-01", "deadline_provisional": 1})
    data = Puller(client, "field1").changes()
    [p1] = [c["data"] for c in data if c["id"] == world.problems["p1"]]
    assert (p1["deadline"], p1["deadline_provisional"]) == ("2027-01-01", 1)


# Paging -------------------------------------------------------------------------------


def test_small_pages_add_up_to_the_full_pull(client, db, world, busy_world):
    office = Puller(client, "office")
    full = office.changes()
    pages = office.pages(limit=4)
    assert len(pages) > 3
    cursor = 0
    for page in pages[:-1]:
        assert page["has_more"] is True
        assert page["cursor"] > cursor
        assert all(cursor < change["version"] <= page["cursor"] for change in page["changes"])
        cursor = page["cursor"]
    assert pages[-1]["has_more"] is False
    paged = [change for page in pages for change in page["changes"]]
    assert paged == full
    assert len({(c["entity"], c["id"]) for c in paged}) == len(paged)
    assert pages[-1]["cursor"] == latest_version(db)


def test_a_record_changed_between_pages_comes_again_later(client, db, world, busy_world):
    office = Puller(client, "office")
    first = office.page(0, limit=5)
    seen = next(c for c in first["changes"] if c["entity"] == "area")
    db["areas"].update(int(seen["id"]), {"name": "改名后的区域"})
    rest = office.changes(first["cursor"], limit=5)
    again = [c for c in rest if (c["entity"], c["id"]) == ("area", seen["id"])]
    assert len(again) == 1
    assert again[0]["data"]["name"] == "改名后的区域"
    assert again[0]["version"] == latest_version(db)


def test_a_pull_at_the_latest_cursor_is_empty(client, db, world):
    field1 = Puller(client, "field1")
    latest = latest_version(db)
    body = field1.page(latest)
    assert (body["changes"], body["cursor"], body["has_more"], body["reset"]) == (
        [], latest, False, False)


def test_a_cursor_from_the_future_asks_for_a_reset(client, db, world):
    field1 = Puller(client, "field1")
    body = field1.page(latest_version(db) + 1)
    assert body["reset"] is True
    assert (body["cursor"], body["changes"]) == (0, [])
    assert body["epoch"] == db.execute(
        "SELECT value FROM settings WHERE key = 'epoch'").fetchone()[0]


def test_a_pull_reports_the_clients_last_mutation_id(client, db, world):
    sender = phone(client, "field1")
    sender.capture("visit.save", visit_args())
    sender.capture("visit.save", visit_args())
    sender.push()
    puller = Puller(client, "field1")
    puller.client_id = sender.state["client_id"]
    assert puller.page(0)["last_mutation_id"] == 2


BAD_PARAMS = [
    ("client_id missing", {"client_id": None}, "bad_client_id"),
    ("client_id not a UUID", {"client_id": "phone-1"}, "bad_client_id"),
    ("client_id in capitals", {"client_id": str(uuid.uuid4()).upper()}, "bad_client_id"),
    ("negative cursor", {"cursor": "-1"}, "bad_cursor"),
    ("cursor not a number", {"cursor": "abc"}, "bad_cursor"),
    ("fractional cursor", {"cursor": "1.5"}, "bad_cursor"),
    ("non-ASCII digits", {"cursor": "١٢"}, "bad_cursor"),
    ("limit 0", {"limit": "0"}, "bad_limit"),
    ("limit 1001", {"limit": "1001"}, "bad_limit"),
    ("limit not a number", {"limit": "abc"}, "bad_limit"),
]


@pytest.mark.parametrize(("params", "code"), [case[1:] for case in BAD_PARAMS],
                         ids=[case[0] for case in BAD_PARAMS])
def test_bad_parameters_are_refused(client, world, params, code):
    puller = Puller(client, "field1")
    query = {"client_id": puller.client_id, "cursor": "0", "limit": "10", **params}
    query = {key: value for key, value in query.items() if value is not None}
    response = client.get("/api/sync/pull", params=query,
                          headers={"Authorization": f"Bearer {puller.token}"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert re.search(r"[\u4e00-\u9fff]", response.json()["error"]["message"])


def test_a_pull_needs_a_token(client, world):
    response = client.get("/api/sync/pull", params={"client_id": new_id()})
    assert response.status_code == 401


# Tombstones ---------------------------------------------------------------------------


def test_a_long_closed_problem_touched_again_is_a_tombstone_in_its_area(client, db, world):
    problem_id = insert_problem(db, world, reporter="office", area="v1", status="closed",
                                closed_days_ago=120)
    field1, field2 = Puller(client, "field1"), Puller(client, "field2")
    cursor = latest_version(db)
    add_note(db, world, problem_id)
    changes = field1.changes(cursor)
    assert changes == [{"entity": "problem", "id": problem_id,
                        "version": latest_version(db), "deleted": True}]
    assert field2.changes(cursor) == []


def test_a_recently_closed_problem_is_still_sent_in_full(client, db, world):
    problem_id = insert_problem(db, world, reporter="office", area="v1", status="closed",
                                closed_days_ago=20)
    cursor = latest_version(db)
    add_note(db, world, problem_id)
    [change] = Puller(client, "field1").changes(cursor)
    assert change["id"] == problem_id and "deleted" not in change
    assert change["data"]["events"][-1]["note"] == "办公室补记"


def test_a_deleted_reference_record_is_a_tombstone_for_everyone(client, db, world):
    category = db["categories"].insert({"code": "road", "name": "道路",
                                        "time_limit_days": 5}).last_pk
    cursor = latest_version(db)
    db["categories"].delete(category)
    for username in ("field1", "handler2"):
        assert Puller(client, username).changes(cursor) == [
            {"entity": "category", "id": str(category), "version": latest_version(db),
             "deleted": True}]


# Cost and consistency -----------------------------------------------------------------


def _traced_pull(db_path, user_id: int, cursor: int) -> tuple[dict, list[str], int]:
    reader = connect(db_path)
    try:
        user = auth.load_user(reader, user_id)
        statements: list[str] = []
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        reader.conn.set_trace_callback(statements.append)
        reader.conn.set_progress_handler(count, 100)
        result = pull.read_pull(reader, user, new_id(), cursor, 500)
        reader.conn.set_progress_handler(None, 0)
        reader.conn.set_trace_callback(None)
        plans = [
            (sql, [row[-1] for row in reader.execute(f"EXPLAIN QUERY PLAN {sql}")])
            for sql in statements if sql.lstrip().upper().startswith("SELECT")
        ]
        return result, plans, steps[0]
    finally:
        reader.close()


@pytest.mark.sqlite_only  # SQLite's query plans, traced statements and VM steps
def test_the_change_log_is_read_through_its_primary_key(db_path, db, world):
    _result, plans, _steps = _traced_pull(db_path, world.users["field1"], 0)
    [(sql, plan)] = [(sql, plan) for sql, plan in plans if "FROM changes" in sql]
    assert plan == ["SEARCH changes USING INTEGER PRIMARY KEY (rowid>?)"]


def _five_changes(db, world) -> None:
    for _ in range(3):
        insert_problem(db, world, reporter="field1", area="v1", status="submitted")
    for _ in range(2):
        db["visits"].insert({
            "id": new_id(), "author_id": world.users["field1"], "area_id": world.areas["v1"],
            "method": "sbls", "started_at": now_iso(), "created_at": now_iso(),
            "updated_at": now_iso()})


def _bulk_problems(db, world, count: int) -> None:
    now = now_iso()
    rows = [(new_id(), world.users["field1"], world.areas["v1"], "旧问题", "closed",
             days_ago(400), now, now, now) for _ in range(count)]
    with db.conn:
        db.conn.executemany(
            "INSERT INTO problems (id, reporter_id, area_id, description, status, closed_at,"
            " found_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


@pytest.mark.sqlite_only  # SQLite's query plans, traced statements and VM steps
def test_pull_cost_follows_the_changes_not_the_ledger(db_path, db, world):
    user_id = world.users["field1"]
    cursor = latest_version(db)
    _five_changes(db, world)
    small, small_plans, small_steps = _traced_pull(db_path, user_id, cursor)

    _bulk_problems(db, world, 5000)
    cursor = latest_version(db)
    _five_changes(db, world)
    large, large_plans, large_steps = _traced_pull(db_path, user_id, cursor)

    assert len(small["changes"]) == len(large["changes"]) == 5
    assert large["cursor"] == latest_version(db)
    assert large_steps <= small_steps * 1.5 + 20
    for sql, plan in large_plans:
        scans = [step for step in plan if step.startswith("SCAN")
                 and "sqlite_sequence" not in step]
        assert not scans, (sql, plan)


def test_a_pull_reads_one_snapshot(db_path, db, world, monkeypatch):
    problem_id = world.problems["p1"]
    original = db.execute("SELECT description FROM problems WHERE id = ?",
                          [problem_id]).fetchone()[0]
    real_loader = pull.LOADERS["problem"]

    def edit_meanwhile(reader, user, ids, horizon):
        writer = connect(db_path)  # with the search function the text triggers call
        writer.execute("UPDATE problems SET description = '读取途中改的' WHERE id = ?",
                       [problem_id])
        writer.conn.commit()
        writer.close()
        return real_loader(reader, user, ids, horizon)

    monkeypatch.setitem(pull.LOADERS, "problem", edit_meanwhile)
    reader = connect(db_path)
    try:
        user = auth.load_user(reader, world.users["field1"])
        snapshot = _read_pull_snapshot(reader, user, new_id(), 0, 1000, 1, None).as_dict()
        unguarded = pull.read_pull(reader, user, new_id(), 0, 1000)
    finally:
        reader.close()

    def description(result):
        return next(c["data"]["description"] for c in result["changes"]
                    if c["id"] == problem_id)

    assert description(snapshot) == original
    assert description(unguarded) == "读取途中改的"


def test_a_problem_moved_out_of_the_area_is_a_tombstone(client, db, world):
    moved = world.problems["p3"]  # in field1's grid, reported by field2
    field1 = Puller(client, "field1")
    assert moved in by_entity(field1.changes())["problem"]
    cursor = latest_version(db)
    db["problems"].update(moved, {"area_id": world.areas["v2"]})
    assert field1.changes(cursor) == [{"entity": "problem", "id": moved,
                                       "version": latest_version(db), "deleted": True}]


def test_a_problem_dispatched_to_another_unit_is_a_tombstone_for_the_first(client, db, world):
    problem_id = insert_problem(db, world, reporter="office", area="v2", status="returned",
                                unit="u1")
    handler1 = Puller(client, "handler1")
    assert problem_id in by_entity(handler1.changes())["problem"]
    cursor = latest_version(db)
    db["problems"].update(problem_id, {"lead_unit_id": world.units["u2"]})
    assert handler1.changes(cursor) == [{"entity": "problem", "id": problem_id,
                                         "version": latest_version(db), "deleted": True}]
    handler2 = Puller(client, "handler2")
    assert [c["id"] for c in handler2.changes(cursor) if "data" in c] == [problem_id]


def test_a_move_between_two_areas_outside_scope_sends_nothing(client, db, world):
    problem_id = insert_problem(db, world, reporter="office", area="v2", status="handling")
    field1 = Puller(client, "field1")
    cursor = latest_version(db)
    db["problems"].update(problem_id, {"area_id": world.areas["t2"]})
    assert field1.changes(cursor) == []


@pytest.fixture
def phone_edited(client):
    """field1 reported a problem with a resident's phone, then changed the number."""
    from tests.test_sync_mutations import RawPhone

    reporter = RawPhone(client, "field1")
    args = problem_args(resident_phone="13811112222")
    reporter.apply("problem.report", args)
    version = reporter.pull_version("problem", args["id"])
    reporter.apply("problem.edit", {"problem_id": args["id"], "base_version": version,
                                    "changes": {"resident_phone": "13933334444"}})
    return args["id"]


def _pulled_edit(client, username: str, problem_id: str) -> dict:
    [problem] = [change["data"] for change in Puller(client, username).changes()
                 if change["entity"] == "problem" and change["id"] == problem_id]
    [edited] = [event for event in problem["events"] if event["kind"] == "edited"]
    return edited["data"]["changes"]["resident_phone"]


@pytest.mark.parametrize(("username", "shown"), [
    ("leader", {"old": "138****2222", "new": "139****4444"}),  # may not see the number
    ("office", {"old": "13811112222", "new": "13933334444"}),  # calls the resident back
    ("field1", {"old": "13811112222", "new": "13933334444"}),  # took the number
])
def test_a_phone_number_in_the_edit_history_is_masked_as_in_the_record(client, phone_edited,
                                                                       username, shown):
    assert _pulled_edit(client, username, phone_edited) == shown
