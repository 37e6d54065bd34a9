"""The push protocol: exactly once, in order, in one transaction, whatever the request."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

import server.db
import server.db.postgresql
from server import auth
from server.app import create_app
from server.db import immediate, open_database
from server.db.dialect import SQLITE
from server.db.placeholders import to_postgres_sql
from sync import mutations, push
from sync.errors import Rejected
from tests.conftest import api_login
from tests.sync_helpers import new_id, problem_args, visit_args

TRACKED = ("visits", "diary_entries", "problems", "problem_events", "attachment_links",
           "changes", "sync_rejections")








class Pusher:
    def __init__(self, client: TestClient, username: str, client_id: str | None = None):
        self.client = client
        self.token = api_login(client, username)
        self.client_id = client_id or new_id()

    def body(self, mutations: list, **extra) -> dict:
        return {"client_id": self.client_id, "schema_version": 1, "mutations": mutations,
                **extra}

    def post(self, body, token: str | None = None):
        content = body if isinstance(body, bytes) else json.dumps(body)
        return self.client.post("/api/sync/push", content=content, headers={
            "Authorization": f"Bearer {token or self.token}",
            "Content-Type": "application/json"})

    def push(self, mutations: list) -> dict:
        response = self.post(self.body(mutations))
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def field1(client):
    return Pusher(client, "field1")


def visit(mutation_id: int, **extra) -> dict:
    return {"id": mutation_id, "name": "visit.save", "args": visit_args(**extra)}


def bad_visit(mutation_id: int) -> dict:
    return {"id": mutation_id, "name": "visit.save", "args": visit_args(method="phone")}


def last_id(db, client_id: str) -> int | None:
    row = db.execute("SELECT last_mutation_id FROM sync_clients WHERE client_id = ?",
                     [client_id]).fetchone()
    return row[0] if row else None


def visit_ids(db) -> set[str]:
    return {row[0] for row in db.execute("SELECT id FROM visits")}


def snapshot(db) -> dict:
    """Every row of the tracked tables, in an order that does not depend on the backend."""
    return {table: sorted(db.query(f"SELECT * FROM {table}"), key=repr) for table in TRACKED}


@contextlib.contextmanager
def statements_run(db, monkeypatch) -> Iterator[list[str]]:
    """The SQL texts ``db`` runs inside the block: SQLite's trace callback, or every text
    the PostgreSQL backend hands its driver."""
    statements: list[str] = []
    if db.dialect is SQLITE:
        db.conn.set_trace_callback(statements.append)
        try:
            yield statements
        finally:
            db.conn.set_trace_callback(None)
        return

    def traced(sql: str) -> str:
        statements.append(sql)
        return to_postgres_sql(sql)

    monkeypatch.setattr(server.db.postgresql, "to_postgres_sql", traced)
    yield statements


def statuses(result: dict) -> list[tuple[int, str]]:
    return [(r["id"], r["status"]) for r in result["results"]]


# The protocol ------------------------------------------------------------------------


def test_mutations_are_applied_in_order_and_acknowledged(field1, db, world):
    first, second = visit(1), visit(2)
    result = field1.push([first, second])
    assert statuses(result) == [(1, "applied"), (2, "applied")]
    assert (result["last_mutation_id"], result["gap"]) == (2, False)
    assert result["epoch"] == db.execute(
        "SELECT value FROM settings WHERE key = 'epoch'").fetchone()[0]
    assert {first["args"]["id"], second["args"]["id"]} <= visit_ids(db)
    assert last_id(db, field1.client_id) == 2


def test_the_client_is_registered_to_its_user_and_device(field1, db, world):
    field1.push([visit(1)])
    user_id, device_id = db.execute(
        "SELECT user_id, device_id FROM sync_clients WHERE client_id = ?",
        [field1.client_id]).fetchone()
    assert user_id == world.users["field1"]
    assert db.execute("SELECT user_id FROM devices WHERE id = ?", [device_id]).fetchone() == (
        world.users["field1"],)


def test_later_mutations_in_a_batch_see_earlier_ones(field1, db, world):
    report = problem_args()
    visit_mutation = visit(1)
    field1.push([
        visit_mutation,
        {"id": 2, "name": "diary.save", "args": {
            "id": new_id(), "visit_id": visit_mutation["args"]["id"], "person_kind": "resident",
            "content": "同一批里引用刚保存的走访", "recorded_at": "2026-05-01T10:00:00+08:00"}},
        {"id": 3, "name": "problem.report", "args": report},
        {"id": 4, "name": "problem.note", "args": {
            "id": new_id(), "problem_id": report["id"], "note": "补充",
            "at": "2026-05-01T11:00:00+08:00"}},
    ])
    assert db.execute("SELECT visit_id FROM diary_entries").fetchall() == [
        (visit_mutation["args"]["id"],)]
    kinds = [r[0] for r in db.execute(
        "SELECT kind FROM problem_events WHERE problem_id = ? ORDER BY rowid", [report["id"]])]
    assert kinds == ["reported", "note"]


def test_a_push_reads_the_client_and_each_reference_row_once(db, world, monkeypatch):
    user = auth.load_user(db, world.users["field1"])
    reports = [{"id": n, "name": "problem.report", "args": problem_args(
        area_id=world.areas["t1"], category_id=world.category, suggested_unit_id=world.units["u1"])}
        for n in range(1, 101)]
    with statements_run(db, monkeypatch) as statements, immediate(db):
        result = push.apply_push(db, user, {"client_id": new_id(), "schema_version": 1,
                                            "mutations": reports})
    assert {r["status"] for r in result["results"]} == {"applied"}

    def count(fragment: str) -> int:
        return sum(fragment in statement for statement in statements)

    assert count("FROM sync_clients") == 1
    assert count("FROM areas") == count("FROM categories") == count("FROM units") == 1


def test_ids_up_to_the_last_applied_are_skipped(field1, db):
    field1.push([visit(1), visit(2)])
    before = snapshot(db)
    again = [visit(1), visit(2), visit(3)]
    result = field1.push(again)
    assert statuses(result) == [(1, "skipped"), (2, "skipped"), (3, "applied")]
    assert again[0]["args"]["id"] not in visit_ids(db)
    assert again[1]["args"]["id"] not in visit_ids(db)
    assert again[2]["args"]["id"] in visit_ids(db)
    assert len(visit_ids(db)) == len({r["id"] for r in before["visits"]}) + 1


def test_a_gap_stops_processing(field1, db):
    field1.push([visit(1)])
    before = snapshot(db)
    later = [visit(3), visit(4)]
    result = field1.push(later)
    assert result["gap"] is True
    assert result["last_mutation_id"] == 1
    assert result["results"] == []
    assert snapshot(db) == before
    assert last_id(db, field1.client_id) == 1


def test_a_gap_in_the_middle_keeps_what_came_before_it(field1, db):
    before_gap, after_gap = visit(1), visit(3)
    result = field1.push([before_gap, after_gap, visit(2)])
    assert statuses(result) == [(1, "applied")]
    assert (result["gap"], result["last_mutation_id"]) == (True, 1)
    assert before_gap["args"]["id"] in visit_ids(db)
    assert after_gap["args"]["id"] not in visit_ids(db)
    assert last_id(db, field1.client_id) == 1


def test_a_rejected_mutation_advances_and_the_rest_are_applied(field1, db):
    after = visit(2)
    result = field1.push([bad_visit(1), after, visit(3)])
    assert statuses(result) == [(1, "rejected"), (2, "applied"), (3, "applied")]
    assert result["results"][0]["error"]["code"] == "invalid_value"
    assert after["args"]["id"] in visit_ids(db)
    assert last_id(db, field1.client_id) == 3


def test_the_same_batch_twice_changes_nothing_the_second_time(field1, db):
    batch = [visit(1), bad_visit(2), {"id": 3, "name": "problem.report",
                                      "args": problem_args()}]
    field1.push(batch)
    before = snapshot(db)
    result = field1.push(batch)
    # A retry learns again of the rejection it may have missed.
    assert statuses(result) == [(1, "skipped"), (2, "rejected"), (3, "skipped")]
    assert result["last_mutation_id"] == 3
    assert snapshot(db) == before


def test_an_empty_batch_answers_the_last_id(field1, db):
    field1.push([visit(1)])
    result = field1.push([])
    assert (result["last_mutation_id"], result["results"], result["gap"]) == (1, [], False)


def test_rejections_are_kept_with_code_message_and_args(field1, db):
    bad = bad_visit(1)
    field1.push([bad])
    row = next(db.query("SELECT * FROM sync_rejections WHERE client_id = ?",
                        [field1.client_id]))
    assert (row["mutation_id"], row["name"], row["code"]) == (1, "visit.save", "invalid_value")
    assert row["message"] == "取值无效：method"
    assert json.loads(row["args"]) == bad["args"]


def test_a_rejection_undoes_only_its_own_writes(field1, db, monkeypatch):
    real = mutations.HANDLERS["visit.save"]

    def save_then_refuse(db, ctx, args):
        real(db, ctx, args)
        if args.get("place") == "refuse":
            raise Rejected("integrity")

    monkeypatch.setitem(mutations.HANDLERS, "visit.save", save_then_refuse)
    refused, kept = visit(1, place="refuse"), visit(2)
    result = field1.push([refused, kept])
    assert statuses(result) == [(1, "rejected"), (2, "applied")]
    assert refused["args"]["id"] not in visit_ids(db)
    assert kept["args"]["id"] in visit_ids(db)
    assert db.execute("SELECT count(*) FROM changes WHERE entity_id = ?",
                      [refused["args"]["id"]]).fetchone() == (0,)


def test_a_constraint_failure_is_a_rejection_of_that_mutation(field1, db, monkeypatch):
    real = mutations.HANDLERS["visit.save"]

    def save_then_break(db, ctx, args):
        real(db, ctx, args)
        raise db.errors.Integrity("FOREIGN KEY constraint failed")

    monkeypatch.setitem(mutations.HANDLERS, "visit.save", save_then_break)
    broken = visit(1)
    result = field1.push([broken])
    assert result["results"][0]["error"]["code"] == "integrity"
    assert broken["args"]["id"] not in visit_ids(db)
    assert last_id(db, field1.client_id) == 1


def test_the_last_id_commits_only_together_with_the_effects(app, field1, db, monkeypatch):
    field1.push([visit(1)])

    def crash(db, ctx, args):
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(mutations.HANDLERS, "diary.save", crash)
    before = snapshot(db)
    with TestClient(app, raise_server_exceptions=False) as client:
        field1.client = client
        response = field1.post(field1.body([
            visit(2), {"id": 3, "name": "diary.save", "args": {
                "id": new_id(), "person_kind": "resident", "content": "写到一半",
                "recorded_at": "2026-05-01T10:00:00+08:00"}}]))
    assert response.status_code == 500
    assert snapshot(db) == before
    assert last_id(db, field1.client_id) == 1


# Refused requests ---------------------------------------------------------------------

def _with(**changes):
    def make(pusher):
        return {**pusher.body([visit(2)]), **changes}
    return make


def _without(key):
    def make(pusher):
        body = pusher.body([visit(2)])
        del body[key]
        return body
    return make


def _mutations(*extra):
    return lambda pusher: pusher.body([visit(2), *extra])


BAD_BODIES = [
    ("not JSON", lambda p: b'{"client_id": ', "bad_json"),
    ("a list", lambda p: [p.body([visit(2)])], "bad_json"),
    ("a string", lambda p: "push", "bad_json"),
    ("no client_id", _without("client_id"), "bad_body"),
    ("client_id not a UUID", _with(client_id="phone-1"), "bad_body"),
    ("client_id in capitals", lambda p: {**p.body([visit(2)]),
                                         "client_id": p.client_id.upper()}, "bad_body"),
    ("mutations not a list", _with(mutations={"id": 2}), "bad_body"),
    ("no mutations", _without("mutations"), "bad_body"),
    ("1001 mutations", lambda p: p.body([visit(i) for i in range(2, 1003)]), "bad_body"),
    ("a mutation that is not an object", _mutations(3), "bad_body"),
    ("mutation id 0", _mutations(visit(0)), "bad_body"),
    ("negative mutation id", _mutations(visit(-3)), "bad_body"),
    ("boolean mutation id", _mutations(visit(True)), "bad_body"),
    ("string mutation id", _mutations(visit("3")), "bad_body"),
    ("fractional mutation id", _mutations(visit(3.5)), "bad_body"),
    ("mutation without id", _mutations({"name": "visit.save", "args": visit_args()}),
     "bad_body"),
    ("mutation id above 2**53", _mutations(visit(2**53 + 1)), "bad_body"),
    # The whole request is checked, not only up to a gap.
    ("a bad id after a gap", _mutations(visit(9), visit("x")), "bad_body"),
    ("unsupported schema version", _with(schema_version=2), "unsupported_schema_version"),
    ("schema version as text", _with(schema_version="1"), "unsupported_schema_version"),
    ("no schema version", _without("schema_version"), "bad_body"),
    ("an unknown top-level field", _with(device="x"), "bad_body"),
    ("arrays nested 100,000 deep", lambda p: b"[" * 100_000 + b"]" * 100_000, "bad_body"),
    ("mutations nested 100,000 deep", lambda p: (
        f'{{"client_id": "{p.client_id}", "schema_version": 1, "mutations": '.encode()
        + b'[{"a": ' * 100_000 + b"1" + b"}]" * 100_000 + b"}"), "bad_body"),
]


@pytest.mark.parametrize(("make", "code"), [case[1:] for case in BAD_BODIES],
                         ids=[case[0] for case in BAD_BODIES])
def test_a_malformed_request_applies_nothing(field1, db, make, code):
    field1.push([visit(1)])
    before = snapshot(db)
    response = field1.post(make(field1))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert snapshot(db) == before
    assert last_id(db, field1.client_id) == 1


def test_a_body_nested_too_deep_to_read_says_so(field1):
    response = field1.post(b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "bad_body",
                                        "message": "请求体的 JSON 嵌套层数太多，无法读取。"}


def test_a_mutation_id_written_as_an_integral_number_is_that_integer(field1, db):
    # JSON Schema (and so the OpenAPI description) counts 2.0 as the integer 2.
    result = field1.push([visit(1.0), visit(2.0)])
    assert statuses(result) == [(1, "applied"), (2, "applied")]
    assert result["last_mutation_id"] == 2
    assert last_id(db, field1.client_id) == 2


def test_a_mutation_breaking_its_schema_is_rejected_not_the_request(field1, db):
    result = field1.push([{"id": 1, "name": "problem.edit"}, {"id": 2, "name": "no.such"},
                          visit(3)])
    assert statuses(result) == [(1, "rejected"), (2, "rejected"), (3, "applied")]
    assert [r["error"]["code"] for r in result["results"][:2]] == [
        "invalid_value", "unknown_mutation"]


def test_a_push_over_the_size_limit_is_a_documented_413(client, field1, db):
    huge = {**field1.body([visit(1)]), "padding": "x" * (7 << 20)}
    response = field1.post(huge)
    assert response.status_code == 413
    spec = client.get("/api/openapi.json").json()
    assert "413" in spec["paths"]["/api/sync/push"]["post"]["responses"]
    assert last_id(db, field1.client_id) is None


def test_a_client_id_of_another_user_is_refused(client, field1, db):
    field1.push([visit(1)])
    field2 = Pusher(client, "field2", client_id=field1.client_id)
    before = snapshot(db)
    response = field2.post(field2.body([visit(2)]))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "client_owner"
    assert snapshot(db) == before
    assert last_id(db, field1.client_id) == 1


def test_an_unauthenticated_push_is_refused(client, field1, db):
    before = snapshot(db)
    response = client.post("/api/sync/push", json=field1.body([visit(1)]))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    response = field1.post(field1.body([visit(1)]), token="not-a-token")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    assert snapshot(db) == before
    assert last_id(db, field1.client_id) is None


@pytest.mark.parametrize(("mode", "code"), [("stop", "device_revoked"),
                                            ("wipe", "device_wiped")])
def test_a_revoked_device_cannot_push(field1, db, world, mode, code):
    field1.push([visit(1)])
    db.execute("UPDATE devices SET revoked_at = '2026-01-01T00:00:00+00:00', revoke_mode = ?"
               " WHERE user_id = ?", [mode, world.users["field1"]])
    db.conn.commit()
    before = snapshot(db)
    response = field1.post(field1.body([visit(2)]))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert snapshot(db) == before
    assert last_id(db, field1.client_id) == 1


def test_a_role_without_capture_gets_rejections_not_an_error(client, db):
    admin = Pusher(client, "admin")
    result = admin.push([visit(1), {"id": 2, "name": "problem.report", "args": problem_args()}])
    assert [r["error"]["code"] for r in result["results"]] == ["forbidden", "forbidden"]
    assert result["last_mutation_id"] == 2


# A busy database ----------------------------------------------------------------------


@pytest.fixture
def impatient_app(db_path, world, photos_folder, monkeypatch):
    monkeypatch.setattr(server.db, "BUSY_TIMEOUT_MS", 100)
    return create_app(db_path, photos=photos_folder)


class WriteLockHolder:
    """Another connection that holds the write lock, on either backend, until released."""

    def __init__(self, db_path):
        self._taken, self._released = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(db_path,))
        self._thread.start()
        assert self._taken.wait(10)

    def _hold(self, db_path) -> None:
        holder = open_database(db_path)
        try:
            with immediate(holder):
                self._taken.set()
                self._released.wait()
        finally:
            holder.close()

    def release(self) -> None:
        self._released.set()
        self._thread.join()


def test_a_locked_database_answers_503_and_applies_nothing(impatient_app, db_path, db):
    with TestClient(impatient_app) as client:
        field1 = Pusher(client, "field1")
        field1.push([visit(1)])
        before = snapshot(db)
        body = field1.body([visit(1), visit(2), bad_visit(3)])
        holder = WriteLockHolder(db_path)
        try:
            response = field1.post(body)
        finally:
            holder.release()
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        assert response.json()["error"]["code"] == "busy"
        assert snapshot(db) == before
        assert last_id(db, field1.client_id) == 1

        retried = field1.post(body)
        assert retried.status_code == 200
        assert statuses(retried.json()) == [(1, "skipped"), (2, "applied"), (3, "rejected")]
        assert last_id(db, field1.client_id) == 3


def test_a_lock_shorter_than_the_busy_timeout_is_waited_out(client, field1, db_path, db):
    holder = WriteLockHolder(db_path)
    release = threading.Timer(0.3, holder.release)
    release.start()
    try:
        result = field1.push([visit(1)])
    finally:
        release.join()
    assert result["last_mutation_id"] == 1
    assert last_id(db, field1.client_id) == 1


# The resident's tracking link (server/ledger/tracking.py): only the token's hash is pushed. ------


def report(mutation_id: int, **extra) -> dict:
    return {"id": mutation_id, "name": "problem.report",
            "args": problem_args(resident_name="王大爷", resident_phone="13900001111", **extra)}


def tracking_hash_of(db, problem_id: str):
    return db.execute("SELECT tracking_hash FROM problems WHERE id = ?",
                      [problem_id]).fetchone()[0]


def test_a_report_carries_the_hash_of_its_tracking_token(field1, db):
    from server.ledger import tracking

    token = tracking.new_token()
    sent = report(1, tracking_hash=tracking.hash_token(token))
    assert statuses(field1.push([sent])) == [(1, "applied")]
    assert tracking_hash_of(db, sent["args"]["id"]) == tracking.hash_token(token)
    assert tracking.find(db, token)["id"] == sent["args"]["id"]


def test_a_report_without_a_hash_is_applied_as_before(field1, db):
    sent = report(1)
    assert statuses(field1.push([sent])) == [(1, "applied")]
    assert tracking_hash_of(db, sent["args"]["id"]) is None


@pytest.mark.parametrize("bad", ["ab" * 31, "AB" * 32, "g" * 64, "a" * 65, 12, None,
                                 "a" * 63 + "\n"])
def test_a_malformed_hash_is_rejected_and_nothing_saved(field1, db, bad):
    sent = report(1, tracking_hash=bad)
    result = field1.push([sent])
    assert statuses(result) == [(1, "rejected")]
    error = result["results"][0]["error"]
    assert error["code"] in ("invalid_format", "wrong_type"), result
    assert error["message"].endswith("：tracking_hash"), result
    assert db.execute("SELECT count(*) FROM problems WHERE id = ?",
                      [sent["args"]["id"]]).fetchone()[0] == 0


def test_a_hash_another_problem_holds_is_rejected(field1, db):
    taken = "0123456789abcdef" * 4
    first, second = report(1, tracking_hash=taken), report(2, tracking_hash=taken)
    result = field1.push([first, second])
    assert statuses(result) == [(1, "applied"), (2, "rejected")]
    assert result["results"][1]["error"]["code"] == "tracking_hash_taken"
    assert db.execute("SELECT count(*) FROM problems WHERE id = ?",
                      [second["args"]["id"]]).fetchone()[0] == 0


# U+0000 is refused in every text (docs/sync-protocol.md) --------------------------------


@pytest.mark.parametrize(("args", "field"), [
    ({"description": "水压不足\x00五楼停水"}, "description"),
    ({"place": "幸福社区\x00"}, "place"),
    ({"photos": ["a" * 64, "\x00"]}, "photos.1"),
    ({"description\x00": "x"}, "args"),  # a key holding it: the object around it
])
def test_a_text_holding_nul_is_an_invalid_value_and_nothing_is_saved(field1, db, args, field):
    report = problem_args(**args)
    if "description\x00" in args:
        del report["description"]
    before_problems = db.execute("SELECT count(*) FROM problems").fetchone()
    result = field1.push([{"id": 1, "name": "problem.report", "args": report}, visit(2)])
    assert statuses(result) == [(1, "rejected"), (2, "applied")]
    assert result["results"][0]["error"] == {
        "code": "invalid_value", "message": f"取值无效：{field}"}
    assert db.execute("SELECT count(*) FROM problems").fetchone() == before_problems
    row = next(db.query("SELECT * FROM sync_rejections WHERE client_id = ?",
                        [field1.client_id]))
    assert "\x00" not in row["args"] and "\x00" not in row["message"]
    assert json.loads(row["args"]) == report  # kept as JSON, the NUL escaped


def test_a_mutation_name_holding_nul_is_recorded_without_it(field1, db):
    result = field1.push([{"id": 1, "name": "visit.save\x00", "args": visit_args()}])
    assert result["results"][0]["error"]["code"] == "unknown_mutation"
    name = db.execute("SELECT name FROM sync_rejections WHERE client_id = ?",
                      [field1.client_id]).fetchone()[0]
    assert name == "visit.save?"
