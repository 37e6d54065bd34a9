"""Reading visits and their people's diary entries within a user's scope."""

from __future__ import annotations

import json

from server import authz
from server.db import record
from server.errors import NotFound
from server.ledger import queries
from server.ledger.problems import PAGE_SIZE

METHODS = ("sbls", "dundian", "xianchang", "ruhu", "jiefang", "other")
CHECKLIST = (
    "no_notice",
    "no_greeting",
    "no_briefing",
    "no_escort",
    "direct_grassroots",
    "direct_scene",
)


# A visit list is read in order of time through idx_visits_started: the page
# is found after a few rows, where the scope's own indexes would sort every
# visit in it (a third of a million for a city office). If the scope is so
# small that the ordered read takes longer than this, SQLite chooses.
ORDERED_BUDGET_S = 0.1


def latest_visits(db, user: authz.User, limit: int, offset: int = 0) -> list[dict]:
    """Visits in scope, latest first, with their diary and problem counts."""
    clause, params = authz.record_scope(user, "v")

    def read(indexed: str) -> list[dict]:
        return list(db.query(
            "SELECT v.id, v.method, v.place, v.started_at, v.ended_at, a.name AS area_name,"
            " u.display_name AS author_name,"
            " (SELECT count(*) FROM diary_entries d WHERE d.visit_id = v.id) AS diary_count,"
            " (SELECT count(*) FROM problems p WHERE p.visit_id = v.id) AS problem_count"
            f" FROM visits v{indexed} JOIN users u ON u.id = v.author_id"
            " LEFT JOIN areas a ON a.id = v.area_id"
            f" WHERE {clause} ORDER BY v.started_at DESC, v.rowid DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ))

    rows = db.bounded(ORDERED_BUDGET_S, read, f" {db.dialect.index_hint('idx_visits_started')}")
    return read("") if rows is None else rows


def list_visits(db, user: authz.User, page: int = 1) -> tuple[list[dict], queries.Count]:
    """A page of visits and their number, counted up to the ledger's cap ("10000+")."""
    clause, params = authz.record_scope(user, "v")
    counted = db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM visits v WHERE {clause} LIMIT ?) AS found",
        [*params, queries.COUNT_CAP + 1],
    ).fetchone()[0]
    page = min(page, queries.MAX_PAGE)
    return latest_visits(db, user, PAGE_SIZE, (page - 1) * PAGE_SIZE), queries.Count.of(
        counted)


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
    visit = record(rows[0])
    visit["checklist"] = json.loads(visit["checklist"])
    visit["diary"] = [
        record(entry) for entry in
        db.query("SELECT * FROM diary_entries WHERE visit_id = ? ORDER BY recorded_at", [visit_id])
    ]
    problem_clause, problem_params = authz.problem_scope(user, "p")
    visit["problems"] = list(
        db.query(
            "SELECT p.id, p.ledger_no, p.status, p.description, p.solved_on_spot FROM problems p"
            f" WHERE p.visit_id = ? AND {problem_clause} ORDER BY p.found_at",
            [visit_id, *problem_params],
        )
    )
    return visit
