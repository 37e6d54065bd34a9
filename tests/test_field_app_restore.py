"""The field app in Chromium when the server's database is restored from a backup.

Two phones sync; the server is stopped, its database file replaced by an
earlier backup (the photos folder stays, as docs/deployment.md says) and
started again on the same address. The phones send again what they hold, and
the server ends up with every record exactly once and the photo bytes in place.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from server.app import photos_dir
from server.db import open_database
from tests import live
from tests.conftest import build_world
from tests.test_field_app_browser import (
    ALL_PHOTOS_UPLOADED,
    PHONE,
    Server,
    browser,  # noqa: F401 (fixture)
    capture_problem_with_photo,
    home,
    jpeg,
    local_read,
    pending,
    playwright,  # noqa: F401 (fixture)
    poll,
    sign_in,
    stored_photo,
)

pytestmark = pytest.mark.browser

SYNC_IDLE = "() => import('/static/app/sync.js').then((sync) => !sync.status.running)"
HAS_DEFERRED = local_read("records", "getAll()", "r.result.some((x) => x.state === 'deferred')")
# A diary entry in an area outside field1's scope: the server rejects it for good.
CAPTURE_OUT_OF_SCOPE = """async (area) => {
    const sync = await import('/static/app/sync.js');
    await sync.capture('diary.save', { id: sync.uuid(), visit_id: null, area_id: area,
      person_name: '', person_kind: 'resident', phone: '', address: '',
      content: '越权区域的民情', recorded_at: sync.nowIso() });
  }"""


class RestorableServer(Server):
    """A live server that can be stopped, restored from a backup and started
    again on the same port (the phones' origin, hence their storage, stays)."""

    def __init__(self, db_path: Path, world, port: int, monkeypatch):
        super().__init__(f"http://127.0.0.1:{port}", db_path, photos_dir(db_path), world,
                         None)
        monkeypatch.setattr(live, "free_port", lambda: port)
        self.running = None

    def start(self) -> None:
        self.running = live.running_server(self.db_path)
        self.running.__enter__()

    def stop(self) -> None:
        self.running.__exit__(None, None, None)

    def backup(self, target: Path) -> None:
        """An online backup, as docs/deployment.md says."""
        source, copy = sqlite3.connect(self.db_path), sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            source.close()
            copy.close()

    def restore(self, backup: Path) -> None:
        """Put back only the database file; the photos folder stays as it is."""
        self.stop()
        for suffix in ("-wal", "-shm"):
            Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(backup, self.db_path)
        self.start()


@pytest.fixture
def server(tmp_path, monkeypatch):
    path = tmp_path / "fieldledger.db"
    db = open_database(path)
    world = build_world(db)
    db.close()
    running = RestorableServer(path, world, live.free_port(), monkeypatch)
    running.start()
    yield running
    running.stop()


def wait_for_row(server, sql: str, params, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while server.query(sql, params) != [(1,)]:
        assert time.monotonic() < deadline, sql
        time.sleep(0.2)


def sync_now(page) -> None:
    home(page)
    poll(page, SYNC_IDLE, timeout=60)
    page.get_by_role("button", name="同步", exact=True).click()
    poll(page, SYNC_IDLE, timeout=60)


def test_after_a_restore_the_phones_send_everything_again_exactly_once(
    browser, server, tmp_path  # noqa: F811
):
    field = browser.new_context(**PHONE)
    office = browser.new_context(**PHONE)
    for context in (field, office):
        context.set_default_timeout(20000)
    try:
        phone, other = field.new_page(), office.new_page()
        sign_in(phone, server, "field1")
        sign_in(other, server, "office_d1")
        backup = tmp_path / "backup.db"
        server.backup(backup)

        # After the backup: a problem with a photo, a diary entry the server
        # rejects, and a note on a problem another phone reported.
        capture_problem_with_photo(phone, "幸福社区5号楼电梯停运一周",
                                   jpeg(tmp_path / "lift.jpg", 7))
        phone.evaluate(CAPTURE_OUT_OF_SCOPE, server.world.areas["v2"])
        pending(phone, 0)
        poll(phone, ALL_PHOTOS_UPLOADED)
        phone.get_by_role("heading", name="未被接收的记录（1）").wait_for()
        home(other)
        other.get_by_role("link", name="记问题").click()
        other.get_by_label("问题描述").fill("幸福社区北门下水道堵塞")
        other.get_by_label("地点（区域）").select_option(str(server.world.areas["v1"]))
        other.get_by_role("button", name="保存", exact=True).click()
        pending(other, 0)
        (reported,) = server.query(
            "SELECT id FROM problems WHERE description = '幸福社区北门下水道堵塞'")[0]
        sync_now(phone)
        phone.goto(f"{server.url}/app/#/area/{reported}")
        phone.get_by_label("跟进情况").fill("现场查看，已通知物业疏通")
        phone.get_by_role("button", name="保存跟进").click()
        home(phone)
        pending(phone, 0)
        sha = server.query("SELECT sha256 FROM attachments")[0][0]

        other.context.set_offline(True)  # the reporter of the noted problem comes back later
        server.restore(backup)
        assert server.query("SELECT count(*) FROM problems WHERE description IN (?, ?)",
                            ["幸福社区5号楼电梯停运一周", "幸福社区北门下水道堵塞"]) == [(0,)]

        # The note waits for its problem; the other records are sent again.
        sync_now(phone)
        poll(phone, HAS_DEFERRED)
        pending(phone, 1)
        other.context.set_offline(False)  # its app syncs by itself
        wait_for_row(server, "SELECT count(*) FROM problems WHERE id = ?", [reported])
        sync_now(phone)
        pending(phone, 0)
        poll(phone, ALL_PHOTOS_UPLOADED)
        # A rejection repeated for a record sent again is shown once.
        phone.get_by_role("heading", name="未被接收的记录（1）").wait_for()
    finally:
        field.close()
        office.close()

    mine = server.query("SELECT id FROM problems WHERE description = '幸福社区5号楼电梯停运一周'")
    assert len(mine) == 1
    assert server.query("SELECT sha256 FROM attachment_links WHERE record_id = ?",
                        [mine[0][0]]) == [(sha,)]
    assert server.query("SELECT count(*) FROM attachments WHERE sha256 = ?", [sha]) == [(1,)]
    assert stored_photo(server, sha) == "ok"
    assert len(server.query("SELECT id FROM problems WHERE description = ?",
                            ["幸福社区北门下水道堵塞"])) == 1
    assert server.query("SELECT count(*) FROM problem_events WHERE problem_id = ? AND kind = 'note'"
                        " AND note = '现场查看，已通知物业疏通'", [reported]) == [(1,)]
    assert server.query("SELECT count(*) FROM diary_entries WHERE content = ?",
                        ["越权区域的民情"]) == [(0,)]


CAPTURE_NOTE = """async ([problem, note]) => {
    const sync = await import('/static/app/sync.js');
    await sync.capture('problem.note', { id: sync.uuid(), problem_id: problem, note,
      photos: [], at: sync.nowIso() });
  }"""


def test_a_note_acknowledged_before_a_restore_is_sent_again_by_a_phone_with_nothing_to_push(
    browser, server, tmp_path  # noqa: F811
):
    field = browser.new_context(**PHONE)
    field.set_default_timeout(20000)
    try:
        phone = field.new_page()
        sign_in(phone, server, "field1")
        sync_now(phone)
        backup = tmp_path / "backup.db"
        server.backup(backup)
        # The push is acknowledged; the signal drops before the pull.
        phone.route("**/api/sync/pull*", lambda route: route.abort())
        phone.evaluate(CAPTURE_NOTE, [server.world.problems["p1"], "回头看：漏水已止住"])
        wait_for_row(server, "SELECT count(*) FROM problem_events WHERE note = ?",
                     ["回头看：漏水已止住"])
        pending(phone, 0)
        server.restore(backup)
        assert server.query("SELECT count(*) FROM problem_events WHERE note = ?",
                            ["回头看：漏水已止住"]) == [(0,)]
        phone.unroute("**/api/sync/pull*")

        sync_now(phone)
        wait_for_row(server, "SELECT count(*) FROM problem_events WHERE note = ?",
                     ["回头看：漏水已止住"])
        sync_now(phone)
        pending(phone, 0)
    finally:
        field.close()
    assert server.query("SELECT count(*) FROM problem_events WHERE note = ?",
                        ["回头看：漏水已止住"]) == [(1,)]
