"""Joint handling (协办): the helper units' parts of a dispatched problem (table ``joint_parts``,
m018).

The office dispatches a problem to a lead unit (主办) and any helper units (协办). Each helper
unit gets a part: its handlers sign it (签收), post progress, and answer with a 协办意见 (photos
allowed). The lead unit replies only once every helper has answered, or once the office has
let it go ahead (``let_lead_reply``, with a note saying why). A re-dispatch that drops a helper
marks its part ``removed`` (kept as history); one that adds a helper gives it a new part.

The actions are rows of workflow.ACTIONS; this module holds their rules and what each one
writes. A helper unit's handlers see the problem while their unit has a part that is not
removed (``authz.problem_scope``); they never take the lead unit's actions (those are
``unit_only``).
"""

from __future__ import annotations

import json

from server import authz
from server.db.dialect import Dialect
from server.i18n import gettext as _
from server.ledger import clock
from server.ledger.states import TransitionError

ACTIONS = ("sign_part", "progress_part", "answer_part", "let_lead_reply")
PART_ACTIONS = ("sign_part", "progress_part", "answer_part")
STATES = ("dispatched", "signed", "answered", "removed")
# The problem's states in which a helper works on its part: from dispatch until the callback.
WORKING_STATES = ("dispatched", "handling", "returned", "replied", "callback")
# A part not removed: the unit is a helper of the problem now.
CURRENT = "state != 'removed'"


# Dispatch -----------------------------------------------------------------------------------


def dispatch_parts(db, user: authz.User, problem: dict, helper_ids: list[int]) -> dict:
    """Make the problem's current parts those of ``helper_ids``: new helpers get a part, the
    ones left out are removed (their rows stay), the others keep theirs as they are. Returns
    the units added and removed, for the dispatch event."""
    current = {row[0] for row in db.execute(
        f"SELECT unit_id FROM joint_parts WHERE problem_id = ? AND {CURRENT}", [problem["id"]])}
    wanted = set(helper_ids)
    now = clock.now_iso()
    removed = sorted(current - wanted)
    added = sorted(wanted - current)
    if removed:
        marks = ",".join("?" * len(removed))
        db.execute(
            f"UPDATE joint_parts SET state = 'removed', removed_at = ?, removed_by = ?"
            f" WHERE problem_id = ? AND {CURRENT} AND unit_id IN ({marks})",
            [now, user.id, problem["id"], *removed])
    for unit_id in added:
        db["joint_parts"].insert({"problem_id": problem["id"], "unit_id": unit_id,
                                  "state": "dispatched", "dispatched_at": now,
                                  "dispatched_by": user.id})
    return {"helpers_added": added, "helpers_removed": removed}


# Rules --------------------------------------------------------------------------------------


def part_of(db, problem_id: str, unit_id: int | None) -> dict | None:
    """The unit's current part of the problem, if it is a helper now."""
    if unit_id is None:
        return None
    rows = list(db.query(f"SELECT * FROM joint_parts WHERE problem_id = ? AND unit_id = ?"
                         f" AND {CURRENT}", [problem_id, unit_id]))
    return rows[0] if rows else None


def awaited(db, problem_id: str) -> list[dict]:
    """The helper units that have not answered yet (id and name), by name."""
    return list(db.query(
        "SELECT j.unit_id, u.name FROM joint_parts j JOIN units u ON u.id = j.unit_id"
        " WHERE j.problem_id = ? AND j.state IN ('dispatched', 'signed') ORDER BY u.name, u.id",
        [problem_id]))


def lead_released(db, problem_id: str) -> bool:
    """Whether the office let the lead unit reply without waiting, since the last dispatch
    (a re-dispatch, which may add helpers, asks again)."""
    row = db.execute(
        "SELECT kind FROM problem_events WHERE problem_id = ?"
        " AND kind IN ('dispatch', 'let_lead_reply') ORDER BY at DESC, rowid DESC LIMIT 1",
        [problem_id]).fetchone()
    return bool(row) and row[0] == "let_lead_reply"


def reply_waits_for(db, problem_id: str) -> list[dict]:
    """The helpers the lead unit's reply waits for: none once the office let it go ahead."""
    return [] if lead_released(db, problem_id) else awaited(db, problem_id)


def check_reply(db, problem: dict) -> None:
    """The lead unit replies once the helpers have answered, or the office let it go ahead."""
    waiting = reply_waits_for(db, problem["id"])
    if waiting:
        raise TransitionError(_("joint.reply_waits", units="、".join(w["name"] for w in waiting)))


def check_allowed(db, name: str, problem: dict, user: authz.User) -> None:
    """The rules of this module's actions beyond their states and roles."""
    if name == "let_lead_reply":
        if not awaited(db, problem["id"]):
            raise TransitionError(_("joint.nobody_awaited"))
        if lead_released(db, problem["id"]):
            raise TransitionError(_("joint.already_released"))
        return
    part = part_of(db, problem["id"], user.unit_id if authz.HANDLER in user.roles else None)
    if part is None:
        raise TransitionError(_("joint.not_helper"), 403)
    if part["state"] == "answered":
        raise TransitionError(_("joint.already_answered"))
    if name == "sign_part" and part["state"] != "dispatched":
        raise TransitionError(_("joint.already_signed"))
    if name != "sign_part" and part["state"] != "signed":
        raise TransitionError(_("joint.sign_first"))


# What each action writes --------------------------------------------------------------------


def _mine(db, user, problem) -> dict:
    return part_of(db, problem["id"], user.unit_id)


def _sign(db, user, problem, data, note):
    part = _mine(db, user, problem)
    db["joint_parts"].update(part["id"], {"state": "signed", "signed_at": clock.now_iso(),
                                          "signed_by": user.id})
    return {}, {"unit_id": part["unit_id"], "part_id": part["id"]}, None


def _progress(db, user, problem, data, note):
    part = _mine(db, user, problem)
    return {}, {"unit_id": part["unit_id"], "part_id": part["id"]}, None


def _answer(db, user, problem, data, note):
    part = _mine(db, user, problem)
    db["joint_parts"].update(part["id"], {"state": "answered", "answered_at": clock.now_iso(),
                                          "answered_by": user.id, "opinion": note})
    return {}, {"unit_id": part["unit_id"], "part_id": part["id"]}, None


def _let_lead_reply(db, user, problem, data, note):
    return {}, {"unit_id": problem["lead_unit_id"],
                "awaited_unit_ids": [w["unit_id"] for w in awaited(db, problem["id"])]}, None


APPLY = {
    "sign_part": _sign,
    "progress_part": _progress,
    "answer_part": _answer,
    "let_lead_reply": _let_lead_reply,
}
assert set(APPLY) == set(ACTIONS)


def record_answer_event(db, event_id: str, event_data: dict) -> None:
    """Keep the answer's event on its part (its photos are the event's)."""
    db.execute("UPDATE joint_parts SET answer_event_id = ? WHERE id = ?",
               [event_id, event_data["part_id"]])


# Pages --------------------------------------------------------------------------------------


def parts_for_page(db, problem_id: str) -> list[dict]:
    """The problem's parts, current ones first (by unit name), then removed ones; each with
    who signed and answered and the answer's photos."""
    rows = list(db.query(
        "SELECT j.*, u.name AS unit_name, s.display_name AS signed_by_name,"
        " a.display_name AS answered_by_name FROM joint_parts j"
        " JOIN units u ON u.id = j.unit_id LEFT JOIN users s ON s.id = j.signed_by"
        " LEFT JOIN users a ON a.id = j.answered_by WHERE j.problem_id = ?"
        " ORDER BY j.state = 'removed', u.name, j.id", [problem_id]))
    for row in rows:
        row["photos"] = [sha for (sha,) in db.execute(
            "SELECT sha256 FROM attachment_links WHERE record_type = 'event' AND record_id = ?"
            " ORDER BY position", [row["answer_event_id"]])] if row["answer_event_id"] else []
    return rows


def work_queues(user: authz.User) -> list[tuple]:
    """The helper unit's work lists (key, condition, order, ledger link), as
    work.work_queues takes them: parts to sign, and parts signed but not answered."""
    if authz.HANDLER not in user.roles or user.unit_id is None:
        return []
    unit = int(user.unit_id)
    open_problem = "p.status IN ({})".format(", ".join(f"'{s}'" for s in WORKING_STATES))

    def part(state: str) -> str:
        return (f"{open_problem} AND p.id IN (SELECT problem_id FROM joint_parts"
                f" WHERE unit_id = {unit} AND state = '{state}')")

    return [("joint_to_sign", part("dispatched"), "p.deadline", None),
            ("joint_to_answer", part("signed"), "p.deadline", None)]


# Export -------------------------------------------------------------------------------------

def export_sql(dialect: Dialect) -> str:
    """The current parts of the export's row ``p``: [[unit id, state], ...] in dispatch
    order."""
    return (f"(SELECT {dialect.json_rows('j.unit_id', 'j.state')} FROM (SELECT unit_id, state"
            f" FROM joint_parts WHERE problem_id = p.id AND {CURRENT} ORDER BY id) j)"
            " AS joint_parts")


def export_cell(text: str | None, unit_names: dict[int, str]) -> str:
    """协办单位 as the export writes it: 交通局（已答复）、城管局（待签收）."""
    parts = json.loads(text) if text else []
    return "、".join(
        f"{unit_names.get(unit_id, str(unit_id))}（{_(f'joint.state.{state}')}）"
        for unit_id, state in parts)
