"""Sync as a state machine: phones capture, push, lose responses, restart; the server
is restored from a backup. Afterwards nothing a phone holds is lost or doubled, and
every phone's pulled copy agrees with the server.

Runs against the real ASGI app (in process) on a real SQLite file.
"""

from __future__ import annotations

import copy
import functools
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)
from starlette.testclient import TestClient

from server.app import create_app, photos_dir
from server.auth import token_hash
from server.db import open_database
from sync.client import SCHEMA_VERSION, Response, SyncClient, TransportError
from sync.epoch import raise_mark, read_mark
from sync.pull import parse_cursor
from tests.conftest import PASSWORD, build_world
from tests.sync_helpers import RECENTLY, jpeg, new_id

# Phones: two devices of field1 (area t1) and one of field2 (area t2).
PHONES = {"a": "field1", "b": "field1", "c": "field2"}
# Areas each user may choose ("" = leave the field out, None = send null).
AREA_CHOICES = {"field1": ["t1", "v1", "g1", "", None], "field2": ["t2", "v2", "", None]}
# Problems of the starting world each user may see (and so add notes to).
WORLD_PROBLEMS = {"field1": ["p1", "p3"], "field2": ["p2", "p3"]}
# A mutation pushed twice: applied once (then skipped), or rejected both times.
SAME_ANSWER = {("applied", "skipped"), ("skipped", "skipped"), ("rejected", "rejected")}
TABLES = {"visit": "visits", "diary": "diary_entries", "problem": "problems"}
METHODS = ["sbls", "dundian", "xianchang", "ruhu", "jiefang", "other"]
TEXT = st.text(alphabet="漏水路灯不亮供水ab 12", min_size=1, max_size=12).filter(str.strip)


def noop_sleep(_seconds: float) -> None:
    pass


class Server:
    """The app on a database file; stopped and started again around a restore."""

    def __init__(self, path: Path, photos: Path | None = None):
        self.path, self.photos = path, photos or photos_dir(path)
        self.app = None
        self.client: TestClient | None = None
        self.start()

    def start(self) -> None:
        self.app = create_app(self.path, photos=self.photos)
        self.client = TestClient(self.app)
        self.client.__enter__()

    def stop(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)
            self.client = None

    def send(self, client: TestClient, method, path, headers, body) -> Response:
        response = client.request(method, path, headers=headers, content=body)
        return Response(response.status_code,
                        {k.lower(): v for k, v in response.headers.items()}, response.content)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path)

    def backup(self, target: Path) -> int:
        """An online backup (as docs/deployment.md says); returns its latest change version."""
        target.unlink(missing_ok=True)
        source, copy_ = self.db(), sqlite3.connect(target)
        try:
            source.backup(copy_)
            return latest_version(copy_)
        finally:
            source.close()
            copy_.close()

    def restore(self, backup: Path) -> None:
        """Stop, put the backup in place of the database (the photos folder stays), start."""
        self.stop()
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(backup, self.path)
        self.start()


class LossyTransport:
    """Talks to whichever app is running; can lose the responses of pushes after
    the server committed them."""

    def __init__(self, server: Server):
        self.server = server
        self.lose_pushes = 0

    def __call__(self, method, path, headers, body) -> Response:
        response = self.server.send(self.server.client, method, path, headers, body)
        if path == "/api/sync/push" and self.lose_pushes > 0:
            self.lose_pushes -= 1
            raise TransportError("connection reset before the response arrived")
        return response


class Phone(SyncClient):
    """The reference client, noting whether it owes a pull from cursor 0 (after it
    sent everything again)."""

    def __init__(self, transport, state=None):
        super().__init__(transport, state=state, sleep=noop_sleep)
        self.repull_due = False

    def resend_all(self, server_last: int) -> None:
        self.repull_due = True
        super().resend_all(server_last)

    def request(self, method, path, body=None, headers=None, retry=True):
        route, _sep, query = path.partition("?")
        if method == "GET" and route == "/api/sync/pull" and parse_qs(query)["cursor"] == ["0"]:
            self.repull_due = False
        return super().request(method, path, body, headers, retry)


def acknowledged(client: SyncClient) -> int:
    """The highest mutation id the phone knows the server applied."""
    outbox = client.state["outbox"]
    return outbox[0]["id"] - 1 if outbox else client.state["next_mutation_id"] - 1


def latest_version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
    return row[0] if row else 0


# Found by the machine, kept as scenarios ------------------------------------


@pytest.mark.parametrize("kind", ["visit", "diary"])
def test_a_photo_added_to_a_saved_record_reaches_the_other_devices(server, world, kind):
    phone_a, phone_b = signed_in(server, "field1"), signed_in(server, "field1")
    if kind == "visit":
        name, args = "visit.save", {"id": new_id(), "method": "ruhu", "place": "村委会",
                                    "started_at": RECENTLY}
    else:
        name, args = "diary.save", {"id": new_id(), "person_kind": "resident",
                                    "content": "反映取暖费偏高",
                                    "recorded_at": RECENTLY}
    phone_a.capture(name, args)
    settle(phone_a, phone_b)
    sha = phone_a.add_photo(jpeg(seed=13))
    phone_a.capture(name, {**args, "photos": [sha]})  # the same record, now with a photo
    settle(phone_a, phone_b)
    assert phone_b.records(kind)[args["id"]]["photos"] == [sha]
    assert phone_a.records(kind)[args["id"]]["photos"] == [sha]


def test_parallel_pulls_keep_the_highest_version_served(tmp_path):
    """Pulls note what they served from parallel threads (50 simulated devices met
    500s: two threads replacing the mark through the same temporary file)."""
    errors: list[Exception] = []

    def serve(first: int) -> None:
        for n in range(200):
            try:
                raise_mark(tmp_path, first + 16 * n, "epoch-1")
            except OSError as error:
                errors.append(error)
                return

    threads = [threading.Thread(target=serve, args=(first,)) for first in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert read_mark(tmp_path) == (15 + 16 * 199, "epoch-1")


# Restores, one scenario at a time -------------------------------------------

# A backup here is a copy of the SQLite file; the tests that restore one are SQLite's.
restores_a_file = pytest.mark.sqlite_only


@pytest.fixture
def server(db_path, world, photos_folder):
    running = Server(db_path, photos_folder)
    yield running
    running.stop()


def signed_in(server: Server, username: str) -> Phone:
    phone = Phone(LossyTransport(server))
    phone.login(username, PASSWORD, f"{username}'s phone")
    return phone


def report(phone: Phone, world, area: str, description: str = "路灯不亮", **extra) -> str:
    args = {"id": new_id(), "description": description, "area_id": world.areas[area],
            "found_at": "2026-05-01T02:00:00+00:00", **extra}
    phone.capture("problem.report", args)
    return args["id"]


def settle(*phones: Phone) -> None:
    for _round in range(4):
        for phone in phones:
            phone.sync()
        if not any(phone.state["outbox"] for phone in phones):
            return
    raise AssertionError("the phones did not settle")


def write_past(server: Server, phone: Phone, world, version: int) -> None:
    """Other officials keep working after the restore until the change log passes ``version``."""
    while True:
        db = server.db()
        try:
            if latest_version(db) > version:
                return
        finally:
            db.close()
        report(phone, world, "t2", "村口道路坑洼")
        phone.push()


def problem_row(server: Server, problem_id: str):
    db = server.db()
    try:
        return db.execute("SELECT description, reporter_id FROM problems WHERE id = ?",
                          [problem_id]).fetchone()
    finally:
        db.close()


def fresh_records(phone: Phone) -> dict:
    """What the phone would hold after pulling everything from scratch."""
    fresh = SyncClient(phone.transport, state={**copy.deepcopy(phone.state), "cursor": 0,
                                              "records": {}, "outbox": []},
                       sleep=noop_sleep)
    fresh.pull()
    return fresh.state["records"]


@restores_a_file
def test_restore_is_noticed_by_a_phone_with_nothing_queued(server, world, tmp_path):
    field1, field2 = signed_in(server, "field1"), signed_in(server, "field2")
    settle(field1, field2)
    backup = tmp_path / "backup.db"
    server.backup(backup)
    problem_id = report(field1, world, "v1")
    settle(field1)  # pushed, acknowledged and pulled: the phone's outbox is empty
    server.restore(backup)
    write_past(server, field2, world, parse_cursor(field1.state["cursor"]).version)
    settle(field1)
    assert problem_row(server, problem_id) == ("路灯不亮", world.users["field1"])
    assert field1.state["rejected"] == []


@restores_a_file
def test_after_a_push_gap_the_phone_pulls_everything_again(server, world, tmp_path):
    phone_a, phone_b = signed_in(server, "field1"), signed_in(server, "field1")
    settle(phone_a, phone_b)
    backup = tmp_path / "backup.db"
    server.backup(backup)
    report(phone_a, world, "v1")
    settle(phone_a)
    server.restore(backup)
    # Device b (same official) writes after the restore: versions the cursor of
    # device a has already passed, in the timeline the restore erased.
    for _ in range(3):
        report(phone_b, world, "t1", "井盖缺失")
    settle(phone_b)
    report(phone_a, world, "g1", "垃圾清运不及时")
    phone_a.push()  # answers gap: the phone sends everything again ...
    phone_a.pull()  # ... and must pull from scratch, not from its old cursor
    assert phone_a.state["records"] == fresh_records(phone_a)


@restores_a_file
def test_restore_resends_records_with_their_photos(server, world, tmp_path):
    phone = signed_in(server, "field1")
    settle(phone)
    backup = tmp_path / "backup.db"
    server.backup(backup)
    sha = phone.add_photo(jpeg(seed=7))
    problem_id = report(phone, world, "v1", photos=[sha])
    settle(phone)
    server.restore(backup)  # forgets the problem and the photo; the bytes stay on disk
    settle(phone)
    assert phone.state["rejected"] == []
    assert problem_row(server, problem_id) is not None
    response = server.client.get(f"/api/photos/{sha}",
                                 headers={"Authorization": f"Bearer {phone.state['token']}"})
    assert response.status_code == 200


@restores_a_file
def test_an_upload_the_restored_server_forgot_is_started_again(server, world, tmp_path):
    phone = signed_in(server, "field1")
    settle(phone)
    backup = tmp_path / "backup.db"
    server.backup(backup)
    sha = phone.add_photo(jpeg(seed=8))
    problem_id = report(phone, world, "v1", photos=[sha])
    phone.announce_photos()
    phone.push()  # the record is in; the bytes are still on the phone
    server.restore(backup)  # the server forgets the upload it had created
    settle(phone)
    assert phone.state["rejected"] == []
    assert problem_row(server, problem_id) is not None
    assert phone.state["photos"][sha]["done"]
    response = server.client.get(f"/api/photos/{sha}",
                                 headers={"Authorization": f"Bearer {phone.state['token']}"})
    assert response.status_code == 200


@restores_a_file
def test_restore_is_noticed_by_a_phone_that_lost_nothing(server, world, tmp_path):
    phone_a, phone_b, phone_c = (signed_in(server, "field1") for _ in range(3))
    settle(phone_a, phone_b, phone_c)
    backup = tmp_path / "backup.db"
    server.backup(backup)
    report(phone_b, world, "v1", "井盖缺失")
    settle(phone_b)
    settle(phone_a)  # a's cursor passes versions the restore is about to erase
    server.restore(backup)
    later = report(phone_c, world, "g1", "垃圾清运不及时")
    settle(phone_c)  # written at those same versions, in the new timeline
    settle(phone_b)  # b notices and sends its problem again
    settle(phone_a)  # a lost nothing of its own; only the server can tell it
    assert f"problem:{later}" in phone_a.state["records"]


@restores_a_file
def test_a_photo_uploaded_after_the_backup_survives_the_restore(server, world, tmp_path):
    phone = signed_in(server, "field1")
    sha = phone.add_photo(jpeg(seed=9))
    report(phone, world, "v1", photos=[sha])
    phone.announce_photos()
    phone.push()
    backup = tmp_path / "backup.db"
    server.backup(backup)
    phone.upload_photos()
    server.restore(backup)
    settle(phone)
    response = server.client.get(f"/api/photos/{sha}",
                                 headers={"Authorization": f"Bearer {phone.state['token']}"})
    assert response.status_code == 200


@restores_a_file
def test_a_photo_announced_after_the_backup_is_sent_again(server, world, tmp_path):
    phone = signed_in(server, "field1")
    settle(phone)
    backup = tmp_path / "backup.db"
    server.backup(backup)
    sha = phone.add_photo(jpeg(seed=10))
    problem_id = report(phone, world, "v1", photos=[sha])
    phone.announce_photos()  # then the push's response is lost, or the network drops
    server.restore(backup)
    settle(phone)
    assert phone.state["rejected"] == []
    assert problem_row(server, problem_id) is not None


@restores_a_file
def test_restore_keeps_a_note_on_a_problem_from_another_phone(server, world, tmp_path):
    phone_a, phone_b = signed_in(server, "field1"), signed_in(server, "field1")
    settle(phone_a, phone_b)
    backup = tmp_path / "backup.db"
    server.backup(backup)
    problem_id = report(phone_a, world, "v1")
    settle(phone_a)
    settle(phone_b)
    note_id = new_id()
    phone_b.capture("problem.note", {"id": note_id, "problem_id": problem_id, "note": "已复查",
                                     "at": "2026-05-02T03:00:00+00:00"})
    settle(phone_b)
    server.restore(backup)
    settle(phone_b)  # b sends its note again first: its problem is not back yet ...
    settle(phone_a)  # ... then a sends its problem again
    settle(phone_b)  # b's pull brings the problem, and b sends the note once more
    db = server.db()
    try:
        assert db.execute("SELECT 1 FROM problem_events WHERE id = ?", [note_id]).fetchone()
    finally:
        db.close()


@restores_a_file
def test_a_problem_keeps_its_visit_when_the_visit_waits_for_its_photo(server, world, tmp_path):
    phone = signed_in(server, "field1")
    settle(phone)
    backup = tmp_path / "backup.db"
    server.backup(backup)
    visit = {"id": new_id(), "method": "ruhu", "started_at": RECENTLY,
             "area_id": world.areas["v1"], "photos": [phone.add_photo(jpeg(seed=11))]}
    phone.capture("visit.save", visit)
    phone.announce_photos()  # the network drops before the push
    server.restore(backup)  # to a backup older than the announcement
    problem_id = report(phone, world, "v1", visit_id=visit["id"])
    settle(phone)
    assert phone.state["rejected"] == []
    db = server.db()
    try:
        assert db.execute("SELECT 1 FROM visits WHERE id = ?", [visit["id"]]).fetchone()
        assert db.execute("SELECT visit_id FROM problems WHERE id = ?",
                          [problem_id]).fetchone() == (visit["id"],)
    finally:
        db.close()


def test_a_rejection_whose_answer_was_lost_reaches_the_phone(server, world):
    phone = signed_in(server, "field1")
    report(phone, world, "t2")  # field2's area: area_out_of_scope
    phone.transport.lose_pushes = 1  # committed, answer lost; the client retries
    phone.push()
    assert [r["code"] for r in phone.state["rejected"]] == ["area_out_of_scope"]


@restores_a_file
def test_a_record_waiting_for_its_photo_survives_a_lost_answer(server, world, tmp_path):
    phone = signed_in(server, "field1")
    settle(phone)
    backup = tmp_path / "backup.db"
    server.backup(backup)
    problem_id = report(phone, world, "v1", photos=[phone.add_photo(jpeg(seed=12))])
    phone.announce_photos()
    server.restore(backup)  # the server forgets the announcement
    phone.transport.lose_pushes = 1
    settle(phone)
    assert problem_row(server, problem_id) is not None


@restores_a_file
def test_a_second_restore_of_the_same_backup_is_noticed(server, world, tmp_path):
    phone_a, phone_b, phone_c = (signed_in(server, "field1") for _ in range(3))
    settle(phone_a, phone_b, phone_c)
    backup = tmp_path / "backup.db"
    server.backup(backup)
    report(phone_c, world, "v1", "井盖缺失")
    settle(phone_c)
    settle(phone_a)  # a, which lost nothing of its own, pulls past the backup's versions
    server.restore(backup)
    server.restore(backup)  # the operator restores again before any phone synced
    later = report(phone_b, world, "g1", "垃圾清运不及时")
    settle(phone_b)  # written at versions a has already passed
    settle(phone_a)
    assert f"problem:{later}" in phone_a.state["records"]


def step(function):
    """Mark the machine broken while a step runs, so a failing step's error is the one
    reported (the final settle is skipped)."""

    @functools.wraps(function)
    def run(self, *args, **kwargs):
        self.step_ok = False
        function(self, *args, **kwargs)
        self.step_ok = True

    return run


class SyncMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="fl-sync-sm-"))
        path = self.tmp / "fieldledger.db"
        db = open_database(path)
        self.world = build_world(db)
        db.close()
        self.server = Server(path)
        self.transports: dict[str, LossyTransport] = {}
        self.phones: dict[str, Phone] = {}
        for name, username in PHONES.items():
            self.transports[name] = LossyTransport(self.server)
            self.phones[name] = Phone(self.transports[name])
            self.phones[name].login(username, PASSWORD, f"phone {name}")
        self.backup: Path | None = None
        self.visits_with_photos: set[str] = set()
        self.photo_seed = 0
        self.step_ok = True

    # Helpers ------------------------------------------------------------

    def captured(self, name: str, kind: str) -> dict[str, dict]:
        prefix = f"{kind}:"
        return {key[len(prefix):]: held
                for key, held in self.phones[name].state["captured"].items()
                if key.startswith(prefix)}

    def area_args(self, choice) -> dict:
        if choice == "":
            return {}
        return {"area_id": None if choice is None else self.world.areas[choice]}

    def photo_args(self, name: str, with_photo: bool) -> dict:
        if not with_photo:
            return {}
        self.photo_seed += 1
        return {"photos": [self.phones[name].add_photo(jpeg(16, 12, seed=self.photo_seed))]}

    def post_push(self, client: TestClient, phone: Phone, mutations: list[dict]):
        body = {"client_id": phone.state["client_id"], "schema_version": SCHEMA_VERSION,
                "mutations": mutations}
        return client.post("/api/sync/push", json=body,
                           headers={"Authorization": f"Bearer {phone.state['token']}"})

    # Capturing ----------------------------------------------------------

    @rule(phone=st.sampled_from(sorted(PHONES)), data=st.data(),
          method=st.sampled_from(METHODS), place=TEXT, with_photo=st.booleans())
    @step
    def capture_visit(self, phone, data, method, place, with_photo):
        username = PHONES[phone]
        visits = self.captured(phone, "visit")
        existing = data.draw(st.sampled_from([None, *sorted(visits)]), label="visit")
        if existing is None:
            area = data.draw(st.sampled_from(AREA_CHOICES[username]), label="area")
            args = {"id": new_id(), "started_at": RECENTLY,
                    **self.area_args(area)}
        else:  # the official edits the visit: same id, same area
            args = {k: v for k, v in visits[existing]["args"].items()
                    if k in ("id", "started_at", "area_id")}
        args.update(method=method, place=place, checklist=["no_notice"],
                    **self.photo_args(phone, with_photo))
        if with_photo:
            self.visits_with_photos.add(args["id"])
        self.phones[phone].capture("visit.save", args)

    @rule(phone=st.sampled_from(sorted(PHONES)), data=st.data(), content=TEXT)
    @step
    def capture_diary(self, phone, data, content):
        diaries = self.captured(phone, "diary")
        existing = data.draw(st.sampled_from([None, *sorted(diaries)]), label="diary")
        args = {"id": existing or new_id(), "person_kind": "resident", "content": content,
                "recorded_at": RECENTLY}
        visits = self.linkable_visits(phone)
        if existing is None and visits and data.draw(st.booleans(), label="link visit"):
            args["visit_id"] = data.draw(st.sampled_from(visits), label="visit")
        elif existing is not None:
            args["visit_id"] = diaries[existing]["args"].get("visit_id")
        self.phones[phone].capture("diary.save", args)

    @rule(phone=st.sampled_from(sorted(PHONES)), data=st.data(), description=TEXT,
          with_photo=st.booleans())
    @step
    def report_problem(self, phone, data, description, with_photo):
        username = PHONES[phone]
        problem_id = new_id()
        args = {"id": problem_id, "description": description,
                "found_at": "2026-05-01T02:00:00+00:00",
                **self.area_args(data.draw(st.sampled_from(AREA_CHOICES[username]),
                                           label="area")),
                **self.photo_args(phone, with_photo)}
        visits = self.linkable_visits(phone)
        if visits and data.draw(st.booleans(), label="link visit"):
            args["visit_id"] = data.draw(st.sampled_from(visits), label="visit")
        self.phones[phone].capture("problem.report", args)

    @rule(phone=st.sampled_from(sorted(PHONES)), data=st.data(), note=TEXT)
    @step
    def add_note(self, phone, data, note):
        # Any problem the phone holds: the world's, its own, and those pulled from
        # the server (another phone's included).
        username = PHONES[phone]
        choices = {self.world.problems[key] for key in WORLD_PROBLEMS[username]}
        choices |= set(self.captured(phone, "problem"))
        choices |= set(self.phones[phone].records("problem"))
        choices = sorted(choices)
        problem_id = data.draw(st.sampled_from(choices), label="problem")
        self.phones[phone].capture("problem.note", {
            "id": new_id(), "problem_id": problem_id, "note": note,
            "at": "2026-05-02T03:00:00+00:00",
        })

    def linkable_visits(self, phone: str) -> list[str]:
        """A phone links its own visits: it sends them before what names them, even when
        it sends everything again after a restore. Not one that ever had a photo: see
        test_a_problem_keeps_its_visit_when_the_visit_waits_for_its_photo."""
        return sorted(set(self.captured(phone, "visit")) - self.visits_with_photos)

    def editable(self, phone: str) -> list[str]:
        """The reporter's own phone corrects its reports (another device of the same
        official could too, last writer wins; its copy would then be the stale one)."""
        return sorted(self.captured(phone, "problem"))

    @precondition(lambda self: any(self.editable(p) for p in PHONES))
    @rule(data=st.data(), description=TEXT)
    @step
    def edit_problem(self, data, description):
        phone = data.draw(st.sampled_from([p for p in sorted(PHONES) if self.editable(p)]),
                          label="phone")
        problem_id = data.draw(st.sampled_from(self.editable(phone)), label="problem")
        client = self.phones[phone]
        base = client.state["records"].get(f"problem:{problem_id}", {}).get("_version", 0)
        client.capture("problem.edit", {"problem_id": problem_id, "base_version": base,
                                        "changes": {"description": description}})

    # Pushing ------------------------------------------------------------

    @rule(phone=st.sampled_from(sorted(PHONES)))
    @step
    def push(self, phone):
        client = self.phones[phone]
        client.announce_photos()
        client.push()
        assert client.state["outbox"] == []

    @rule(phone=st.sampled_from(sorted(PHONES)), lost=st.sampled_from([1, 2, 99]))
    @step
    def push_losing_responses(self, phone, lost):
        """The server commits but the phone never hears back (``lost`` times in a row)."""
        client = self.phones[phone]
        client.announce_photos()
        before = copy.deepcopy(client.state["outbox"])
        self.transports[phone].lose_pushes = lost
        try:
            client.push()
        except TransportError:
            # Every attempt lost its answer: the phone keeps every mutation.
            assert lost >= client.max_attempts
            assert client.state["outbox"] == before
        else:
            assert lost < client.max_attempts or not before
            assert client.state["outbox"] == []
        finally:
            self.transports[phone].lose_pushes = 0

    @rule(phone=st.sampled_from(sorted(PHONES)))
    @step
    def push_same_batch_twice(self, phone):
        client = self.phones[phone]
        client.announce_photos()
        batch = client.state["outbox"][:100]
        if not batch:
            return
        first = self.post_push(self.server.client, client, batch)
        second = self.post_push(self.server.client, client, batch)
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        one, two = first.json(), second.json()
        assert two["last_mutation_id"] == one["last_mutation_id"]
        assert two["gap"] == one["gap"]
        first_answers = {r["id"]: r for r in one["results"]}
        for result in two["results"]:
            assert (first_answers[result["id"]]["status"], result["status"]) in SAME_ANSWER, (
                one, two)

    @rule(phone=st.sampled_from(sorted(PHONES)))
    @step
    def push_same_batch_concurrently(self, phone):
        """Two connections race to push the same batch (a retry overtaking the original)."""
        client = self.phones[phone]
        client.announce_photos()
        batch = client.state["outbox"][:100]
        if not batch:
            return
        barrier = threading.Barrier(2)
        responses: list = [None, None]

        def send(slot: int) -> None:
            barrier.wait(timeout=10)
            responses[slot] = self.post_push(TestClient(self.server.app), client, batch)

        threads = [threading.Thread(target=send, args=(slot,)) for slot in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert all(r is not None and r.status_code == 200 for r in responses), responses
        one, two = (r.json() for r in responses)
        assert one["last_mutation_id"] == two["last_mutation_id"]
        for first, second in zip(one["results"], two["results"], strict=False):
            assert first["id"] == second["id"]
            pair = (first["status"], second["status"])
            assert pair in SAME_ANSWER or pair[::-1] in SAME_ANSWER, (one, two)

    @rule(phone=st.sampled_from(sorted(PHONES)))
    @step
    def upload_photos(self, phone):
        self.phones[phone].upload_photos()

    @rule(phone=st.sampled_from(sorted(PHONES)))
    @step
    def pull(self, phone):
        self.phones[phone].pull()

    # Phones and the server going away -----------------------------------

    @rule(phone=st.sampled_from(sorted(PHONES)))
    @step
    def restart_phone(self, phone):
        old = self.phones[phone]
        new = Phone(self.transports[phone], state=copy.deepcopy(old.state))
        new.photo_bytes = dict(old.photo_bytes)
        new.repull_due = old.repull_due
        self.phones[phone] = new

    @rule(phone=st.sampled_from(sorted(PHONES)))
    @step
    def sign_in_again(self, phone):
        """A new device token (the app signed out and in): a restore may forget it."""
        self.phones[phone].login(PHONES[phone], PASSWORD, f"phone {phone} again")

    @rule()
    @step
    def take_backup(self):
        self.backup = self.tmp / "backup.db"
        self.server.backup(self.backup)

    @precondition(lambda self: self.backup is not None)
    @rule()
    @step
    def restore_backup(self):
        """docs/deployment.md: the database comes back from a backup, the photos folder
        (new files only) does not go back."""
        self.server.restore(self.backup)

        db = self.server.db()
        try:
            for name, client in self.phones.items():
                known = db.execute("SELECT 1 FROM devices WHERE token_hash = ?",
                                   [token_hash(client.state["token"])]).fetchone()
                if known is None:  # signed in after the backup: the token is gone
                    client.login(PHONES[name], PASSWORD, f"phone {name} after restore")
        finally:
            db.close()

    # Invariants ---------------------------------------------------------

    @invariant()
    @step
    def outbox_holds_every_unacknowledged_mutation(self):
        for client in self.phones.values():
            ids = [m["id"] for m in client.state["outbox"]]
            assert ids == list(range(acknowledged(client) + 1,
                                     client.state["next_mutation_id"])), ids

    @invariant()
    @step
    def a_phone_that_sent_everything_again_pulls_from_scratch(self):
        for name, client in self.phones.items():
            if client.repull_due:
                assert client.state["cursor"] == 0 and client.state["records"] == {}, name

    @invariant()
    @step
    def nothing_rejected(self):
        """Every mutation generated is valid: none may end up rejected."""
        for name, client in self.phones.items():
            assert client.state["rejected"] == [], (name, client.state["rejected"])

    # The end ------------------------------------------------------------

    def settle(self) -> None:
        """Every phone syncs, round after round, until none has anything left to send."""
        for _round in range(12):
            for client in self.phones.values():
                client.sync()
            if not any(self.unsettled(client) for client in self.phones.values()):
                for client in self.phones.values():
                    client.pull()  # what the last phones sent
                return
        raise AssertionError({name: self.unsettled(c) for name, c in self.phones.items()})

    @staticmethod
    def unsettled(client: SyncClient) -> dict:
        return {
            "outbox": len(client.state["outbox"]),
            "deferred": len(client.state.get("deferred", [])),
            "photos": sum(1 for p in client.state["photos"].values() if not p["done"]),
        } if (client.state["outbox"] or client.state.get("deferred")
              or not all(p["done"] for p in client.state["photos"].values())) else {}

    def check_server_holds_what_phones_hold(self, db: sqlite3.Connection) -> None:
        users = self.world.users
        expected_counts = {"visits": 2, "diary_entries": 0, "problems": 3, "notes": 0}
        for name, client in self.phones.items():
            user_id = users[PHONES[name]]
            last = db.execute("SELECT last_mutation_id FROM sync_clients WHERE client_id = ?",
                              [client.state["client_id"]]).fetchone()
            assert (last[0] if last else 0) == client.state["next_mutation_id"] - 1, name
            for key, held in client.state["captured"].items():
                kind, record_id = key.split(":", 1)
                args = held["args"]
                if kind == "visit":
                    rows = db.execute("SELECT author_id, method, place, area_id FROM visits"
                                      " WHERE id = ?", [record_id]).fetchall()
                    expected = (user_id, args["method"], args["place"], args.get("area_id"))
                elif kind == "diary":
                    rows = db.execute("SELECT author_id, content, visit_id FROM diary_entries"
                                      " WHERE id = ?", [record_id]).fetchall()
                    expected = (user_id, args["content"], args.get("visit_id"))
                elif kind == "problem":
                    rows = db.execute("SELECT reporter_id, description, area_id, visit_id,"
                                      " status FROM problems WHERE id = ?",
                                      [record_id]).fetchall()
                    area = args.get("area_id") or self.expected_area(name, args)
                    expected = (user_id, args["description"], area, args.get("visit_id"),
                                "submitted")
                else:
                    rows = db.execute("SELECT actor_id, problem_id, note FROM problem_events"
                                      " WHERE id = ? AND kind = 'note'", [record_id]).fetchall()
                    expected = (user_id, args["problem_id"], args["note"])
                assert rows == [expected], (name, key, args, rows)
                expected_counts["notes" if kind == "note" else TABLES[kind]] += 1
                for sha in args.get("photos", []):
                    assert (self.server.photos / sha[:2] / sha).exists()
                    assert db.execute("SELECT 1 FROM attachments WHERE sha256 = ?",
                                      [sha]).fetchone(), (name, key, "photo missing")
                    assert db.execute("SELECT count(*) FROM attachment_links WHERE sha256 = ?"
                                      " AND record_id = ?", [sha, record_id]).fetchone()[0] == 1
        counts = {
            "visits": db.execute("SELECT count(*) FROM visits").fetchone()[0],
            "diary_entries": db.execute("SELECT count(*) FROM diary_entries").fetchone()[0],
            "problems": db.execute("SELECT count(*) FROM problems").fetchone()[0],
            "notes": db.execute("SELECT count(*) FROM problem_events WHERE kind = 'note'")
            .fetchone()[0],
        }
        assert counts == expected_counts

    def expected_area(self, name: str, args: dict) -> int:
        """Where a problem reported without an area lands: its visit's area, else the
        official's own area."""
        visit = self.phones[name].state["captured"].get(f"visit:{args.get('visit_id')}")
        if visit and visit["args"].get("area_id"):
            return visit["args"]["area_id"]
        return self.world.areas["t1" if PHONES[name] == "field1" else "t2"]

    def check_phone_agrees_with_server(self, name: str) -> None:
        """What the phone pulled bit by bit equals what it would get from scratch."""
        client = self.phones[name]
        fresh = SyncClient(self.transports[name], state={
            **copy.deepcopy(client.state), "cursor": 0, "records": {}, "outbox": [],
        }, sleep=noop_sleep)
        fresh.pull()
        assert fresh.state["outbox"] == []
        assert client.state["records"].keys() == fresh.state["records"].keys(), name
        for key, record in fresh.state["records"].items():
            assert client.state["records"][key] == record, (name, key)

    def teardown(self):
        try:
            if self.step_ok:
                self.settle()
                db = self.server.db()
                try:
                    self.check_server_holds_what_phones_hold(db)
                finally:
                    db.close()
                for name, client in self.phones.items():
                    assert client.state["rejected"] == [], (name, client.state["rejected"])
                    self.check_phone_agrees_with_server(name)
        finally:
            self.server.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)


TestSync = SyncMachine.TestCase
TestSync.settings = settings(
    max_examples=50, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# Its rules back up and restore the SQLite file it builds.
TestSync = pytest.mark.sqlite_only(pytest.mark.slow(TestSync))
