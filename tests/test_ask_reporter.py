"""The office asks a problem's reporter for more (请补充): workflow's ask_reporter, the
reporter's note that answers it (sync's problem.note), what pull and the pages show."""

from __future__ import annotations

import json

import pytest

from server.ledger.states import TransitionError
from server.validation import ValidationError
from tests.conftest import csrf_of
from tests.sync_helpers import new_id, phone

QUESTION = "请补拍漏水位置的照片，并写明楼层"


def note_args(problem_id: str, note: str = "三楼东侧，已补拍") -> dict:
    return {"id": new_id(), "problem_id": problem_id, "note": note,
            "at": "2026-12-06T10:00:00+08:00"}


def test_the_office_asks_and_the_question_waits_on_the_problem(act, db, world):
    asked = act("office", "p1", "ask_reporter", note=QUESTION)
    assert asked["info_request"] == QUESTION and asked["status"] == "submitted"
    event = db.execute("SELECT kind, data FROM problem_events WHERE problem_id = ?"
                       " ORDER BY rowid DESC LIMIT 1", [world.problems["p1"]]).fetchone()
    assert event[0] == "ask_reporter"
    assert json.loads(event[1])["reporter_id"] == world.users["field1"]
    act("office", "p1", "accept")
    again = act("office", "p1", "ask_reporter", note="再补一张远景")
    assert again["info_request"] == "再补一张远景"


def test_only_the_office_asks_and_only_before_dispatch(act, world):
    # (p1 is outside a handler's scope: a 404 for them, as every problem not their unit's.)
    for username in ("field1", "leader"):
        with pytest.raises(TransitionError) as refused:
            act(username, "p1", "ask_reporter", note=QUESTION)
        assert refused.value.status == 403
    with pytest.raises(TransitionError) as refused:
        act("office", "p2", "ask_reporter", note=QUESTION)  # p2 is dispatched
    assert refused.value.status == 409


def test_a_question_needs_words(act, db, world):
    for note in ("", "   "):
        with pytest.raises(ValidationError) as refused:
            act("office", "p1", "ask_reporter", note=note)
        assert "需要补充的内容" in refused.value.errors["note"]
    assert db["problems"].get(world.problems["p1"])["info_request"] is None


def test_a_hotline_problem_has_no_reporter_in_the_field_to_ask(act, db, world):
    db.execute("UPDATE problems SET source = 'hotline' WHERE id = ?", [world.problems["p1"]])
    with pytest.raises(TransitionError) as refused:
        act("office", "p1", "ask_reporter", note=QUESTION)
    assert "没有现场发现人" in refused.value.message


def test_the_reporters_note_answers_it_and_pull_shows_it(client, act, db, world):
    act("office", "p1", "ask_reporter", note=QUESTION)
    reporter = phone(client, "field1")
    reporter.pull()
    pulled = reporter.records("problem")[world.problems["p1"]]
    assert pulled["info_request"] == QUESTION
    assert {"return_visit_due", "return_visit_result"} <= pulled.keys()
    # Someone else's note does not answer it.
    other = phone(client, "office")
    other.capture("problem.note", note_args(world.problems["p1"], "办公室备注"))
    other.sync()
    assert db["problems"].get(world.problems["p1"])["info_request"] == QUESTION
    reporter.capture("problem.note", note_args(world.problems["p1"]))
    reporter.sync()
    assert db["problems"].get(world.problems["p1"])["info_request"] is None
    note = db.execute("SELECT data FROM problem_events WHERE problem_id = ? AND kind = 'note'"
                      " AND actor_id = ?", [world.problems["p1"], world.users["field1"]]).fetchone()
    assert json.loads(note[0])["answers"] == "info_request"
    assert reporter.records("problem")[world.problems["p1"]]["info_request"] is None


def test_the_office_page_shows_the_open_question_and_its_form(login_as, act, world):
    office = login_as("office")
    page = office.get(f"/problems/{world.problems['p1']}").text
    assert "请发现人补充" in page
    response = office.post(f"/problems/{world.problems['p1']}/actions/ask_reporter",
                           data={"note": QUESTION, "csrf_token": csrf_of(office)},
                           follow_redirects=True)
    assert response.status_code == 200
    assert f"已请发现人补充：{QUESTION}" in response.text
    empty = office.post(f"/problems/{world.problems['p1']}/actions/ask_reporter",
                        data={"note": "", "csrf_token": csrf_of(office)})
    assert empty.status_code == 400 and "需要补充的内容" in empty.text
