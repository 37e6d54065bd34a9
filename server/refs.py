"""Resolving references typed by people (an area code, a unit name) to row ids.

Forms and spreadsheets name an area by its code and a unit by its name; the
database links by id. A reference outside the acting user's scope is treated
exactly like one that does not exist.
"""

from __future__ import annotations

import sqlite_utils

from server import authz
from server.i18n import gettext as _


def area_id(db: sqlite_utils.Database, actor: authz.User, code: str) -> int:
    """The id of the area with this code inside the actor's subtree; ValueError if none."""
    row = db.execute(
        "SELECT id FROM areas WHERE code = ? AND path >= ? AND path < ?",
        [code, *authz.subtree_bounds(actor)],
    ).fetchone()
    if row is None:
        raise ValueError(_("validation.unknown_area", value=code))
    return row[0]


def unit_id(db: sqlite_utils.Database, name: str) -> int:
    row = db.execute("SELECT id FROM units WHERE name = ?", [name]).fetchone()
    if row is None:
        raise ValueError(_("validation.unknown_unit", value=name))
    return row[0]


def area_options(db: sqlite_utils.Database, actor: authz.User) -> list[tuple[str, str]]:
    clause, params = authz.area_subtree(actor, "areas.id")
    rows = db.execute(
        f"SELECT code, name, level, active FROM areas WHERE {clause} ORDER BY path",
        params,
    ).fetchall()
    inactive = _("common.inactive")
    return [
        (code, f"{'　' * (level - 1)}{name}{'' if active else f'（{inactive}）'}")
        for code, name, level, active in rows
    ]


def unit_options(db: sqlite_utils.Database) -> list[tuple[str, str]]:
    rows = db.execute("SELECT name, active FROM units ORDER BY active DESC, name").fetchall()
    inactive = _("common.inactive")
    return [(name, name if active else f"{name}（{inactive}）") for name, active in rows]
