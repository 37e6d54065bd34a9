"""The resident's tracking link (server/ledger/tracking.py) and its pages
(server/views/tracking.py): tokens, the page without login, the rating's rules, the rate
limit, the office's receipt and revocation, and the residents' own satisfaction rate."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest
from starlette.testclient import TestClient

from server import auth
from server.db import immediate
from server.errors import NotFound
from server.ledger import metrics, states, tracking, workflow
from server.validation import ValidationError
from tests.clock import clock  # noqa: F401 (fixture)
from tests.conftest import csrf_of

RESIDENT = {"resident_name": "张秀英", "resident_phone": "13812345678",
            "place": "幸福小区5号楼2单元"}
REPLY = "已更换第一网格小区路灯12盏，并督促物业每周巡查。"


@pytest.fixture
def linked(db, world):
    """p3 (handling, lead unit 住建局) with a resident and a tracking link: its token."""
    token = tracking.new_token()
    db["problems"].update(world.problems["p3"], {**RESIDENT,
                                                 "tracking_hash": tracking.hash_token(token)})
    return token


@pytest.fixture
def replied(linked, act):
    act("handler1", "p3", "reply", outcome="solved", note=REPLY)
    return linked


@pytest.fixture
def resident(app):
    with TestClient(app) as client:
        yield client


def rate(client: TestClient, token: str, **form):
    return client.post(f"/t/{token}/rating", data={"csrf_token": csrf_of(client), **form},
                       follow_redirects=False)


def rating_row(db, world) -> dict:
    row = db["problems"].get(world.problems["p3"])
    return {key: row[key] for key in ("resident_rating", "resident_comment",
                                      "resident_rated_at", "resident_rating_changed_at")}


def rating_events(db, world) -> list:
    return db.execute("SELECT note, data FROM problem_events WHERE problem_id = ?"
                      " AND kind = 'resident_rating' ORDER BY rowid",
                      [world.problems["p3"]]).fetchall()


NOTHING_RATED = {"resident_rating": None, "resident_comment": "", "resident_rated_at": None,
                 "resident_rating_changed_at": None}


# Tokens --------------------------------------------------------------------------------


def test_a_token_is_128_random_bits_in_22_url_safe_characters():
    tokens = {tracking.new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", token) for token in tokens)
    assert all(tracking.well_formed(token) for token in tokens)


def test_the_hash_is_the_sha256_hex_of_the_token():
    token = "q8Hn3-xY_aBcDeFgHiJkLm"
    assert tracking.hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert tracking.HASH_PATTERN.fullmatch(tracking.hash_token(token))


@pytest.mark.parametrize("token", ["", "short", "A" * 21, "A" * 23, "A" * 21 + "=",
                                   "A" * 21 + "/", "A" * 21 + "\n", "台" * 22])
def test_a_malformed_token_opens_nothing(db, token):
    assert not tracking.well_formed(token)
    assert tracking.find(db, token) is None


def test_find_opens_the_problem_of_its_hash_only(db, world, linked):
    assert tracking.find(db, linked)["id"] == world.problems["p3"]
    assert tracking.find(db, tracking.new_token()) is None
    db["problems"].update(world.problems["p3"], {"tracking_hash": None})
    assert tracking.find(db, linked) is None


def test_the_server_stores_no_token(db, world, linked):
    assert linked not in str(list(db.execute("SELECT * FROM problems")))


# The resident's view ------------------------------------------------------------------------


def test_the_view_before_the_reply_names_the_units_and_the_deadline(db, world, linked):
    db["problems"].update(world.problems["p3"], {
        "deadline": "2026-12-18", "deadline_provisional": 1,
        "helper_unit_ids": f"[{world.units['u2']}]"})
    view = tracking.resident_view(db, tracking.find(db, linked))
    assert view["ledger_no"] == "ZF-2026-000003"
    assert view["status_words"] == "承办单位正在办理。"
    assert (view["deadline"], view["deadline_provisional"]) == ("2026-12-18", True)
    assert (view["lead_unit"], view["helper_units"]) == ("住建局", ["水务集团"])
    assert view["reply"] == "" and not view["may_rate"]


def test_the_view_after_the_reply_shows_it_and_offers_the_rating(db, world, replied):
    view = tracking.resident_view(db, tracking.find(db, replied))
    assert view["reply"] == REPLY and view["may_rate"] and view["rating"] is None
    assert view["status_words"] == "承办单位已答复，正在审核办理结果。"


def test_every_status_has_the_residents_words():
    for status in states.ALL_STATES:
        assert tracking.status_words(status)


# Rating rules --------------------------------------------------------------------------------


def test_rating_before_the_reply_is_refused(db, world, linked):
    with pytest.raises(tracking.TrackingError) as refused, immediate(db):
        tracking.rate(db, linked, {"rating": "satisfied"})
    assert refused.value.status == 409
    assert refused.value.message == "承办单位答复后才能评价。"
    assert rating_row(db, world) == NOTHING_RATED


def test_rating_once_then_changing_within_seven_days_then_refused(db, world, replied, clock):  # noqa: F811
    clock(2026, 12, 7)
    with immediate(db):
        tracking.rate(db, replied, {"rating": "unsatisfied", "comment": "灯还是暗"})
    first = rating_row(db, world)
    assert first["resident_rating"] == "unsatisfied" and first["resident_comment"] == "灯还是暗"
    assert first["resident_rating_changed_at"] is None
    clock(2026, 12, 14, hour=9)  # 6 days 23 hours later
    with immediate(db):
        tracking.rate(db, replied, {"rating": "basically", "comment": ""})
    changed = rating_row(db, world)
    assert changed["resident_rating"] == "basically"
    assert changed["resident_rated_at"] == first["resident_rated_at"]
    assert changed["resident_rating_changed_at"] is not None
    clock(2026, 12, 14, hour=10)  # 7 days after the first rating
    with pytest.raises(tracking.TrackingError) as refused, immediate(db):
        tracking.rate(db, replied, {"rating": "satisfied"})
    assert refused.value.status == 403
    assert "7 天内修改" in refused.value.message
    assert rating_row(db, world) == changed
    events = rating_events(db, world)
    assert [e[0] for e in events] == ["灯还是暗", ""]
    assert '"changed": true' in events[1][1] and '"previous": "unsatisfied"' in events[1][1]


@pytest.mark.parametrize("form, field", [
    ({}, "rating"),
    ({"rating": ""}, "rating"),
    ({"rating": "very"}, "rating"),
    ({"rating": "satisfied", "comment": "字" * (tracking.COMMENT_MAX_LENGTH + 1)}, "comment"),
    ({"rating": "satisfied", "comment": "bad\x00byte"}, "comment"),
])
def test_a_bad_rating_is_refused_whole(db, world, replied, form, field):
    with pytest.raises(ValidationError) as refused, immediate(db):
        tracking.rate(db, replied, form)
    assert field in refused.value.errors
    assert rating_row(db, world) == NOTHING_RATED and rating_events(db, world) == []


def test_a_comment_at_the_limit_is_kept_whole(db, world, replied):
    comment = "好" * tracking.COMMENT_MAX_LENGTH
    with immediate(db):
        tracking.rate(db, replied, {"rating": "satisfied", "comment": comment})
    assert rating_row(db, world)["resident_comment"] == comment


def test_a_problem_solved_on_the_spot_may_be_rated_on_its_note(db, world, linked):
    db["problems"].update(world.problems["p3"], {"status": "callback", "solved_on_spot": 1})
    with immediate(db):
        workflow.append_event(db, db["problems"].get(world.problems["p3"]), "solved_on_spot",
                              world.users["field2"], "callback", "当场修好了路灯", {})
    view = tracking.resident_view(db, tracking.find(db, linked))
    assert view["reply"] == "当场修好了路灯" and view["may_rate"]


# Office: re-issue and revoke -------------------------------------------------------------------


def test_reissue_replaces_the_link_and_revoke_ends_it(db, world, linked):
    office = auth.load_user(db, world.users["office"])
    with immediate(db):
        token = tracking.reissue(db, office, world.problems["p3"])
    assert tracking.find(db, linked) is None
    assert tracking.find(db, token)["id"] == world.problems["p3"]
    with immediate(db):
        tracking.revoke(db, office, world.problems["p3"])
    assert tracking.find(db, token) is None
    with pytest.raises(states.TransitionError), immediate(db):
        tracking.revoke(db, office, world.problems["p3"])
    kinds = [row[0] for row in db.execute(
        "SELECT kind FROM problem_events WHERE problem_id = ? AND kind LIKE 'tracking_%'"
        " ORDER BY rowid", [world.problems["p3"]])]
    assert kinds == ["tracking_issued", "tracking_revoked"]


def test_an_office_outside_the_problems_area_cannot_touch_its_link(db, world, linked):
    office_d1 = auth.load_user(db, world.users["office_d1"])
    with pytest.raises(NotFound), immediate(db):
        tracking.reissue(db, office_d1, world.problems["p2"])  # district d2
    with pytest.raises(NotFound), immediate(db):
        tracking.revoke(db, office_d1, world.problems["p2"])


# Rate limit --------------------------------------------------------------------------------


def test_requests_are_limited_per_address_and_per_link(db, monkeypatch, clock):  # noqa: F811
    monkeypatch.setattr(tracking, "ADDRESS_LIMIT", 3)
    monkeypatch.setattr(tracking, "TOKEN_LIMIT", 2)
    clock(2026, 12, 7)
    token = tracking.new_token()
    for address in ("1.1.1.1", "2.2.2.2"):
        with immediate(db):
            tracking.count_request(db, address, token)
    with pytest.raises(tracking.RateLimited) as limited, immediate(db):
        tracking.count_request(db, "3.3.3.3", token)  # the link's third request
    assert limited.value.status == 429 and limited.value.extra["minutes"] == 10
    for _ in range(2):
        with immediate(db):
            tracking.count_request(db, "1.1.1.1", "malformed")
    with pytest.raises(tracking.RateLimited), immediate(db):
        tracking.count_request(db, "1.1.1.1", "malformed")  # the address's fourth
    clock(2026, 12, 7, hour=11)  # the window has passed
    with immediate(db):
        tracking.count_request(db, "1.1.1.1", token)
    assert db["tracking_hits"].count == 2  # the old ones deleted


# The pages ---------------------------------------------------------------------------------------


def test_the_page_shows_the_progress_without_personal_data(db, world, replied, resident):
    response = resident.get(f"/t/{replied}")
    assert response.status_code == 200
    html = response.text
    for shown in ("ZF-2026-000003", "承办单位已答复", "住建局", REPLY, "提交评价"):
        assert shown in html
    staff = [row[0] for row in db.execute("SELECT display_name FROM users")]
    for hidden in (*RESIDENT.values(), "138****5678", "张", *staff, world.problems["p3"]):
        assert hidden not in html, hidden
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "fl_session" not in response.cookies


def test_unknown_malformed_and_revoked_links_are_the_same_plain_404(db, world, linked,
                                                                     resident):
    bodies = set()
    for token in (tracking.new_token(), "malformed", "A" * 40):
        response = resident.get(f"/t/{token}")
        assert response.status_code == 404
        bodies.add(response.text)
    db["problems"].update(world.problems["p3"], {"tracking_hash": None})
    response = resident.get(f"/t/{linked}")
    assert response.status_code == 404
    bodies.add(response.text)
    assert len(bodies) == 1
    assert "链接不存在或已失效" in bodies.pop()


def test_rating_through_the_form_then_changing_it(db, world, replied, resident):
    response = rate(resident, replied, rating="satisfied", comment="感谢")
    assert response.status_code == 303
    assert response.headers["location"] == f"/t/{replied}?saved=1"
    page = resident.get(response.headers["location"]).text
    assert "评价已提交" in page and "您的评价：满意" in page and "修改评价" in page
    assert rate(resident, replied, rating="basically").status_code == 303
    assert rating_row(db, world)["resident_rating"] == "basically"
    assert len(rating_events(db, world)) == 2


def test_rating_before_the_reply_answers_409(db, world, linked, resident):
    response = rate(resident, linked, rating="satisfied")
    assert response.status_code == 409
    assert "承办单位答复后才能评价。" in response.text
    assert rating_row(db, world) == NOTHING_RATED


def test_rating_after_seven_days_answers_403(db, world, replied, resident):
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=8)).isoformat(timespec="seconds")
    db["problems"].update(world.problems["p3"], {"resident_rating": "satisfied",
                                                 "resident_rated_at": long_ago})
    response = rate(resident, replied, rating="unsatisfied")
    assert response.status_code == 403
    assert "现已不能修改" in response.text
    assert rating_row(db, world)["resident_rating"] == "satisfied"
    assert "修改评价" not in resident.get(f"/t/{replied}").text


@pytest.mark.parametrize("form, message", [
    ({"rating": "very"}, "评价"),
    ({}, "评价"),
    ({"rating": "satisfied", "comment": "字" * 501}, "500"),
])
def test_a_bad_rating_form_answers_400_with_the_message(db, world, replied, resident, form,
                                                        message):
    response = rate(resident, replied, **form)
    assert response.status_code == 400
    assert re.search(r'class="error"[^>]*>[^<]*' + message, response.text)
    assert rating_row(db, world) == NOTHING_RATED


def test_a_rating_for_an_unknown_link_is_the_plain_404(db, world, resident):
    assert rate(resident, tracking.new_token(), rating="satisfied").status_code == 404
    assert rate(resident, "bad", rating="satisfied").status_code == 404


def test_a_rating_without_the_csrf_token_is_refused(db, world, replied, resident):
    response = resident.post(f"/t/{replied}/rating", data={"rating": "satisfied"})
    assert response.status_code == 403
    assert rating_row(db, world) == NOTHING_RATED


def test_too_many_requests_answer_429_and_save_nothing(db, world, replied, resident,
                                                      monkeypatch):
    monkeypatch.setattr(tracking, "TOKEN_LIMIT", 2)
    assert resident.get(f"/t/{replied}").status_code == 200
    assert resident.get(f"/t/{replied}").status_code == 200
    response = rate(resident, replied, rating="satisfied")
    assert response.status_code == 429
    assert "访问过于频繁" in response.text and response.headers["retry-after"] == "600"
    assert rating_row(db, world) == NOTHING_RATED


def test_the_office_sees_the_rating_beside_the_callback_and_in_the_timeline(
        db, world, replied, resident, login_as):
    rate(resident, replied, rating="unsatisfied", comment="灯还是暗")
    db["problems"].update(world.problems["p3"], {"satisfaction": "satisfied"})
    html = login_as("office").get(f"/problems/{world.problems['p3']}").text
    assert re.search(r'id="resident-rating">不满意<', html)
    assert "群众自评" in html and "灯还是暗" in html and "撤销链接" in html


def test_the_receipt_shows_the_new_link_once_as_text_and_qr(db, world, linked, login_as):
    office = login_as("office")
    response = office.post(f"/problems/{world.problems['p3']}/tracking/reissue",
                           data={"csrf_token": csrf_of(office)})
    assert response.status_code == 200
    url = re.search(r'class="url">(http[^<]+)<', response.text).group(1)
    token = url.rsplit("/t/", 1)[1]
    assert tracking.hash_token(token) == db["problems"].get(world.problems["p3"])[
        "tracking_hash"]
    assert "<svg" in response.text and "ZF-2026-000003" in response.text
    assert office.get(f"/t/{linked}").status_code == 404
    assert office.get(f"/t/{token}").status_code == 200
    assert token not in office.get(f"/problems/{world.problems['p3']}").text


def test_revoking_through_the_page(db, world, linked, login_as):
    office = login_as("office")
    response = office.post(f"/problems/{world.problems['p3']}/tracking/revoke",
                           data={"csrf_token": csrf_of(office)})
    assert response.status_code == 200 and "已撤销群众查询链接" in response.text
    assert office.get(f"/t/{linked}").status_code == 404
    again = office.post(f"/problems/{world.problems['p3']}/tracking/revoke",
                        data={"csrf_token": csrf_of(office)})
    assert again.status_code == 409 and "没有有效的群众查询链接" in again.text


# 群众自评满意率 ---------------------------------------------------------------------------------


def test_the_residents_own_rate_is_its_own_figure(db, world, replied, resident, login_as):
    db["problems"].update(world.problems["p3"], {
        "accepted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
    rate(resident, replied, rating="basically")
    office = auth.load_user(db, world.users["office"])
    figures = metrics.compute(db, office, metrics.Period.default())
    assert figures["totals"]["resident_rated"] == 1
    assert figures["rates"]["resident_satisfaction"].value == 1.0
    assert figures["rates"]["resident_satisfaction"].n == 1
    assert figures["rates"]["satisfaction"].n == 0  # no callback yet: a figure apart
    page = login_as("office").get("/stats").text
    assert "群众自评满意率" in page and "100.00%" in page


def test_a_relapse_clears_the_rating_and_the_next_reply_is_rated_afresh(db, world, replied, act):
    with immediate(db):
        tracking.rate(db, replied, {"rating": "satisfied", "comment": "修好了"})
    act("office", "p3", "verify")
    act("office", "p3", "callback", method="phone", result="reached", solved="1",
        satisfaction="satisfied")
    reopened = act("office", "p3", "return_visit", held="0", note="路灯又不亮了")
    assert reopened["status"] == "dispatched"
    assert rating_row(db, world) == NOTHING_RATED
    assert len(rating_events(db, world)) == 1  # the history keeps it
    view = tracking.resident_view(db, tracking.find(db, replied))
    assert view["reply"] == "" and not view["may_rate"]
    act("handler1", "p3", "sign", contacted="1")
    act("handler1", "p3", "reply", outcome="solved", note="更换了线路")
    assert tracking.resident_view(db, tracking.find(db, replied))["reply"] == "更换了线路"
    with immediate(db):
        tracking.rate(db, replied, {"rating": "basically"})
    assert rating_row(db, world)["resident_rating"] == "basically"


def test_an_office_outside_the_area_gets_404_and_changes_nothing(db, world, login_as):
    office_d1 = login_as("office_d1")
    db["problems"].update(world.problems["p2"], {"tracking_hash": "b" * 64})  # district d2
    for action in ("reissue", "revoke"):
        response = office_d1.post(f"/problems/{world.problems['p2']}/tracking/{action}",
                                  data={"csrf_token": csrf_of(office_d1)})
        assert response.status_code == 404
    assert db["problems"].get(world.problems["p2"])["tracking_hash"] == "b" * 64
    assert db.execute("SELECT count(*) FROM problem_events WHERE kind LIKE 'tracking_%'"
                      ).fetchone()[0] == 0
