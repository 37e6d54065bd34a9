"""Every kind of problem event is labelled in words, on the office timeline and on the phone."""

from __future__ import annotations

import html
import re

from server.db import immediate
from server.i18n import gettext as _
from server.ledger import events
from server.ledger.workflow import ACTIONS
from server.timeutil import now_iso
from sync.ids import uuid7
from tests.test_sync_pull import Puller


def add_every_event(db, problem_id: str, actor_id: int) -> None:
    """One event of each kind the code knows on the problem (the timeline only reads them)."""
    with immediate(db):
        for kind in events.kinds():
            db["problem_events"].insert({
                "id": uuid7(), "problem_id": problem_id, "kind": kind, "actor_id": actor_id,
                "at": now_iso(), "note": f"备注-{kind}", "data": "{}",
            })


def test_kinds_are_the_actions_and_the_others_once_each():
    kinds = events.kinds()
    assert len(kinds) == len(set(kinds))
    assert set(ACTIONS) <= set(kinds)
    assert {"reported", "solved_on_spot", "note", "edited", "merged_in"} <= set(kinds)


def test_office_timeline_names_every_kind_in_words(login_as, db, world):
    problem = world.problems["p1"]
    add_every_event(db, problem, world.users["office"])
    response = login_as("office").get(f"/problems/{problem}")
    assert response.status_code == 200
    timeline = html.unescape(response.text.split('id="timeline-h"')[1])
    labels = re.findall(r"<strong>([^<]*)</strong>", timeline)
    assert len(labels) == len(events.kinds()) + 1  # and the world's own "reported"
    for kind in events.kinds():
        assert events.label(kind) in labels, kind
    assert not re.search(r"\b(event|action)\.[a-z_]+", timeline)


def test_phone_pull_carries_every_kind_the_app_has_a_label_for(client, db, world):
    from server.views.field_app import strings

    add_every_event(db, world.problems["p1"], world.users["office"])
    puller = Puller(client, "field1")
    problem = next(change for change in puller.changes()
                   if change["entity"] == "problem" and change["id"] == world.problems["p1"])
    kinds = {event["kind"] for event in problem["data"]["events"]}
    assert kinds == set(events.kinds())
    app_strings = strings()
    for kind in kinds:
        assert app_strings[f"event.{kind}"] == _(f"event.{kind}")
