"""Every route x every role: allowed where the product says so, refused everywhere else.

The expectations below are written out by hand, not derived from
server/authz.py, so a change to the rules has to be made on purpose in both.
A route missing from EXPECTED fails the test.
"""

from __future__ import annotations

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from server.ledger import clock
from tests.conftest import ROLE_USERS, api_login, csrf_of, login

ALL = {"field", "office", "handler", "leader", "admin"}
PUBLIC = "public"

EXPECTED: dict[tuple[str, str], set[str] | str] = {
    ("GET", "/"): ALL,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): ALL,
    # Everyone changes their own password (and only their own: no id in the path).
    ("GET", "/account/password"): ALL,
    ("POST", "/account/password"): ALL,
    ("GET", "/problems"): {"field", "office", "handler", "leader"},
    ("GET", "/problems/{problem_id}"): {"field", "office", "handler", "leader"},
    ("POST", "/problems/{problem_id}/actions/{action}"): {"field", "office", "handler", "leader"},
    ("GET", "/problems/export.xlsx"): {"office", "handler", "leader"},
    ("GET", "/problems/export.csv"): {"office", "handler", "leader"},
    ("GET", "/work"): {"office", "handler", "leader"},
    ("GET", "/diary"): {"field", "office", "leader"},
    ("GET", "/stats"): {"office", "leader"},
    ("GET", "/supervision"): {"office", "leader"},
    # The resident's tracking link: issued (the receipt) and revoked by the office only.
    ("POST", "/problems/{problem_id}/tracking/reissue"): {"office"},
    ("POST", "/problems/{problem_id}/tracking/revoke"): {"office"},
    # The resident's page and rating: no login, the token is the credential.
    ("GET", "/t/{token}"): PUBLIC,
    ("POST", "/t/{token}/rating"): PUBLIC,
    # Reports (server/ledger/reports.py): read by office and leaders, issued by the office.
    ("GET", "/reports"): {"office", "leader"},
    ("POST", "/reports"): {"office"},
    ("GET", "/reports/{report_id}"): {"office", "leader"},
    ("GET", "/reports/{report_id}.xlsx"): {"office", "leader"},
    # The assessment's weights (server/ledger/assessment.py).
    ("GET", "/admin/assessment"): {"admin"},
    ("POST", "/admin/assessment"): {"admin"},
    ("GET", "/visits"): {"field", "office", "leader"},
    ("GET", "/visits/{visit_id}"): {"field", "office", "leader"},
    ("GET", "/visits/report.docx"): {"office", "leader"},
    **{
        (method, path.format(name=name)): {"admin"}
        for name in ("users", "units", "areas", "categories")
        for method, path in (
            ("GET", "/admin/{name}"),
            ("GET", "/admin/{name}/new"),
            ("POST", "/admin/{name}/new"),
            ("GET", "/admin/{name}/{{record_id}}"),
            ("POST", "/admin/{name}/{{record_id}}"),
        )
    },
    ("GET", "/admin/devices"): {"admin"},
    ("POST", "/admin/devices/{record_id}/revoke"): {"admin"},
    ("GET", "/admin/import"): {"admin"},
    ("POST", "/admin/import"): {"admin"},
    ("GET", "/admin/import/template/{kind}.csv"): {"admin"},
    ("GET", "/admin/calendar"): {"admin"},
    ("POST", "/admin/calendar/preview"): {"admin"},
    ("POST", "/admin/calendar/apply"): {"admin"},
    ("GET", "/admin/calendar/{year}"): {"admin"},
    ("GET", "/admin/calendar/{year}.csv"): {"admin"},
    ("GET", "/admin/audit"): {"admin"},
    # The lists of reasons are city-wide: every administrator keeps them, as the calendar.
    ("GET", "/admin/reasons"): {"admin"},
    ("POST", "/admin/reasons"): {"admin"},
    ("POST", "/admin/reasons/{record_id}"): {"admin"},
    ("POST", "/api/login"): PUBLIC,
    # The field app signing in with the web session: only roles that capture.
    ("GET", "/api/session"): {"field", "office", "leader"},
    ("POST", "/api/session/device"): {"field", "office", "leader"},
    ("GET", "/api/me"): ALL,
    ("POST", "/api/logout"): ALL,
    ("POST", "/api/account/password"): ALL,
    ("GET", "/api/healthz"): PUBLIC,
    ("GET", "/api/openapi.json"): PUBLIC,
    ("POST", "/api/sync/push"): ALL,
    ("GET", "/api/sync/pull"): ALL,
    ("GET", "/api/problems/lookup"): {"field", "office", "handler", "leader"},
    ("OPTIONS", "/api/uploads"): PUBLIC,
    ("POST", "/api/uploads"): ALL,
    ("HEAD", "/api/uploads/{upload_id}"): ALL,
    ("PATCH", "/api/uploads/{upload_id}"): ALL,
    ("GET", "/api/photos/{sha256}"): ALL,
    ("GET", "/api/photos/{sha256}/thumb"): ALL,
    ("GET", "/photos/{sha256}"): ALL,
    ("GET", "/photos/{sha256}/thumb"): ALL,
    ("GET", "/app/"): PUBLIC,
    ("GET", "/app/manifest.webmanifest"): PUBLIC,
    ("GET", "/app/sw.js"): PUBLIC,
    ("GET", "/app/strings.js"): PUBLIC,
}


def guarded_routes(app):
    for route in app.routes:
        if isinstance(route, Route):
            methods = route.methods - {"HEAD"} if "GET" in route.methods else route.methods
            for method in sorted(methods):
                yield method, route.path, route


def concrete(path: str, world) -> str:
    return (
        path.replace("{problem_id}", world.problems["p3"])
        .replace("{visit_id}", world.visits["v1"])
        .replace("{record_id}", "1")
        .replace("{kind}", "users")
        .replace("{action}", "no-such-action")
        .replace("{upload_id}", "no-such-upload")
        .replace("{sha256}", "0" * 64)
        .replace("{year}", "2027")
        .replace("{token}", "A" * 22)
        .replace("{report_id}", "1")
    )


def test_every_route_is_guarded_and_listed(app):
    seen = set()
    for method, path, route in guarded_routes(app):
        assert hasattr(route, "permission"), f"{method} {path} has no permission"
        seen.add((method, path))
    assert seen == set(EXPECTED), f"untested: {seen - set(EXPECTED)}; gone: {set(EXPECTED) - seen}"


def _request(client: TestClient, method: str, url: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "GET":
        return client.get(url, headers=headers, follow_redirects=False)
    if method in ("HEAD", "OPTIONS", "PATCH"):
        return client.request(method, url, headers={**headers, "Tus-Resumable": "1.0.0"})
    if url.startswith("/api/"):
        # The CSRF header is for the routes authenticated by the web session.
        headers["X-CSRF-Token"] = csrf_of(client)
        return client.post(url, json={}, headers=headers, follow_redirects=False)
    return client.post(url, data={"csrf_token": csrf_of(client)}, follow_redirects=False)


def _denied(response, api: bool, signed_in: bool) -> bool:
    if api:
        if response.request.method == "HEAD":
            return response.status_code in (401, 403)
        return response.status_code in (401, 403) and "error" in response.json()
    if not signed_in:
        return response.status_code == 401 or (
            response.status_code == 303 and response.headers["location"].startswith("/login")
        )
    return response.status_code == 403


@pytest.mark.parametrize("role", sorted(ALL) + ["anonymous"])
def test_route_role_matrix(app, world, role):
    # /logout and /api/logout end the session they run in: run them last.
    routes = sorted(
        guarded_routes(app), key=lambda item: (item[1] in ("/logout", "/api/logout"), item[1])
    )
    with TestClient(app) as client:
        token = None
        if role != "anonymous":
            assert login(client, ROLE_USERS[role]).status_code == 303
            token = api_login(client, ROLE_USERS[role])
        failures = []
        for method, path, _route in routes:
            expected = EXPECTED[(method, path)]
            api = path.startswith("/api/")
            response = _request(client, method, concrete(path, world), token if api else None)
            allowed = expected == PUBLIC or role in expected
            denied = _denied(response, api, role != "anonymous")
            if allowed and (denied or response.status_code >= 500):
                failures.append(f"{method} {path}: {response.status_code}, expected allowed")
            if not allowed and not denied:
                failures.append(f"{method} {path}: {response.status_code}, expected denied")
        assert not failures, "\n".join(failures)


# The ledger's actions are one route: the closures of m011 by role, through it. --------------

CLOSURES = {  # action: (the problem's state and phone, what the office gets)
    "close_no_contact": ({"status": "callback", "resident_phone": ""}, 303),
    "close_unreachable": ({"status": "callback", "resident_phone": "13812345678"}, 409),
    "close_explained": ({"status": "handling", "resident_phone": ""}, 303),
}


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize("action", sorted(CLOSURES))
def test_closure_actions_by_role(app, db, world, role, action):
    """Only the office closes (or is told why not yet); every other role is refused."""
    state, office_gets = CLOSURES[action]
    db["problems"].update(world.problems["p3"], state)
    with TestClient(app) as client:
        assert login(client, ROLE_USERS[role]).status_code == 303
        response = client.post(
            f"/problems/{world.problems['p3']}/actions/{action}",
            data={"csrf_token": csrf_of(client), "note": "理由", "reason_code": "policy"},
            follow_redirects=False)
    expected = office_gets if role == "office" else 403
    assert response.status_code == expected, (role, action, response.status_code)
    closed = db["problems"].get(world.problems["p3"])["status"] == "closed"
    assert closed == (expected == 303)


# Supervision (server/ledger/supervision.py) by role, through the same route. ---------------------

SUPERVISION = {  # action: the role that may take it (the others get 403)
    "supervise": "office",
    "answer_supervision": "handler",
    "close_supervision": "office",
    "escalate_supervision": "office",
    "flag": "leader",
    "unflag": "leader",
    "instruct": "leader",
}


def _supervision_ready(db, world, action: str) -> dict:
    """p3 (handling, lead unit 住建局) where ``action`` can be taken by its role."""
    import datetime as dt

    from server import auth
    from server.db import immediate
    from server.ledger import workflow

    def run(username, name, **data):
        with immediate(db):
            workflow.apply(db, auth.load_user(db, world.users[username]), world.problems["p3"],
                           name, data)

    answer_by = (clock.local_today() + dt.timedelta(days=3)).isoformat()
    if action in ("answer_supervision", "close_supervision", "escalate_supervision"):
        run("office", "supervise", note="督办要求", answer_by=answer_by)
        if action != "answer_supervision":
            order_id = db.execute("SELECT max(id) FROM supervision_orders").fetchone()[0]
            run("handler1", "answer_supervision", order_id=order_id, note="回复")
    if action == "unflag":
        run("leader", "flag", note="批示")
        db["problems"].update(world.problems["p3"], {"status": "closed"})
    order_id = db.execute("SELECT max(id) FROM supervision_orders").fetchone()[0]
    return {"note": "文字", "answer_by": answer_by, "order_id": str(order_id or "")}


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize("action", sorted(SUPERVISION))
def test_supervision_actions_by_role(app, db, world, role, action):
    data = _supervision_ready(db, world, action)
    events = db.execute("SELECT count(*) FROM problem_events").fetchone()[0]
    with TestClient(app) as client:
        assert login(client, ROLE_USERS[role]).status_code == 303
        response = client.post(
            f"/problems/{world.problems['p3']}/actions/{action}",
            data={"csrf_token": csrf_of(client), **data}, follow_redirects=False)
    allowed = SUPERVISION[action] == role
    expected = 303 if allowed else 403
    assert response.status_code == expected, (role, action, response.status_code)
    after = db.execute("SELECT count(*) FROM problem_events").fetchone()[0]
    assert after == events + (1 if allowed else 0)


# The actions that take a reason from a list (server/ledger/reasons.py), by role. -------------

REASON_ACTIONS = {  # action: (p3's state, the role that may take it, a valid choice)
    "reject": ("submitted", "office", {"reason_code": "duplicate"}),
    "return": ("handling", "handler", {"reason_code": "not_our_duty"}),
    "request_extension": ("handling", "handler",
                          {"reason_code": "funding", "extra_days": "5"}),
    "close_explained": ("handling", "office", {"reason_code": "legacy"}),
}


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize("action", sorted(REASON_ACTIONS))
def test_reason_actions_by_role(app, db, world, role, action):
    """The role that may take the action gets 400 for a reason not on the list (nothing
    saved), then 303 with the code recorded; every other role is refused either way."""
    status, allowed_role, valid = REASON_ACTIONS[action]
    problem_id = world.problems["p3"]
    db["problems"].update(problem_id, {"status": status})
    events = db.execute("SELECT count(*) FROM problem_events").fetchone()[0]
    allowed = role == allowed_role
    with TestClient(app) as client:
        assert login(client, ROLE_USERS[role]).status_code == 303
        for data, expected in (({**valid, "reason_code": "no-such-code"}, 400),
                               (valid, 303)):
            response = client.post(
                f"/problems/{problem_id}/actions/{action}",
                data={"csrf_token": csrf_of(client), "note": "说明", **data},
                follow_redirects=False)
            assert response.status_code == (expected if allowed else 403), (role, data)
    after = db.execute("SELECT count(*) FROM problem_events").fetchone()[0]
    assert after == events + (1 if allowed else 0)
    if allowed:
        reason_code = db.dialect.json_text("data", "reason_code")
        code = db.execute(f"SELECT {reason_code} FROM problem_events"
                          " WHERE problem_id = ? AND kind = ?", [problem_id, action]).fetchone()
        assert code == (valid["reason_code"],)


# Joint handling (server/ledger/joint.py) by role, through the same route. ------------------------

JOINT = {  # action: the role that may take it (the others get 403)
    "sign_part": "handler",
    "progress_part": "handler",
    "answer_part": "handler",
    "let_lead_reply": "office",
}


def _joint_ready(db, world, action: str) -> str:
    """p1 (field1's area) dispatched to 水务集团 (u2) as lead, with 住建局 (u1: handler1, the
    matrix's handler) as helper, where ``action`` can be taken by its role."""
    from server import auth
    from server.db import immediate
    from server.ledger import workflow

    def run(username, name, **data):
        with immediate(db):
            workflow.apply(db, auth.load_user(db, world.users[username]), world.problems["p1"],
                           name, data)

    run("office", "accept")
    run("office", "dispatch", lead_unit_id=world.units["u2"],
        helper_unit_ids=[str(world.units["u1"])])
    run("handler2", "sign")
    if action in ("progress_part", "answer_part"):
        run("handler1", "sign_part")
    return world.problems["p1"]


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize("action", sorted(JOINT))
def test_joint_actions_by_role(app, db, world, role, action):
    problem_id = _joint_ready(db, world, action)
    events = db.execute("SELECT count(*) FROM problem_events").fetchone()[0]
    with TestClient(app) as client:
        assert login(client, ROLE_USERS[role]).status_code == 303
        response = client.post(f"/problems/{problem_id}/actions/{action}",
                               data={"csrf_token": csrf_of(client), "note": "文字"},
                               follow_redirects=False)
    allowed = JOINT[action] == role
    assert response.status_code == (303 if allowed else 403), (role, action, response.status_code)
    after = db.execute("SELECT count(*) FROM problem_events").fetchone()[0]
    assert after == events + (1 if allowed else 0)


@pytest.mark.parametrize("username, action, data", [
    ("handler2", "sign_part", {}),  # the lead unit does not act for a helper
    ("handler2", "answer_part", {"note": "代为答复"}),
    ("handler1", "reply", {"outcome": "solved", "note": "代为答复"}),  # nor a helper for the lead
    ("handler1", "progress", {"note": "代为办理"}),
])
def test_lead_and_helper_units_keep_to_their_own_actions(app, db, world, username, action, data):
    problem_id = _joint_ready(db, world, "sign_part")
    with TestClient(app) as client:
        assert login(client, username).status_code == 303
        response = client.post(f"/problems/{problem_id}/actions/{action}",
                               data={"csrf_token": csrf_of(client), **data},
                               follow_redirects=False)
    assert response.status_code == 403, (username, action, response.status_code)


@pytest.mark.parametrize("role", sorted(ALL))
def test_the_helpers_queue_and_the_parts_by_role(app, db, world, role):
    """我的工作's 协办 queues are the helper unit's handlers'; the parts show on the problem page
    to all who may read it (admin: no problem pages at all)."""
    problem_id = _joint_ready(db, world, "sign_part")
    with TestClient(app) as client:
        assert login(client, ROLE_USERS[role]).status_code == 303
        work = client.get("/work", follow_redirects=False)
        page = client.get(f"/problems/{problem_id}", follow_redirects=False)
    assert ('id="q-joint_to_sign"' in work.text) == (role == "handler")
    assert work.status_code == (200 if role in ("office", "handler", "leader") else 403)
    assert page.status_code == (403 if role == "admin" else 200)
    assert ('id="joint-parts"' in page.text) == (role != "admin")


# The resident's tracking link (server/ledger/tracking.py) by role. ----------------------------


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize("action", ["reissue", "revoke"])
def test_tracking_link_actions_by_role(app, db, world, role, action):
    """Only the office issues a new link or revokes one; each is an event of the problem."""
    from server.ledger import tracking

    old_hash = tracking.hash_token(tracking.new_token())
    db["problems"].update(world.problems["p3"], {"tracking_hash": old_hash})
    with TestClient(app) as client:
        assert login(client, ROLE_USERS[role]).status_code == 303
        response = client.post(f"/problems/{world.problems['p3']}/tracking/{action}",
                               data={"csrf_token": csrf_of(client)}, follow_redirects=False)
    allowed = role == "office"
    assert response.status_code == (200 if allowed else 403), (role, action)
    kinds = [row[0] for row in db.execute(
        "SELECT kind FROM problem_events WHERE problem_id = ? AND kind LIKE 'tracking_%'",
        [world.problems["p3"]])]
    stored = db["problems"].get(world.problems["p3"])["tracking_hash"]
    if not allowed:
        assert kinds == [] and stored == old_hash
    elif action == "reissue":
        assert kinds == ["tracking_issued"] and stored not in (None, old_hash)
    else:
        assert kinds == ["tracking_revoked"] and stored is None


# The rules on extensions, returns and 重办 (server/ledger/rules.py) by role, through the route.

RULES = {  # action: (p3's state where it can be taken, the role that may take it)
    "accept_return": ({"status": "returned"}, "office"),
    "refuse_return": ({"status": "returned"}, "office"),
    "approve_extension_leader": ({"status": "handling", "deadline": "2026-12-31",
                                  "extension_request": '{"extra_days": 15, "reason": "r",'
                                  ' "awaiting_leader": true}'}, "leader"),
    "refuse_extension_leader": ({"status": "handling", "deadline": "2026-12-31",
                                 "extension_request": '{"extra_days": 15, "reason": "r",'
                                 ' "awaiting_leader": true}'}, "leader"),
    "redo": ({"status": "callback", "redo_pending": 1, "callback_reached": 1,
              "callback_solved": 1, "satisfaction": "unsatisfied"}, "office"),
}


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize("action", sorted(RULES))
def test_rule_actions_by_role(app, db, world, role, action):
    state, allowed_role = RULES[action]
    db["problems"].update(world.problems["p3"], state)
    events = db.execute("SELECT count(*) FROM problem_events").fetchone()[0]
    with TestClient(app) as client:
        assert login(client, ROLE_USERS[role]).status_code == 303
        response = client.post(
            f"/problems/{world.problems['p3']}/actions/{action}",
            data={"csrf_token": csrf_of(client), "note": "理由"}, follow_redirects=False)
    allowed = role == allowed_role
    assert response.status_code == (303 if allowed else 403), (role, action,
                                                               response.status_code)
    after = db.execute("SELECT count(*) FROM problem_events").fetchone()[0]
    assert after == events + (1 if allowed else 0)
