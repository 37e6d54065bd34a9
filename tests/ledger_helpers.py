"""Helpers for the ledger tests: add problems to the conftest world, load users."""

from __future__ import annotations

import uuid

from server import auth
from server.db import immediate
from server.timeutil import now_iso


def add_problem(db, world, **fields) -> str:
    """Insert one problem (defaults: accepted in district d1's grid, category of the world)."""
    problem_id = fields.pop("id", None) or str(uuid.uuid4())
    now = now_iso()
    row = {
        "id": problem_id,
        "reporter_id": world.users["field1"],
        "area_id": world.areas["g1"],
        "description": "测试问题",
        "status": "accepted",
        "category_id": world.category,
        "found_at": now,
        "created_at": now,
        "updated_at": now,
    }
    row.update(fields)
    with immediate(db):
        db["problems"].insert(row)
    return problem_id


def load(db, world, username: str):
    return auth.load_user(db, world.users[username])
