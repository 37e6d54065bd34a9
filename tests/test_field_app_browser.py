"""The field app in a real Chromium on an emulated phone against a real server.

Offline capture, reload and restart with no signal, automatic sync with no
duplicates, dropped connections, a service worker update while typing,
revoked devices, editing a synced problem, return-visit notes with photos,
Background Sync with no page open, signing out, the phone's health, and axe-core on every
screen.
Restores from backup: test_field_app_restore.py; what the phone keeps:
test_field_app_housekeeping.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from server.app import photos_dir
from server.db import connect, immediate, open_database
from server.views.field_app import VERSION_SALT_ENV
from tests.conftest import PASSWORD, build_world, new_database, photos_folder_of
from tests.live import CHROMIUM, CHROMIUM_ARGS, axe_violations, launch_chromium, running_server

pytestmark = pytest.mark.browser

PHONE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "locale": "zh-CN",
    "timezone_id": "Asia/Shanghai",
}


class Server:
    def __init__(self, url, db_path, photos, world, salt):
        self.url, self.db_path, self.photos, self.world, self.salt = (
            url, db_path, photos, world, salt)

    def query(self, sql, params=()):
        connection = connect(self.db_path)
        try:
            return [tuple(row) for row in connection.execute(sql, params).fetchall()]
        finally:
            connection.close()


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fieldapp")
    path = new_database(request, folder, "fieldledger.db")
    photos = photos_folder_of(request, path, folder)
    db = open_database(path)
    world = build_world(db)
    db.close()
    salt = folder / "version-salt"
    salt.write_text("0")
    with running_server(path, env={VERSION_SALT_ENV: str(salt)}, log=folder / "server.log",
                        photos=photos) as url:
        yield Server(url, path, photos, world, salt)


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def browser(playwright):
    browser = launch_chromium(playwright)
    yield browser
    browser.close()


@pytest.fixture
def phone(browser):
    context = browser.new_context(**PHONE)
    context.set_default_timeout(15000)
    yield context
    context.close()


def jpeg(path: Path, seed: int, size=(2400, 1800)) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, ((seed * 53) % 256, (seed * 97) % 256, 140))
    draw = ImageDraw.Draw(image)
    for i in range(0, size[0], 40):
        draw.line([(i, 0), (size[0] - i, size[1])], fill=((i + seed) % 256, 30, 200), width=7)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue())
    return path


def sign_in(page, server: Server, username: str) -> None:
    page.goto(f"{server.url}/app/")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录", exact=True).click()
    page.get_by_text(f"测试{username}，您好").wait_for()
    page.get_by_text("上次同步：").wait_for()
    poll(page, "() => navigator.serviceWorker.controller !== null")


def pending(page, n: int) -> None:
    text = f"待同步 {n} 条" if n else "没有待同步的记录"
    try:
        page.get_by_text(text).wait_for(timeout=20000)
    except Exception:
        raise AssertionError(page.locator("body").inner_text()) from None


def home(page) -> None:
    page.get_by_role("link", name="走访台账").click()
    page.get_by_role("heading", name="同步").wait_for()


def capture_problem_with_photo(page, description: str, photo: Path) -> None:
    home(page)
    page.get_by_role("link", name="记问题").click()
    page.get_by_label("问题描述").fill(description)
    page.locator("input[type=file][capture]").first.set_input_files(str(photo))
    page.get_by_text("已添加 1 张照片").wait_for()
    page.get_by_role("button", name="保存", exact=True).click()
    page.get_by_role("heading", name="同步").wait_for()


def local_count(page, store: str) -> int:
    return page.evaluate(
        """(store) => new Promise((resolve, reject) => {
            const open = indexedDB.open('fieldledger');
            open.onsuccess = () => {
              const db = open.result;
              if (!db.objectStoreNames.contains(store)) { db.close(); resolve(0); return; }
              const request = db.transaction(store).objectStore(store).count();
              request.onsuccess = () => { db.close(); resolve(request.result); };
              request.onerror = () => reject(request.error);
            };
            open.onerror = () => reject(open.error);
          })""",
        store,
    )


def local_read(store: str, request: str, answer: str, param: str = "") -> str:
    """A page function (of ``param``) that sends ``request`` (``getAll()``, ``get(key)``) to
    the app's IndexedDB store ``store`` and resolves to ``answer``, a JavaScript expression of
    the request's result ``r.result``."""
    return f"""({param}) => new Promise((resolve) => {{
    const open = indexedDB.open('fieldledger');
    open.onsuccess = () => {{
      const r = open.result.transaction('{store}').objectStore('{store}').{request};
      r.onsuccess = () => {{ open.result.close(); resolve({answer}); }};
    }};
  }})"""


ALL_PHOTOS_UPLOADED = local_read("photos", "getAll()", "r.result.every((p) => p.done)")


def poll(page, script: str, arg=None, timeout: float = 20) -> None:
    """Wait until an async page function is true (page.wait_for_function would
    need 'unsafe-eval', which the app's CSP forbids)."""
    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout
    while True:
        try:
            if page.evaluate(script, arg) is True:
                return
        except Error:  # the page is navigating: ask again
            pass
        assert time.monotonic() < deadline, script
        time.sleep(0.2)


def stored_photo(server: Server, sha: str) -> str:
    """"ok" when the photos folder holds these bytes under their hash; else what it holds,
    for the failure's message."""
    path = server.photos / sha[:2] / sha
    if not path.exists():
        held = sorted(str(found.relative_to(server.photos)) for found in server.photos.rglob("*"))
        return f"no {path.name}; the photos folder holds {held}"
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    return "ok" if found == sha else f"{len(data)} bytes whose SHA-256 is {found}"


# The day in the field ------------------------------------------------------------


@pytest.mark.both_backends
def test_offline_day_survives_reload_and_restart_then_syncs_by_itself(
    playwright, server, tmp_path
):
    profile = tmp_path / "profile"
    photo = jpeg(tmp_path / "roof.jpg", 1)
    area = server.world.areas["v1"]

    def launch(offline=False):
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, offline=offline, **PHONE
        )
        context.set_default_timeout(15000)
        return context

    context = launch()
    page = context.pages[0] if context.pages else context.new_page()
    sign_in(page, server, "field1")
    context.set_offline(True)
    page.get_by_text("离线").wait_for()

    # Start a visit: nothing of four-no/two-direct is ticked for the official;
    # one tap on 全部做到 ticks all.
    page.get_by_role("link", name="开始走访").click()
    assert page.get_by_label("四不两直暗访").is_checked()
    assert not page.get_by_label("不打招呼").is_checked()
    page.get_by_role("button", name="全部做到").click()
    assert page.get_by_label("不打招呼").is_checked()
    page.get_by_label("地点（区域）").select_option(str(area))
    page.get_by_label("详细地点").fill("幸福社区3号楼前")
    page.get_by_label("同行人员").fill("李干事")
    page.get_by_role("button", name="开始走访").click()
    page.get_by_text("正在走访：四不两直暗访").wait_for()

    # A diary entry, turned into a problem with a photo.
    page.get_by_role("link", name="记民情").click()
    page.get_by_label("谈话对象（可不填）").fill("张大爷")
    page.get_by_label("联系电话（可不填）").fill("13912345678")
    page.get_by_label("反映内容").fill("楼顶防水层老化，雨天漏水三个月无人修")
    page.get_by_role("button", name="转为问题").click()
    page.get_by_role("heading", name="记问题").wait_for()
    assert page.get_by_label("问题描述").input_value() == "楼顶防水层老化，雨天漏水三个月无人修"
    assert page.get_by_label("反映人").input_value() == "张大爷"
    page.locator("input[type=file][capture]").first.set_input_files(str(photo))
    page.get_by_text("已添加 1 张照片").wait_for()
    assert page.locator(".thumbs img").count() == 1
    page.get_by_label("较急").check()
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 3)

    # End the visit: a one-screen summary.
    page.get_by_role("link", name="继续走访").click()
    page.get_by_role("button", name="结束走访").click()
    page.get_by_role("heading", name="走访小结").wait_for()
    summary = page.locator("#visit-summary").inner_text()
    assert "走访对象：1人（群众1人）" in summary and "谈话对象：张**" in summary
    assert "发现问题：1个，其中当场解决0个" in summary and "（待同步）" in summary
    assert "张大爷" not in summary
    home(page)
    pending(page, 4)

    # Reload with no signal: all there.
    page.reload()
    pending(page, 4)
    page.get_by_role("link", name="我的记录").click()
    page.get_by_role("heading", name="我的记录").wait_for()
    rows = page.locator(".rows .row")
    rows.nth(2).wait_for()
    assert rows.count() == 3
    assert page.get_by_text("待同步", exact=True).count() == 3
    assert page.get_by_text("张大爷：楼顶防水层老化").is_visible()
    context.close()

    # Close the browser and open it again, still offline: still there.
    context = launch(offline=True)
    page = context.pages[0] if context.pages else context.new_page()
    page.goto(f"{server.url}/app/#/records")
    page.get_by_role("heading", name="我的记录").wait_for()
    page.locator(".rows .row").nth(2).wait_for()
    assert page.locator(".rows .row").count() == 3
    home(page)
    pending(page, 4)
    assert local_count(page, "photos") == 1

    # Signal again: it syncs by itself.
    context.set_offline(False)
    pending(page, 0)
    context.close()

    user = server.world.users["field1"]
    visits = server.query(
        "SELECT id, method, area_id, place, companions, checklist, ended_at FROM visits"
        " WHERE author_id = ? AND place = '幸福社区3号楼前'", [user])
    assert len(visits) == 1
    visit_id, method, area_id, _place, companions, checklist, ended_at = visits[0]
    assert (method, area_id, companions) == ("sbls", area, "李干事")
    assert "no_greeting" in checklist and ended_at
    diaries = server.query(
        "SELECT id, person_name, phone, visit_id FROM diary_entries WHERE author_id = ?"
        " AND content LIKE '楼顶防水层老化%'", [user])
    assert len(diaries) == 1 and diaries[0][1:] == ("张大爷", "13912345678", visit_id)
    problems = server.query(
        "SELECT id, diary_id, visit_id, urgency, status, area_id FROM problems"
        " WHERE description LIKE '楼顶防水层老化%'")
    assert len(problems) == 1
    problem_id, diary_id, problem_visit, urgency, status, problem_area = problems[0]
    assert (diary_id, problem_visit, urgency, status) == (diaries[0][0], visit_id, "urgent",
                                                            "submitted")
    assert problem_area == area
    # Ids are UUIDv7: time-ordered, visit first (sync/ids.py has the reason).
    assert all(uuid.UUID(i).version == 7 for i in (visit_id, diary_id, problem_id))
    assert visit_id < diary_id < problem_id
    shas = server.query("SELECT sha256 FROM attachment_links WHERE record_type = 'problem'"
                        " AND record_id = ?", [problem_id])
    assert len(shas) == 1
    sha = shas[0][0]
    assert stored_photo(server, sha) == "ok"
    width, height = server.query("SELECT width, height FROM attachments WHERE sha256 = ?",
                                 [sha])[0]
    assert max(width, height) == 1600


def wait_until_focused(locator, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not locator.evaluate("element => element === document.activeElement"):
        assert time.monotonic() < deadline, "the field never got the focus"
        time.sleep(0.05)


def test_a_problem_with_one_photo_takes_at_most_six_taps(phone, server, tmp_path):
    page = phone.new_page()
    sign_in(page, server, "field1")
    photo = jpeg(tmp_path / "road.jpg", 2, size=(800, 600))
    taps = 0
    page.get_by_role("link", name="记问题").click()
    taps += 1
    wait_until_focused(page.get_by_label("问题描述"))
    page.keyboard.type("巷口路灯坏了一个月")  # the description has the focus: typing only
    with page.expect_file_chooser() as chooser:
        page.get_by_text("拍照", exact=True).filter(visible=True).click()
        taps += 1
    chooser.value.set_files(str(photo))
    taps += 1  # choosing the photo
    page.get_by_text("已添加 1 张照片").wait_for()
    page.get_by_role("button", name="保存", exact=True).click()
    taps += 1
    page.get_by_role("heading", name="同步").wait_for()
    assert taps <= 6
    pending(page, 0)
    rows = server.query("SELECT id FROM problems WHERE description = '巷口路灯坏了一个月'")
    assert len(rows) == 1


def test_dropped_connections_mid_sync_retry_without_duplicates(phone, server, tmp_path):
    page = phone.new_page()
    sign_in(page, server, "field2")
    phone.set_offline(True)
    photo = jpeg(tmp_path / "a.jpg", 3)
    capture_problem_with_photo(page, "白石镇桥头护栏断裂，行人有坠落危险", photo)
    home(page)
    page.get_by_role("link", name="记民情").click()
    page.get_by_label("反映内容").fill("村民反映自来水浑浊")
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 2)

    dropped = {"push": 0, "patch": 0}

    def lose_response(route, kind):
        # The server gets and commits the request; the phone never hears back.
        if dropped[kind] == 0:
            dropped[kind] += 1
            route.fetch()
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/sync/push", lambda route: lose_response(route, "push"))
    page.route(
        "**/api/uploads/*",
        lambda route: lose_response(route, "patch") if route.request.method == "PATCH"
        else route.continue_(),
    )
    # page.route does not see a service worker's own requests: the worker's Background
    # Sync (fired on reconnecting) must leave this sync to the page, or on a busy machine
    # it may win the race and send everything past the routes.
    for worker in phone.service_workers:
        worker.evaluate("self.flBackgroundSync = null")
    phone.set_offline(False)
    pending(page, 0)
    poll(page, ALL_PHOTOS_UPLOADED)
    assert dropped == {"push": 1, "patch": 1}
    user = server.world.users["field2"]
    problems = server.query("SELECT id FROM problems WHERE description = ?",
                            ["白石镇桥头护栏断裂，行人有坠落危险"])
    assert len(problems) == 1
    events = server.query("SELECT kind FROM problem_events WHERE problem_id = ?", [problems[0][0]])
    assert events == [("reported",)]
    assert len(server.query("SELECT id FROM diary_entries WHERE author_id = ? AND content = ?",
                            [user, "村民反映自来水浑浊"])) == 1
    sha = server.query("SELECT sha256 FROM attachment_links WHERE record_id = ?",
                       [problems[0][0]])[0][0]
    assert stored_photo(server, sha) == "ok"


def test_update_while_typing_keeps_the_form(phone, server):
    page = phone.new_page()
    sign_in(page, server, "field1")
    version_before = page.evaluate("caches.keys()")
    page.get_by_role("link", name="记问题").click()
    page.get_by_label("问题描述").fill("小区消防通道被占用")
    server.salt.write_text(str(time.time()))  # a new app version on the server
    page.evaluate("window.flApp.checkForUpdate()")
    page.get_by_text("新版本可用").wait_for()
    page.get_by_label("反映人").fill("王女士")  # still typing when tapping the banner
    page.get_by_role("button", name="立即更新").click()
    poll(page, "() => document.querySelector('.banner.update') === null")
    page.get_by_role("heading", name="记问题").wait_for()
    assert page.get_by_label("问题描述").input_value() == "小区消防通道被占用"
    assert page.get_by_label("反映人").input_value() == "王女士"
    poll(page, "(before) => caches.keys().then((all) => all.filter((k) => k.startsWith('fl-app-')))"
         ".then((keys) => keys.length === 1 && !before.includes(keys[0]))", version_before)


def _revoke(server: Server, username: str, mode: str) -> None:
    db = open_database(server.db_path)
    try:
        from server import auth

        user = server.world.users[username]
        with immediate(db):
            for (device_id,) in db.execute(
                "SELECT id FROM devices WHERE user_id = ? AND revoked_at IS NULL", [user]
            ).fetchall():
                auth.revoke_device(db, device_id, mode, server.world.users["admin"])
    finally:
        db.close()


def test_wiped_device_erases_itself_and_stopped_device_keeps_data(browser, server):
    wiped = browser.new_context(**PHONE)
    stopped = browser.new_context(**PHONE)
    try:
        for context, username in ((wiped, "office"), (stopped, "leader")):
            context.set_default_timeout(15000)
            page = context.new_page()
            sign_in(page, server, username)
            context.set_offline(True)
            page.get_by_role("link", name="记民情").click()
            page.get_by_label("反映内容").fill(f"{username} 的离线记录")
            page.get_by_role("button", name="保存", exact=True).click()
            pending(page, 1)
        _revoke(server, "office", "wipe")
        _revoke(server, "leader", "stop")

        page = wiped.pages[0]
        wiped.set_offline(False)
        page.get_by_text("此设备已被注销，本机数据已按要求清除。").wait_for()
        assert page.get_by_role("button", name="登录", exact=True).is_visible()
        assert local_count(page, "records") == 0

        page = stopped.pages[0]
        stopped.set_offline(False)
        page.get_by_text("此设备已停用").wait_for()
        pending(page, 1)
        assert local_count(page, "records") == 1
        page.reload()
        page.get_by_text("此设备已停用").wait_for()
        pending(page, 1)
    finally:
        wiped.close()
        stopped.close()


def test_expired_token_keeps_capturing_and_asks_for_the_password(phone, server):
    page = phone.new_page()
    sign_in(page, server, "office_d1")
    db = open_database(server.db_path)
    with immediate(db):  # the token is no longer known to the server
        db.execute("UPDATE devices SET token_hash = 'gone' || id WHERE user_id = ?",
                   [server.world.users["office_d1"]])
    db.close()
    page.get_by_role("link", name="记民情").click()
    page.get_by_label("反映内容").fill("令牌失效后记录的民情")
    page.get_by_role("button", name="保存", exact=True).click()
    page.get_by_role("button", name="同步", exact=True).click()  # a sync that meets the 401
    page.get_by_role("heading", name="请重新输入密码").wait_for()
    pending(page, 1)
    assert page.get_by_label("用户名").input_value() == "office_d1"
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录", exact=True).click()
    pending(page, 0)
    assert len(server.query("SELECT id FROM diary_entries WHERE content = ?",
                            ["令牌失效后记录的民情"])) == 1


# Editing, return visits, Background Sync ------------------------------------------

SYNC_IDLE = "() => import('/static/app/sync.js').then((sync) => !sync.status.running)"
PULLED = local_read("pulled", "get(key)", "Boolean(r.result)", "key")


def test_editing_a_synced_problem_before_acceptance_reaches_the_server(phone, server):
    page = phone.new_page()
    sign_in(page, server, "field2")
    page.get_by_role("link", name="记问题").click()
    page.get_by_label("问题描述").fill("白石镇卫生院门口路面塌陷")
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 0)
    (problem,) = server.query("SELECT id FROM problems WHERE description = ?",
                              ["白石镇卫生院门口路面塌陷"])[0]
    poll(page, PULLED, f"problem:{problem}")

    page.get_by_role("link", name="我的记录").click()
    page.get_by_text("白石镇卫生院门口路面塌陷").click()
    page.get_by_role("heading", name="修改问题").wait_for()
    page.get_by_label("问题描述").fill("白石镇卫生院门口路面塌陷，坑深约半米")
    page.get_by_label("反映人").fill("赵师傅")
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 0)
    assert server.query("SELECT description, resident_name, status FROM problems WHERE id = ?",
                        [problem]) == [
        ("白石镇卫生院门口路面塌陷，坑深约半米", "赵师傅", "submitted")]
    assert server.query("SELECT kind FROM problem_events WHERE problem_id = ? ORDER BY rowid",
                        [problem]) == [("reported",), ("edited",)]


def test_a_return_visit_note_with_a_photo_becomes_a_problem_event(phone, server, tmp_path):
    problem = server.world.problems["p1"]
    page = phone.new_page()
    sign_in(page, server, "field1")
    page.goto(f"{server.url}/app/#/area/{problem}")
    page.get_by_role("heading", name="问题详情").wait_for()
    page.get_by_label("跟进情况").fill("回头看：渗水已止住，墙面待粉刷")
    page.locator("input[type=file][capture]").first.set_input_files(
        str(jpeg(tmp_path / "wall.jpg", 21)))
    page.get_by_text("已添加 1 张照片").wait_for()
    page.get_by_role("button", name="保存跟进").click()
    home(page)
    pending(page, 0)
    poll(page, ALL_PHOTOS_UPLOADED)
    events = server.query("SELECT id FROM problem_events WHERE problem_id = ? AND kind = 'note'"
                          " AND note = ?", [problem, "回头看：渗水已止住，墙面待粉刷"])
    assert len(events) == 1
    shas = server.query("SELECT sha256 FROM attachment_links WHERE record_type = 'event'"
                        " AND record_id = ?", [events[0][0]])
    assert len(shas) == 1 and stored_photo(server, shas[0][0]) == "ok"
    assert server.query("SELECT count(*) FROM attachments WHERE sha256 = ?", [shas[0][0]]) == [(1,)]


def test_a_provisional_deadline_shows_as_such_on_the_phone(phone, server):
    problem = server.world.problems["p3"]
    db = open_database(server.db_path)
    with immediate(db):
        db["problems"].update(problem, {"deadline": "2027-01-01", "deadline_provisional": 1})
    db.close()
    page = phone.new_page()
    sign_in(page, server, "field1")
    poll(page, PULLED, f"problem:{problem}")
    page.goto(f"{server.url}/app/#/area/{problem}")
    page.get_by_role("heading", name="问题详情").wait_for()
    deadline = page.locator("dl.facts div").filter(has_text="办理时限").locator("dd")
    deadline.wait_for()
    assert deadline.inner_text().split() == ["2027-01-01", "暂定"]


def test_background_sync_sends_an_offline_record_with_no_page_open(browser, server):
    context = browser.new_context(**PHONE)
    context.set_default_timeout(15000)
    try:
        page = context.new_page()
        sign_in(page, server, "office")
        # A blank page of another origin keeps a DevTools session on this
        # browser context once the app's page is closed.
        holder = context.new_page()
        cdp = context.new_cdp_session(holder)
        registrations = []
        cdp.on("ServiceWorker.workerRegistrationUpdated",
                lambda event: registrations.extend(event["registrations"]))
        cdp.send("ServiceWorker.enable")
        context.set_offline(True)
        page.get_by_role("link", name="记民情").click()
        page.get_by_label("反映内容").fill("后台同步送出的民情")
        page.get_by_role("button", name="保存", exact=True).click()
        pending(page, 1)
        page.close()
        context.set_offline(False)
        deadline = time.monotonic() + 20
        while not any(r["scopeURL"] == f"{server.url}/app/" for r in registrations):
            assert time.monotonic() < deadline, registrations
            holder.wait_for_timeout(100)
        registration = next(r for r in registrations if r["scopeURL"] == f"{server.url}/app/")
        query = "SELECT count(*) FROM diary_entries WHERE content = '后台同步送出的民情'"
        deadline = time.monotonic() + 30
        while server.query(query) != [(1,)]:
            # A sync event whose sync fails (the closed page's sync may still
            # hold the lock) is fired again later, as the browser would.
            assert time.monotonic() < deadline, "the service worker did not sync"
            cdp.send("ServiceWorker.dispatchSyncEvent", {
                "origin": server.url, "registrationId": registration["registrationId"],
                "tag": "fl-sync", "lastChance": False,
            })
            for _ in range(25):
                if server.query(query) == [(1,)]:
                    break
                holder.wait_for_timeout(200)
    finally:
        context.close()


# Signing out -----------------------------------------------------------------------


def test_sign_out_with_unsynced_records_warns_and_keeps_them(phone, server):
    page = phone.new_page()
    sign_in(page, server, "leader")
    phone.set_offline(True)
    page.get_by_role("link", name="记民情").click()
    page.get_by_label("反映内容").fill("退出登录前没同步的民情")
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 1)
    page.get_by_role("button", name="退出登录").click()
    page.get_by_text("本机还有 1 条记录或草稿没有同步").wait_for()
    page.get_by_role("button", name="仍然退出（保留本机记录）").click()
    page.get_by_role("button", name="登录", exact=True).wait_for()
    assert local_count(page, "records") == 1 and local_count(page, "outbox") == 1

    phone.set_offline(False)
    sign_in(page, server, "leader")
    pending(page, 0)
    assert server.query("SELECT count(*) FROM diary_entries WHERE content = ?",
                        ["退出登录前没同步的民情"]) == [(1,)]


def test_sign_out_with_everything_synced_clears_the_phone(phone, server):
    page = phone.new_page()
    sign_in(page, server, "leader")
    page.get_by_role("link", name="记民情").click()
    page.get_by_label("反映内容").fill("退出登录前已同步的民情")
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 0)
    page.get_by_role("button", name="退出登录").click()
    page.get_by_text("所有记录都已同步").wait_for()
    page.get_by_role("button", name="取消").click()
    assert page.get_by_text("所有记录都已同步").count() == 0
    assert local_count(page, "records") == 1
    page.get_by_role("button", name="退出登录").click()
    page.get_by_role("button", name="退出并清除本机数据").click()
    page.get_by_role("button", name="登录", exact=True).wait_for()
    assert local_count(page, "records") == 0 and local_count(page, "pulled") == 0
    (revoked,) = server.query("SELECT revoked_at FROM devices WHERE user_id = ?"
                              " ORDER BY id DESC LIMIT 1", [server.world.users["leader"]])[0]
    assert revoked


def test_sign_out_keeps_a_photo_whose_bytes_never_reached_the_server(phone, server, tmp_path):
    page = phone.new_page()
    sign_in(page, server, "leader")
    # The record syncs; every upload of its photo's bytes fails.
    page.route("**/api/uploads/*", lambda route: route.abort("connectionreset")
               if route.request.method == "PATCH" else route.continue_())
    capture_problem_with_photo(page, "照片还没传上去的问题", jpeg(tmp_path / "u.jpg", 9))
    pending(page, 0)
    assert server.query("SELECT count(*) FROM problems WHERE description = ?",
                        ["照片还没传上去的问题"]) == [(1,)]
    page.get_by_role("button", name="退出登录").click()
    page.get_by_text("本机还有 1 条记录或草稿没有同步").wait_for()
    page.get_by_role("button", name="仍然退出（保留本机记录）").click()
    page.get_by_role("button", name="登录", exact=True).wait_for()
    assert local_count(page, "photos") == 1


def test_a_refused_photo_is_listed_kept_and_not_sent_again(phone, server, tmp_path):
    page = phone.new_page()
    sign_in(page, server, "leader")
    # The server ends the upload as it does for an image above the pixel limit.
    refusal = json.dumps({"error": {"code": "image_too_large", "message": "too many pixels"}})
    page.route("**/api/uploads/*", lambda route: route.fulfill(
        status=413, content_type="application/json", body=refusal,
        headers={"Tus-Resumable": "1.0.0"})
        if route.request.method == "PATCH" else route.continue_())
    capture_problem_with_photo(page, "照片被拒收的问题", jpeg(tmp_path / "big.jpg", 11))
    page.get_by_text("照片无法上传：图片过大（超过 5000 万像素）").wait_for()
    pending(page, 0)
    assert server.query("SELECT count(*) FROM problems WHERE description = ?",
                        ["照片被拒收的问题"]) == [(1,)]
    page.unroute("**/api/uploads/*")

    uploads = []
    page.on("request", lambda request: uploads.append(request.method)
            if "/api/uploads" in request.url else None)
    page.get_by_role("link", name="记民情").click()
    page.get_by_label("反映内容").fill("拒收照片之后的民情")
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 0)
    page.get_by_role("button", name="同步", exact=True).click()
    page.get_by_text("同步完成").wait_for()
    assert server.query("SELECT count(*) FROM diary_entries WHERE content = ?",
                        ["拒收照片之后的民情"]) == [(1,)]
    assert uploads == []
    page.get_by_text("照片无法上传：图片过大（超过 5000 万像素）").wait_for()
    assert local_count(page, "photos") == 1

    # Nothing else is unsynced: sign-out may clear the phone, but says the photo goes too.
    page.get_by_role("button", name="退出登录").click()
    page.get_by_text("所有记录都已同步").wait_for()
    page.get_by_text("另有 1 张照片服务器无法接收").wait_for()
    page.get_by_role("button", name="取消").click()
    assert local_count(page, "photos") == 1


# Accessibility -------------------------------------------------------------------


def test_every_screen_passes_axe(browser, server, tmp_path):
    # axe is injected as an inline script, which the app's CSP refuses: this
    # context alone bypasses the CSP.
    context = browser.new_context(**PHONE, bypass_csp=True)
    context.set_default_timeout(15000)
    page = context.new_page()
    page.goto(f"{server.url}/app/")
    page.get_by_role("button", name="登录", exact=True).wait_for()
    failures = {"signin": axe_violations(page)}
    sign_in(page, server, "leader_d2")
    capture_problem_with_photo(page, "杏花村垃圾清运不及时", jpeg(tmp_path / "b.jpg", 4))
    pending(page, 0)
    screens = {
        "home": "#/",
        "visit": "#/visit",
        "diary": "#/diary",
        "problem": "#/problem",
        "records": "#/records",
        "area": "#/area",
        "lookup": "#/lookup",
    }
    for name, hash_ in screens.items():
        page.goto(f"{server.url}/app/{hash_}")
        poll(page, "(name) => document.body.dataset.screen === name", name)
        page.wait_for_timeout(200)
        failures[name] = axe_violations(page)
    page.goto(f"{server.url}/app/#/area")
    page.locator(".rows .row-link").first.click()
    page.get_by_role("heading", name="问题详情").wait_for()
    failures["area_detail"] = axe_violations(page)
    page.goto(f"{server.url}/app/#/visit")
    page.get_by_role("button", name="开始走访").click()
    page.get_by_role("link", name="继续走访").click()
    page.get_by_role("button", name="结束走访").click()
    page.get_by_role("heading", name="走访小结").wait_for()
    failures["summary"] = axe_violations(page)
    home(page)
    page.get_by_role("button", name="退出登录").click()
    page.get_by_role("alertdialog").wait_for()
    failures["sign_out"] = axe_violations(page)
    context.close()
    assert not any(failures.values()), failures


# Pilot: the timeline in words, nothing cut, the official's own checklist, the way in --------


def test_the_timeline_names_every_kind_of_event_in_words(phone, server):
    from server.ledger import events
    from tests.test_events import add_every_event

    problem = server.world.problems["p1"]
    db = open_database(server.db_path)
    try:
        add_every_event(db, problem, server.world.users["office"])
    finally:
        db.close()
    page = phone.new_page()
    sign_in(page, server, "field1")
    poll(page, local_read("pulled", "get(key)", "(r.result?.data?.events || []).length > 20",
                          "key"), f"problem:{problem}")
    page.goto(f"{server.url}/app/#/area/{problem}")
    page.get_by_role("heading", name="办理过程").wait_for()
    labels = page.locator(".timeline .event strong").all_inner_texts()
    for kind in events.kinds():
        assert events.label(kind) in labels, kind
    timeline = page.locator(".timeline").inner_text()
    assert "event." not in timeline and "备注-accept" in timeline


def _problem_form(page, server):
    home(page)
    page.get_by_role("link", name="记问题").click()
    page.get_by_role("heading", name="记问题").wait_for()
    return page.get_by_label("问题描述")


def test_a_description_past_its_limit_is_counted_refused_and_kept_whole(phone, server):
    page = phone.new_page()
    sign_in(page, server, "field2")
    description = _problem_form(page, server)
    counter = page.locator(".counter").first
    description.fill("短")
    assert not counter.is_visible()
    description.fill("路" * 1850)
    assert counter.inner_text() == "1,850 / 2,000"
    assert description.get_attribute("maxlength") is None  # the browser cuts nothing
    text = "路" * 2000 + "灯不亮"
    description.fill(text)
    assert counter.inner_text() == "超出 3 字：最多 2,000 字，请删减后再保存。"
    assert description.get_attribute("aria-invalid") == "true"
    assert counter.get_attribute("id") in description.get_attribute("aria-describedby")
    page.get_by_role("button", name="保存", exact=True).click()
    page.get_by_text("有内容超出字数上限，未保存。").wait_for()
    assert page.get_by_role("heading", name="记问题").is_visible()
    assert description.input_value() == text
    assert local_count(page, "outbox") == 0
    # The draft keeps every character, over the limit or not.
    deadline = time.monotonic() + 10
    while local_count(page, "drafts") == 0:  # written 250 ms after the last keystroke
        assert time.monotonic() < deadline
        time.sleep(0.1)
    page.reload()
    assert page.get_by_label("问题描述").input_value() == text
    assert page.locator(".counter").first.inner_text().startswith("超出 3 字")
    # Shortened to the limit, it is saved whole.
    page.get_by_label("问题描述").fill("路" * 1997 + "灯不亮")
    assert page.locator(".counter").first.inner_text() == "2,000 / 2,000"
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 0)
    assert server.query("SELECT length(description) FROM problems WHERE description LIKE ?",
                        ["路路路%灯不亮"]) == [(2000,)]


def test_the_checklist_is_what_the_official_ticks(phone, server):
    page = phone.new_page()
    sign_in(page, server, "field2")
    page.get_by_role("link", name="开始走访").click()
    page.get_by_label("不打招呼").wait_for()
    boxes = page.locator("input[name=checklist]")
    assert boxes.count() == 6
    assert not any(boxes.nth(i).is_checked() for i in range(6))
    page.get_by_label("四不两直暗访").check()  # the method ticks nothing
    page.get_by_label("入户走访").check()
    page.get_by_label("四不两直暗访").check()
    assert not any(boxes.nth(i).is_checked() for i in range(6))
    all_done = page.get_by_role("button", name="全部做到")
    assert all_done.get_attribute("type") == "button"
    all_done.click()
    assert all(boxes.nth(i).is_checked() for i in range(6))
    page.get_by_label("不打招呼").uncheck()  # the official's word, not the default
    page.get_by_label("详细地点").fill("白石镇敬老院")
    page.get_by_role("button", name="开始走访").click()
    pending(page, 0)
    (checklist,) = server.query(
        "SELECT checklist FROM visits WHERE place = '白石镇敬老院'")[0]
    assert "no_greeting" not in checklist and len(json.loads(checklist)) == 5


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    from server.demo import seed_demo

    path = tmp_path_factory.mktemp("demo") / "demo.db"
    db = open_database(path)
    seed_demo(db, problems=30)
    db.close()
    with running_server(path) as url:
        yield Server(url, path, photos_dir(path), None, None)


def signed_in_home(page) -> None:
    """The app's home, signed in: the sync card, and no password asked for."""
    page.get_by_role("heading", name="同步").wait_for()
    page.get_by_text("上次同步：").wait_for()
    assert page.locator("input[type=password]").count() == 0


def office_sign_in(page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


def test_the_demo_field_official_signing_in_on_a_phone_lands_in_the_app(browser, demo_server):
    demo_server_url = demo_server.url
    context = browser.new_context(**PHONE)
    context.set_default_timeout(15000)
    page = context.new_page()
    page.goto(f"{demo_server_url}/login")
    page.get_by_role("link", name="手机走访 App").wait_for()
    office_sign_in(page, demo_server_url, "field", "demo1234")
    page.wait_for_url(f"{demo_server_url}/app/")
    # Signed in already: the app took the web session, the password is not asked again.
    signed_in_home(page)
    (user_id,) = demo_server.query("SELECT id FROM users WHERE username = 'field'")[0]
    assert demo_server.query("SELECT name FROM devices WHERE user_id = ?", [user_id]) == [
        ("走访台账",)]
    page.get_by_role("link", name="记民情").click()
    page.get_by_label("反映内容").fill("网页登录后直接在 App 记的民情")
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 0)
    assert demo_server.query(
        "SELECT author_id FROM diary_entries WHERE content = '网页登录后直接在 App 记的民情'"
    ) == [(user_id,)]
    context.close()
    # The same account on a PC gets the office pages.
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")
    page = context.new_page()
    office_sign_in(page, demo_server_url, "field", "demo1234")
    page.wait_for_url(f"{demo_server_url}/")
    context.close()


def new_field_official(server: Server, username: str) -> str:
    """A field-only account like field1, not yet signed in anywhere (so no earlier
    test's devices count against the limit of new devices per web session)."""
    db = open_database(server.db_path)
    try:
        with immediate(db):
            row = dict(db["users"].get(server.world.users["field1"]))
            del row["id"]
            db["users"].insert({**row, "username": username, "display_name": f"测试{username}"})
    finally:
        db.close()
    return username


def test_a_sign_out_in_the_app_is_not_undone_by_the_older_web_session(phone, server):
    username = new_field_official(server, "field_signout")
    page = phone.new_page()
    office_sign_in(page, server.url, username, PASSWORD)
    page.wait_for_url(f"{server.url}/app/")
    signed_in_home(page)
    # The first sync's end may redraw Home under the question: ask again on the new Home.
    for _attempt in range(3):
        page.get_by_role("button", name="退出登录").click()
        try:
            page.get_by_text("所有记录都已同步").wait_for(timeout=5000)
            break
        except PlaywrightTimeoutError:
            continue
    page.get_by_role("button", name="退出并清除本机数据").click()
    page.get_by_role("button", name="登录", exact=True).wait_for()
    # The web session is still valid, but began before the sign-out.
    page.reload()
    page.get_by_role("button", name="登录", exact=True).wait_for()
    page.get_by_label("密码").wait_for()
    # A new sign-in on the office page is a new session: the app takes it.
    phone.clear_cookies()
    time.sleep(1)  # the server keeps whole seconds: a session of the same second is refused
    office_sign_in(page, server.url, username, PASSWORD)
    page.wait_for_url(f"{server.url}/app/")
    signed_in_home(page)
    page.get_by_text(f"测试{username}，您好").wait_for()


def test_with_no_signal_or_a_failed_exchange_the_app_shows_its_sign_in_form(phone, server):
    username = new_field_official(server, "field_offline")
    page = phone.new_page()
    # The exchange fails (here: its first request breaks): the sign-in form.
    page.route("**/api/session", lambda route: route.abort("connectionreset"))
    office_sign_in(page, server.url, username, PASSWORD)
    page.wait_for_url(f"{server.url}/app/")
    page.get_by_label("密码").wait_for()
    poll(page, "() => navigator.serviceWorker.controller !== null")
    page.unroute("**/api/session")
    # No signal, no token, a valid web session: the form, as before.
    phone.set_offline(True)
    page.reload()
    page.get_by_label("密码").wait_for()
    page.get_by_role("button", name="登录", exact=True).wait_for()
    # Signal again, a new start: signed in by the web session.
    phone.set_offline(False)
    page.reload()
    signed_in_home(page)


# Device health ---------------------------------------------------------------------


AGE_RECORDS = """(hours) => new Promise((resolve, reject) => {
    const open = indexedDB.open('fieldledger');
    open.onsuccess = () => {
      const tx = open.result.transaction('records', 'readwrite');
      const store = tx.objectStore('records');
      const all = store.getAll();
      all.onsuccess = () => {
        const old = new Date(Date.now() - hours * 3600000).toISOString();
        for (const r of all.result) store.put({ ...r, updated: old });
      };
      tx.oncomplete = () => { open.result.close(); resolve(true); };
      tx.onerror = () => reject(tx.error);
    };
  })"""


def test_the_phone_reports_its_health_and_warns_of_records_left_unsynced(browser, server):
    context = browser.new_context(**PHONE)
    context.set_default_timeout(15000)
    page = context.new_page()
    sign_in(page, server, "field2")
    version = page.evaluate("document.documentElement.dataset.appVersion")
    rows = server.query("SELECT d.health FROM devices d WHERE d.user_id = ? AND d.health"
                        " IS NOT NULL ORDER BY d.id DESC", [server.world.users["field2"]])
    health = json.loads(rows[0][0])
    assert health["app_version"] == version and len(version) == 20
    assert health["storage_quota"] > 0 and health["unsynced_mutations"] == 0

    context.set_offline(True)
    page.get_by_text("离线").wait_for()
    page.get_by_role("link", name="记民情").click()
    page.get_by_label("反映内容").fill("村口桥栏杆松动")
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 1)
    poll(page, AGE_RECORDS, 50)
    page.reload()
    card = page.locator("section.health")
    card.get_by_text("有 1 条记录已超过 50 小时没有同步到台账").wait_for()
    if not page.evaluate("navigator.storage.persisted()"):
        card.get_by_text("本机存储没有设为持久保存").wait_for()

    context.set_offline(False)
    home(page)
    pending(page, 0)
    page.reload()
    page.get_by_text("没有待同步的记录").wait_for()
    assert page.get_by_text("没有同步到台账").count() == 0
    context.close()


# What waits on the official ---------------------------------------------------------


def test_home_lists_what_waits_on_the_official_and_counts_today(browser, server):
    import datetime as dt

    from tests.ledger_helpers import add_problem

    context = browser.new_context(**PHONE)
    context.set_default_timeout(15000)
    page = context.new_page()
    sign_in(page, server, "field2")
    page.get_by_text("暂无需要处理的问题。").wait_for()
    page.get_by_role("link", name="记问题").click()
    page.get_by_label("问题描述").fill("白石镇东门路灯不亮")
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 0)
    db = open_database(server.db_path)
    yesterday = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=8) - dt.timedelta(days=1)).date()
    with immediate(db):
        db.execute("UPDATE problems SET info_request = '请补拍路灯杆编号' WHERE description = ?",
                   ["白石镇东门路灯不亮"])
    add_problem(db, server.world, reporter_id=server.world.users["office"], status="closed",
                area_id=server.world.areas["v2"], description="杏花村水塘护栏已修复",
                ledger_no="ZF-2026-009001", closed_at="2026-11-01T02:00:00+00:00",
                return_visit_due=yesterday.isoformat())
    db.close()
    page.reload()
    card = page.locator("section.work-card")
    card.get_by_text("台账办公室请您补充").wait_for()
    card.get_by_text("回头看到期").wait_for()
    assert "记问题 1 个" in card.inner_text()
    assert "请补拍路灯杆编号" in card.inner_text() and "ZF-2026-009001" in card.inner_text()

    card.get_by_text("白石镇东门路灯不亮").click()
    page.get_by_text("台账办公室请您补充：请补拍路灯杆编号").wait_for()
    page.get_by_label("跟进情况").fill("杆号 BS-017")
    page.get_by_role("button", name="保存跟进").click()
    home(page)
    pending(page, 0)
    page.reload()
    page.locator("section.work-card").get_by_text("回头看到期").wait_for()
    assert page.locator("section.work-card").get_by_text("台账办公室请您补充").count() == 0
    answered = server.query("SELECT info_request FROM problems WHERE description = ?",
                            ["白石镇东门路灯不亮"])
    assert answered == [(None,)]
    context.close()


# Is this the same problem? ------------------------------------------------------------


def test_the_same_rule_on_the_phone_as_on_the_server(browser, server):
    from server.ledger.similar import match
    from tests.test_similar import js_cases

    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.goto(f"{server.url}/app/")
    cases = js_cases()
    answers = page.evaluate(
        """async (cases) => {
            const { match } = await import('/static/app/similar.js');
            return cases.map(([mine, theirs]) => match(mine, theirs));
        }""", [list(case) for case in cases])
    for (mine, theirs), answer in zip(cases, answers, strict=True):
        expected = match(mine, theirs)
        assert (answer is None) == (expected is None), (mine, theirs)
        if expected is not None:
            assert abs(answer["similarity"] - expected.similarity) < 1e-9
            assert (answer["distance"] is None) == (expected.distance is None)
            if expected.distance is not None:
                assert abs(answer["distance"] - expected.distance) < 0.01
    context.close()


def test_a_report_of_a_problem_already_in_the_ledger_becomes_a_note_on_it(browser, server):
    context = browser.new_context(**PHONE)
    context.set_default_timeout(15000)
    page = context.new_page()
    sign_in(page, server, "field1")
    p3 = server.world.problems["p3"]  # 第一网格小区物业不作为，路灯不亮 (handling)
    before = server.query("SELECT count(*) FROM problems")[0][0]
    context.set_offline(True)
    page.get_by_text("离线").wait_for()
    page.get_by_role("link", name="记问题").click()
    page.get_by_label("问题描述").fill("小区物业不作为，楼道路灯不亮好几天")
    same = page.get_by_role("region", name="可能是同一问题")
    same.get_by_text("第一网格小区物业不作为，路灯不亮").wait_for()
    same.get_by_role("button", name="是同一问题，补充到这里").click()
    page.get_by_role("heading", name="问题详情").wait_for()
    page.get_by_text("小区物业不作为，楼道路灯不亮好几天").wait_for()
    context.set_offline(False)
    home(page)
    pending(page, 0)
    assert server.query("SELECT count(*) FROM problems")[0][0] == before
    notes = server.query("SELECT note FROM problem_events WHERE problem_id = ? AND kind = 'note'",
                         [p3])
    assert ("小区物业不作为，楼道路灯不亮好几天",) in notes
    context.close()
