"""Reading problems within a user's scope. (The ledger's workflow builds on this.)"""

from __future__ import annotations

import json

import sqlite_utils

from server import areas, authz
from server.db import record
from server.errors import NotFound

STATUSES = (
    "submitted",
    "accepted",
    "dispatched",
    "handling",
    "returned",
    "replied",
    "callback",
    "closed",
    "rejected",
    "merged",
)
PAGE_SIZE = 50

_LIST_COLUMNS = (
    "p.id, p.ledger_no, p.status, p.urgency, p.description, p.found_at, p.deadline,"
    " p.deadline_provisional, p.supervision, a.name AS area_name, c.name AS category_name,"
    " un.name AS unit_name"
)
_JOINS = (
    " JOIN areas a ON a.id = p.area_id"
    " LEFT JOIN categories c ON c.id = p.category_id"
    " LEFT JOIN units un ON un.id = p.lead_unit_id"
)


def status_counts(db: sqlite_utils.Database, user: authz.User) -> dict[str, int]:
    clause, params = authz.problem_scope(user, "p")
    rows = db.execute(
        f"SELECT status, count(*) FROM problems p WHERE {clause} GROUP BY status", params
    ).fetchall()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update(dict(rows))
    return counts


def list_problems(db, user: authz.User, status: str | None = None, page: int = 1):
    clause, params = authz.problem_scope(user, "p")
    where = [clause]
    if status in STATUSES:
        where.append("p.status = ?")
        params = [*params, status]
    condition = " AND ".join(where)
    total = db.execute(f"SELECT count(*) FROM problems p WHERE {condition}", params).fetchone()[0]
    rows = list(
        db.query(
            f"SELECT {_LIST_COLUMNS} FROM problems p {_JOINS} WHERE {condition}"
            " ORDER BY p.found_at DESC LIMIT ? OFFSET ?",
            [*params, PAGE_SIZE, (page - 1) * PAGE_SIZE],
        )
    )
    return rows, total


def get_problem(db, user: authz.User, problem_id: str) -> dict:
    clause, params = authz.problem_scope(user, "p")
    rows = list(
        db.query(
            f"SELECT p.*, a.name AS area_name, c.name AS category_name, un.name AS unit_name,"
            f" r.display_name AS reporter_name FROM problems p {_JOINS}"
            f" JOIN users r ON r.id = p.reporter_id WHERE p.id = ? AND {clause}",
            [problem_id, *params],
        )
    )
    if not rows:
        raise NotFound(problem_id)
    problem = areas.add_area_paths(db, rows)[0]
    problem = record(problem)
    problem["photos"] = [
        row[0] for row in db.execute(
            "SELECT sha256 FROM attachment_links WHERE record_type = 'problem' AND record_id = ?"
            " ORDER BY position", [problem_id]
        )
    ]
    problem["events"] = [
        {**record(event), "data": json.loads(event["data"])}
        for event in db.query(
            "SELECT e.*, u.display_name AS actor_name FROM problem_events e"
            " LEFT JOIN users u ON u.id = e.actor_id WHERE e.problem_id = ? ORDER BY e.at, e.rowid",
            [problem_id],
        )
    ]
    event_photos: dict[str, list[str]] = {}
    for event_id, sha in db.execute(
        "SELECT l.record_id, l.sha256 FROM attachment_links l JOIN problem_events e"
        " ON e.id = l.record_id WHERE l.record_type = 'event' AND e.problem_id = ?"
        " ORDER BY l.record_id, l.position", [problem_id]
    ):
        event_photos.setdefault(event_id, []).append(sha)
    for event in problem["events"]:
        event["photos"] = event_photos.get(event["id"], [])
    return problem


def get_problem_row(db, user: authz.User, problem_id: str) -> dict:
    """The problem's own columns, if the user may see it."""
    clause, params = authz.problem_scope(user, "p")
    rows = list(db.query(
        f"SELECT p.* FROM problems p WHERE p.id = ? AND {clause}", [problem_id, *params]
    ))
    if not rows:
        raise NotFound(problem_id)
    return rows[0]
