"""What the field app keeps on the phone, in Chromium: the thumbnails of the
area's problems for 回头看 offline, closed problems dropped after 90 days, and
full-size photos pruned once the server has them (never before)."""

from __future__ import annotations

import datetime as dt

import pytest

from server.db import immediate, open_database
from server.timeutil import to_iso, utcnow
from tests.test_field_app_browser import (
    ALL_PHOTOS_UPLOADED,
    PHONE,
    PULLED,
    browser,  # noqa: F401 (fixture)
    capture_problem_with_photo,
    home,
    jpeg,
    local_read,
    pending,
    phone,  # noqa: F401 (fixture)
    playwright,  # noqa: F401 (fixture)
    poll,
    server,  # noqa: F401 (fixture)
    sign_in,
)

pytestmark = pytest.mark.browser

THUMB_CACHED = ("(sha) => caches.open('fl-thumbs')"
                ".then((c) => c.match(`/api/photos/${sha}/thumb`)).then(Boolean)")
PHOTOS = local_read("photos", "getAll()", """r.result.map((p) => ({
    sha: p.sha, blob: Boolean(p.blob), thumb: Boolean(p.thumb), acked: Boolean(p.acked_at),
    done: p.done }))""")
PHOTO_ACKNOWLEDGED = f"() => ({PHOTOS})().then((list) => list.length === 1 && list[0].acked)"
IMAGES_SHOWN = """() => {
    const images = [...document.querySelectorAll('.thumbs img')];
    return images.length > 0 && images.every((img) => img.complete && img.naturalWidth > 0);
  }"""
DAY = dt.timedelta(days=1)


def report_in_area(page, live_server, description: str, photo) -> str:
    """Report a problem with a photo in 幸福社区 (field1's area); returns its id."""
    home(page)
    page.get_by_role("link", name="记问题").click()
    page.get_by_label("问题描述").fill(description)
    page.get_by_label("地点（区域）").select_option(str(live_server.world.areas["v1"]))
    page.locator("input[type=file][capture]").first.set_input_files(str(photo))
    page.get_by_text("已添加 1 张照片").wait_for()
    page.get_by_role("button", name="保存", exact=True).click()
    pending(page, 0)
    poll(page, ALL_PHOTOS_UPLOADED)
    return live_server.query("SELECT id FROM problems WHERE description = ?",
                             [description])[0][0]


def test_area_thumbnails_show_offline(browser, server, tmp_path):  # noqa: F811
    reporter = browser.new_context(**PHONE)
    official = browser.new_context(**PHONE)
    for context in (reporter, official):
        context.set_default_timeout(15000)
    try:
        page = reporter.new_page()
        sign_in(page, server, "office_d1")
        problem = report_in_area(page, server, "幸福社区广场地砖破损",
                                 jpeg(tmp_path / "tiles.jpg", 11))

        page = official.new_page()
        sign_in(page, server, "field1")
        sha = server.query("SELECT sha256 FROM attachment_links WHERE record_id = ?",
                           [problem])[0][0]
        poll(page, THUMB_CACHED, sha, timeout=30)
        official.set_offline(True)
        page.reload()
        page.get_by_text("离线", exact=True).wait_for()
        page.goto(f"{server.url}/app/#/area")
        page.get_by_text("幸福社区广场地砖破损").click()
        page.get_by_role("heading", name="问题详情").wait_for()
        poll(page, IMAGES_SHOWN)
        assert page.get_by_text("照片未下载").count() == 0
        assert problem in page.url
    finally:
        reporter.close()
        official.close()


def test_closed_problems_leave_the_phone_90_days_after_closing(phone, server):  # noqa: F811
    problem = server.world.problems["p3"]
    db = open_database(server.db_path)
    with immediate(db):
        db.execute("UPDATE problems SET status = 'closed', closed_at = ? WHERE id = ?",
                   [to_iso(utcnow() - 89 * DAY), problem])
    db.close()
    page = phone.new_page()
    sign_in(page, server, "field1")
    page.goto(f"{server.url}/app/#/area/{problem}")
    page.get_by_text("已办结").first.wait_for()

    page.clock.set_fixed_time(dt.datetime.now(dt.UTC) + 2 * DAY)
    page.evaluate("window.flApp.tidy()")
    page.goto(f"{server.url}/app/#/area")
    page.get_by_role("heading", name="回头看").wait_for()
    poll(page, "() => document.body.dataset.screen === 'area'")
    assert page.get_by_text("第一网格小区物业不作为").count() == 0
    assert page.get_by_text("幸福社区3号楼漏水").count() == 1  # open: kept


def test_acknowledged_photos_are_pruned_after_the_grace_period(phone, server, tmp_path):  # noqa: F811
    page = phone.new_page()
    sign_in(page, server, "field2")
    capture_problem_with_photo(page, "白石镇集市排水沟堵塞", jpeg(tmp_path / "ditch.jpg", 12))
    pending(page, 0)
    poll(page, PHOTO_ACKNOWLEDGED)
    synced = page.evaluate(PHOTOS)[0]["sha"]
    phone.set_offline(True)
    capture_problem_with_photo(page, "白石镇桥下堆放垃圾", jpeg(tmp_path / "trash.jpg", 13))
    pending(page, 1)

    # Past the grace period: the acknowledged photo keeps only a thumbnail;
    # the one the server does not have yet keeps its bytes.
    page.clock.set_fixed_time(dt.datetime.now(dt.UTC) + 15 * DAY)
    page.evaluate("window.flApp.tidy()")
    photos = {photo["sha"]: photo for photo in page.evaluate(PHOTOS)}
    assert photos[synced]["blob"] is False and photos[synced]["thumb"] is True
    (unsent,) = set(photos) - {synced}
    assert photos[unsent]["blob"] is True and photos[unsent]["done"] is False

    problem = server.query("SELECT id FROM problems WHERE description = ?",
                           ["白石镇集市排水沟堵塞"])[0][0]
    page.reload()
    page.goto(f"{server.url}/app/#/area/{problem}")
    page.get_by_role("heading", name="问题详情").wait_for()
    poll(page, IMAGES_SHOWN)


def test_visits_leave_the_phone_90_days_after_they_began(phone, server):  # noqa: F811
    visit = server.world.visits["v1"]  # field1's, begun now on another device
    db = open_database(server.db_path)
    with immediate(db):
        db["visits"].update(visit, {"started_at": to_iso(utcnow() - 89 * DAY)})
    db.close()
    page = phone.new_page()
    sign_in(page, server, "field1")
    poll(page, PULLED, f"visit:{visit}")

    page.clock.set_fixed_time(dt.datetime.now(dt.UTC) + 2 * DAY)
    page.evaluate("window.flApp.tidy()")
    poll(page, f"(key) => ({PULLED})(key).then((held) => !held)", f"visit:{visit}")
