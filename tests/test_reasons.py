"""The lists of reasons (server/ledger/reasons.py): their defaults, the check every action
that takes one makes, the administration page, and counting by reason."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from server import auth
from server.db import immediate
from server.errors import NotFound
from server.i18n import gettext as _
from server.ledger import metrics, reasons, workflow
from server.ledger.states import TransitionError
from server.validation import ValidationError
from tests.conftest import post_form

pytest_plugins = ["tests.clock"]

# An action that takes a reason, the state it is taken from, and what else it needs.
ACTIONS = {
    "reject": ("p1", "submitted", "office", "reject", {}),
    "return": ("p3", "handling", "handler1", "return", {}),
    "request_extension": ("p3", "handling", "handler1", "extension", {"extra_days": "3"}),
    "close_explained": ("p3", "handling", "office", "explained", {}),
}


def codes(db, list_name: str, active_only: bool = False) -> list[str]:
    return [option.code for option in reasons.options(db, list_name, active_only=active_only)]


def event_count(db) -> int:
    return db.execute("SELECT count(*) FROM problem_events").fetchone()[0]


def write(db, fn, *args):
    with immediate(db):
        return fn(db, *args)


# The lists and their defaults ----------------------------------------------------------------


def test_the_four_lists_start_with_the_defaults_an_office_knows(db):
    lists = reasons.all_lists(db)
    assert list(lists) == list(reasons.LISTS)
    assert [option.label for option in lists["reject"]] == [
        "不属于受理范围", "重复反映", "诉求不合理", "信息不全无法核实", "其他"]
    assert [option.label for option in lists["return"]] == [
        "不属于本单位职责", "已由其他单位办理", "信息有误", "其他"]
    assert [option.label for option in lists["extension"]] == [
        "需协调多部门", "需资金审批", "受天气季节影响", "工程周期长", "其他"]
    assert [option.label for option in lists["explained"]] == [
        "政策不支持", "历史遗留问题", "诉求超出法定范围", "已解释群众认可", "其他"]
    for options in lists.values():
        assert all(option.active for option in options)
        # Only 其他 asks for the note to say what.
        assert [option.code for option in options if option.needs_text] == ["other"]


def test_every_action_with_a_list_names_one_of_the_four():
    lists = {name: action.extra["reasons"] for name, action in workflow.ACTIONS.items()
             if "reasons" in action.extra}
    assert lists == {"reject": "reject", "return": "return", "request_extension": "extension",
                     "close_explained": "explained"}
    assert {reasons.KINDS[name]: name for name in reasons.LISTS} == lists
    for name in lists:
        assert "reason_code" in workflow.ACTIONS[name].fields


# The check ---------------------------------------------------------------------------------


def test_check_takes_an_active_option_and_names_its_column(db):
    chosen = reasons.check(db, "return", {"reason_code": "wrong_info", "note": "地址写错"})
    assert chosen == reasons.Chosen("return", "wrong_info")
    assert chosen.column == "return_reason_code"


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"note": "说明"}, "reason_code", "请选择退单原因。"),
    ({"reason_code": "no-such", "note": "说明"}, "reason_code",
     "退单原因不在可选范围内，请从列表中选择。"),
    ({"reason_code": ["not_our_duty"], "note": "说明"}, "reason_code",
     "退单原因不在可选范围内，请从列表中选择。"),
    ({"reason_code": "not_our_duty"}, None, None),
    ({"reason_code": "other"}, "note", "选择“其他”时，请在说明中写明具体原因。"),
])
def test_check_refuses_with_a_clear_message(db, data, field, message):
    if field is None:
        assert reasons.check(db, "return", data).code == "not_our_duty"
        return
    with pytest.raises(ValidationError) as error:
        reasons.check(db, "return", data)
    assert error.value.errors == {field: message}


def test_a_deactivated_option_is_refused_but_keeps_its_label(db):
    option = next(o for o in reasons.options(db, "reject") if o.code == "duplicate")
    write(db, reasons.set_active, None, option.id, False)
    with pytest.raises(ValidationError) as error:
        reasons.check(db, "reject", {"reason_code": "duplicate", "note": "重复"})
    assert error.value.errors == {"reason_code": "这个不予立案原因已停用，请从列表中重新选择。"}
    assert "duplicate" not in codes(db, "reject", active_only=True)
    assert reasons.labels(db)[("reject", "duplicate")] == "重复反映"


def test_a_list_without_active_options_asks_for_none(db):
    for option in reasons.options(db, "explained"):
        write(db, reasons.set_active, None, option.id, False)
    assert reasons.check(db, "explained", {"note": "已解释"}) is None
    with pytest.raises(ValidationError):
        reasons.check(db, "explained", {"reason_code": "policy", "note": "已解释"})


# Through the workflow ------------------------------------------------------------------------


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_each_action_records_the_reason_on_its_event_and_problem(act, db, world, action):
    key, state, username, list_name, extra = ACTIONS[action]
    db["problems"].update(world.problems[key], {"status": state})
    code = codes(db, list_name)[1]
    problem = act(username, key, action, reason_code=f" {code} ", note="具体情况", **extra)
    assert problem[f"{list_name}_reason_code"] == code
    data = json.loads(db.execute(
        "SELECT data FROM problem_events WHERE problem_id = ? AND kind = ?",
        [world.problems[key], action]).fetchone()[0])
    assert data["reason_code"] == code


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("bad", ["missing", "unknown", "inactive", "other_without_note"])
def test_bad_reasons_save_nothing(act, db, world, action, bad):
    key, state, username, list_name, extra = ACTIONS[action]
    problem_id = world.problems[key]
    db["problems"].update(problem_id, {"status": state})
    first = reasons.options(db, list_name)[0]
    write(db, reasons.set_active, None, first.id, False)
    data = {"missing": {"note": "说明"},
            "unknown": {"reason_code": "nonsense", "note": "说明"},
            "inactive": {"reason_code": first.code, "note": "说明"},
            "other_without_note": {"reason_code": "other"}}[bad]
    before = (event_count(db), db["problems"].get(problem_id))
    with pytest.raises(ValidationError) as error:
        act(username, key, action, **data, **extra)
    # A missing note is the action's own rule, checked first.
    assert set(error.value.errors) == ({"note"} if bad == "other_without_note" else
                                       {"reason_code"})
    assert (event_count(db), db["problems"].get(problem_id)) == before


def test_a_reason_does_not_open_an_action_to_another_role(db, world):
    """The reason is checked after the transition: a wrong role is refused as before."""
    field1 = auth.load_user(db, world.users["field1"])
    with pytest.raises(TransitionError) as error, immediate(db):
        workflow.apply(db, field1, world.problems["p1"], "reject",
                       {"reason_code": "duplicate", "note": "重复"})
    assert error.value.status == 403


# The forms on the problem's page -------------------------------------------------------------


def test_the_forms_offer_the_active_options_of_their_list(login_as, db, world):
    option = next(o for o in reasons.options(db, "reject") if o.code == "unreasonable")
    write(db, reasons.set_active, None, option.id, False)
    page = login_as("office").get(f"/problems/{world.problems['p1']}").text
    form = page.split('action="/problems/')[1:]
    reject = next(part for part in form if part.split('"')[0].endswith("/actions/reject"))
    assert 'name="reason_code"' in reject and "不予立案原因" in reject
    assert '<option value="out_of_scope"' in reject and '"unreasonable"' not in reject
    handler_page = login_as("handler1").get(f"/problems/{world.problems['p3']}").text
    assert "退单原因" in handler_page and "延期原因" in handler_page
    assert '<option value="handled_elsewhere"' in handler_page


def test_the_page_refuses_a_bad_reason_and_keeps_what_was_typed(login_as, db, world):
    client = login_as("office")
    problem_id = world.problems["p1"]
    before = event_count(db)
    for data, message in (
            ({"note": "反映人已撤回"}, "请选择不予立案原因。"),
            ({"reason_code": "gone", "note": "反映人已撤回"},
             "不予立案原因不在可选范围内，请从列表中选择。"),
            ({"reason_code": "other", "note": ""}, _("validation.required",
                                                      label=_("workflow.field.note")))):
        response = post_form(client, f"/problems/{problem_id}/actions/reject", data)
        assert response.status_code == 400
        assert message in response.text
        if data["note"]:
            assert data["note"] in response.text  # kept as typed
    assert event_count(db) == before
    assert db["problems"].get(problem_id)["status"] == "submitted"
    response = post_form(client, f"/problems/{problem_id}/actions/reject",
                         {"reason_code": "other", "note": "反映人已撤回"})
    assert response.status_code == 303
    assert db["problems"].get(problem_id)["reject_reason_code"] == "other"
    # The timeline names the reason beside the note.
    timeline = client.get(f"/problems/{problem_id}").text.split('id="timeline-h"')[1]
    assert '<span class="reason">其他</span>' in timeline and "反映人已撤回" in timeline


# The administration ------------------------------------------------------------------------


def audit_rows(db) -> list[dict]:
    return [{**row, "old": json.loads(row["old"] or "null"), "new": json.loads(row["new"])}
            for row in db.query("SELECT * FROM admin_audit WHERE entity = 'reasons'"
                                " ORDER BY id")]


def test_adding_an_option_puts_it_last_with_a_code_of_its_own(db, world):
    option = write(db, reasons.add, world.users["admin"], "return", " 需现场核实 ", False)
    assert (option.code, option.label, option.active) == (f"c{option.id}", "需现场核实", True)
    assert codes(db, "return")[-1] == option.code
    [entry] = audit_rows(db)
    assert (entry["action"], entry["entity_id"], entry["actor_id"]) == (
        "create", option.id, world.users["admin"])
    assert entry["new"] == {"list": "return", "label": "需现场核实", "active": True,
                            "position": 5, "needs_text": False}


@pytest.mark.parametrize(("label", "message"), [
    ("", "请填写选项名称。"),
    ("   ", "请填写选项名称。"),
    ("重复反映", "这个列表中已有名为“重复反映”的选项。"),
    ("理" * 31, _("validation.too_long", label="选项名称", max=30)),
])
def test_a_bad_label_is_refused_and_nothing_saved(db, world, label, message):
    before = reasons.all_lists(db)
    with pytest.raises(ValidationError) as error:
        write(db, reasons.add, world.users["admin"], "reject", label)
    assert error.value.errors == {"label": message}
    first = reasons.options(db, "reject")[0]
    with pytest.raises(ValidationError):
        write(db, reasons.rename, world.users["admin"], first.id, label)
    assert reasons.all_lists(db) == before and audit_rows(db) == []


def test_the_same_label_may_stand_in_two_lists_and_a_rename_may_keep_its_own(db, world):
    other = reasons.options(db, "return")[-1]
    assert write(db, reasons.add, None, "return", "重复反映").label == "重复反映"
    assert write(db, reasons.rename, None, other.id, "其他").label == "其他"
    assert [e["action"] for e in audit_rows(db)] == ["create"]  # an unchanged name: no entry
    renamed = write(db, reasons.rename, world.users["admin"], other.id, "其他原因")
    assert (renamed.code, renamed.label) == ("other", "其他原因")
    assert audit_rows(db)[-1]["old"] == {"label": "其他"}
    assert audit_rows(db)[-1]["new"] == {"label": "其他原因"}


def test_moving_an_option_up_and_down(db):
    first, second = reasons.options(db, "extension")[:2]
    write(db, reasons.move, None, second.id, -1)
    assert codes(db, "extension")[:2] == [second.code, first.code]
    write(db, reasons.move, None, second.id, -1)  # already first: stays
    assert codes(db, "extension")[:2] == [second.code, first.code]
    last = reasons.options(db, "extension")[-1]
    write(db, reasons.move, None, last.id, 1)  # already last: stays
    assert codes(db, "extension")[-1] == last.code
    write(db, reasons.move, None, second.id, 1)
    assert codes(db, "extension")[:2] == [first.code, second.code]


def test_one_option_per_list_needs_a_note(db, world):
    policy = next(o for o in reasons.options(db, "explained") if o.code == "policy")
    write(db, reasons.set_needs_text, world.users["admin"], policy.id, True)
    marked = [o.code for o in reasons.options(db, "explained") if o.needs_text]
    assert marked == ["policy"]  # the mark moved from 其他
    assert [o.code for o in reasons.options(db, "reject") if o.needs_text] == ["other"]
    write(db, reasons.set_needs_text, world.users["admin"], policy.id, False)
    assert not any(o.needs_text for o in reasons.options(db, "explained"))
    changes = [(e["entity_id"], e["new"]) for e in audit_rows(db)]
    other = next(o for o in reasons.options(db, "explained") if o.code == "other")
    assert changes == [(other.id, {"needs_text": False}), (policy.id, {"needs_text": True}),
                       (policy.id, {"needs_text": False})]


def test_an_unknown_option_is_not_found(db):
    with pytest.raises(NotFound):
        write(db, reasons.rename, None, 999, "新名称")
    with pytest.raises(NotFound):
        write(db, reasons.set_active, None, 999, False)


def test_the_admin_page_lists_and_changes_the_lists(admin, db):
    page = admin.get("/admin/reasons")
    assert page.status_code == 200
    for list_name in reasons.LISTS:
        assert _(f"reasons.list.{list_name}") in page.text
    assert "不属于受理范围" in page.text and 'href="/admin/reasons"' in page.text
    response = post_form(admin, "/admin/reasons", {"list": "reject", "label": "涉法涉诉",
                                                   "needs_text": "1"})
    assert response.status_code == 303
    added = reasons.options(db, "reject")[-1]
    assert (added.label, added.needs_text) == ("涉法涉诉", True)
    assert [o.code for o in reasons.options(db, "reject") if o.needs_text] == [added.code]
    for op, check in (("up", lambda o: codes(db, "reject")[-2] == o.code),
                      ("deactivate", lambda o: not o.active),
                      ("reactivate", lambda o: o.active),
                      ("no_needs_text", lambda o: not o.needs_text)):
        response = post_form(admin, f"/admin/reasons/{added.id}", {"op": op})
        assert response.status_code == 303, op
        assert check(next(o for o in reasons.options(db, "reject") if o.id == added.id)), op
    response = post_form(admin, f"/admin/reasons/{added.id}", {"op": "rename",
                                                              "label": "涉法涉诉事项"})
    assert response.status_code == 303
    assert "涉法涉诉事项" in admin.get("/admin/reasons").text


@pytest.mark.parametrize(("url", "data", "status", "message"), [
    ("/admin/reasons", {"list": "reject", "label": ""}, 400, "请填写选项名称。"),
    ("/admin/reasons", {"list": "reject", "label": "重复反映"}, 400,
     "这个列表中已有名为“重复反映”的选项。"),
    ("/admin/reasons", {"list": "reject", "label": "长" * 31}, 400, "不能超过 30"),
    ("/admin/reasons", {"list": "nonsense", "label": "新原因"}, 400, "没有这个原因列表。"),
    ("/admin/reasons/1", {"op": "rename", "label": ""}, 400, "请填写选项名称。"),
    ("/admin/reasons/1", {"op": "rename", "label": "其他"}, 400, "已有名为“其他”"),
    ("/admin/reasons/1", {"op": "delete"}, 400, "无法识别要修改的选项"),
    ("/admin/reasons/999", {"op": "deactivate"}, 404, None),
    ("/admin/reasons/x1", {"op": "deactivate"}, 404, None),
])
def test_the_admin_page_refuses_bad_input_and_saves_nothing(admin, db, url, data, status,
                                                            message):
    before = (reasons.all_lists(db), audit_rows(db))
    response = post_form(admin, url, data)
    assert response.status_code == status
    if message:
        assert message in response.text
        if data.get("label") and data.get("list") != "nonsense":
            assert data["label"] in response.text  # kept as typed
    assert (reasons.all_lists(db), audit_rows(db)) == before


def test_a_district_administrator_keeps_the_city_wide_lists_too(admin_d2, db):
    first = reasons.options(db, "return")[0]
    response = post_form(admin_d2, f"/admin/reasons/{first.id}", {"op": "deactivate"})
    assert response.status_code == 303
    assert not reasons.options(db, "return")[0].active
    # The audit page shows the entry to every administrator (nothing area-bound).
    assert "原因选项" in admin_d2.get("/admin/audit?entity=reasons").text


# Counting by reason ------------------------------------------------------------------------


def test_reasons_are_counted_by_event_within_the_period_and_scope(act, db, world, clock):
    from server.ledger.clock import local_today

    clock(2026, 12, 1)
    act("office", "p1", "reject", reason_code="duplicate", note="重复")
    clock(2026, 12, 3)
    for _n in range(2):  # returned twice: counted twice
        act("handler1", "p3", "return", reason_code="not_our_duty", note="不归我们管")
        act("office", "p3", "refuse_return", note="属于本单位职责")
    act("handler1", "p3", "return", reason_code="other", note="说不清")
    act("office", "p3", "refuse_return", note="属于本单位职责")
    act("handler1", "p3", "sign")
    act("handler1", "p3", "request_extension", reason_code="funding", extra_days="3",
        note="等资金")
    clock(2026, 12, 20)  # after the period
    act("office", "p3", "close_explained", reason_code="policy", note="政策不支持")
    assert local_today() == dt.date(2026, 12, 20)
    office = auth.load_user(db, world.users["office"])
    period = metrics.Period(dt.date(2026, 12, 1), dt.date(2026, 12, 10))
    counted = metrics.reason_counts(db, office, period)
    assert list(counted) == list(reasons.LISTS)
    returned = {row.code: (row.count, row.share.percent()) for row in counted["return"]}
    assert returned == {"not_our_duty": (2, "66.67%"), "handled_elsewhere": (0, "0.00%"),
                        "wrong_info": (0, "0.00%"), "other": (1, "33.33%")}
    assert [(row.code, row.count) for row in counted["reject"] if row.count] == [
        ("duplicate", 1)]
    assert sum(row.count for row in counted["extension"]) == 1
    assert all(row.count == 0 and row.share.percent() == "—" for row in counted["explained"])
    # A deactivated option still counts, marked; the whole period catches the closure.
    option = next(o for o in reasons.options(db, "return") if o.code == "not_our_duty")
    write(db, reasons.set_active, None, option.id, False)
    everything = metrics.Period(dt.date(2026, 11, 1), dt.date(2026, 12, 31))
    counted = metrics.reason_counts(db, office, everything)
    assert [(row.code, row.active, row.count) for row in counted["return"]][0] == (
        "not_our_duty", False, 2)
    assert [row.count for row in counted["explained"] if row.code == "policy"] == [1]
    # A leader of another district sees none of it.
    leader_d2 = auth.load_user(db, world.users["leader_d2"])
    assert all(row.count == 0 for rows in metrics.reason_counts(
        db, leader_d2, everything).values() for row in rows)


def rollup_rebuilt(db) -> list[tuple]:
    """The roll-up as m026 builds it from the events and their problems' areas."""
    return db.execute(
        f"SELECT {db.dialect.local_day('e.at')}, p.area_id, e.kind,"
        f" coalesce({db.dialect.json_text('e.data', 'reason_code')}, ''), count(*)"
        " FROM problem_events e JOIN problems p ON p.id = e.problem_id"
        f" WHERE e.kind IN ({', '.join('?' * len(reasons.KINDS))})"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4", list(reasons.KINDS.values())).fetchall()


def rollup_kept(db) -> list[tuple]:
    return db.execute("SELECT day, area_id, kind, code, n FROM reason_rollup WHERE n != 0"
                      " ORDER BY 1, 2, 3, 4").fetchall()


def test_the_reason_rollup_follows_new_events_and_moved_problems(act, db, world, clock):
    clock(2026, 12, 1)
    act("office", "p1", "reject", reason_code="duplicate", note="重复")
    act("handler1", "p3", "return", reason_code="not_our_duty", note="不归我们管")
    act("office", "p3", "refuse_return", note="属于本单位职责")
    clock(2026, 12, 2)
    act("handler1", "p3", "return", reason_code="not_our_duty", note="不归我们管")
    assert len(rollup_kept(db)) == 3 and rollup_kept(db) == rollup_rebuilt(db)
    office = auth.load_user(db, world.users["office"])
    period = metrics.Period(dt.date(2026, 12, 1), dt.date(2026, 12, 2))
    before = metrics.reason_counts(db, office, period)

    # p3 moves to the other district: its two returns go with it, out of its old subtree.
    old_area = db.execute("SELECT area_id FROM problems WHERE id = ?",
                          [world.problems["p3"]]).fetchone()[0]
    with immediate(db):
        db.execute("UPDATE problems SET area_id = ? WHERE id = ?",
                   [world.areas["d2"], world.problems["p3"]])
    assert rollup_kept(db) == rollup_rebuilt(db)
    assert db.execute("SELECT count(*) FROM reason_rollup WHERE area_id = ?",
                      [old_area]).fetchone()[0] == 0
    assert metrics.reason_counts(db, office, period) == before  # the city sees both areas
    leader_d2 = auth.load_user(db, world.users["leader_d2"])
    returned = {row.code: row.count for row in metrics.reason_counts(
        db, leader_d2, period)["return"]}
    assert returned["not_our_duty"] == 2


def test_a_scope_beyond_an_area_counts_reasons_from_the_events(act, db, world, clock):
    """A handler's scope is the unit's problems, which the roll-up by area cannot tell."""
    clock(2026, 12, 1)
    act("handler1", "p3", "return", reason_code="not_our_duty", note="不归我们管")
    act("office", "p1", "reject", reason_code="duplicate", note="重复")
    handler = auth.load_user(db, world.users["handler1"])
    counted = metrics.reason_counts(db, handler, metrics.Period(dt.date(2026, 12, 1),
                                                                 dt.date(2026, 12, 1)))
    assert [(row.code, row.count) for row in counted["return"] if row.count] == [
        ("not_our_duty", 1)]
    assert all(row.count == 0 for row in counted["reject"])  # p1 is not the unit's


def test_events_without_a_reason_are_counted_as_unspecified(db, world):
    from tests.test_export import add_event

    add_event(db, world.problems["p1"], "reject", "2026-12-02T02:00:00+00:00", "旧记录",
              world.users["office"])
    office = auth.load_user(db, world.users["office"])
    counted = metrics.reason_counts(db, office, metrics.Period(dt.date(2026, 12, 1),
                                                                dt.date(2026, 12, 3)))
    assert [(row.code, row.count, row.share.percent()) for row in counted["reject"]
            if row.count] == [(None, 1, "100.00%")]


def test_the_stats_page_shows_a_table_per_list(login_as, act, world, clock):
    clock(2026, 12, 3)
    act("office", "p1", "reject", reason_code="unverifiable", note="联系不上")
    page = login_as("office").get("/stats?from=2026-12-01&to=2026-12-06").text
    section = page.split('id="st-reasons"')[1]
    for list_name in reasons.LISTS:
        assert _(f"reasons.list.{list_name}") in section
    row = section.split("信息不全无法核实")[1].split("</tr>")[0]
    assert ">1<" in row and "100.00%" in row
