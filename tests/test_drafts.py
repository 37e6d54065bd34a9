"""A form posted after its session expired: sign in again and find what was typed."""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
import urllib.parse

import pytest
from starlette.datastructures import FormData

from server import drafts
from server.app import create_app
from tests.conftest import PASSWORD, csrf_of, login

NOTE = "已电话联系物业经理，明天上午派人检修二次供水泵房"


def expire_sessions(db):
    db.execute("UPDATE web_sessions SET expires_at = '2020-01-01T00:00:00+00:00'")
    db.conn.commit()


def reminders(db) -> int:
    return db.execute("SELECT count(*) FROM problem_events WHERE kind = 'remind'").fetchone()[0]


def hidden_fields(page: str) -> list[tuple[str, str]]:
    return [(name, html.unescape(value))
            for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                                          page)]


def sign_in_from(client, page_html: str, username: str, password: str = PASSWORD):
    """Submit the sign-in page as a browser would: its hidden fields and the user's input."""
    fields = [(n, v) for n, v in hidden_fields(page_html) if n != "csrf_token"]
    body = urllib.parse.urlencode([*fields, ("username", username), ("password", password),
                                   ("csrf_token", csrf_of(client))])
    return client.post("/login", content=body, follow_redirects=False,
                       headers={"content-type": "application/x-www-form-urlencoded"})


@pytest.fixture
def expired(app, db, world):
    """An office user typed a note into 催办 on p1, and their session expired meanwhile."""
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        assert login(client, "office").status_code == 303
        expire_sessions(db)
        url = f"/problems/{world.problems['p1']}/actions/remind"
        answer = client.post(url, data={"note": NOTE, "csrf_token": csrf_of(client)},
                             follow_redirects=False)
        yield client, answer


def test_an_expired_session_answers_the_sign_in_page_carrying_the_text(expired, world, db):
    _client, answer = expired
    assert answer.status_code == 401
    assert 'action="/login"' in answer.text
    assert "您填写的内容已保留" in answer.text
    fields = dict(hidden_fields(answer.text))
    assert fields["next"] == f"/problems/{world.problems['p1']}"
    assert fields["draft.note"] == NOTE
    assert "draft.csrf_token" not in fields
    assert fields["draft_owner"] == str(world.users["office"])
    assert reminders(db) == 0


def test_after_signing_in_the_form_is_open_with_the_text(expired, world, db):
    client, answer = expired
    signed_in = sign_in_from(client, answer.text, "office")
    assert signed_in.status_code == 303
    location = signed_in.headers["location"]
    assert location.startswith(f"/problems/{world.problems['p1']}?draft=")
    page = client.get(location)
    assert page.status_code == 200
    assert re.search(r'<details class="action" aria-labelledby="action-remind" open>', page.text)
    assert f">{NOTE}</textarea>" in page.text
    assert "已恢复您登录前填写的内容" in page.text
    # Only once: the same address later shows the plain page.
    again = client.get(location)
    assert NOTE not in again.text
    # Nothing was done on the user's behalf.
    assert reminders(db) == 0


def test_someone_else_signing_in_does_not_get_the_draft(expired, world):
    client, answer = expired
    signed_in = sign_in_from(client, answer.text, "office_d1")
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == f"/problems/{world.problems['p1']}"
    page = client.get(signed_in.headers["location"])
    assert NOTE not in page.text


def test_a_draft_key_is_for_its_owner_alone(app, world, login_as, expired):
    client, answer = expired
    location = sign_in_from(client, answer.text, "office").headers["location"]
    other = login_as("office_d1").get(location)
    assert NOTE not in other.text
    # The look by someone else discarded it.
    assert NOTE not in client.get(location).text


def test_a_wrong_password_keeps_the_draft_on_the_sign_in_page(expired, world):
    client, answer = expired
    refused = sign_in_from(client, answer.text, "office", "wrong-password")
    assert refused.status_code == 401
    assert dict(hidden_fields(refused.text))["draft.note"] == NOTE
    location = sign_in_from(client, refused.text, "office").headers["location"]
    assert f">{NOTE}</textarea>" in client.get(location).text


def test_a_post_failing_the_csrf_check_carries_nothing(app, db, world):
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        login(client, "office")
        expire_sessions(db)
        answer = client.post(f"/problems/{world.problems['p1']}/actions/remind",
                             data={"note": NOTE, "csrf_token": "forged"}, follow_redirects=False)
        assert answer.status_code == 401
        assert NOTE not in answer.text and "draft_path" not in answer.text


def test_with_no_session_at_all_the_draft_goes_to_whoever_signs_in_there(app, world):
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        answer = client.post(f"/problems/{world.problems['p1']}/actions/remind",
                             data={"note": NOTE, "csrf_token": csrf_of(client)},
                             follow_redirects=False)
        assert answer.status_code == 401
        assert dict(hidden_fields(answer.text))["draft_owner"] == ""
        location = sign_in_from(client, answer.text, "office").headers["location"]
        assert f">{NOTE}</textarea>" in client.get(location).text


def test_another_page_post_returns_to_its_form_with_the_text(app, db):
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        login(client, "admin")
        expire_sessions(db)
        units = db["units"].count
        answer = client.post("/admin/units/new", data={"name": "新成立的应急管理局",
                                                       "csrf_token": csrf_of(client)},
                             headers={"referer": "http://testserver/admin/units/new"},
                             follow_redirects=False)
        assert answer.status_code == 401
        assert dict(hidden_fields(answer.text))["next"] == "/admin/units/new"
        location = sign_in_from(client, answer.text, "admin").headers["location"]
        assert location.startswith("/admin/units/new?draft=")
        page = client.get(location)
        assert 'value="新成立的应急管理局"' in page.text
        assert db["units"].count == units  # shown again, not saved
        assert "新成立的应急管理局" not in client.get(location).text  # once


@pytest.mark.parametrize("posted, referer, expected", [
    ("/problems/abc/actions/merge", None, "/problems/abc"),
    ("/admin/units/3", "https://evil.example//evil.example/x", "//evil.example/x"),
    ("/admin/units/3", None, "/"),
    ("/logout", "http://testserver/work?queue=intake", "/work?queue=intake"),
])
def test_return_path(posted, referer, expected):
    assert drafts.return_path(posted, referer) == expected


def test_typed_fields_leave_out_the_token_and_passwords():
    form = FormData([("csrf_token", "t"), ("password", "p"), ("note", "说明"),
                     ("helper_unit_ids", "1"), ("helper_unit_ids", "2")])
    assert drafts.typed_fields(form) == [("note", "说明"), ("helper_unit_ids", "1"),
                                         ("helper_unit_ids", "2")]


def test_a_draft_is_taken_once_by_its_owner_only(db, world):
    owner, other = world.users["office"], world.users["office_d1"]
    key = drafts.put(db, owner, "/problems/x/actions/remind", [("note", NOTE)])
    assert drafts.take(db, key, other) is None
    assert drafts.take(db, key, owner) is None  # someone else's look discarded it
    key = drafts.put(db, owner, "/problems/x/actions/remind", [("note", NOTE), ("note", "又")])
    draft = drafts.take(db, key, owner)
    assert draft.problem_action("x") == "remind"
    assert draft.fields == (("note", NOTE), ("note", "又"))
    assert drafts.take(db, key, owner) is None
    assert drafts.take(db, None, owner) is None


def test_only_the_key_s_hash_is_stored(db, world):
    key = drafts.put(db, world.users["office"], "/p", [("note", NOTE)])
    (stored,) = [row["key_hash"] for row in db.query("SELECT key_hash FROM form_drafts")]
    assert stored == hashlib.sha256(key.encode()).hexdigest() and key not in stored


def test_an_expired_draft_is_not_given_and_goes_when_a_new_one_comes(db, world):
    owner = world.users["office"]
    old = drafts.put(db, owner, "/p", [("note", "旧")])
    kept = drafts.put(db, owner, "/p", [("note", "留")])
    age_draft(db, old, drafts.LIFETIME + dt.timedelta(seconds=1))
    age_draft(db, kept, drafts.LIFETIME + dt.timedelta(seconds=1))
    assert drafts.take(db, kept, owner) is None
    drafts.put(db, world.users["admin"], "/p", [("note", "新")])
    assert db["form_drafts"].count == 1  # the expired one went, whoever's it was


def test_an_owner_keeps_the_newest_drafts_up_to_the_cap(db, world, monkeypatch):
    monkeypatch.setattr(drafts, "MAX_PER_OWNER", 3)
    owner, other = world.users["office"], world.users["admin"]
    others = drafts.put(db, other, "/p", [("note", "别人的")])
    keys = [drafts.put(db, owner, "/p", [("note", str(n))]) for n in range(5)]
    assert db.execute("SELECT count(*) FROM form_drafts WHERE owner_id = ?",
                      [owner]).fetchone()[0] == 3
    assert [drafts.take(db, key, owner) is not None for key in keys] == [False, False,
                                                                         True, True, True]
    assert drafts.take(db, others, other) is not None


def test_a_draft_stored_by_one_process_is_taken_on_another(db_path, photos_folder, world, db):
    """Two app instances over one database file, as two workers behind one address."""
    from starlette.testclient import TestClient

    url = f"/problems/{world.problems['p1']}/actions/remind"
    with (TestClient(create_app(db_path, photos=photos_folder)) as first,
          TestClient(create_app(db_path, photos=photos_folder)) as second):
        login(first, "office")
        expire_sessions(db)
        answer = first.post(url, data={"note": NOTE, "csrf_token": csrf_of(first)},
                            follow_redirects=False)
        signed_in = sign_in_from(first, answer.text, "office")
        second.cookies = first.cookies
        page = second.get(signed_in.headers["location"])
        assert f">{NOTE}</textarea>" in page.text
        assert NOTE not in first.get(signed_in.headers["location"]).text  # taken once


def age_draft(db, key: str, by: dt.timedelta) -> None:
    stamp = (dt.datetime.now(dt.UTC) - by).isoformat(timespec="microseconds")
    db.execute("UPDATE form_drafts SET stored_at = ? WHERE key_hash = ?",
               [stamp, hashlib.sha256(key.encode()).hexdigest()])
    db.conn.commit()


def test_carried_text_is_escaped_on_the_sign_in_page(app, db, world):
    from starlette.testclient import TestClient

    typed = '"><script>alert(1)</script>'
    with TestClient(app) as client:
        login(client, "office")
        expire_sessions(db)
        answer = client.post(f"/problems/{world.problems['p1']}/actions/remind",
                             data={"note": typed, "csrf_token": csrf_of(client)},
                             follow_redirects=False)
        assert "<script>alert(1)" not in answer.text
        location = sign_in_from(client, answer.text, "office").headers["location"]
        page = client.get(location).text
        assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
