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


def unit_id(db: sqlite_utils.Database, name: str, actor: authz.User | None = None) -> int:
    """The id of the unit with this name; ValueError if none or, given an ``actor``, if the
    unit's area is outside the actor's subtree (units are listed to every administrator
    for categories, so the refusal names the reason)."""
    row = db.execute(
        "SELECT units.id, areas.path FROM units JOIN areas ON areas.id = units.area_id"
        " WHERE units.name = ?",
        [name],
    ).fetchone()
    if row is None:
        raise ValueError(_("validation.unknown_unit", value=name))
    if actor is not None:
        low, high = authz.subtree_bounds(actor)
        if not low <= row[1] < high:
            raise ValueError(_("audit.unit_outside_area", value=name, area=actor.area_name))
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


def unit_options(db: sqlite_utils.Database,
                 actor: authz.User | None = None) -> list[tuple[str, str]]:
    """Every unit, or given an ``actor`` the units inside the actor's subtree."""
    clause, params = authz.area_subtree(actor, "units.area_id") if actor else ("1 = 1", [])
    rows = db.execute(
        f"SELECT name, active FROM units WHERE {clause} ORDER BY active DESC, name", params
    ).fetchall()
    inactive = _("common.inactive")
    return [(name, name if active else f"{name}（{inactive}）") for name, active in rows]
