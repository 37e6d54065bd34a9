"""Supervision with answers: 督办单 and 挂牌督办 (table ``supervision_orders``, m016).

The actions live in server/ledger/workflow.py's ACTIONS table; this module holds their rules and
what each one writes. An office's order (``kind`` 'order') carries a requirement and a date
by which the lead unit answers (督办回复); the office then strikes it off (销号, outcome
'closed') or escalates it (outcome 'escalated'). Escalating does not flag the problem: a
flag is a leader's act with a written 批示, so an escalated order puts the problem on the
leaders' list (/supervision) until a leader flags it or the problem is closed. A leader's
flag (``kind`` 'flag') holds the 批示; it is lifted (摘牌, outcome 'lifted') by a leader once
the problem is closed. ``problems.supervision`` stays the highest level ever reached
(statistics and the ledger's ``supervision=`` filter read it): an order raises it to
'supervised', a flag to 'flagged'; nothing lowers it.
"""

from __future__ import annotations

import datetime as dt

from server import authz
from server.i18n import gettext as _
from server.ledger import clock, numbering, states
from server.ledger.states import TransitionError
from server.timeutil import local_date
from server.validation import ValidationError

ACTIONS = ("supervise", "answer_supervision", "close_supervision", "escalate_supervision",
           "flag", "unflag", "instruct")
# The actions taken on one order, from the order's own form on the problem page.
ORDER_ACTIONS = ("answer_supervision", "close_supervision", "escalate_supervision", "unflag")


def open_orders(db, problem_id: str) -> list[dict]:
    """The problem's open orders and flags, flags first, oldest first."""
    return [_with_age(row) for row in db.query(
        "SELECT o.*, u.name AS unit_name, i.display_name AS issued_by_name,"
        " a.display_name AS answered_by_name FROM supervision_orders o"
        " LEFT JOIN units u ON u.id = o.unit_id LEFT JOIN users i ON i.id = o.issued_by"
        " LEFT JOIN users a ON a.id = o.answered_by"
        " WHERE o.problem_id = ? AND o.closed_at IS NULL"
        " ORDER BY o.kind = 'order', o.issued_at, o.id", [problem_id])]


def _with_age(row: dict, today: dt.date | None = None) -> dict:
    today = today or clock.local_today()
    row["age_days"] = (today - local_date(row["issued_at"])).days
    row["overdue"] = bool(row["kind"] == "order" and not row["answered_at"]
                          and row["answer_by"] and today > dt.date.fromisoformat(row["answer_by"]))
    return row


def _order(db, problem: dict, order_id) -> dict | None:
    try:
        order_id = int(order_id)
    except (TypeError, ValueError):
        return None
    rows = list(db.query("SELECT * FROM supervision_orders WHERE id = ? AND problem_id = ?",
                         [order_id, problem["id"]]))
    return rows[0] if rows else None


def _open(db, problem: dict, where: str, params=()) -> bool:
    return db.execute(
        f"SELECT 1 FROM supervision_orders WHERE problem_id = ? AND closed_at IS NULL AND {where}",
        [problem["id"], *params]).fetchone() is not None


def check_allowed(db, name: str, problem: dict, user: authz.User) -> None:
    """Whether the action can be taken on this problem now at all (its buttons); the order
    it names is checked when it is applied."""
    today = clock.local_today().isoformat()
    refusals = {
        "supervise": problem["lead_unit_id"] is None and "supervision.no_lead_unit",
        "answer_supervision": not _open(db, problem, "kind = 'order' AND answered_at IS NULL"
                                        " AND unit_id = ?", [user.unit_id])
        and "supervision.nothing_to_answer",
        "close_supervision": not _open(db, problem, "kind = 'order' AND answered_at IS NOT NULL")
        and "supervision.nothing_answered",
        "escalate_supervision": not _open(
            db, problem, "kind = 'order' AND (answered_at IS NOT NULL OR answer_by < ?)", [today])
        and "supervision.nothing_to_escalate",
        "flag": _open(db, problem, "kind = 'flag'") and "supervision.already_flagged",
        "unflag": not _open(db, problem, "kind = 'flag'") and "supervision.not_flagged",
    }
    if refusals.get(name):
        raise TransitionError(_(refusals[name]))


def _named_order(db, problem: dict, data: dict, kind: str) -> dict:
    order = _order(db, problem, data.get("order_id"))
    if order is None or order["kind"] != kind:
        raise ValidationError({"order_id": _("supervision.no_such_order")})
    if order["closed_at"]:
        raise TransitionError(_("supervision.order_closed", number=order["number"]))
    return order


def _answer_by(data: dict) -> str:
    try:
        day = dt.date.fromisoformat(str(data["answer_by"]).strip())
    except ValueError:
        raise ValidationError({"answer_by": _("supervision.bad_date")}) from None
    if day < clock.local_today():
        raise ValidationError({"answer_by": _("supervision.date_past")})
    return day.isoformat()


def _issue(db, user, problem, kind: str, text: str, answer_by: str | None) -> dict:
    order = {
        "problem_id": problem["id"],
        "number": numbering.next_number(db, "supervision", clock.local_today().year),
        "kind": kind,
        "requirement": text,
        "answer_by": answer_by,
        "issued_by": user.id,
        "issued_at": clock.now_iso(),
        "unit_id": problem["lead_unit_id"],
    }
    order["id"] = db["supervision_orders"].insert(order).last_pk
    return order


def _supervise(db, user, problem, data, note):
    answer_by = _answer_by(data)
    order = _issue(db, user, problem, "order", note, answer_by)
    return (supervision_level(problem, "supervised", note),
            {"order_id": order["id"], "number": order["number"], "answer_by": answer_by,
             "unit_id": order["unit_id"], "level": "supervised"}, None)


def _answer(db, user, problem, data, note):
    order = _named_order(db, problem, data, "order")
    if order["unit_id"] != user.unit_id:
        raise TransitionError(_("supervision.not_your_order", number=order["number"]),
                                       403)
    if order["answered_at"]:
        raise TransitionError(_("supervision.already_answered", number=order["number"]))
    db["supervision_orders"].update(order["id"], {
        "answer": note, "answered_by": user.id, "answered_at": clock.now_iso()})
    return {}, {"order_id": order["id"], "number": order["number"]}, None


def _settle(outcome: str, kind: str = "order"):
    def settle(db, user, problem, data, note):
        order = _named_order(db, problem, data, kind)
        if outcome == "closed" and not order["answered_at"]:
            raise TransitionError(_("supervision.close_before_answer",
                                             number=order["number"]))
        if outcome == "escalated" and not order["answered_at"] and (
                clock.local_today() <= dt.date.fromisoformat(order["answer_by"])):
            raise TransitionError(_("supervision.escalate_too_soon",
                                             number=order["number"], date=order["answer_by"]))
        db["supervision_orders"].update(order["id"], {
            "closed_by": user.id, "closed_at": clock.now_iso(), "outcome": outcome})
        return {}, {"order_id": order["id"], "number": order["number"], "outcome": outcome}, None

    return settle


def _flag(db, user, problem, data, note):
    order = _issue(db, user, problem, "flag", note, None)
    return (supervision_level(problem, "flagged", note),
            {"order_id": order["id"], "number": order["number"], "unit_id": order["unit_id"],
             "level": "flagged"}, None)


def _instruct(db, user, problem, data, note):
    return {}, {}, None


APPLY = {
    "supervise": _supervise,
    "answer_supervision": _answer,
    "close_supervision": _settle("closed"),
    "escalate_supervision": _settle("escalated"),
    "flag": _flag,
    "unflag": _settle("lifted", kind="flag"),
    "instruct": _instruct,
}
assert set(APPLY) == set(ACTIONS)


# Lists -----------------------------------------------------------------------------------


def unit_queue(db, unit_id: int | None) -> list[dict]:
    """The unit's open orders still to answer, oldest answer date first."""
    if unit_id is None:
        return []
    return [_with_age(row) for row in db.query(
        "SELECT o.*, p.ledger_no, p.description FROM supervision_orders o"
        " JOIN problems p ON p.id = o.problem_id"
        " WHERE o.unit_id = ? AND o.closed_at IS NULL AND o.kind = 'order'"
        " AND o.answered_at IS NULL ORDER BY o.answer_by, o.id", [unit_id])]


def open_flags(db, problem_ids: list[str]) -> dict[str, dict]:
    """The open flag of each of these problems that has one (its 批示 heads the queue)."""
    if not problem_ids:
        return {}
    marks = ",".join("?" * len(problem_ids))
    return {row["problem_id"]: row for row in db.query(
        f"SELECT * FROM supervision_orders WHERE kind = 'flag' AND closed_at IS NULL"
        f" AND problem_id IN ({marks})", problem_ids)}


def leader_page(db, user: authz.User, page: int, per_page: int = 50) -> dict:
    """Open orders and flags in the user's problem scope, grouped by unit, with their ages;
    and the problems whose order was escalated and no leader has flagged since."""
    scope, params = authz.problem_scope(user, "p")
    total = db.execute(
        f"SELECT count(*) FROM supervision_orders o JOIN problems p ON p.id = o.problem_id"
        f" WHERE o.closed_at IS NULL AND {scope}", params).fetchone()[0]
    rows = [_with_age(row) for row in db.query(
        f"SELECT o.*, p.ledger_no, p.description, p.status, u.name AS unit_name"
        f" FROM supervision_orders o JOIN problems p ON p.id = o.problem_id"
        f" LEFT JOIN units u ON u.id = o.unit_id WHERE o.closed_at IS NULL AND {scope}"
        f" ORDER BY u.name IS NULL, u.name, o.unit_id, o.kind = 'order', o.issued_at, o.id"
        f" LIMIT ? OFFSET ?", [*params, per_page, (page - 1) * per_page])]
    groups: list[dict] = []
    for row in rows:
        if not groups or groups[-1]["unit_id"] != row["unit_id"]:
            groups.append({"unit_id": row["unit_id"], "unit_name": row["unit_name"], "rows": []})
        groups[-1]["rows"].append(row)
    escalated = list(db.query(
        f"SELECT o.*, p.ledger_no, p.description, u.name AS unit_name"
        f" FROM supervision_orders o JOIN problems p ON p.id = o.problem_id"
        f" LEFT JOIN units u ON u.id = o.unit_id"
        f" WHERE o.outcome = 'escalated' AND p.status NOT IN ('closed', 'rejected', 'merged')"
        f" AND NOT EXISTS (SELECT 1 FROM supervision_orders f WHERE f.problem_id = o.problem_id"
        f" AND f.kind = 'flag' AND f.issued_at >= o.closed_at) AND {scope}"
        f" ORDER BY o.closed_at", params))
    return {"groups": groups, "total": total, "escalated": escalated}


def supervision_level(problem: dict, level: str, note: str = "") -> dict:
    """The problem's columns when supervision reaches ``level``: problems.supervision is the
    highest level the problem ever reached (never lowered), supervision_note the latest word."""
    levels = states.SUPERVISION_LEVELS
    current = levels.index(problem["supervision"] or "none")
    changes = {"supervision": levels[max(current, levels.index(level))]}
    if note:
        changes["supervision_note"] = note
    return changes
