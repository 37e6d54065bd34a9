"""The signed-in pages render for each role, and every form carries a CSRF token."""

from __future__ import annotations

import re

import pytest

from server.i18n import gettext as _
from tests.conftest import ROLE_USERS

FORM_PAGES = [
    "/admin/users/new", "/admin/units/new", "/admin/areas/new", "/admin/categories/new",
    "/admin/users/1", "/admin/units/1", "/admin/areas/1", "/admin/categories/1",
]


@pytest.mark.parametrize("url", FORM_PAGES + ["/admin/devices", "/"])
def test_every_post_form_has_a_csrf_token(login_as, client, url):
    from tests.conftest import api_login

    api_login(client, "field1")  # so the devices page has a revoke form
    page = login_as("admin").get(url).text
    forms = re.findall(r'<form[^>]*method="post".*?</form>', page, flags=re.S)
    assert forms
    for form in forms:
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token and len(token.group(1)) > 20


def test_login_form_has_a_csrf_token(client):
    assert re.search(r'name="csrf_token" value="[^"]{20,}"', client.get("/login").text)


@pytest.mark.parametrize("role", sorted(ROLE_USERS))
def test_home_page_for_every_role(login_as, role):
    response = login_as(ROLE_USERS[role]).get("/")
    assert response.status_code == 200
    assert "您好" in response.text


def test_problem_list_filters_by_status(login_as, world):
    client = login_as("office")
    page = client.get("/problems?status=dispatched").text
    assert world.problems["p2"] in page
    assert world.problems["p1"] not in page
    assert client.get("/problems?status=nonsense").status_code == 200
    assert client.get("/problems?page=abc").status_code == 200


def test_problem_detail_shows_timeline(login_as, world):
    page = login_as("office").get(f"/problems/{world.problems['p1']}").text
    assert "幸福社区3号楼漏水" in page
    assert "上报" in page


def test_a_problem_without_a_number_is_named_by_its_state_never_unnumbered(login_as, db, world):
    problem_id = world.problems["p1"]
    assert db["problems"].get(problem_id)["ledger_no"] is None
    page = login_as("office").get(f"/problems/{problem_id}").text
    heading = page.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert f"待受理 {problem_id[-6:]}" in heading and "未编号" not in page
    visit = login_as("field1").get(f"/visits/{world.visits['v1']}").text
    assert f"待受理 {problem_id[-6:]}" in visit and "未编号" not in visit


def test_visit_detail_shows_checklist_and_problems(login_as, world):
    page = login_as("field1").get(f"/visits/{world.visits['v1']}").text
    assert "✓ 不发通知" in page
    assert "— 直插现场" in page
    assert world.problems["p1"] in page


def test_times_are_shown_in_shanghai_time(login_as, db, world):
    db["problems"].update(world.problems["p1"], {"found_at": "2026-03-01T16:30:00+00:00"})
    page = login_as("office").get(f"/problems/{world.problems['p1']}").text
    assert "2026-03-02 00:30" in page


def test_home_shows_bounded_counts_latest_problems_and_visits(login_as, world, monkeypatch):
    from server.ledger import queries

    page = login_as("office").get("/").text
    assert f"/problems/{world.problems['p1']}" in page
    assert f"/visits/{world.visits['v1']}" in page
    assert '<span class="tile-count">1</span>' in page
    monkeypatch.setattr(queries, "COUNT_CAP", 0)  # as with a million problems: "N+"
    assert '<span class="tile-count">0+</span>' in login_as("office").get("/").text
    # A field official's latest visits are their own.
    page = login_as("field2").get("/").text
    assert f"/visits/{world.visits['v2']}" in page
    assert f"/visits/{world.visits['v1']}" not in page


def test_visit_list_is_latest_first_in_scope_with_a_bounded_count(login_as, db, world,
                                                                    monkeypatch):
    from server.ledger import queries

    db["visits"].update(world.visits["v1"], {"started_at": "2026-05-02T01:00:00+00:00"})
    db["visits"].update(world.visits["v2"], {"started_at": "2026-05-03T01:00:00+00:00"})
    page = login_as("office").get("/visits").text
    assert page.index(world.visits["v2"]) < page.index(world.visits["v1"])
    assert "共 2 条" in page
    page = login_as("field1").get("/visits").text  # a field official sees their own
    assert world.visits["v1"] in page and world.visits["v2"] not in page
    monkeypatch.setattr(queries, "COUNT_CAP", 1)  # as with a million visits: "N+"
    assert "共 1+ 条" in login_as("office").get("/visits").text


# The resident's contact, for those who must call ------------------------------------------

PHONE, MASKED = "13812345678", "138****5678"


@pytest.fixture
def p3_with_a_resident(db, world):
    """p3 (district d1, lead unit u1 = handler1's, helper unit u2), reported with a phone,
    awaiting the unit's signing."""
    from server.db import immediate

    with immediate(db):
        db["problems"].update(world.problems["p3"], {
            "status": "dispatched", "resident_name": "王大爷", "resident_phone": PHONE,
            "helper_unit_ids": f"[{world.units['u2']}]"})
    return world.problems["p3"]


@pytest.mark.parametrize(("username", "sees"), [
    ("office", "phone"),  # the office calls back
    ("office_d1", "phone"),
    ("handler1", "phone"),  # the lead unit's handler signs: 已联系反映人
    ("leader", "masked"),
    ("field1", "masked"),  # a field official of the area
    ("field2", "phone"),  # the reporter, who took the number (and holds it on the phone)
])
def test_the_resident_phone_on_the_detail_page_by_role(login_as, p3_with_a_resident, username,
                                                       sees):
    page = login_as(username).get(f"/problems/{p3_with_a_resident}").text
    assert "王大爷" in page and "联系电话" in page
    if sees == "phone":
        assert f'<a href="tel:{PHONE}">{PHONE}</a>' in page
        assert MASKED not in page
    else:
        assert MASKED in page
        assert PHONE not in page and "tel:" not in page


def test_a_helper_unit_or_another_unit_never_gets_the_phone(login_as, p3_with_a_resident):
    # handler2's unit u2 only helps on p3: the problem is not in its scope at all.
    response = login_as("handler2").get(f"/problems/{p3_with_a_resident}")
    assert response.status_code == 404 and PHONE not in response.text


def test_a_handler_sees_the_phone_only_on_problems_of_their_unit(login_as, db, world):
    # handler1 also a field official of district d2: p2 (unit u2) is in scope by its area.
    db["users"].update(world.users["handler1"], {"roles": "field,handler",
                                                  "area_id": world.areas["d2"]})
    db["problems"].update(world.problems["p2"], {"resident_phone": PHONE})
    page = login_as("handler1").get(f"/problems/{world.problems['p2']}").text
    assert MASKED in page and PHONE not in page


def test_the_phone_stands_next_to_the_sign_and_callback_forms(login_as, db, world,
                                                              p3_with_a_resident):
    page = login_as("handler1").get(f"/problems/{p3_with_a_resident}").text
    sign = re.search(r'<form[^>]*actions/sign".*?</form>', page, flags=re.S).group(0)
    assert f'href="tel:{PHONE}"' in sign and "王大爷" in sign
    db["problems"].update(p3_with_a_resident, {"status": "callback"})
    page = login_as("office").get(f"/problems/{p3_with_a_resident}").text
    callback = re.search(r'<form[^>]*actions/callback".*?</form>', page, flags=re.S).group(0)
    assert f'href="tel:{PHONE}"' in callback
    assert 'name="method"' in callback and 'name="result"' in callback
    assert "未接通" in callback and "空号" in callback


def test_without_a_phone_there_is_no_callback_form_but_a_closure(login_as, db, world):
    db["problems"].update(world.problems["p3"], {"status": "callback", "resident_phone": ""})
    page = login_as("office").get(f"/problems/{world.problems['p3']}").text
    assert "/actions/callback" not in page and "/actions/close_unreachable" not in page
    assert "/actions/close_no_contact" in page and "未留联系方式" in page


# Callback attempts and the closures, through the page -------------------------------------


def post_action(client, problem_id, action, data=None):
    from tests.conftest import post_form

    return post_form(client, f"/problems/{problem_id}/actions/{action}", data or {})


def test_callback_attempts_are_listed_and_unreachable_waits_for_the_rule(login_as, db,
                                                                         p3_with_a_resident):
    db["problems"].update(p3_with_a_resident, {"status": "callback"})
    db["problem_events"].insert({  # the verify that started this round
        "id": "00000000-0000-4000-8000-000000008888", "problem_id": p3_with_a_resident,
        "kind": "verify", "actor_id": 2, "at": "2026-01-01T02:00:00+00:00",
        "from_status": "replied", "to_status": "callback", "note": "", "data": "{}"})
    office = login_as("office")
    response = post_action(office, p3_with_a_resident, "callback",
                           {"method": "phone", "result": "no_answer"})
    assert response.status_code == 303
    page = office.get(f"/problems/{p3_with_a_resident}").text
    assert "回访记录" in page and "未接通" in page
    timeline = page.split('id="timeline-h"', 1)[1]
    assert "电话 · 未接通" in timeline  # the timeline says how and what, too
    assert "本轮回访未成功 1 次" in page
    assert "/actions/close_unreachable" not in page
    response = post_action(office, p3_with_a_resident, "close_unreachable")
    assert response.status_code == 409 and "还差 2 次、1 天" in response.text
    assert db["problems"].get(p3_with_a_resident)["status"] == "callback"


@pytest.mark.parametrize(("data", "message"), [
    ({}, "回访方式"),
    ({"method": "phone", "result": "nonsense"}, "取值无效"),
    ({"method": "phone", "result": "reached"}, "问题是否解决"),
])
def test_a_bad_callback_form_says_what_is_wrong(login_as, db, p3_with_a_resident, data,
                                                message):
    db["problems"].update(p3_with_a_resident, {"status": "callback"})
    before = db.execute("SELECT count(*) FROM problem_events").fetchone()
    response = post_action(login_as("office"), p3_with_a_resident, "callback", data)
    assert response.status_code == 400 and message in response.text
    assert db.execute("SELECT count(*) FROM problem_events").fetchone() == before


def test_explained_needs_a_reason_through_the_page(login_as, db, p3_with_a_resident):
    office = login_as("office")
    response = post_action(office, p3_with_a_resident, "close_explained",
                           {"reason_code": "policy", "note": " "})
    assert response.status_code == 400 and "说明" in response.text
    assert db["problems"].get(p3_with_a_resident)["status"] == "dispatched"
    response = post_action(office, p3_with_a_resident, "close_explained",
                           {"reason_code": "policy", "note": "不属于任何单位职责，已向群众解释"})
    assert response.status_code == 303
    row = db["problems"].get(p3_with_a_resident)
    assert (row["status"], row["closure_kind"]) == ("closed", "explained")
    page = office.get(f"/problems/{p3_with_a_resident}").text
    assert "解释说明办结" in page


@pytest.fixture
def phone_edited_problem(client):
    """field1 reported a problem with a resident's phone, then changed the number."""
    from tests.sync_helpers import problem_args
    from tests.test_sync_mutations import RawPhone

    reporter = RawPhone(client, "field1")
    args = problem_args(resident_phone="13811112222")
    reporter.apply("problem.report", args)
    version = reporter.pull_version("problem", args["id"])
    reporter.apply("problem.edit", {"problem_id": args["id"], "base_version": version,
                                    "changes": {"resident_phone": "13933334444",
                                                "place": "3号楼"}})
    return args["id"]


@pytest.mark.parametrize(("username", "shown", "hidden"), [
    ("leader", ("138****2222", "139****4444"), ("13811112222", "13933334444")),
    ("office", ("13811112222", "13933334444"), ()),
])
def test_the_timeline_shows_an_edit_with_the_phone_masked_as_in_the_record(
        login_as, phone_edited_problem, username, shown, hidden):
    page = login_as(username).get(f"/problems/{phone_edited_problem}")
    assert page.status_code == 200
    edit = _("audit.change", field=_("office.conflict.field.resident_phone"),
             old=shown[0], new=shown[1])
    assert edit in page.text
    assert _("audit.change", field=_("office.conflict.field.place"),
             old=_("audit.no_value"), new="3号楼") in page.text
    for number in hidden:
        assert number not in page.text


def test_a_visit_read_for_its_page_carries_no_storage_column(db, world):
    from server.visits import get_visit
    from tests.ledger_helpers import load

    db["diary_entries"].insert({
        "id": "01900000-0000-7000-8000-0000000000d1", "visit_id": world.visits["v1"],
        "author_id": world.users["field1"], "area_id": world.areas["v1"],
        "person_kind": "resident", "content": "路灯不亮",
        "recorded_at": "2026-05-01T10:00:00+08:00",
        "created_at": "2026-05-01T10:00:00+08:00", "updated_at": "2026-05-01T10:00:00+08:00",
    })
    visit = get_visit(db, load(db, world, "field1"), world.visits["v1"])
    assert "rowid" not in visit
    assert visit["diary"] and not [entry for entry in visit["diary"] if "rowid" in entry]
