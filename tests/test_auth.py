"""Signing in and out, on the web and from phones."""

from __future__ import annotations

from starlette.testclient import TestClient

from server import auth
from server.i18n import gettext as _
from tests.conftest import PASSWORD, api_login, csrf_of, login, post_form


def test_login_sets_a_protected_session_cookie(client):
    response = login(client, "office")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("fl_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie  # plain HTTP in tests
    assert client.get("/").status_code == 200


def test_session_cookie_is_secure_behind_https(app, world):
    with TestClient(app, base_url="https://ledger.example") as client:
        response = login(client, "office")
        cookie = next(
            h for h in response.headers.get_list("set-cookie") if h.startswith("fl_session=")
        )
        assert "Secure" in cookie


def test_session_token_is_stored_only_hashed(client, db):
    login(client, "office")
    token = client.cookies["fl_session"]
    stored = [row["token_hash"] for row in db["web_sessions"].rows]
    assert token not in stored
    assert auth.token_hash(token) in stored


def test_wrong_password_and_unknown_user_get_the_same_answer(client):
    wrong = login(client, "office", "not-the-password")
    unknown = login(client, "nobody-here", "not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    message = _("login.bad_credentials")
    assert message in wrong.text and message in unknown.text
    assert 'value="office"' in wrong.text  # the username is kept


def test_disabled_account_cannot_sign_in(client, db, world):
    db["users"].update(world.users["office"], {"active": 0})
    response = login(client, "office")
    assert response.status_code == 401
    assert _("login.bad_credentials") in response.text


def test_repeated_failures_lock_the_username_for_a_while(client):
    for _attempt in range(auth.MAX_FAILURES - 1):
        assert login(client, "office", "wrong").status_code == 401
    locked = login(client, "office", "wrong")
    assert locked.status_code == 429
    # Even the right password is refused while locked.
    assert login(client, "office").status_code == 429
    # Unknown usernames lock the same way, so locking reveals nothing.
    for _attempt in range(auth.MAX_FAILURES):
        response = login(client, "ghost", "wrong")
    assert response.status_code == 429


def test_lock_does_not_affect_other_users(client):
    for _attempt in range(auth.MAX_FAILURES):
        login(client, "office", "wrong")
    assert login(client, "leader").status_code == 303


def test_success_clears_the_failure_count(client, db):
    login(client, "office", "wrong")
    assert db["login_attempts"].count == 1
    assert login(client, "office").status_code == 303
    assert db["login_attempts"].count == 0


def test_login_without_fields_is_a_form_error(client):
    response = client.post("/login", data={"csrf_token": csrf_of(client)})
    assert response.status_code == 400
    assert _("validation.required", label=_("login.username")) in response.text


def test_login_requires_csrf_token(client, db):
    response = client.post("/login", data={"username": "office", "password": PASSWORD})
    assert response.status_code == 403
    assert db["web_sessions"].count == 0


def test_next_parameter_is_followed_only_within_the_site(client):
    token = csrf_of(client)
    for target, expected in [
        ("/problems", "/problems"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil", "/"),
    ]:
        client.cookies.delete("fl_session")
        response = client.post(
            "/login",
            data={"username": "office", "password": PASSWORD, "csrf_token": token, "next": target},
            follow_redirects=False,
        )
        token = client.cookies["fl_csrf"]
        assert response.headers["location"] == expected


def test_pages_redirect_anonymous_users_to_login(client):
    response = client.get("/problems?status=closed", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/problems%3Fstatus%3Dclosed"


def test_logout_ends_the_session(client, db):
    login(client, "office")
    token = client.cookies["fl_session"]
    response = post_form(client, "/logout")
    assert response.status_code == 303
    assert db["web_sessions"].count == 0
    client.cookies.set("fl_session", token)
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_logout_needs_csrf(client, db):
    login(client, "office")
    response = client.post("/logout", data={}, follow_redirects=False)
    assert response.status_code == 403
    assert db["web_sessions"].count == 1


def test_expired_session_is_refused(client, db):
    login(client, "office")
    db.execute("UPDATE web_sessions SET expires_at = '2000-01-01T00:00:00+00:00'")
    db.conn.commit()
    assert client.get("/", follow_redirects=False).status_code == 303


# Phones -------------------------------------------------------------------


def test_api_login_returns_a_device_token_stored_hashed(client, db, world):
    response = client.post(
        "/api/login", json={"username": "field1", "password": PASSWORD, "device_name": "红米 Note"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["username"] == "field1"
    assert body["user"]["roles"] == ["field"]
    device = db["devices"].get(body["device_id"])
    assert device["name"] == "红米 Note"
    assert device["token_hash"] == auth.token_hash(body["token"])
    assert body["token"] not in str(list(db["devices"].rows))


def test_api_me_with_bearer_token(client):
    token = api_login(client, "field1")
    response = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["user"]["area"]["name"] == "杏花街道"


def test_api_errors_are_json_with_codes(client):
    cases = [
        ({}, "unauthorized"),
        ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
        ({"Authorization": "Basic abc"}, "unauthorized"),
        ({"Authorization": "Bearer "}, "unauthorized"),
    ]
    for headers, code in cases:
        response = client.get("/api/me", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["message"]


def test_api_login_bad_input(client, db):
    cases = [
        (b"not json", 400, "bad_json"),
        (b"[1, 2]", 400, "bad_json"),
        (b'{"username": "field1"}', 422, "invalid_input"),
        (b'{"username": 5, "password": "' + b"x" * 500 + b'"}', 422, "invalid_input"),
    ]
    for body, status, code in cases:
        response = client.post(
            "/api/login", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == status, body
        assert response.json()["error"]["code"] == code
    assert db["devices"].count == 0


def test_api_login_wrong_password_and_lockout(client, db):
    for _attempt in range(auth.MAX_FAILURES - 1):
        response = client.post("/api/login", json={"username": "field1", "password": "nope"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "bad_credentials"
    response = client.post("/api/login", json={"username": "field1", "password": "nope"})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "locked_out"
    assert db["devices"].count == 0


def test_api_logout_revokes_only_this_device(client):
    first = api_login(client, "field1")
    second = api_login(client, "field1")
    response = client.post("/api/logout", headers={"Authorization": f"Bearer {first}"})
    assert response.status_code == 200
    refused = client.get("/api/me", headers={"Authorization": f"Bearer {first}"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "device_revoked"
    assert client.get("/api/me", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_disabled_user_token_stops_working(client, db, world):
    token = api_login(client, "field1")
    db["users"].update(world.users["field1"], {"active": 0})
    response = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "account_disabled"


def test_device_last_seen_is_recorded(client, db):
    token = api_login(client, "field1")
    db.execute("UPDATE devices SET last_seen_at = '2020-01-01T00:00:00+00:00'")
    db.conn.commit()
    client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert next(db["devices"].rows)["last_seen_at"] > "2020-01-01"


# Where a sign-in leads: the field app for a field-only official on a phone -----------

PHONE_UA = ("Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/120.0 Mobile Safari/537.36")
PC_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
         " Chrome/120.0 Safari/537.36")


def _sign_in_from(client, username: str, screen_width: str | None = None, agent: str = PC_UA,
                  next_url: str | None = None):
    data = {"username": username, "password": PASSWORD, "csrf_token": csrf_of(client)}
    if screen_width is not None:
        data["screen_width"] = screen_width
    if next_url is not None:
        data["next"] = next_url
    return client.post("/login", data=data, headers={"User-Agent": agent},
                       follow_redirects=False)


def test_login_page_links_to_the_field_app(client):
    page = client.get("/login").text
    assert f'<a href="/app/">{_("login.field_app")}</a>' in page
    assert _("login.field_app") == "手机走访 App"
    assert 'name="screen_width"' in page


def test_field_only_official_on_a_phone_lands_in_the_field_app(client):
    response = _sign_in_from(client, "field1", screen_width="390")
    assert response.status_code == 303
    assert response.headers["location"] == "/app/"
    assert "fl_session" in client.cookies  # the office pages stay open to them too


def test_without_script_a_mobile_user_agent_counts_as_a_phone(client):
    response = _sign_in_from(client, "field1", agent=PHONE_UA)
    assert response.headers["location"] == "/app/"


def test_the_measured_screen_wins_over_the_user_agent(client):
    response = _sign_in_from(client, "field1", screen_width="1080", agent=PHONE_UA)
    assert response.headers["location"] == "/"
    client.cookies.delete("fl_session")
    response = _sign_in_from(client, "field1", screen_width="360", agent=PC_UA)
    assert response.headers["location"] == "/app/"


def test_field_only_official_on_a_pc_gets_the_office_home(client):
    response = _sign_in_from(client, "field1", screen_width="1920")
    assert response.headers["location"] == "/"
    client.cookies.delete("fl_session")
    assert _sign_in_from(client, "field1").headers["location"] == "/"


def test_other_roles_on_a_phone_get_the_office_home(client, db, world):
    for username in ("office", "handler1", "leader", "admin"):
        client.cookies.delete("fl_session")
        assert _sign_in_from(client, username, "390", PHONE_UA).headers["location"] == "/"
    db["users"].update(world.users["field1"], {"roles": "field,office"})
    client.cookies.delete("fl_session")
    assert _sign_in_from(client, "field1", "390", PHONE_UA).headers["location"] == "/"


def test_a_page_asked_for_before_sign_in_wins_over_the_field_app(client, world):
    target = f"/visits/{world.visits['v1']}"
    response = _sign_in_from(client, "field1", "390", PHONE_UA, next_url=target)
    assert response.headers["location"] == target


def test_a_nonsense_screen_width_falls_back_to_the_user_agent(client):
    for width in ("", "abc", "-5", "3.5e2"):
        client.cookies.delete("fl_session")
        assert _sign_in_from(client, "field1", width, PC_UA).headers["location"] == "/"
    client.cookies.delete("fl_session")
    assert _sign_in_from(client, "field1", "wide", PHONE_UA).headers["location"] == "/app/"


# The field app signed in by the browser's web session (no second password) ------------


def _session_device(client: TestClient, csrf: str | bytes | None = None, json=None, **headers):
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return client.post(
        "/api/session/device", json={"device_name": "红米 Note"} if json is None else json,
        headers=headers,
    )


def _csrf_from_session(client: TestClient) -> str:
    response = client.get("/api/session")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()["csrf_token"]


def test_the_web_session_tells_the_app_who_and_its_csrf_token(client, db):
    login(client, "field1")
    response = client.get("/api/session")
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["username"] == "field1"
    assert body["csrf_token"] == client.cookies["fl_csrf"]
    assert body["signed_in_at"] == next(db["web_sessions"].rows)["created_at"]
    assert response.headers["cache-control"] == "no-store"


def test_a_web_session_gets_a_device_token_as_the_password_sign_in_does(client, db, world):
    login(client, "field1")
    response = _session_device(client, _csrf_from_session(client),
                               **{"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "device_id", "user"}
    assert body["user"]["username"] == "field1" and body["user"]["roles"] == ["field"]
    device = db["devices"].get(body["device_id"])
    assert device["user_id"] == world.users["field1"]
    assert device["name"] == "红米 Note"
    assert device["token_hash"] == auth.token_hash(body["token"])
    assert device["created_at"] and device["last_seen_at"] and device["revoked_at"] is None
    # The token is an ordinary device token: it works without any cookie.
    with TestClient(client.app) as phone:
        me = phone.get("/api/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    assert me.json() == {"user": body["user"], "device_id": body["device_id"]}


def test_the_device_name_is_the_default_when_not_given_and_validated_when_given(client, db):
    login(client, "field1")
    csrf = _csrf_from_session(client)
    too_long = _session_device(client, csrf, json={"device_name": "x" * 61})
    assert too_long.status_code == 422
    assert too_long.json()["error"]["fields"]["device_name"]
    for body in (b"not json", b"[1]"):
        response = client.post("/api/session/device", content=body,
                               headers={"X-CSRF-Token": csrf, "content-type": "application/json"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "bad_json"
    assert db["devices"].count == 0
    response = _session_device(client, csrf, json={})
    assert response.status_code == 201
    assert db["devices"].get(response.json()["device_id"])["name"] == _("auth.device_name_default")


def test_a_sign_in_body_has_text_fields_and_no_others(client, db):
    # As the OpenAPI description says (additionalProperties false, strings):
    # a JSON body is not a form, whose values are all text.
    login(client, "field1")
    csrf = _csrf_from_session(client)
    sign_in = {"username": "field1", "password": PASSWORD}
    cases = [
        ("/api/login", {**sign_in, "device": "x"}, "device"),
        ("/api/login", {**sign_in, "device_name": 7}, "device_name"),
        ("/api/login", {**sign_in, "device_name": None}, "device_name"),
        ("/api/login", {"username": ["field1"], "password": PASSWORD}, "username"),
        ("/api/session/device", {"device_name": ["a"]}, "device_name"),
        ("/api/session/device", {"name": "x"}, "name"),
    ]
    for url, body, field in cases:
        response = client.post(url, json=body, headers={"X-CSRF-Token": csrf})
        assert response.status_code == 422, (url, body, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_input" and error["fields"][field], (url, body)
    assert db["devices"].count == 0


def test_without_a_web_session_the_exchange_is_refused(client, db):
    csrf = csrf_of(client)
    for response in (client.get("/api/session"), _session_device(client, csrf)):
        assert response.status_code == 401
        assert response.json()["error"] == {
            "code": "session_required", "message": _("auth.session_required")}
        assert response.headers["cache-control"] == "no-store"
    # A device token is not a web session.
    token = api_login(client, "field1")
    response = _session_device(client, csrf, Authorization=f"Bearer {token}")
    assert response.status_code == 401
    assert db["devices"].count == 1


def test_an_expired_or_ended_web_session_is_refused(client, db):
    login(client, "field1")
    csrf = _csrf_from_session(client)
    db.execute("UPDATE web_sessions SET expires_at = '2000-01-01T00:00:00+00:00'")
    db.conn.commit()
    response = _session_device(client, csrf)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "session_required"
    login(client, "field1")
    csrf = csrf_of(client)
    post_form(client, "/logout")
    assert _session_device(client, csrf).status_code == 401
    assert db["devices"].count == 0


def test_the_exchange_needs_the_csrf_token(client, db):
    login(client, "field1")
    csrf = _csrf_from_session(client)
    for response in (
        _session_device(client),  # no token
        _session_device(client, "not-the-token"),
        _session_device(client, "令牌".encode()),  # not ASCII: refused, not a crash
        client.post("/api/session/device", data={"csrf_token": csrf}),  # as a form field
    ):
        assert response.status_code == 403
        assert response.json()["error"] == {"code": "csrf", "message": _("errors.csrf")}
        assert response.headers["cache-control"] == "no-store"
    assert db["devices"].count == 0


def test_the_exchange_refuses_other_sites_even_with_the_token(client, db):
    login(client, "field1")
    csrf = _csrf_from_session(client)
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain
        {"Sec-Fetch-Site": "none"},
        {"Origin": "https://evil.example"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"},
    ):
        response = _session_device(client, csrf, **headers)
        assert response.status_code == 403, headers
        assert response.json()["error"]["code"] == "csrf"
    assert db["devices"].count == 0
    assert client.get("/api/session/device").status_code == 405  # a POST only


def test_an_inactive_user_gets_no_device_token(client, db, world):
    login(client, "field1")
    csrf = _csrf_from_session(client)
    db["users"].update(world.users["field1"], {"active": 0})
    for response in (client.get("/api/session"), _session_device(client, csrf)):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "session_required"
    assert db["devices"].count == 0


def test_a_role_that_does_not_capture_gets_no_device_token(login_as, db):
    for username in ("handler1", "admin"):
        client = login_as(username)
        csrf = csrf_of(client)
        for response in (client.get("/api/session"), _session_device(client, csrf)):
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "forbidden"
            assert response.headers["cache-control"] == "no-store"
    assert db["devices"].count == 0


def test_new_devices_from_a_web_session_are_limited_like_sign_in(client, db):
    login(client, "field1")
    csrf = _csrf_from_session(client)
    api_login(client, "field1")  # password sign-ins count too
    for _attempt in range(auth.MAX_SESSION_DEVICES - 1):
        assert _session_device(client, csrf).status_code == 201
    refused = _session_device(client, csrf)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_devices"
    assert db["devices"].count == auth.MAX_SESSION_DEVICES
    # Devices older than the window no longer count.
    db.execute("UPDATE devices SET created_at = '2000-01-01T00:00:00+00:00'")
    db.conn.commit()
    assert _session_device(client, csrf).status_code == 201
