"""The request plumbing of server/web.py and server/middleware.py: the CSRF token bound
to the web session, web sessions ending when idle, and ``Cache-Control: no-store`` on
every answer but the static files."""

from __future__ import annotations

import datetime as dt

import pytest
from starlette.testclient import TestClient

from server import auth
from server.timeutil import to_iso
from tests.conftest import PASSWORD, api_login, csrf_of, login, post_form


def page_token(client: TestClient, url: str = "/") -> str:
    """The CSRF token a page's forms carry."""
    text = client.get(url).text
    marker = 'name="csrf_token" value="'
    start = text.index(marker) + len(marker)
    return text[start:text.index('"', start)]


# CSRF: bound to the session ------------------------------------------------------------


def test_a_sessions_pages_carry_its_own_token(login_as, db):
    browser = login_as("office")
    token = page_token(browser)
    assert token == page_token(browser, "/problems") == csrf_of(browser)
    assert token == auth.session_csrf_token(browser.cookies["fl_session"])
    assert post_form(browser, "/logout").status_code == 303


@pytest.mark.parametrize("username", ["office", "admin"])
def test_a_token_from_another_session_is_refused_even_planted_in_the_cookie(
    login_as, db, username
):
    """An attacker's own session token, tossed into the victim's CSRF cookie (a sibling
    subdomain can set cookies), does not pass: the token must be the victim's session's."""
    attacker = login_as(username)
    victim = login_as("office")
    stolen = csrf_of(attacker)
    victim.cookies.set("fl_csrf", stolen)
    response = victim.post("/logout", data={"csrf_token": stolen}, follow_redirects=False)
    assert response.status_code == 403
    assert db["web_sessions"].count == 2
    response = victim.post("/account/password", follow_redirects=False, data={
        "csrf_token": stolen, "current_password": PASSWORD,
        "new_password": "Attacker-chose-1", "new_password_repeat": "Attacker-chose-1"})
    assert response.status_code == 403
    # The victim's own token still works, whatever the cookie holds.
    response = victim.post("/logout", data={"csrf_token": page_token(victim)},
                           follow_redirects=False)
    assert response.status_code == 303


def test_a_token_of_an_ended_session_does_not_pass_in_the_next(client, db):
    login(client, "office")
    first = page_token(client)
    post_form(client, "/logout")
    login(client, "office")
    response = client.post("/logout", data={"csrf_token": first}, follow_redirects=False)
    assert response.status_code == 403
    assert page_token(client) != first


def test_the_session_api_checks_the_sessions_own_token(login_as, db):
    attacker = login_as("field2")
    victim = login_as("field1")
    stolen = attacker.get("/api/session").json()["csrf_token"]
    victim.cookies.set("fl_csrf", stolen)
    response = victim.post("/api/session/device", json={}, headers={"X-CSRF-Token": stolen})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf"
    own = victim.get("/api/session").json()["csrf_token"]
    assert own == auth.session_csrf_token(victim.cookies["fl_session"])
    assert victim.post("/api/session/device", json={},
                       headers={"X-CSRF-Token": own}).status_code == 201


def test_the_sign_in_form_keeps_a_pre_session_token(client, db):
    response = client.get("/login")
    pre_session = client.cookies["fl_csrf"]
    assert f'value="{pre_session}"' in response.text
    wrong = client.post("/login", follow_redirects=False, data={
        "username": "office", "password": PASSWORD, "csrf_token": "something-else"})
    assert wrong.status_code == 403
    assert login(client, "office").status_code == 303
    # Signed in, the pre-session token is no longer the one.
    response = client.post("/logout", data={"csrf_token": pre_session}, follow_redirects=False)
    assert response.status_code == 403


# Sessions end when idle ------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    """The sessions' clock, moved by hand: clock(minutes=...) moves it forward."""
    now = {"at": dt.datetime(2026, 12, 6, 2, 0, tzinfo=dt.UTC)}
    monkeypatch.setattr(auth, "utcnow", lambda: now["at"])
    monkeypatch.setattr(auth, "now_iso", lambda: to_iso(now["at"]))

    def forward(**delta):
        now["at"] += dt.timedelta(**delta)

    return forward


def signed_in(client: TestClient) -> bool:
    response = client.get("/", follow_redirects=False)
    assert response.status_code in (200, 303)
    return response.status_code == 200


def last_seen(db) -> str:
    return db.execute("SELECT last_seen_at FROM web_sessions").fetchone()[0]


def test_a_session_used_now_and_then_lives_on_and_an_idle_one_ends(client, db, clock):
    login(client, "office")
    for _step in range(5):  # 5 x 110 minutes: far past the 2 hours, but never idle for them
        clock(minutes=110)
        assert signed_in(client)
    clock(minutes=121)
    assert not signed_in(client)
    assert client.get("/problems", follow_redirects=False).headers["location"].startswith(
        "/login")


def test_the_default_idle_time_is_two_hours(client, db, clock):
    login(client, "office")
    clock(minutes=119, seconds=59)
    assert signed_in(client)
    clock(minutes=120)
    assert signed_in(client) is False


def test_the_last_use_is_written_at_most_once_a_minute(client, db, clock):
    login(client, "office")
    started = last_seen(db)
    clock(seconds=59)
    assert signed_in(client)
    assert last_seen(db) == started
    clock(seconds=1)
    assert signed_in(client)
    assert last_seen(db) == to_iso(auth.utcnow())


def test_the_idle_time_is_a_setting(client, db, clock):
    db["settings"].insert({"key": "session_idle_minutes", "value": "30"}, replace=True)
    login(client, "office")
    clock(minutes=29)
    assert signed_in(client)
    clock(minutes=31)
    assert not signed_in(client)


@pytest.mark.parametrize("value", ["0", "-5", "abc", "100000", "4"])
def test_an_unusable_idle_setting_falls_back_to_two_hours(client, db, clock, value):
    db["settings"].insert({"key": "session_idle_minutes", "value": value}, replace=True)
    login(client, "office")
    clock(minutes=119)
    assert signed_in(client)


def test_an_idle_session_does_not_reach_the_session_api(client, db, clock):
    login(client, "field1")
    assert client.get("/api/session").status_code == 200
    clock(hours=2, minutes=1)
    response = client.get("/api/session")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "session_required"


def test_a_form_posted_into_an_idle_session_gets_the_sign_in_page(client, db, clock):
    login(client, "office")
    token = page_token(client)
    clock(hours=3)
    response = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 401
    assert 'action="/login"' in response.text


# Cache-Control --------------------------------------------------------------------------


def test_every_page_and_api_answer_says_no_store(login_as, world):
    office = login_as("office")
    admin = login_as("admin")
    token = api_login(office, "field1")
    bearer = {"Authorization": f"Bearer {token}"}
    answers = [
        office.get("/"),
        office.get("/problems?q=幸福社区"),
        office.get(f"/problems/{world.problems['p3']}"),
        office.get(f"/visits/{world.visits['v1']}"),
        office.get("/problems/export.csv"),
        office.get("/problems/export.xlsx"),
        office.get("/account/password"),
        office.get("/stats"),
        office.get("/admin/users"),  # a 403 page
        office.get("/no-such-page"),
        admin.get("/admin/users"),
        office.get("/api/me", headers=bearer),
        office.get("/api/sync/pull", headers=bearer,
                   params={"client_id": "00000000-0000-4000-8000-000000000999"}),
        office.get("/api/me"),  # a 401
        office.get("/api/photos/" + "0" * 64, headers=bearer),
        office.get("/login"),
    ]
    for response in answers:
        assert response.headers.get("cache-control") == "no-store", (
            response.request.url, response.status_code, response.headers.get("cache-control"))


def test_static_files_and_the_app_shell_keep_their_own_rules(client):
    for url in ("/static/css/office.css", "/static/app/home.js", "/static/js/login.js"):
        response = client.get(url)
        assert response.status_code == 200
        assert "no-store" not in response.headers.get("cache-control", "")
    assert client.get("/app/").headers["cache-control"] == "no-cache"
