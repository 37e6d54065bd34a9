"""Each user sees data only inside their scope, on every page that lists or shows it."""

from __future__ import annotations

import pytest

# Which of the world's problems each user may see (see tests/conftest.py):
# p1 in 幸福社区 (d1), reported by field1; p2 in 杏花村 (d2), by field2, unit 水务集团;
# p3 in 第一网格 (d1), reported by field2, unit 住建局.
VISIBLE_PROBLEMS = {
    "office": {"p1", "p2", "p3"},
    "office_d1": {"p1", "p3"},
    "leader": {"p1", "p2", "p3"},
    "leader_d2": {"p2"},
    "field1": {"p1", "p3"},
    "field2": {"p2", "p3"},  # p3 because field2 reported it
    "handler1": {"p3"},
    "handler2": {"p2"},
}
VISIBLE_VISITS = {
    "office": {"v1", "v2"},
    "office_d1": {"v1"},
    "leader_d2": {"v2"},
    "field1": {"v1"},
    "field2": {"v2"},
}


@pytest.mark.parametrize("username", sorted(VISIBLE_PROBLEMS))
def test_problem_list_and_detail_respect_scope(login_as, world, username):
    client = login_as(username)
    listing = client.get("/problems").text
    for key, problem_id in world.problems.items():
        visible = key in VISIBLE_PROBLEMS[username]
        assert (f"/problems/{problem_id}" in listing) == visible, key
        detail = client.get(f"/problems/{problem_id}")
        assert detail.status_code == (200 if visible else 404), key


@pytest.mark.parametrize("username", sorted(VISIBLE_VISITS))
def test_visit_list_and_detail_respect_scope(login_as, world, username):
    client = login_as(username)
    listing = client.get("/visits").text
    for key, visit_id in world.visits.items():
        visible = key in VISIBLE_VISITS[username]
        assert (f"/visits/{visit_id}" in listing) == visible, key
        assert client.get(f"/visits/{visit_id}").status_code == (200 if visible else 404)


def test_status_counts_on_home_count_only_the_scope(login_as):
    page = login_as("handler2").get("/").text
    # handler2 sees one dispatched problem and nothing else.
    assert 'href="/problems?status=dispatched"><span class="tile-count">1<' in page
    assert 'href="/problems?status=handling"><span class="tile-count">0<' in page


def test_visit_detail_lists_only_problems_in_scope(login_as, world, db):
    # A problem from field1's visit that lies outside office_d1's district.
    db["problems"].update(world.problems["p2"], {"visit_id": world.visits["v1"]})
    page = login_as("office_d1").get(f"/visits/{world.visits['v1']}").text
    assert world.problems["p1"] in page
    assert world.problems["p2"] not in page


def test_admin_lists_only_users_in_their_area(login_as):
    page = login_as("admin_d2").get("/admin/users").text
    assert "leader_d2" in page
    assert "office_d1" not in page
    assert "field1" not in page


def test_admin_sees_only_devices_in_their_area(login_as, client):
    from tests.conftest import api_login

    api_login(client, "field1")
    assert "field1" not in login_as("admin_d2").get("/admin/devices").text
    assert "field1" in login_as("admin").get("/admin/devices").text
