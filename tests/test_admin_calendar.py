"""The 工作日历 page through the real app: preview, apply, refusals with line numbers (nothing
saved), the year view and its export, roles and CSRF; and 暂定 wherever a deadline is shown."""

from __future__ import annotations

import html
import re

import pytest

from server.i18n import gettext as _
from tests.conftest import post_form
from tests.test_calendar_entry import SAMPLE_2027, xlsx

pytest_plugins = ["tests.clock"]

PROVISIONAL = _("calendar.provisional")


def saved(db) -> tuple[int, int]:
    return (db.execute("SELECT count(*) FROM calendar_days").fetchone()[0],
            db.execute("SELECT count(*) FROM calendar_years").fetchone()[0])


def apply_form(page: str) -> dict:
    """What the preview's 确认录入 form submits."""
    form = page[page.index('action="/admin/calendar/apply"'):]
    form = form[:form.index("</form>")]
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    rows = re.search(r'<textarea name="rows" hidden>(.*?)</textarea>', form, re.S).group(1)
    fields["rows"] = html.unescape(rows)
    return {name: html.unescape(value) for name, value in fields.items()
            if name != "csrf_token"}


@pytest.fixture
def provisional_problem(login_as, world, clock):
    """p1 dispatched on Sunday 6 December 2026 with 20 working days: due 2027-01-01, 暂定."""
    clock(2026, 12, 6)
    office = login_as("office")
    pid = world.problems["p1"]
    assert post_form(office, f"/problems/{pid}/actions/accept").status_code == 303
    response = post_form(office, f"/problems/{pid}/actions/dispatch",
                         {"lead_unit_id": str(world.units["u1"]), "time_limit_days": "20"})
    assert response.status_code == 303, response.text
    return pid


def test_the_page_lists_what_the_calendar_knows(admin):
    page = admin.get("/admin/calendar")
    assert page.status_code == 200
    assert _("calendar.package_years", first=2004, last=2026) in page.text
    assert _("calendar.entered_none") in page.text
    assert 'href="/admin/calendar"' in page.text  # in the admin nav


def test_preview_shows_the_rows_and_the_deadlines_they_change_and_saves_nothing(
        admin, db, provisional_problem):
    response = post_form(admin, "/admin/calendar/preview", {"year": "2027", "rows": SAMPLE_2027})
    assert response.status_code == 200, response.text
    assert _("calendar.preview_counts", holidays=6, workdays=2) in response.text
    assert _("calendar.changes_count", count=1) in response.text
    assert "2027-01-04" in response.text and "2027-02-13" in response.text
    assert saved(db) == (0, 0)


def test_apply_enters_the_year_records_who_and_recomputes(admin, db, world, provisional_problem):
    preview = post_form(admin, "/admin/calendar/preview", {"year": "2027", "rows": SAMPLE_2027})
    response = post_form(admin, "/admin/calendar/apply", apply_form(preview.text))
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/calendar/2027?recomputed=1"
    record = db["calendar_years"].get(2027)
    assert (record["entered_by"], record["holidays"], record["source"]) == (
        world.users["admin"], 6, "typed")
    year_page = admin.get(response.headers["location"])
    assert _("calendar.applied", year=2027, holidays=6, workdays=2, count=1) in year_page.text
    assert "春节调休" in year_page.text
    problem = db["problems"].get(provisional_problem)
    assert (problem["deadline"], problem["deadline_provisional"]) == ("2027-01-04", 0)
    overview = admin.get("/admin/calendar").text
    assert "测试admin" in overview and "/admin/calendar/2027.csv" in overview


def test_an_uploaded_gbk_csv_is_previewed(admin, db):
    response = post_form(admin, "/admin/calendar/preview", {"year": "2027"},
                         files={"file": ("2027年安排.csv", SAMPLE_2027.encode("gbk"), "text/csv")})
    assert response.status_code == 200, response.text
    assert _("calendar.preview_counts", holidays=6, workdays=2) in response.text
    assert apply_form(response.text)["source"] == "2027年安排.csv"
    assert saved(db) == (0, 0)


@pytest.mark.parametrize("name, content", [
    ("bad.csv", "日期,类型\n2027-01-01,休\n2027-02-30,休\n2027-02-13,加班\n".encode()),
    ("bad.xlsx", xlsx([("日期", "类型"), ("2027-01-01", "休"), ("2027-02-30", "休"),
                       ("2027-02-13", "加班")])),
])
def test_a_bad_file_is_refused_whole_with_line_numbers(admin, db, name, content):
    response = post_form(admin, "/admin/calendar/preview", {"year": "2027"},
                         files={"file": (name, content, "application/octet-stream")})
    assert response.status_code == 400
    assert _("calendar.failed") in response.text
    assert "<td>3</td>" in response.text and "<td>4</td>" in response.text
    assert "2027-02-30" in response.text and "加班" in response.text
    assert saved(db) == (0, 0)


@pytest.mark.parametrize("data", [
    {"year": "2027", "rows": ""},
    {"year": "二〇二七", "rows": SAMPLE_2027},
    {"year": "2026", "rows": SAMPLE_2027},
])
def test_bad_typed_input_is_refused_and_kept(admin, db, data):
    response = post_form(admin, "/admin/calendar/preview", data)
    assert response.status_code == 400
    assert _("calendar.failed") in response.text
    if data["rows"]:
        assert "2027-02-20,调休上班" in response.text  # the rows typed are shown again
    assert saved(db) == (0, 0)


def test_apply_checks_the_rows_again(admin, db):
    response = post_form(admin, "/admin/calendar/apply",
                         {"year": "2027", "rows": "2027-01-01,休\n2027-01-01,班\n"})
    assert response.status_code == 400
    assert saved(db) == (0, 0)


def test_year_view_and_export(admin, db):
    page = admin.get("/admin/calendar/2026")
    assert page.status_code == 200 and _("calendar.source_package") in page.text
    exported = admin.get("/admin/calendar/2026.csv")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert "2026-10-10,班" in exported.content.decode("utf-8-sig")
    unknown = admin.get("/admin/calendar/2031")
    assert _("calendar.source_none", year=2031) in unknown.text


@pytest.mark.parametrize("year", ["abc", "1999", "20270", "２０２７"])
def test_a_malformed_year_is_404(admin, year):
    assert admin.get(f"/admin/calendar/{year}").status_code == 404
    assert admin.get(f"/admin/calendar/{year}.csv").status_code == 404


def test_non_admins_cannot_see_or_enter_the_calendar(login_as, db):
    office = login_as("office")
    assert office.get("/admin/calendar").status_code == 403
    assert office.get("/admin/calendar/2027.csv").status_code == 403
    for url in ("/admin/calendar/preview", "/admin/calendar/apply"):
        assert post_form(office, url, {"year": "2027", "rows": SAMPLE_2027}).status_code == 403
    assert saved(db) == (0, 0)


def test_apply_without_the_csrf_token_is_refused(admin, db):
    response = admin.post("/admin/calendar/apply", data={"year": "2027", "rows": SAMPLE_2027},
                          follow_redirects=False)
    assert response.status_code == 403
    cross_site = post_form(admin, "/admin/calendar/apply", {"year": "2027", "rows": SAMPLE_2027},
                           headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403
    assert saved(db) == (0, 0)


# 暂定 wherever a deadline is shown ---------------------------------------------------


def test_a_provisional_deadline_is_marked_everywhere(login_as, world, provisional_problem):
    office = login_as("office")
    detail = office.get(f"/problems/{provisional_problem}").text
    assert re.search(r"2027-01-01\s*<span class=\"badge provisional\"", detail)
    assert PROVISIONAL in office.get("/problems").text
    assert PROVISIONAL in office.get("/").text  # the home page's recent problems
    handler = login_as("handler1")
    assert PROVISIONAL in handler.get("/work").text


def test_the_work_queues_never_refuse_at_the_year_end(login_as, db, world, clock):
    db["problems"].update(world.problems["p3"], {"deadline": "2027-01-04",
                                                 "deadline_provisional": 1})
    clock(2026, 12, 30)  # "due within three working days" runs into 2027
    page = login_as("handler1").get("/work")
    assert page.status_code == 200
    due_soon = page.text[page.text.index('id="q-due_soon"'):]
    assert "2027-01-04" in due_soon and PROVISIONAL in due_soon


def test_after_entering_the_year_it_is_no_longer_marked(admin, login_as, provisional_problem):
    preview = post_form(admin, "/admin/calendar/preview", {"year": "2027", "rows": SAMPLE_2027})
    post_form(admin, "/admin/calendar/apply", apply_form(preview.text))
    detail = login_as("office").get(f"/problems/{provisional_problem}").text
    assert "2027-01-04" in detail and PROVISIONAL not in detail
    assert _("event.deadline_recomputed") in detail


# The administrator's home page -------------------------------------------------------


@pytest.mark.parametrize("day, warned", [((2026, 10, 31), False), ((2026, 11, 1), True),
                                         ((2026, 12, 6), True)])
def test_the_admin_home_warns_from_november(admin, clock, day, warned):
    clock(*day)
    home = admin.get("/").text
    assert (_("calendar.home_warning", year=2027) in home) is warned


def test_no_warning_once_next_year_is_entered(admin, login_as, clock):
    clock(2026, 12, 6)
    preview = post_form(admin, "/admin/calendar/preview", {"year": "2027", "rows": SAMPLE_2027})
    post_form(admin, "/admin/calendar/apply", apply_form(preview.text))
    assert _("calendar.home_warning", year=2027) not in admin.get("/").text


def test_only_administrators_are_warned(login_as, clock):
    clock(2026, 12, 6)
    for username in ("office", "leader", "field1", "handler1"):
        assert _("calendar.home_warning", year=2027) not in login_as(username).get("/").text
