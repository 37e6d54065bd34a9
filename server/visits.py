"""Reading visits and their people's diary entries within a user's scope."""

from __future__ import annotations

import json

from server import authz
from server.errors import NotFound
from server.problems import PAGE_SIZE

METHODS = ("sbls", "dundian", "xianchang", "ruhu", "jiefang", "other")
CHECKLIST = (
    "no_notice",
    "no_greeting",
    "no_briefing",
    "no_escort",
    "direct_grassroots",
    "direct_scene",
)


def list_visits(db, user: authz.User, page: int = 1):
    clause, params = authz.record_scope(user, "v")
    total = db.execute(f"SELECT count(*) FROM visits v WHERE {clause}", params).fetchone()[0]
    rows = list(
        db.query(
            "SELECT v.id, v.method, v.place, v.started_at, v.ended_at, a.name AS area_name,"
            " u.display_name AS author_name,"
            " (SELECT count(*) FROM diary_entries d WHERE d.visit_id = v.id) AS diary_count,"
            " (SELECT count(*) FROM problems p WHERE p.visit_id = v.id) AS problem_count"
            " FROM visits v JOIN users u ON u.id = v.author_id"
            " LEFT JOIN areas a ON a.id = v.area_id"
            f" WHERE {clause} ORDER BY v.started_at DESC LIMIT ? OFFSET ?",
            [*params, PAGE_SIZE, (page - 1) * PAGE_SIZE],
        )
    )
    return rows, total


def get_visit(db, user: authz.User, visit_id: str) -> dict:
    clause, params = authz.record_scope(user, "v")
    rows = list(
        db.query(
            "SELECT v.*, a.name AS area_name, u.display_name AS author_name FROM visits v"
            " JOIN users u ON u.id = v.author_id LEFT JOIN areas a ON a.id = v.area_id"
            f" WHERE v.id = ? AND {clause}",
            [visit_id, *params],
        )
    )
    if not rows:
        raise NotFound(visit_id)
    visit = rows[0]
    visit["checklist"] = json.loads(visit["checklist"])
    visit["diary"] = list(
        db.query("SELECT * FROM diary_entries WHERE visit_id = ? ORDER BY recorded_at", [visit_id])
    )
    problem_clause, problem_params = authz.problem_scope(user, "p")
    visit["problems"] = list(
        db.query(
            "SELECT p.id, p.ledger_no, p.status, p.description FROM problems p"
            f" WHERE p.visit_id = ? AND {problem_clause} ORDER BY p.found_at",
            [visit_id, *problem_params],
        )
    )
    return visit
