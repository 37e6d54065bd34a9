"""The reference sync client against the real app: offline capture, failures, restores."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3

import pytest
from PIL import Image
from starlette.testclient import TestClient

from server.app import create_app
from sync.client import Response, SyncClient, TransportError
from sync.epoch import latest_version
from tests.conftest import api_login
from tests.sync_helpers import (
    RECENTLY,
    asgi_transport,
    jpeg,
    new_id,
    phone,
    problem_args,
    visit_args,
)
from tests.test_uploads import bomb_png

CHINESE = re.compile(r"[\u4e00-\u9fff]")








def diary_args(**extra) -> dict:
    return {"id": new_id(), "person_kind": "resident", "content": "群众反映路灯不亮",
            "recorded_at": RECENTLY, **extra}


def note_args(problem_id: str) -> dict:
    return {"id": new_id(), "problem_id": problem_id, "note": "回头看",
            "at": "2026-05-02T10:00:00+08:00"}


def large_jpeg() -> bytes:
    image = Image.frombytes("RGB", (720, 720), os.urandom(720 * 720 * 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def count(db, table: str, record_id: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table} WHERE id = ?", [record_id]).fetchone()[0]


def last_id(db, client: SyncClient) -> int:
    return db.execute("SELECT last_mutation_id FROM sync_clients WHERE client_id = ?",
                      [client.state["client_id"]]).fetchone()[0]


def offline(method, path, headers, body):
    raise TransportError("no signal")


class Wrapped:
    """A transport that lets a test step in before or after the real one."""

    def __init__(self, real, intercept):
        self.real = real
        self.intercept = intercept
        self.calls: list[tuple[str, str]] = []

    def __call__(self, method, path, headers, body):
        self.calls.append((method, path.split("?")[0]))
        return self.intercept(self, method, path, headers, body)


# Capturing and syncing ---------------------------------------------------------------


def test_what_was_captured_offline_reaches_the_server_on_the_next_sync(client, db, world):
    sender = phone(client, "field1")
    online = sender.transport
    sender.transport = offline
    visit_photo = sender.add_photo(jpeg(seed=1))
    problem_photo = sender.add_photo(jpeg(seed=2))
    visit = visit_args(area_id=world.areas["v1"], photos=[visit_photo])
    diary = diary_args(visit_id=visit["id"])
    report = problem_args(visit_id=visit["id"], photos=[problem_photo])
    note = note_args(world.problems["p1"])
    for name, args in (("visit.save", visit), ("diary.save", diary),
                       ("problem.report", report), ("problem.note", note)):
        sender.capture(name, args)
    with pytest.raises(TransportError):
        sender.sync()
    assert len(sender.state["outbox"]) == 4
    assert count(db, "visits", visit["id"]) == 0

    restarted = SyncClient(online, state=json.loads(json.dumps(sender.state)),
                           sleep=lambda _s: None)
    restarted.photo_bytes = dict(sender.photo_bytes)
    restarted.sync()

    assert restarted.state["outbox"] == []
    assert restarted.state["rejected"] == []
    assert last_id(db, restarted) == 4
    assert count(db, "visits", visit["id"]) == 1
    assert db.execute("SELECT visit_id FROM diary_entries WHERE id = ?",
                      [diary["id"]]).fetchone() == (visit["id"],)
    assert db.execute("SELECT area_id, source FROM problems WHERE id = ?",
                      [report["id"]]).fetchone() == (world.areas["v1"], "visit")
    assert count(db, "problem_events", note["id"]) == 1
    assert {r[0] for r in db.execute("SELECT sha256 FROM attachments")} == {
        visit_photo, problem_photo}
    assert all(photo["done"] for photo in restarted.state["photos"].values())
    assert restarted.records("visit")[visit["id"]]["photos"] == [visit_photo]
    assert restarted.records("problem")[report["id"]]["photos"] == [problem_photo]
    assert diary["id"] in restarted.records("diary")


def test_rejected_changes_are_kept_with_a_message_and_do_not_block(client, db, world):
    sender = phone(client, "field1")
    first, outside, second = visit_args(), visit_args(area_id=world.areas["v2"]), visit_args()
    late_edit = {"problem_id": world.problems["p2"], "base_version": 0,
                 "changes": {"place": "改"}}
    sender.capture("visit.save", first)
    sender.capture("visit.save", outside)
    sender.capture("problem.edit", late_edit)
    sender.capture("visit.save", second)
    sender.sync()
    assert [(r["id"], r["name"], r["code"]) for r in sender.state["rejected"]] == [
        (2, "visit.save", "area_out_of_scope"), (3, "problem.edit", "not_owner")]
    assert all(CHINESE.search(r["message"]) for r in sender.state["rejected"])
    assert sender.state["outbox"] == []
    assert (count(db, "visits", first["id"]), count(db, "visits", outside["id"]),
            count(db, "visits", second["id"])) == (1, 0, 1)
    assert last_id(db, sender) == 4
    assert set(sender.records("visit")) >= {first["id"], second["id"]}
    assert outside["id"] not in sender.records("visit")


def test_a_503_is_waited_out_and_retried(client, db, world):
    sender = phone(client, "field1")
    pauses: list[float] = []
    sender.sleep = pauses.append

    def busy_once(transport, method, path, headers, body):
        if path == "/api/sync/push" and transport.calls.count(("POST", path)) == 1:
            return Response(503, {"retry-after": "2"},
                            b'{"error": {"code": "busy", "message": "busy"}}')
        return transport.real(method, path, headers, body)

    sender.transport = Wrapped(sender.transport, busy_once)
    visit = visit_args()
    sender.capture("visit.save", visit)
    results = sender.push()
    assert results == [{"id": 1, "status": "applied"}]
    assert sender.transport.calls.count(("POST", "/api/sync/push")) == 2
    # Retry-After 2, stretched by up to twice as much so refused phones spread out.
    assert len(pauses) == 1 and 2 <= pauses[0] <= 4
    assert count(db, "visits", visit["id"]) == 1
    assert sender.state["outbox"] == []


def test_a_response_lost_after_the_commit_is_retried_and_skipped(client, db, world):
    sender = phone(client, "field1")
    committed = []

    def lose_first_answer(transport, method, path, headers, body):
        response = transport.real(method, path, headers, body)
        if path == "/api/sync/push" and transport.calls.count(("POST", path)) == 1:
            committed.append(latest_version(db))
            raise TransportError("connection reset after the server answered")
        return response

    sender.transport = Wrapped(sender.transport, lose_first_answer)
    visit, report = visit_args(), problem_args(solved_on_spot={"note": "当场解决"})
    note = note_args(world.problems["p1"])
    sender.capture("visit.save", visit)
    sender.capture("problem.report", report)
    sender.capture("problem.note", note)

    results = sender.push()

    assert [r["status"] for r in results] == ["skipped"] * 3
    assert sender.state["outbox"] == []
    assert last_id(db, sender) == 3
    assert (count(db, "visits", visit["id"]), count(db, "problems", report["id"]),
            count(db, "problem_events", note["id"])) == (1, 1, 1)
    assert [r[0] for r in db.execute(
        "SELECT kind FROM problem_events WHERE problem_id = ? ORDER BY rowid", [report["id"]])
    ] == ["reported", "solved_on_spot"]
    assert latest_version(db) == committed[0]


def test_an_upload_broken_mid_chunk_resumes_from_the_servers_offset(client, db, world):
    sender = phone(client, "field1")
    data = large_jpeg()
    assert len(data) > 2 * 256 * 1024

    def lose_second_patch_answer(transport, method, path, headers, body):
        response = transport.real(method, path, headers, body)
        if method == "PATCH" and sum(m == "PATCH" for m, _p in transport.calls) == 2:
            raise TransportError("timed out waiting for the answer")
        return response

    sender.transport = Wrapped(sender.transport, lose_second_patch_answer)
    sha = sender.add_photo(data)
    sender.capture("visit.save", visit_args(photos=[sha]))
    sender.sync()
    assert sender.state["photos"][sha]["done"] is True
    assert db.execute("SELECT size, mime FROM attachments WHERE sha256 = ?",
                      [sha]).fetchone() == (len(data), "image/jpeg")
    upload = sender.state["photos"][sha]["upload"]
    assert [method for method, path in sender.transport.calls if path == upload] == [
        "HEAD", "PATCH", "PATCH", "PATCH", "HEAD", "PATCH"]
    assert client.get(f"/api/photos/{sha}", headers={
        "Authorization": f"Bearer {sender.state['token']}"}).content == data


def test_an_upload_another_patch_holds_is_resumed_after_a_pause(client, db, world):
    """409 busy_upload: a PATCH of the same upload still running, on any server process."""
    sender = phone(client, "field1")
    pauses: list[float] = []
    sender.sleep = pauses.append

    def busy_first_patch(transport, method, path, headers, body):
        if method == "PATCH" and sum(m == "PATCH" for m, _p in transport.calls) == 1:
            return Response(409, {"content-type": "application/json"}, json.dumps(
                {"error": {"code": "busy_upload", "message": "another PATCH is running"}},
            ).encode())
        return transport.real(method, path, headers, body)

    sender.transport = Wrapped(sender.transport, busy_first_patch)
    sha = sender.add_photo(jpeg(seed=21))
    sender.capture("visit.save", visit_args(photos=[sha]))
    sender.sync()
    assert sender.state["photos"][sha]["done"] is True
    upload = sender.state["photos"][sha]["upload"]
    assert [method for method, path in sender.transport.calls if path == upload] == [
        "HEAD", "PATCH", "HEAD", "PATCH"]
    assert len(pauses) == 1


# Photos the server refuses for good ----------------------------------------------------


@pytest.mark.parametrize("refused, code", [
    (bomb_png(13076, 13000), "image_too_large"),  # 170 million pixels in a few kB
    (b"%PDF-1.4 not a photo " * 100, "not_an_image"),
])
def test_a_refused_photo_is_kept_and_the_round_goes_on(client, db, world, refused, code):
    sender = phone(client, "field1")
    sender.transport = Wrapped(sender.transport, lambda t, *request: t.real(*request))
    bad = sender.add_photo(refused)
    good = sender.add_photo(jpeg(seed=31))
    with_bad = visit_args(area_id=world.areas["v1"], photos=[bad])
    with_good = visit_args(area_id=world.areas["v1"], photos=[good])
    diary = diary_args()
    for name, args in [("visit.save", with_bad), ("visit.save", with_good),
                       ("diary.save", diary)]:
        sender.capture(name, args)

    sender.sync()

    assert sender.state["photos"][bad]["refused"]["code"] == code
    assert sender.state["photos"][bad]["done"] is False
    assert sender.photo_bytes[bad] == refused  # never dropped from the phone
    assert sender.state["photos"][good]["done"] is True
    assert [(item["name"], item["code"], item["photo"])
            for item in sender.state["rejected"]] == [("photo", code, bad)]
    assert sender.state["outbox"] == [] and sender.state["deferred"] == []
    # The records were applied as the phone holds them; no bytes ever arrive
    # for the refused photo, so it is never shown.
    assert count(db, "visits", with_bad["id"]) == 1
    assert count(db, "diary_entries", diary["id"]) == 1
    assert sender.records("visit")[with_bad["id"]]["photos"] == [bad]
    assert not db.execute("SELECT 1 FROM attachments WHERE sha256 = ?", [bad]).fetchone()
    assert sender.records("visit")[with_good["id"]]["photos"] == [good]

    held = json.loads(json.dumps(sender.state["photos"][bad]))
    sender.transport.calls.clear()
    later = diary_args()
    sender.capture("diary.save", later)
    sender.sync()
    assert count(db, "diary_entries", later["id"]) == 1
    assert not [path for _method, path in sender.transport.calls
                if path.startswith("/api/uploads")]
    assert sender.state["photos"][bad] == held
    assert len(sender.state["rejected"]) == 1


def test_an_upload_that_already_ended_is_taken_as_refused(client, db, world):
    """A phone that lost the answer to its last PATCH learns of the refusal
    from a HEAD (410, which has no body) and an empty PATCH that names its code."""
    sender = phone(client, "field1")
    bad = sender.add_photo(bomb_png(13076, 13000))
    sender.capture("visit.save", visit_args(area_id=world.areas["v1"], photos=[bad]))
    sender.sync()
    state = json.loads(json.dumps(sender.state))
    del state["photos"][bad]["refused"]
    state["rejected"] = []
    restarted = SyncClient(Wrapped(sender.transport, lambda t, *request: t.real(*request)),
                           state, sleep=lambda _s: None)
    restarted.photo_bytes = dict(sender.photo_bytes)

    restarted.sync()

    upload = state["photos"][bad]["upload"]
    assert [method for method, path in restarted.transport.calls if path == upload] == [
        "HEAD", "PATCH"]
    assert restarted.state["photos"][bad]["refused"]["code"] == "image_too_large"
    assert [item["code"] for item in restarted.state["rejected"]] == ["image_too_large"]


# Restores from backup ------------------------------------------------------------------


# A backup here is a copy of the SQLite file; the tests that restore one are SQLite's.
restores_a_file = pytest.mark.sqlite_only


def copy_database(source, target) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


class Server:
    """The app, which a test can stop, restore from a backup and start again."""

    def __init__(self, db_path, photos):
        self.db_path, self.photos = db_path, photos
        self.client: TestClient | None = None
        self.start()

    def start(self) -> None:
        self.client = TestClient(create_app(self.db_path, photos=self.photos))
        self.client.__enter__()

    def stop(self) -> None:
        self.client.__exit__(None, None, None)

    def backup(self, target) -> None:
        copy_database(self.db_path, target)

    def restore(self, backup, phones: list[SyncClient]) -> None:
        self.stop()
        copy_database(backup, self.db_path)
        self.start()
        for device in phones:
            device.transport = asgi_transport(self.client)


@pytest.fixture
def server(db_path, world, photos_folder):
    running = Server(db_path, photos_folder)
    yield running
    running.stop()


def on_server(db, table: str, ids: list[str]) -> list[int]:
    return [count(db, table, record_id) for record_id in ids]


def capture_visits(device: SyncClient, n: int, **extra) -> list[str]:
    ids = []
    for _ in range(n):
        args = visit_args(**extra)
        device.capture("visit.save", args)
        ids.append(args["id"])
    return ids


@restores_a_file
def test_a_restore_noticed_by_a_push_gap_resends_everything(server, db, world, tmp_path):
    field1 = phone(server.client, "field1")
    before = capture_visits(field1, 2)
    report = problem_args()
    field1.capture("problem.report", report)
    field1.sync()
    server.backup(tmp_path / "backup.db")
    after = capture_visits(field1, 3)
    note = note_args(report["id"])
    field1.capture("problem.note", note)
    field1.sync()
    server.restore(tmp_path / "backup.db", [field1])
    assert on_server(db, "visits", after) == [0, 0, 0]

    newest = capture_visits(field1, 1)
    field1.sync()

    assert field1.state["rejected"] == []
    assert on_server(db, "visits", before + after + newest) == [1] * 6
    assert count(db, "problems", report["id"]) == 1
    assert count(db, "problem_events", note["id"]) == 1
    assert db.execute("SELECT count(*) FROM visits WHERE author_id = ?",
                      [world.users["field1"]]).fetchone() == (7,)
    assert set(field1.records("visit")) == set(before + after + newest) | {world.visits["v1"]}


@restores_a_file
def test_a_restore_noticed_by_a_pull_from_the_future_resends_everything(server, db, world,
                                                                       tmp_path):
    field1 = phone(server.client, "field1")
    before = capture_visits(field1, 2)
    field1.sync()
    server.backup(tmp_path / "backup.db")
    after = capture_visits(field1, 3)
    field1.sync()
    server.restore(tmp_path / "backup.db", [field1])

    field1.sync()
    field1.sync()

    assert field1.state["rejected"] == []
    assert on_server(db, "visits", before + after) == [1] * 5
    assert set(field1.records("visit")) == set(before + after) | {world.visits["v1"]}


@restores_a_file
def test_a_restore_is_noticed_even_after_others_wrote_to_the_server(server, db, world,
                                                                    tmp_path):
    field1, field2 = phone(server.client, "field1"), phone(server.client, "field2")
    before = capture_visits(field1, 2)
    field1.sync()
    server.backup(tmp_path / "backup.db")
    after = capture_visits(field1, 3)
    field1.sync()
    server.restore(tmp_path / "backup.db", [field1, field2])
    capture_visits(field2, 10)
    field2.sync()

    field1.sync()
    field1.sync()

    assert field1.state["rejected"] == []
    assert on_server(db, "visits", before + after) == [1] * 5


@restores_a_file
def test_after_a_restore_the_phone_pulls_everything_again(server, db, world, tmp_path):
    field1 = phone(server.client, "field1")
    capture_visits(field1, 1)
    field1.sync()
    server.backup(tmp_path / "backup.db")
    capture_visits(field1, 3)
    field1.sync()
    server.restore(tmp_path / "backup.db", [field1])
    db["problems"].update(world.problems["p1"], {"description": "恢复后办公室改的描述"})

    capture_visits(field1, 1)
    field1.sync()

    assert field1.records("problem")[world.problems["p1"]]["description"] == "恢复后办公室改的描述"


@restores_a_file
def test_a_photo_uploaded_after_the_backup_is_sent_again(server, db, world, tmp_path):
    field1 = phone(server.client, "field1")
    capture_visits(field1, 1)
    field1.sync()
    server.backup(tmp_path / "backup.db")
    sha = field1.add_photo(jpeg(seed=21))
    with_photo = capture_visits(field1, 1, photos=[sha])
    field1.sync()
    server.restore(tmp_path / "backup.db", [field1])
    assert db.execute("SELECT count(*) FROM attachments").fetchone() == (0,)

    capture_visits(field1, 1)
    field1.sync()

    assert field1.state["rejected"] == []
    assert on_server(db, "visits", with_photo) == [1]
    assert db.execute("SELECT sha256 FROM attachment_links WHERE record_id = ?",
                      with_photo).fetchall() == [(sha,)]
    assert db.execute("SELECT count(*) FROM attachments WHERE sha256 = ?",
                      [sha]).fetchone() == (1,)


@restores_a_file
def test_an_upload_the_server_forgot_is_announced_again(server, db, world, tmp_path):
    field1 = phone(server.client, "field1")
    capture_visits(field1, 1)
    field1.sync()
    server.backup(tmp_path / "backup.db")
    sha = field1.add_photo(jpeg(seed=22))
    with_photo = capture_visits(field1, 1, photos=[sha])
    field1.announce_photos()
    field1.push()
    forgotten = field1.state["photos"][sha]["upload"]
    server.restore(tmp_path / "backup.db", [field1])

    field1.sync()
    field1.sync()

    assert field1.state["rejected"] == []
    assert field1.state["photos"][sha]["done"] is True
    assert field1.state["photos"][sha]["upload"] != forgotten
    assert on_server(db, "visits", with_photo) == [1]
    assert db.execute("SELECT count(*) FROM attachments WHERE sha256 = ?",
                      [sha]).fetchone() == (1,)


# A restore seen only by a phone with nothing to push ------------------------------


def _push_only(device: SyncClient) -> None:
    """The phone's push is acknowledged, then it loses its signal before pulling."""
    device.announce_photos()
    device.push()
    assert device.state["outbox"] == []


@restores_a_file
def test_a_restore_after_an_acknowledged_push_gives_a_new_epoch(server, db, world, tmp_path):
    field1 = phone(server.client, "field1")
    report = problem_args()
    field1.capture("problem.report", report)
    field1.sync()
    epoch = field1.state["epoch"]
    server.backup(tmp_path / "backup.db")
    field1.capture("problem.note", note_args(report["id"]))
    _push_only(field1)
    server.restore(tmp_path / "backup.db", [field1])

    query = (f"client_id={field1.state['client_id']}&cursor={field1.state['cursor']}"
             "&format=2")
    answer = server.client.get(f"/api/sync/pull?{query}",
                               headers={"Authorization": f"Bearer {field1.state['token']}"})

    # The server noticed by itself: the versions the push wrote were served.
    assert answer.json()["epoch"] != epoch


@restores_a_file
def test_the_reference_client_sends_again_a_note_acknowledged_before_a_restore(
        server, db, world, tmp_path):
    field1 = phone(server.client, "field1")
    report = problem_args()
    field1.capture("problem.report", report)
    field1.sync()
    server.backup(tmp_path / "backup.db")
    note = note_args(report["id"])
    field1.capture("problem.note", note)
    _push_only(field1)
    server.restore(tmp_path / "backup.db", [field1])
    assert count(db, "problem_events", note["id"]) == 0

    field1.sync()

    assert count(db, "problem_events", note["id"]) == 1
    assert field1.state["rejected"] == []


@restores_a_file
def test_a_lower_last_mutation_id_in_a_pull_is_a_restore_for_the_reference_client(
        server, db, world, tmp_path, monkeypatch):
    # Even if the server had not noticed (no new epoch), the phone does.
    monkeypatch.setattr("server.app.renew_epoch_if_restored", lambda db, root: False)
    field1 = phone(server.client, "field1")
    report = problem_args()
    field1.capture("problem.report", report)
    field1.sync()
    server.backup(tmp_path / "backup.db")
    note = note_args(report["id"])
    field1.capture("problem.note", note)
    _push_only(field1)
    epoch = field1.state["epoch"]
    server.restore(tmp_path / "backup.db", [field1])

    field1.sync()

    assert field1.state["epoch"] == epoch
    assert count(db, "problem_events", note["id"]) == 1


class DocumentClient:
    """A client written from docs/sync-protocol.md alone, with only what it names:
    client_id, next_mutation_id, cursor, epoch, an outbox and the records held."""

    def __init__(self, http: TestClient, token: str):
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}
        self.client_id = new_id()
        self.next_mutation_id = 1
        self.acknowledged = 0
        self.cursor = 0
        self.epoch = None
        self.outbox: list[dict] = []
        self.held: dict[str, dict] = {}  # record id -> {"name", "args"}

    def capture(self, name: str, args: dict) -> None:
        self.held[args["id"]] = {"name": name, "args": args}
        self.outbox.append({"id": self.next_mutation_id, "name": name, "args": args})
        self.next_mutation_id += 1

    def _restored(self, body: dict) -> bool:
        """The signs of a restore the document lists, for any answer."""
        return ((self.epoch is not None and body["epoch"] != self.epoch)
                or body.get("gap") or body.get("reset")
                or body["last_mutation_id"] < self.acknowledged)

    def _start_over(self, server_last: int) -> None:
        self.next_mutation_id = server_last + 1
        self.acknowledged = server_last
        self.outbox = []
        for held in self.held.values():
            self.capture(held["name"], held["args"])
        self.cursor = 0

    def push(self) -> None:
        while self.outbox:
            body = self.http.post("/api/sync/push", headers=self.headers, json={
                "client_id": self.client_id, "schema_version": 1,
                "mutations": self.outbox}).json()
            restored = self._restored(body)
            self.epoch = body["epoch"]
            if restored:
                self._start_over(body["last_mutation_id"])
                continue
            self.acknowledged = body["last_mutation_id"]
            self.outbox = [m for m in self.outbox if m["id"] > self.acknowledged]

    def pull(self) -> None:
        while True:
            body = self.http.get("/api/sync/pull", headers=self.headers, params={
                "client_id": self.client_id, "cursor": self.cursor, "format": 2}).json()
            restored = self._restored(body)
            self.epoch = body["epoch"]
            if restored:
                self._start_over(body["last_mutation_id"])
                self.push()
                continue
            self.cursor = body["cursor"]
            if not body["has_more"]:
                return


@restores_a_file
def test_a_client_written_from_the_document_recovers_the_note(server, db, world, tmp_path):
    device = DocumentClient(server.client, api_login(server.client, "field1"))
    report = problem_args()
    device.capture("problem.report", report)
    device.push()
    device.pull()
    server.backup(tmp_path / "backup.db")
    note = note_args(report["id"])
    device.capture("problem.note", note)
    device.push()  # acknowledged; the phone then drops before pulling
    server.restore(tmp_path / "backup.db", [])
    device.http = server.client

    device.pull()

    assert count(db, "problem_events", note["id"]) == 1
    assert count(db, "problems", report["id"]) == 1
