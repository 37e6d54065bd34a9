"""Each sync mutation against the real app: what it writes, and what it refuses."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.i18n import catalog
from sync.epoch import latest_version
from sync.schemas import MUTATIONS
from tests.conftest import api_login, post_form
from tests.ledger_helpers import add_problem
from tests.sync_helpers import new_id, problem_args, visit_args

KNOWN_CODES = {key.removeprefix("sync.rejected.") for key in catalog()
               if key.startswith("sync.rejected.")}
TRACKED = ("visits", "diary_entries", "problems", "problem_events", "attachment_links",
           "changes")
UTC_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?\+00:00$")
CHINESE = re.compile(r"[\u4e00-\u9fff]")


class RawPhone:
    """A phone speaking the push protocol by hand, one mutation per request."""

    def __init__(self, client, username: str):
        self.client = client
        self.username = username
        self.token = api_login(client, username)
        self.client_id = new_id()
        self.next_id = 1

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def send(self, name: str, args) -> dict:
        body = {"client_id": self.client_id, "schema_version": 1,
                "mutations": [{"id": self.next_id, "name": name, "args": args}]}
        response = self.client.post("/api/sync/push", content=json.dumps(body),
                                    headers=self.headers)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["last_mutation_id"] == self.next_id
        self.next_id += 1
        [result] = data["results"]
        return result

    def apply(self, name: str, args) -> None:
        result = self.send(name, args)
        assert result["status"] == "applied", result

    def announce(self, data: bytes) -> str:
        import hashlib

        sha = hashlib.sha256(data).hexdigest()
        response = self.client.post("/api/uploads", headers={
            "Authorization": f"Bearer {self.token}", "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": "sha256 " + base64.b64encode(sha.encode()).decode(),
        })
        assert response.status_code == 201, response.text
        return sha

    def pull_version(self, entity: str, record_id: str) -> int:
        cursor, version = 0, None
        while True:
            response = self.client.get("/api/sync/pull", headers=self.headers, params={
                "client_id": self.client_id, "cursor": cursor, "limit": 1000})
            assert response.status_code == 200, response.text
            body = response.json()
            for change in body["changes"]:
                if change["entity"] == entity and change["id"] == record_id:
                    version = change["version"]
            cursor = body["cursor"]
            if not body["has_more"]:
                return version








@pytest.fixture
def phone(client):
    return lambda username: RawPhone(client, username)


def snapshot(db) -> dict:
    """Every row of the tracked tables, in an order that does not depend on the backend."""
    return {table: sorted(db.query(f"SELECT * FROM {table}"), key=repr) for table in TRACKED}


def row(db, table: str, record_id: str) -> dict:
    return next(db.query(f"SELECT * FROM {table} WHERE id = ?", [record_id]))


def events(db, problem_id: str) -> list[dict]:
    return list(db.query(
        "SELECT * FROM problem_events WHERE problem_id = ? ORDER BY at, rowid", [problem_id]))


def links(db, record_type: str, record_id: str) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT sha256 FROM attachment_links WHERE record_type = ? AND record_id = ?"
        " ORDER BY position", [record_type, record_id])]


def in_future(days: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).isoformat()


def diary_args(**extra) -> dict:
    return {"id": new_id(), "person_kind": "resident", "person_name": "张大爷",
            "content": "反映小区路灯不亮", "recorded_at": "2026-05-01T10:00:00+08:00", **extra}


def note_args(problem_id: str, **extra) -> dict:
    return {"id": new_id(), "problem_id": problem_id, "note": "回头看：已修好一半",
            "at": "2026-05-02T09:00:00+08:00", **extra}


# Applied mutations --------------------------------------------------------------


def test_visit_save_stores_the_visit_of_its_author(phone, db, world):
    field1 = phone("field1")
    args = visit_args(area_id=world.areas["v1"], place="幸福社区居委会",
                      started_at="2026-05-01T09:00:00+08:00", ended_at="2026-05-01T10:30Z",
                      companions="李四", lat=36.65, lng=117.12, accuracy_m=8.5)
    field1.apply("visit.save", args)
    visit = row(db, "visits", args["id"])
    assert visit["author_id"] == world.users["field1"]
    assert visit["area_id"] == world.areas["v1"]
    assert json.loads(visit["checklist"]) == ["no_notice", "direct_scene"]
    assert visit["started_at"] == "2026-05-01T01:00:00+00:00"
    assert visit["ended_at"] == "2026-05-01T10:30:00+00:00"
    assert (visit["place"], visit["companions"]) == ("幸福社区居委会", "李四")
    assert (visit["lat"], visit["lng"], visit["accuracy_m"]) == (36.65, 117.12, 8.5)
    assert UTC_ISO.match(visit["created_at"]) and UTC_ISO.match(visit["updated_at"])


def test_visit_save_keeps_fractional_seconds_in_utc(phone, db):
    field1 = phone("field1")
    args = visit_args(started_at="2026-05-01T08:00:00.250+08:00")
    field1.apply("visit.save", args)
    assert row(db, "visits", args["id"])["started_at"] == "2026-05-01T00:00:00.250000+00:00"


def test_visit_save_links_announced_photos_in_order(phone, db):
    field1 = phone("field1")
    first, second = field1.announce(b"\xff\xd8\xff first"), field1.announce(b"\xff\xd8\xff 2nd")
    args = visit_args(photos=[second, first])
    field1.apply("visit.save", args)
    assert links(db, "visit", args["id"]) == [second, first]


def test_diary_save_links_only_the_authors_own_visit(phone, db, world):
    field1 = phone("field1")
    own = diary_args(visit_id=world.visits["v1"], area_id=world.areas["v1"])
    foreign = diary_args(visit_id=world.visits["v2"])
    field1.apply("diary.save", own)
    field1.apply("diary.save", foreign)
    entry = row(db, "diary_entries", own["id"])
    assert entry["author_id"] == world.users["field1"]
    assert entry["visit_id"] == world.visits["v1"]
    assert entry["recorded_at"] == "2026-05-01T02:00:00+00:00"
    assert (entry["person_name"], entry["person_kind"]) == ("张大爷", "resident")
    assert row(db, "diary_entries", foreign["id"])["visit_id"] is None


def test_problem_report_creates_a_submitted_problem_with_its_event(phone, db, world):
    field1 = phone("field1")
    photo = field1.announce(b"\xff\xd8\xff problem photo")
    args = problem_args(category_id=world.category, urgency="urgent", resident_name="王阿姨",
                        resident_phone="13912345678", photos=[photo],
                        found_at="2026-05-01T10:00:00+08:00")
    field1.apply("problem.report", args)
    problem = row(db, "problems", args["id"])
    assert problem["reporter_id"] == world.users["field1"]
    assert problem["status"] == "submitted"
    assert problem["area_id"] == world.areas["t1"]  # the reporter's own area by default
    assert problem["source"] == "field"
    assert (problem["category_id"], problem["urgency"]) == (world.category, "urgent")
    assert problem["found_at"] == "2026-05-01T02:00:00+00:00"
    assert problem["resident_phone"] == "13912345678"
    assert links(db, "problem", args["id"]) == [photo]
    [event] = events(db, args["id"])
    assert (event["kind"], event["to_status"]) == ("reported", "submitted")
    assert event["actor_id"] == world.users["field1"]


def test_problem_report_from_a_visit_takes_the_visits_area(phone, db, world):
    field1 = phone("field1")
    args = problem_args(visit_id=world.visits["v1"])
    field1.apply("problem.report", args)
    problem = row(db, "problems", args["id"])
    assert (problem["visit_id"], problem["source"]) == (world.visits["v1"], "visit")
    assert problem["area_id"] == world.areas["v1"]


def test_problem_report_drops_stale_references(phone, db, world):
    field1 = phone("field1")
    args = problem_args(category_id=9999, suggested_unit_id=9999, visit_id=new_id())
    field1.apply("problem.report", args)
    problem = row(db, "problems", args["id"])
    assert (problem["category_id"], problem["suggested_unit_id"], problem["visit_id"]) == (
        None, None, None)


def test_a_resent_report_fills_the_visit_link_it_had_to_drop(phone, db, world):
    field1 = phone("field1")
    visit = visit_args(area_id=world.areas["v1"])
    report = problem_args(visit_id=visit["id"],
                          solved_on_spot={"note": "当场协调解决"})
    field1.apply("problem.report", report)  # the visit is not on the server yet
    assert row(db, "problems", report["id"])["visit_id"] is None
    field1.apply("visit.save", visit)
    field1.apply("problem.report", report)
    problem = row(db, "problems", report["id"])
    assert (problem["visit_id"], problem["source"]) == (visit["id"], "visit")
    assert problem["status"] == "callback"  # the office's record is otherwise unchanged


def test_problem_report_solved_on_spot_awaits_callback(phone, db, world):
    field1 = phone("field1")
    before, after = field1.announce(b"\xff\xd8\xff before"), field1.announce(b"\xff\xd8\xff after")
    args = problem_args(photos=[before],
                        solved_on_spot={"note": "现场协调物业修好了水泵", "photos": [after]})
    field1.apply("problem.report", args)
    problem = row(db, "problems", args["id"])
    assert (problem["status"], problem["solved_on_spot"]) == ("callback", 1)
    reported, solved = events(db, args["id"])
    assert (reported["kind"], reported["to_status"]) == ("reported", "submitted")
    assert (solved["kind"], solved["from_status"], solved["to_status"]) == (
        "solved_on_spot", "submitted", "callback")
    assert solved["note"] == "现场协调物业修好了水泵"
    assert links(db, "problem", args["id"]) == [before]
    assert links(db, "event", solved["id"]) == [after]


def test_problem_note_appends_an_event_with_position_and_photos(phone, db, world):
    field1 = phone("field1")
    photo = field1.announce(b"\xff\xd8\xff note photo")
    args = note_args(world.problems["p1"], lat=36.6, lng=117.1, photos=[photo])
    field1.apply("problem.note", args)
    event = row(db, "problem_events", args["id"])
    assert event["problem_id"] == world.problems["p1"]
    assert (event["kind"], event["note"]) == ("note", "回头看：已修好一半")
    assert event["at"] == "2026-05-02T01:00:00+00:00"
    assert json.loads(event["data"]) == {"lat": 36.6, "lng": 117.1}
    assert links(db, "event", args["id"]) == [photo]


def test_problem_note_on_a_merged_duplicate_lands_on_the_original(phone, db, world):
    duplicate, original = world.problems["p1"], world.problems["p3"]
    db["problems"].update(duplicate, {"status": "merged", "merged_into": original})
    field1 = phone("field1")
    args = note_args(duplicate)
    field1.apply("problem.note", args)
    event = row(db, "problem_events", args["id"])
    assert event["problem_id"] == original
    assert json.loads(event["data"])["via"] == duplicate
    assert [e["kind"] for e in events(db, duplicate)] == ["reported"]


def test_a_note_on_a_report_merged_outside_the_officials_area_is_refused(
        phone, db, world, login_as):
    """field1 reported p1 in their grid; the office merges it into a problem of another
    district that field1 may not see. Their later notes must not land there."""
    duplicate = world.problems["p1"]
    elsewhere = add_problem(db, world, area_id=world.areas["t2"], ledger_no="ZF-2026-000777",
                            reporter_id=world.users["field2"], description="另一个区的同一问题")
    response = post_form(login_as("office"), f"/problems/{duplicate}/actions/merge",
                         {"original_id": "ZF-2026-000777", "note": "重复"})
    assert response.status_code == 303, response.text
    assert row(db, "problems", duplicate)["merged_into"] == elsewhere
    before = [e["id"] for e in events(db, elsewhere)]
    field1 = phone("field1")
    args = note_args(duplicate)
    result = field1.send("problem.note", args)
    assert result["status"] == "rejected"
    assert result["error"]["code"] == "merged_out_of_scope"
    assert "合并到您管辖范围以外" in result["error"]["message"]
    assert [e["id"] for e in events(db, elsewhere)] == before
    assert db.execute("SELECT count(*) FROM problem_events WHERE id = ?",
                      [args["id"]]).fetchone() == (0,)


def test_problem_edit_by_the_reporter_changes_the_fields(phone, db, world):
    field1 = phone("field1")
    problem_id = world.problems["p1"]
    field1.apply("problem.edit", {"problem_id": problem_id, "base_version": 0,
                                  "changes": {"description": "改：3号楼和5号楼都漏水",
                                              "area_id": world.areas["g1"]}})
    problem = row(db, "problems", problem_id)
    assert problem["description"] == "改：3号楼和5号楼都漏水"
    assert problem["area_id"] == world.areas["g1"]
    assert problem["conflict"] == 0
    edited = events(db, problem_id)[-1]
    assert edited["kind"] == "edited"
    data = json.loads(edited["data"])
    assert data["changes"]["description"]["old"] == "幸福社区3号楼漏水，墙面渗水"
    assert data["conflicts"] == []


# Saving again ---------------------------------------------------------------------


SAVES = {
    "visit.save": ("visits", lambda: visit_args(), {"place": "改过的地点"}),
    "diary.save": ("diary_entries", lambda: diary_args(), {"content": "改过的内容"}),
    "problem.report": ("problems", lambda: problem_args(), {"description": "改过的描述"}),
}


@pytest.mark.parametrize("name", sorted(SAVES))
def test_saving_the_same_id_again_updates_and_never_adds_a_row(phone, db, name):
    table, make, change = SAVES[name]
    field1 = phone("field1")
    args = make()
    field1.apply(name, args)
    count = db[table].count
    field1.apply(name, {**args, **change})
    assert db[table].count == count
    [(column, value)] = change.items()
    assert row(db, table, args["id"])[column] == value


def _resends(world):
    return {
        "visit.save": visit_args(area_id=world.areas["v1"], photos=[]),
        "diary.save": diary_args(visit_id=world.visits["v1"]),
        "problem.report": problem_args(lat=36.6, lng=117.0),
        "problem.report with a visit": problem_args(visit_id=world.visits["v1"]),
        "problem.report solved on the spot": problem_args(solved_on_spot={"note": "已解决"}),
        "problem.note": note_args(world.problems["p1"]),
        "problem.edit": {"problem_id": world.problems["p1"], "base_version": 0,
                         "changes": {"place": "3号楼"}},
    }


@pytest.mark.parametrize("case", [
    "visit.save", "diary.save", "problem.report", "problem.report with a visit",
    "problem.report solved on the spot", "problem.note", "problem.edit",
])
def test_an_identical_resend_changes_nothing(phone, db, world, case):
    args = _resends(world)[case]
    name = case.split(" ")[0]
    field1 = phone("field1")
    field1.apply(name, args)
    before = snapshot(db)
    field1.apply(name, json.loads(json.dumps(args)))
    again = RawPhone(field1.client, "field1")  # e.g. the app reinstalled, same account
    again.apply(name, args)
    assert snapshot(db) == before


def test_resending_a_report_with_null_area_keeps_the_visits_area(phone, db, world):
    field1 = phone("field1")
    args = problem_args(visit_id=world.visits["v1"], area_id=None)
    field1.apply("problem.report", args)
    before = snapshot(db)
    field1.apply("problem.report", args)
    assert row(db, "problems", args["id"])["area_id"] == world.areas["v1"]
    assert snapshot(db) == before


# Rejections ------------------------------------------------------------------------

SHA_NEVER_SEEN = "ab" * 32

REJECTIONS = [
    ("unknown field", "field1", "visit.save", lambda w: visit_args(colour="red"),
     "unknown_field"),
    ("unknown nested field", "field1", "problem.report",
     lambda w: problem_args(solved_on_spot={"note": "好了", "extra": 1}), "unknown_field"),
    ("wrong type", "field1", "visit.save", lambda w: visit_args(place=5), "wrong_type"),
    ("wrong type area", "field1", "diary.save", lambda w: diary_args(area_id="4"), "wrong_type"),
    ("args not an object", "field1", "diary.save", lambda w: ["content"], "invalid_value"),
    ("too long", "field1", "problem.report", lambda w: problem_args(description="水" * 2001),
     "too_long"),
    ("too long diary", "field1", "diary.save", lambda w: diary_args(content="x" * 4001),
     "too_long"),
    ("missing required", "field1", "visit.save",
     lambda w: {k: v for k, v in visit_args().items() if k != "method"}, "missing_field"),
    ("missing required note time", "field1", "problem.note",
     lambda w: {"id": new_id(), "problem_id": w.problems["p1"], "note": "x"}, "missing_field"),
    ("id not a uuid", "field1", "visit.save", lambda w: visit_args(id="visit-1"), "invalid_id"),
    ("uuid and a newline", "field1", "problem.report",
     lambda w: problem_args(id=new_id() + "\n"), "invalid_id"),
    ("uppercase uuid", "field1", "diary.save",
     lambda w: diary_args(id=new_id().upper()), "invalid_id"),
    ("future time", "field1", "visit.save", lambda w: visit_args(started_at=in_future(2)),
     "future_time"),
    ("future found_at", "field1", "problem.report",
     lambda w: problem_args(found_at=in_future(1.5)), "future_time"),
    ("malformed time", "field1", "visit.save",
     lambda w: visit_args(started_at="2026-05-01 09:00"), "invalid_time"),
    ("time without offset", "field1", "diary.save",
     lambda w: diary_args(recorded_at="2026-05-01T09:00:00"), "invalid_time"),
    ("impossible date", "field1", "visit.save",
     lambda w: visit_args(started_at="2026-02-30T09:00:00+08:00"), "invalid_time"),
    ("time before 2000", "field1", "visit.save",
     lambda w: visit_args(started_at="1999-12-31T09:00:00+08:00"), "invalid_time"),
    ("photo never announced", "field1", "visit.save",
     lambda w: visit_args(photos=[SHA_NEVER_SEEN]), "unknown_photo"),
    ("solved photo never announced", "field1", "problem.report",
     lambda w: problem_args(solved_on_spot={"note": "好了", "photos": [SHA_NEVER_SEEN]}),
     "unknown_photo"),
    ("note photo never announced", "field1", "problem.note",
     lambda w: note_args(w.problems["p1"], photos=[SHA_NEVER_SEEN]), "unknown_photo"),
    ("area outside scope", "field1", "visit.save",
     lambda w: visit_args(area_id=w.areas["v2"]), "area_out_of_scope"),
    ("problem area outside scope", "office_d1", "problem.report",
     lambda w: problem_args(area_id=w.areas["d2"]), "area_out_of_scope"),
    ("edit area outside scope", "field1", "problem.edit",
     lambda w: {"problem_id": w.problems["p1"], "base_version": 0,
                "changes": {"area_id": w.areas["city"]}}, "area_out_of_scope"),
    ("another user's visit", "field2", "visit.save", lambda w: visit_args(id=w.visits["v1"]),
     "not_owner"),
    ("another user's problem", "field2", "problem.report",
     lambda w: problem_args(id=w.problems["p1"]), "not_owner"),
    ("handler captures a visit", "handler1", "visit.save", lambda w: visit_args(), "forbidden"),
    ("handler reports a problem", "handler1", "problem.report", lambda w: problem_args(),
     "forbidden"),
    ("note outside scope", "field1", "problem.note", lambda w: note_args(w.problems["p2"]),
     "problem_not_found"),
    ("note on unknown problem", "field1", "problem.note", lambda w: note_args(new_id()),
     "problem_not_found"),
    ("empty note", "field1", "problem.note", lambda w: note_args(w.problems["p1"], note=" "),
     "empty"),
    ("edit by someone else", "field2", "problem.edit",
     lambda w: {"problem_id": w.problems["p1"], "base_version": 0,
                "changes": {"place": "x"}}, "not_owner"),
    ("edit by the office", "office", "problem.edit",
     lambda w: {"problem_id": w.problems["p1"], "base_version": 0,
                "changes": {"place": "x"}}, "not_owner"),
    ("edit of an accepted problem", "field2", "problem.edit",
     lambda w: {"problem_id": w.problems["p2"], "base_version": 0,
                "changes": {"place": "x"}}, "already_accepted"),
    ("edit with no changes", "field1", "problem.edit",
     lambda w: {"problem_id": w.problems["p1"], "base_version": 0, "changes": {}}, "empty"),
    ("bad enum", "field1", "visit.save", lambda w: visit_args(method="phone"), "invalid_value"),
    ("latitude out of range", "field1", "visit.save", lambda w: visit_args(lat=91),
     "out_of_range"),
    ("duplicate checklist", "field1", "visit.save",
     lambda w: visit_args(checklist=["no_notice", "no_notice"]), "duplicate_items"),
    ("bad phone", "field1", "diary.save", lambda w: diary_args(phone="call me"),
     "invalid_format"),
    ("bad photo hash", "field1", "visit.save", lambda w: visit_args(photos=["XYZ"]),
     "invalid_photo"),
    ("area id beyond any integer", "field1", "visit.save",
     lambda w: visit_args(area_id=2**70), "out_of_range"),
    ("category id beyond any integer", "field1", "problem.report",
     lambda w: problem_args(category_id=2**64), "out_of_range"),
    ("lone surrogate in text", "field1", "visit.save", lambda w: visit_args(place="\ud800"),
     "invalid_value"),
    ("lone surrogate in a key", "field1", "diary.save",
     lambda w: diary_args(**{"\udfff": 1}), "invalid_value"),
]


@pytest.mark.parametrize(("username", "name", "make", "code"),
                         [case[1:] for case in REJECTIONS],
                         ids=[case[0] for case in REJECTIONS])
def test_a_bad_mutation_is_rejected_with_its_code_and_leaves_nothing(
        phone, db, world, username, name, make, code):
    sender = phone(username)
    before = snapshot(db)
    args = make(world)
    result = sender.send(name, args)
    assert result["status"] == "rejected"
    assert result["error"]["code"] == code
    assert CHINESE.search(result["error"]["message"])
    assert snapshot(db) == before
    stored = db.execute(
        "SELECT name, code, message FROM sync_rejections WHERE client_id = ? AND mutation_id = 1",
        [sender.client_id]).fetchone()
    assert stored == (name, code, result["error"]["message"])


@pytest.mark.parametrize("name, make, field, limit", [
    ("problem.report", lambda w, text: problem_args(description=text), "description", 2000),
    ("problem.report", lambda w, text: problem_args(solved_on_spot={"note": text}),
     "solved_on_spot.note", 2000),
    ("problem.note", lambda w, text: note_args(w.problems["p1"], note=text), "note", 2000),
    ("diary.save", lambda w, text: diary_args(content=text), "content", 4000),
    ("problem.edit", lambda w, text: {"problem_id": w.problems["p1"], "base_version": 0,
                                      "changes": {"description": text}},
     "changes.description", 2000),
])
def test_text_past_its_limit_is_refused_in_full_never_cut(phone, db, world, name, make, field,
                                                         limit):
    field1 = phone("field1")
    before = snapshot(db)
    text = "水" * (limit - 3) + "😀" * 4  # counted in characters, as the phone counts them
    result = field1.send(name, make(world, text))
    assert result["status"] == "rejected"
    assert result["error"]["code"] == "too_long"
    assert result["error"]["message"] == (
        f"内容太长：{field} 有 {limit + 1} 字，最多 {limit} 字。这条记录未保存，请删减后重新提交。")
    assert snapshot(db) == before
    field1.apply(name, make(world, text[:limit]))  # exactly the limit is kept whole


def test_edit_after_acceptance_is_refused(phone, db, world):
    field1 = phone("field1")
    problem_id = world.problems["p1"]
    db["problems"].update(problem_id, {"status": "accepted"})
    before = snapshot(db)
    result = field1.send("problem.edit", {"problem_id": problem_id, "base_version": 0,
                                          "changes": {"description": "晚了"}})
    assert result["error"]["code"] == "already_accepted"
    assert snapshot(db) == before
    assert row(db, "problems", problem_id)["description"] == "幸福社区3号楼漏水，墙面渗水"


def test_a_rejected_save_of_an_existing_record_keeps_the_old_version(phone, db):
    field1 = phone("field1")
    args = visit_args(place="原地点")
    field1.apply("visit.save", args)
    before = snapshot(db)
    result = field1.send("visit.save", {**args, "place": "新地点", "started_at": in_future(3)})
    assert result["error"]["code"] == "future_time"
    assert snapshot(db) == before


def test_a_note_id_used_by_another_problem_is_refused(phone, db, world):
    field1 = phone("field1")
    args = note_args(world.problems["p1"])
    field1.apply("problem.note", args)
    before = snapshot(db)
    result = field1.send("problem.note", {**args, "problem_id": world.problems["p3"]})
    assert result["error"]["code"] == "id_taken"
    assert snapshot(db) == before


def test_an_unknown_mutation_name_is_rejected(phone, db):
    field1 = phone("field1")
    before = snapshot(db)
    result = field1.send("visit.delete", {"id": new_id()})
    assert result["error"]["code"] == "unknown_mutation"
    assert snapshot(db) == before


# Conflicts --------------------------------------------------------------------------


@pytest.fixture
def reported(phone, db):
    """field1's fresh report, and the version their phone pulled for it."""
    field1 = phone("field1")
    args = problem_args(place="3号楼")
    field1.apply("problem.report", args)
    version = field1.pull_version("problem", args["id"])
    assert version == latest_version(db)
    return field1, args["id"], version


def _edit(sender, problem_id, base_version, **changes):
    sender.apply("problem.edit", {"problem_id": problem_id, "base_version": base_version,
                                  "changes": changes})


def test_an_edit_based_on_the_latest_version_is_no_conflict(reported, db):
    field1, problem_id, version = reported
    _edit(field1, problem_id, version, description="第一次修改")
    problem = row(db, "problems", problem_id)
    assert (problem["description"], problem["conflict"]) == ("第一次修改", 0)
    assert json.loads(events(db, problem_id)[-1]["data"])["conflicts"] == []


def test_an_edit_on_a_field_changed_since_its_base_wins_but_is_flagged(reported, db):
    field1, problem_id, version = reported
    _edit(field1, problem_id, version, description="第一次修改")
    _edit(field1, problem_id, version, description="旧手机上的修改")
    problem = row(db, "problems", problem_id)
    assert (problem["description"], problem["conflict"]) == ("旧手机上的修改", 1)
    edited = events(db, problem_id)[-1]
    assert edited["kind"] == "edited"
    data = json.loads(edited["data"])
    assert data["changes"]["description"] == {"old": "第一次修改", "new": "旧手机上的修改"}
    assert data["conflicts"] == ["description"]
    assert data["base_version"] == version


def test_an_old_edit_of_another_field_is_no_conflict(reported, db):
    field1, problem_id, version = reported
    _edit(field1, problem_id, version, description="第一次修改")
    _edit(field1, problem_id, version, place="5号楼")
    problem = row(db, "problems", problem_id)
    assert (problem["description"], problem["place"], problem["conflict"]) == (
        "第一次修改", "5号楼", 0)
    assert json.loads(events(db, problem_id)[-1]["data"])["conflicts"] == []


def test_an_edit_based_on_a_version_pulled_after_the_change_is_no_conflict(reported, db):
    field1, problem_id, version = reported
    _edit(field1, problem_id, version, description="第一次修改")
    newer = field1.pull_version("problem", problem_id)
    assert newer > version
    _edit(field1, problem_id, newer, description="第二次修改")
    assert row(db, "problems", problem_id)["conflict"] == 0


# Any input ------------------------------------------------------------------------

TEXT = st.one_of(
    st.text(max_size=30), st.sampled_from(["", " ", "\ud800", "a\udfffb", "水" * 5000]),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), TEXT,
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
PLAUSIBLE = st.one_of(
    st.none(), st.text(max_size=10), st.builds(new_id),
    st.sampled_from([
        "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-000000000101", "00000000-0000-4000-8000-000000000102",
        "2026-05-01T09:00:00+08:00", "2026-05-01T09:00Z", "2999-01-01T00:00:00+00:00",
        "2026-02-30T00:00:00Z", "sbls", "resident", "urgent", "no_notice", SHA_NEVER_SEEN,
        "13912345678",
    ]),
    st.integers(min_value=0, max_value=12),
    st.floats(min_value=-200, max_value=200),
    st.lists(st.sampled_from(["no_notice", "direct_scene", SHA_NEVER_SEEN]), max_size=3),
    st.fixed_dictionaries({"note": TEXT}),
)
VALUE = st.one_of(PLAUSIBLE, JSONISH)
EDITABLE = sorted(MUTATIONS["problem.edit"]["properties"]["changes"]["properties"])


def _valid_args(name: str, world) -> dict:
    return {
        "visit.save": lambda: visit_args(area_id=world.areas["v1"]),
        "diary.save": lambda: diary_args(visit_id=world.visits["v1"]),
        "problem.report": lambda: problem_args(visit_id=world.visits["v1"]),
        "problem.note": lambda: note_args(world.problems["p1"]),
        "problem.edit": lambda: {"problem_id": world.problems["p1"], "base_version": 0,
                                 "changes": {"description": "改"}},
    }[name]()


def _perturbed(base: dict, overrides: dict, dropped: list[str]) -> dict:
    args = {**base, **overrides}
    for key in dropped:
        args.pop(key, None)
    return args


def _args_for(name: str, world):
    properties = sorted(MUTATIONS[name]["properties"])
    keys = st.one_of(st.sampled_from(properties), TEXT)
    values = st.dictionaries(st.sampled_from(EDITABLE), PLAUSIBLE, max_size=3) if (
        name == "problem.edit") else PLAUSIBLE
    base = st.builds(_valid_args, st.just(name), st.just(world))
    gentle = st.builds(
        _perturbed, base, st.dictionaries(st.sampled_from(properties), values, max_size=2),
        st.just([]),
    )
    wild = st.builds(
        _perturbed, base, st.dictionaries(keys, st.one_of(values, VALUE), max_size=2),
        st.lists(st.sampled_from(properties), max_size=1),
    )
    keyed = st.fixed_dictionaries({}, optional={key: VALUE for key in properties})
    return st.one_of(gentle, gentle, gentle, wild, keyed, JSONISH)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_any_args_are_applied_or_rejected_with_a_known_code(client, db, world, name):
    senders = {username: RawPhone(client, username)
               for username in ("field1", "office_d1", "handler1")}
    outcomes = set()

    @settings(max_examples=50, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(username=st.sampled_from(sorted(senders)), args=_args_for(name, world))
    def check(username, args):
        sender = senders[username]
        version = latest_version(db)
        body = {"client_id": sender.client_id, "schema_version": 1,
                "mutations": [{"id": sender.next_id, "name": name, "args": args}]}
        response = client.post("/api/sync/push", content=json.dumps(body),
                               headers=sender.headers)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["last_mutation_id"] == sender.next_id
        sender.next_id += 1
        [result] = data["results"]
        assert result["status"] in {"applied", "rejected"}
        if result["status"] == "rejected":
            assert result["error"]["code"] in KNOWN_CODES
            assert CHINESE.search(result["error"]["message"])
            assert latest_version(db) == version
        outcomes.add(result["status"])

    check()
    assert outcomes == {"applied", "rejected"}
