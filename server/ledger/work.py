"""我的工作: the work lists of each role — what waits on the office, a unit, a helper unit or a
leader — each counted and paged to its end."""

from __future__ import annotations

import datetime as dt

from server import authz
from server.db.dialect import SQLITE, Dialect
from server.ledger import joint
from server.ledger.clock import local_today
from server.ledger.queries import JOINS, LIST_COLUMNS, MAX_PAGE, Count, as_listed, count

WORK_LIMIT = 50
OPEN = "p.status NOT IN ('closed', 'rejected', 'merged')"


def work_queue_keys(user: authz.User) -> list[str]:
    """The keys of the work lists this user has, in the order shown."""
    # The keys are the same in every dialect.
    return [queue[0] for queue in _work_queue_definitions(SQLITE, user, local_today())]


def _work_queue_definitions(dialect: Dialect, user: authz.User, soon: dt.date) -> list[tuple]:
    """The user's work lists: (key, condition, order, link to the same list in the ledger).

    ``soon`` is the last day of "due within three working days".
    """
    today = dialect.local_day("CAST(CURRENT_TIMESTAMP AS TEXT)")  # the database's clock
    awaiting_leader = dialect.json_text("p.extension_request", "awaiting_leader")
    queues = []
    if authz.OFFICE in user.roles:
        queues += [
            ("intake", "p.status = 'submitted'", "p.found_at", "status=submitted"),
            ("verify", "p.status = 'replied'", "p.found_at", "status=replied"),
            ("callback", "p.status = 'callback'", "p.found_at", "status=callback"),
            ("return_visit", "p.status = 'closed' AND p.return_visit_due <= "
             f"{today} AND p.return_visit_result IS NULL", "p.return_visit_due", None),
            ("extension", "p.extension_request IS NOT NULL AND p.status IN "
             f"('dispatched', 'handling') AND {awaiting_leader} IS NULL", "p.deadline", None),
            # The office's decisions (server/ledger/rules.py): a unit's return, and a
            # callback "solved but 不满意".
            ("returned", "p.status = 'returned'", "p.updated_at", "status=returned"),
            ("redo_decision", "p.status = 'callback' AND p.redo_pending = 1", "p.updated_at",
             None),
        ]
    if authz.HANDLER in user.roles and user.unit_id is not None:
        unit = f"p.lead_unit_id = {int(user.unit_id)}"
        queues += [
            # A leader's flag heads the unit's work (its 批示 shown on the row).
            ("unit_flagged", f"{unit} AND {OPEN} AND EXISTS (SELECT 1 FROM supervision_orders"
             " f WHERE f.problem_id = p.id AND f.kind = 'flag' AND f.closed_at IS NULL)",
             "p.deadline", None),
            ("to_sign", f"{unit} AND p.status = 'dispatched'", "p.deadline",
             f"status=dispatched&unit={user.unit_id}"),
            ("in_hand", f"{unit} AND p.status = 'handling'", "p.deadline",
             f"status=handling&unit={user.unit_id}"),
            ("due_soon", f"{unit} AND p.status IN ('dispatched', 'handling') AND p.deadline"
             f" BETWEEN {today} AND '{soon.isoformat()}'", "p.deadline", None),
        ]
    queues += joint.work_queues(user)  # a helper unit's parts (协办)
    if authz.LEADER in user.roles:
        queues += [
            ("overdue", f"{OPEN} AND p.deadline < {today}", "p.deadline", "overdue=yes"),
            ("flagged", f"{OPEN} AND p.supervision = 'flagged'", "p.deadline",
             "supervision=flagged"),
            # awaiting_leader is only ever set to true (server/ledger/rules.py).
            ("extension_leader", "p.extension_request IS NOT NULL AND p.status IN "
             f"('dispatched', 'handling') AND {awaiting_leader} IS NOT NULL", "p.deadline",
             None),
        ]
    return queues


def work_queues(db, user: authz.User, soon: dt.date, only: str | None = None,
                page: int = 1) -> list[dict]:
    """The user's work lists, each with its count and one page of WORK_LIMIT rows (the
    first page of each, or page ``page`` of the list ``only``), paged to the end of its
    count (up to COUNT_CAP)."""
    scope, params = authz.problem_scope(user, "p")
    result = []
    for key, condition, order, link in _work_queue_definitions(db.dialect, user, soon):
        if only is not None and key != only:
            continue
        where = f"{scope} AND {condition}"
        n = count(db, where, params)
        found = Count.of(n)
        pages = max(1, min(MAX_PAGE, -(-found.value // WORK_LIMIT)))
        at = min(page, pages) if only is not None else 1
        rows = db.query(
            f"SELECT {LIST_COLUMNS} FROM problems p {JOINS} WHERE {where}"
            f" ORDER BY {order}, p.rowid LIMIT ? OFFSET ?",
            [*params, WORK_LIMIT, (at - 1) * WORK_LIMIT],
        )
        result.append({
            "key": key, "rows": as_listed(db, list(rows)), "link": link,
            "count": found, "page": at, "pages": pages,
        })
    return result
