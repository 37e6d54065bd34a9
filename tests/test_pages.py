"""The signed-in pages render for each role, and every form carries a CSRF token."""

from __future__ import annotations

import re

import pytest

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
    from server import ledger_query

    page = login_as("office").get("/").text
    assert f"/problems/{world.problems['p1']}" in page
    assert f"/visits/{world.visits['v1']}" in page
    assert '<span class="tile-count">1</span>' in page
    monkeypatch.setattr(ledger_query, "COUNT_CAP", 0)  # as with a million problems: "N+"
    assert '<span class="tile-count">0+</span>' in login_as("office").get("/").text
    # A field official's latest visits are their own.
    page = login_as("field2").get("/").text
    assert f"/visits/{world.visits['v2']}" in page
    assert f"/visits/{world.visits['v1']}" not in page


def test_visit_list_is_latest_first_in_scope_with_a_bounded_count(login_as, db, world,
                                                                    monkeypatch):
    from server import ledger_query

    db["visits"].update(world.visits["v1"], {"started_at": "2026-05-02T01:00:00+00:00"})
    db["visits"].update(world.visits["v2"], {"started_at": "2026-05-03T01:00:00+00:00"})
    page = login_as("office").get("/visits").text
    assert page.index(world.visits["v2"]) < page.index(world.visits["v1"])
    assert "共 2 条" in page
    page = login_as("field1").get("/visits").text  # a field official sees their own
    assert world.visits["v1"] in page and world.visits["v2"] not in page
    monkeypatch.setattr(ledger_query, "COUNT_CAP", 1)  # as with a million visits: "N+"
    assert "共 1+ 条" in login_as("office").get("/visits").text
