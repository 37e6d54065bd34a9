"""A user changes their own password (server/views/account.py): on the office page
/account/password and from the field app (POST /api/account/password)."""

from __future__ import annotations

import contextlib

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from server import accounts, auth
from server.i18n import gettext as _
from tests.conftest import PASSWORD, api_login, csrf_of, login, post_form

NEW = "Qingchuan-2026-走访"
LABELS = {name: _(field.label) for name, field in accounts.CHANGE_SCHEMA.by_name.items()}


def change(current=PASSWORD, new=NEW, repeat=None) -> dict:
    return {"current_password": current, "new_password": new,
            "new_password_repeat": new if repeat is None else repeat}


def password_hash(db, world, username="field1") -> str:
    return db["users"].get(world.users[username])["password_hash"]


def sessions_of(db, world, username="field1") -> int:
    return db.execute("SELECT count(*) FROM web_sessions WHERE user_id = ?",
                      [world.users[username]]).fetchone()[0]


def assert_beside(response, field: str, message: str) -> None:
    assert f'<p class="error" id="e-{field}">{escape(message)}</p>' in response.text, field


# The office page ---------------------------------------------------------------------


def test_the_page_is_linked_from_every_page_and_has_the_three_fields(login_as):
    browser = login_as("handler1")
    assert 'href="/account/password"' in browser.get("/").text
    page = browser.get("/account/password")
    assert page.status_code == 200
    for name in ("current_password", "new_password", "new_password_repeat"):
        assert f'name="{name}"' in page.text
    assert 'autocomplete="current-password"' in page.text
    assert 'name="csrf_token"' in page.text


def test_a_change_keeps_this_session_and_ends_the_others(app, login_as, db, world):
    browser = login_as("field1")
    other = login_as("field1")
    phone = api_login(browser, "field1")
    assert sessions_of(db, world) == 2

    response = post_form(browser, "/account/password", change())

    assert response.status_code == 303
    assert response.headers["location"] == "/account/password?done=1"
    assert _("account.password.done") in browser.get(response.headers["location"]).text
    assert auth.verify_password(password_hash(db, world), NEW)
    assert sessions_of(db, world) == 1
    assert browser.get("/", follow_redirects=False).status_code == 200
    assert other.get("/", follow_redirects=False).status_code == 303  # to the sign-in page
    # The phone stays signed in.
    assert browser.get("/api/me", headers={"Authorization": f"Bearer {phone}"}).status_code == 200
    with TestClient(app) as fresh:
        assert login(fresh, "field1").status_code == 401
        assert login(fresh, "field1", NEW).status_code == 303


@pytest.mark.parametrize(("form", "field", "message"), [
    (change(current=""), "current_password",
     _("validation.required", label=LABELS["current_password"])),
    (change(new="", repeat=""), "new_password",
     _("validation.required", label=LABELS["new_password"])),
    (change(repeat=""), "new_password_repeat",
     _("validation.required", label=LABELS["new_password_repeat"])),
    (change(new="short", repeat="short"), "new_password",
     _("validation.too_short", label=LABELS["new_password"], min=accounts.MIN_PASSWORD_LENGTH)),
    (change(new="x" * 129), "new_password",
     _("validation.too_long", label=LABELS["new_password"], max=accounts.MAX_PASSWORD_LENGTH)),
    (change(new="woaini1314"), "new_password", _("account.password.too_common")),
    (change(new="5201314520"), "new_password", _("account.password.too_common")),
    (change(new=PASSWORD), "new_password", _("account.password.same_as_current")),
    (change(repeat=NEW + "x"), "new_password_repeat", _("account.password.mismatch")),
    (change(current="not-my-password"), "current_password",
     _("account.password.wrong_current")),
])
def test_bad_input_is_refused_beside_its_field_and_changes_nothing(
    login_as, db, world, form, field, message
):
    browser = login_as("field1")
    other = login_as("field1")
    before = password_hash(db, world)
    response = post_form(browser, "/account/password", form)
    assert response.status_code == 400
    assert_beside(response, field, message)
    assert _("common.form_errors") in response.text
    assert password_hash(db, world) == before
    assert sessions_of(db, world) == 2
    assert other.get("/", follow_redirects=False).status_code == 200
    # What was typed is never sent back.
    for value in form.values():
        if len(value) >= 8:
            assert f'value="{value}"' not in response.text


def test_the_username_is_refused_whatever_its_case(login_as, db, world):
    browser = login_as("office_d1")
    before = password_hash(db, world, "office_d1")
    response = post_form(browser, "/account/password", change(new="Office_D1"))
    assert response.status_code == 400
    assert_beside(response, "new_password", _("account.password.same_as_username"))
    assert password_hash(db, world, "office_d1") == before


def test_every_problem_is_said_at_once(login_as):
    browser = login_as("field1")
    response = post_form(browser, "/account/password",
                         {"current_password": "", "new_password": "88888888",
                          "new_password_repeat": ""})
    assert_beside(response, "current_password",
                  _("validation.required", label=LABELS["current_password"]))
    assert_beside(response, "new_password", _("account.password.too_common"))
    assert_beside(response, "new_password_repeat",
                  _("validation.required", label=LABELS["new_password_repeat"]))


def test_a_wrong_current_password_counts_as_a_failed_sign_in(login_as, db, world):
    browser = login_as("field1")
    before = password_hash(db, world)
    for _attempt in range(auth.MAX_FAILURES - 1):
        response = post_form(browser, "/account/password", change(current="guess-guess"))
        assert response.status_code == 400
    response = post_form(browser, "/account/password", change(current="guess-guess"))
    assert response.status_code == 429
    # Locked: not even the right password is checked now.
    response = post_form(browser, "/account/password", change())
    assert response.status_code == 429
    assert _("login.locked_out", minutes=15)[:6] in response.text
    assert password_hash(db, world) == before


def test_the_change_needs_the_csrf_token(login_as, db, world):
    browser = login_as("field1")
    before = password_hash(db, world)
    response = browser.post("/account/password", data=change(), follow_redirects=False)
    assert response.status_code == 403
    response = browser.post("/account/password", data={**change(), "csrf_token": "forged"},
                            follow_redirects=False)
    assert response.status_code == 403
    assert password_hash(db, world) == before


def test_a_change_posted_after_the_session_ended_carries_no_password(client, db, world):
    login(client, "field1")
    token = csrf_of(client)
    db.execute("UPDATE web_sessions SET expires_at = '2000-01-01T00:00:00+00:00'")
    db.conn.commit()
    response = client.post("/account/password", data={**change(), "csrf_token": token})
    assert response.status_code == 401
    assert PASSWORD not in response.text and NEW not in response.text
    assert auth.verify_password(password_hash(db, world), PASSWORD)


# The field app's API ------------------------------------------------------------------


def api_change(client, token, body):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/account/password", json=body, headers=headers)


def test_the_app_changes_the_password_and_stays_signed_in(login_as, db, world):
    browser = login_as("field1")
    phone = login_as("field2")  # any client: the API goes by the token
    token = api_login(phone, "field1")
    response = api_change(phone, token, change())
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert response.headers["cache-control"] == "no-store"
    assert phone.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert auth.verify_password(password_hash(db, world), NEW)
    assert sessions_of(db, world) == 0  # the web sessions end
    assert browser.get("/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(("body", "field", "message"), [
    ({}, "current_password", _("validation.required", label=LABELS["current_password"])),
    (change(current="wrong-wrong"), "current_password", _("account.password.wrong_current")),
    (change(new="woaini1314"), "new_password", _("account.password.too_common")),
    (change(new="qq123456"), "new_password", _("account.password.too_common")),
    (change(new="FIELD1"), "new_password", None),  # too short
    (change(new="x" * 129), "new_password", None),  # too long
    (change(repeat="something-else"), "new_password_repeat", _("account.password.mismatch")),
    ({**change(), "new_password": 12345678}, None, None),
])
def test_the_app_gets_the_fields_errors_as_json_and_nothing_changes(
    client, db, world, body, field, message
):
    token = api_login(client, "field1")
    before = password_hash(db, world)
    response = api_change(client, token, body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    if field:
        assert field in error["fields"]
    if message:
        assert error["fields"][field] == message
    assert password_hash(db, world) == before


def test_the_app_api_refuses_bad_bodies_and_missing_tokens(client, db, world):
    token = api_login(client, "field1")
    before = password_hash(db, world)
    for content in (b"not json", b"[1, 2]", b'"text"'):
        response = client.post("/api/account/password", content=content, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "bad_json"
    response = api_change(client, None, change())
    assert response.status_code == 401
    response = api_change(client, "not-a-token", change())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    assert password_hash(db, world) == before


def test_the_app_api_is_locked_with_the_sign_in(client, db, world):
    token = api_login(client, "field1")
    before = password_hash(db, world)
    for _attempt in range(auth.MAX_FAILURES):
        api_change(client, token, change(current="guess-guess"))
    response = api_change(client, token, change())
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "locked_out"
    assert password_hash(db, world) == before


def test_the_api_is_described(client):
    spec = client.get("/api/openapi.json").json()
    operation = spec["paths"]["/api/account/password"]["post"]
    assert operation["security"] == [{"device": []}]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"current_password", "new_password", "new_password_repeat"}
    assert set(operation["responses"]) == {"200", "400", "401", "422", "429", "503"}


class AlwaysBusy(auth.PasswordChecks):
    @contextlib.contextmanager
    def admission(self, client=None):
        raise auth.Busy()
        yield


def test_when_the_password_checks_are_busy_nothing_is_checked_or_saved(app, login_as, db, world):
    browser = login_as("field1")
    token = api_login(browser, "field1")
    app.state.password_checks = AlwaysBusy(1, 0)
    before = password_hash(db, world)
    page = post_form(browser, "/account/password", change())
    assert page.status_code == 503
    assert page.headers["retry-after"] == str(auth.BUSY_RETRY_SECONDS)
    assert _("lockout.busy", seconds=auth.BUSY_RETRY_SECONDS) in page.text
    api = api_change(browser, token, change())
    assert api.status_code == 503
    assert api.json()["error"]["code"] == "busy"
    assert password_hash(db, world) == before
